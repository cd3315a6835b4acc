"""Model loading: resolve a model, pick its file, read and check its metadata, run ONNX Runtime.

``onnxruntime`` is imported here, inside functions, the first time a model is loaded — never when
``redaes_lite`` is imported. Sessions are cached per (resolved path, file identity, providers,
threads), so ``redaes_lite.load()`` called twice shares one session. Which file of a model folder runs
(fp or int8) is :mod:`redaes_lite.precision`'s rule.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelError
from .metadata import ModelInfo, read_sidecar, sha256_file, sidecar_path
from .precision import FP_FILE, INT8_FILE, Choice, choose, requested

__all__ = ["EMBEDDED", "ModelSession", "model_id", "open_model", "open_session", "resolve_model"]

#: Names of the models embedded in the wheel, under ``redaes_lite/models/<name>/model.onnx``.
EMBEDDED = ("default", "permissive")
_MODELS_DIR = Path(__file__).parent / "models"
_INPUT, _OUTPUTS = "pixel_values", ("utility", "factors")

_cache: dict[tuple[Any, ...], ModelSession] = {}
_cache_lock = threading.Lock()


def resolve_model(model: str | os.PathLike | None) -> tuple[Path, bool]:
    """``None`` / ``"default"`` / ``"permissive"`` -> the embedded file; a path -> that file (a directory
    -> its ``model.onnx``). Returns ``(path, embedded)``; raises :class:`ModelError` if it is absent."""
    if model is None or (isinstance(model, str) and model in EMBEDDED):
        name = model or "default"
        path = _MODELS_DIR / name / "model.onnx"
        if not path.is_file():
            raise ModelError(
                f"{path}: the embedded {name!r} model is not shipped in this version of redaes-lite yet; "
                "pass a model file instead, e.g. load('path/to/model.onnx') or --model path/to/model.onnx"
            )
        return path.resolve(), True
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "model.onnx").is_file():
            raise ModelError(f"{path}: folder has no model.onnx")
        path = path / "model.onnx"
    if not path.exists():
        raise ModelError(f"{path}: no such model file")
    return path.resolve(), False


def _check_sha256(path: Path, *, embedded: bool) -> bool:
    """Embedded models must match their ``model.json``; other files are checked when a sidecar names them.
    Returns whether the file was checked (False: no sidecar names it, so nothing says it is intact)."""
    side_path = sidecar_path(path)
    if not side_path.is_file():
        if embedded:
            raise ModelError(f"{path}: embedded model has no {side_path.name}; the installation is damaged")
        return False
    side = read_sidecar(side_path)
    if side.file != path.name:
        if embedded:
            raise ModelError(f"{side_path}: describes {side.file!r}, not {path.name!r}")
        return False
    actual = sha256_file(path)
    if actual != side.sha256:
        raise ModelError(f"{path}: sha256 {actual[:12]}… does not match {side_path.name} ({side.sha256[:12]}…)")
    for name, sha in side.external_data.items():  # the weights it reads from files beside it
        data = path.parent / name
        got = sha256_file(data) if data.is_file() else "missing"
        if got != sha:
            raise ModelError(f"{data}: weights of {path.name} are not the ones {side_path.name} records ({got[:12]})")
    return True


def _session_options(threads: int | None) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only; per session, the global logger is left alone
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # The memory pattern preallocates one block per input shape for the whole graph's activations; off,
    # tensors come from the arena one by one and reuse what dead ones freed: Lite0 at batch 16 peaks
    # ~30 MB lower, at the same speed and bit-identical outputs (benchmarks/memory_profile.py).
    opts.enable_mem_pattern = False
    # Idle ORT threads sleep instead of spinning: score_many and the CLI decode on threads beside inference,
    # and on 2 cores a spinning ORT thread takes their time (48 camera JPEGs: 22 -> 24 images/s; on 200
    # files the gain is within run-to-run noise, 28.2 vs 28.6; single-thread latency is unchanged).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads is None and os.environ.get("OMP_NUM_THREADS", "").isdigit():
        threads = int(os.environ["OMP_NUM_THREADS"])  # the environment fills only what the caller left unset
    if threads is not None:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return opts


def _providers(providers: Sequence[str] | None) -> tuple[str, ...]:
    """CPU unless the caller asks otherwise (CPU results are deterministic and the same everywhere)."""
    import onnxruntime as ort

    if providers is None:
        return ("CPUExecutionProvider",)
    chosen = tuple(providers)
    unknown = [p for p in chosen if p not in ort.get_available_providers()]
    if not chosen or unknown:
        raise ValueError(
            f"unknown or unavailable providers {unknown or chosen}; "
            f"available: {', '.join(ort.get_available_providers())}"
        )
    return chosen


@dataclass(frozen=True)
class ModelSession:
    """One loaded model: its path, parsed metadata and ONNX Runtime session (shared, thread-safe runs)."""

    path: Path
    info: ModelInfo
    providers: tuple[str, ...]
    threads: int | None
    embedded: bool
    session: Any
    #: Whether the file's sha256 was checked against a ``model.json`` beside it (always, for embedded models).
    verified: bool = False

    @cached_property
    def model_id(self) -> str:
        """``name@version`` (see :func:`model_id`)."""
        return model_id(self.path, self.info.version, embedded=self.embedded)

    def run(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """float32 ``[N, 3, H, W]`` -> (utility ``[N]``, factors ``[N, K]``), checked finite."""
        utility, factors = self.session.run(list(_OUTPUTS), {_INPUT: pixels})
        n, k = len(pixels), len(self.info.factors)
        utility = np.asarray(utility, np.float32).reshape(-1)
        factors = np.asarray(factors, np.float32)
        if utility.shape != (n,) or factors.shape != (n, k):
            raise ModelError(
                f"{self.path}: outputs have shapes {utility.shape}, {factors.shape}; expected ({n},), ({n}, {k})"
            )
        if not (np.isfinite(utility).all() and np.isfinite(factors).all()):
            raise ModelError(f"{self.path}: the model produced non-finite outputs")
        return utility, factors


def _embedded_name(sha256: str) -> str | None:
    """The embedded model file whose sidecar records this sha256, if any (a path to an embedded file):
    ``default``, or ``default+int8`` for its int8 file."""
    for name in EMBEDDED:
        for file, suffix in ((FP_FILE, ""), (INT8_FILE, "+int8")):
            try:
                doc = json.loads(sidecar_path(_MODELS_DIR / name / file).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(doc, dict) and str(doc.get("sha256", "")).lower() == sha256:
                return name + suffix
    return None


def model_id(path: str | os.PathLike, version: str, *, embedded: bool) -> str:
    """What names a model in the CLI's rows: ``name@version`` for an embedded model (``default@0.5.0``,
    also when it is given by its path; ``default@0.5.0+int8`` for its int8 file), else
    ``sha256:<first 12 hex digits of the file>@version``: two files with one id hold the same bytes, so
    give the same results."""
    path = Path(path)
    if embedded:
        return f"{path.parent.name}@{version}" + ("+int8" if path.name == INT8_FILE else "")
    sha = sha256_file(path)
    name = _embedded_name(sha)
    if name is None:
        return f"sha256:{sha[:12]}@{version}"
    base, _, suffix = name.partition("+")
    return f"{base}@{version}" + (f"+{suffix}" if suffix else "")


def _check_signature(path: Path, session: Any, info: ModelInfo) -> None:
    """The graph must take ``pixel_values [N, 3, H, W]`` and give ``utility`` and ``factors``."""
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name for o in session.get_outputs()}
    if _INPUT not in inputs or not set(_OUTPUTS) <= outputs:
        raise ModelError(
            f"{path}: expected input {_INPUT!r} and outputs {list(_OUTPUTS)}, got {sorted(inputs)} -> {sorted(outputs)}"
        )
    shape = inputs[_INPUT].shape
    want = [3, *info.preprocess.size]
    static = [d if isinstance(d, int) else None for d in shape[1:]]
    if len(shape) != 4 or any(s is not None and s != w for s, w in zip(static, want)):
        expected = f"[N, 3, {want[1]}, {want[2]}]"
        raise ModelError(f"{path}: input {_INPUT} has shape {shape}, but redaes.preprocess says {expected}")


def _create(path: Path, embedded: bool, providers: tuple[str, ...], threads: int | None) -> ModelSession:
    import onnxruntime as ort

    verified = _check_sha256(path, embedded=embedded)
    opts = _session_options(threads)
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=list(providers))
    except PermissionError:
        raise ModelError(f"{path}: permission denied") from None
    except Exception as e:  # noqa: BLE001 - ORT raises its own untyped errors for unreadable models
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if not os.access(path, os.R_OK):
            raise ModelError(f"{path}: permission denied") from None
        raise ModelError(f"{path}: not a loadable ONNX model ({detail[:200]})") from None
    info = ModelInfo.from_props(session.get_modelmeta().custom_metadata_map, source=str(path))
    _check_signature(path, session, info)
    return ModelSession(path, info, providers, threads, embedded, session, verified)


def _select(
    model: str | os.PathLike | None, precision: str | None, providers: tuple[str, ...]
) -> tuple[Path, bool, Choice | None]:
    """``(file to run, embedded, choice)``; the choice is None for a file given by its path (that file runs)."""
    path, embedded = resolve_model(model)
    given_file = model is not None and not embedded and not Path(model).expanduser().is_dir()
    if given_file:
        if precision is not None and precision != "auto":
            raise ValueError(f"precision {precision!r} applies to a model folder or name; {path.name} is a file")
        return path, False, None
    choice = choose(path.parent, precision, providers)
    return choice.file.resolve(), embedded, choice


def _file_choice(session: ModelSession) -> Choice:
    """What runs when a file is given by its path: that file, whatever the setting."""
    setting, source = requested(None)
    precision = "int8" if session.info.quantization.startswith("int8") else "fp"
    return Choice(session.path, precision, setting, source, "the file given")


def open_model(
    model: str | os.PathLike | None = None,
    *,
    threads: int | None = None,
    providers: Sequence[str] | None = None,
    precision: str | None = None,
) -> tuple[ModelSession, Choice]:
    """The cached :class:`ModelSession` of the file that runs for ``model`` (fp or int8 by ``precision``,
    see :mod:`redaes_lite.precision`), and the :class:`~redaes_lite.precision.Choice` that picked it."""
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive int or None, got {threads!r}")
    chosen = _providers(providers)
    path, embedded, choice = _select(model, precision, chosen)
    session = _cached(path, embedded, chosen, threads)
    return session, choice or _file_choice(session)


def open_session(
    model: str | os.PathLike | None = None,
    *,
    threads: int | None = None,
    providers: Sequence[str] | None = None,
    precision: str | None = None,
) -> ModelSession:
    """The cached :class:`ModelSession` for a model; created (and verified) on first use."""
    return open_model(model, threads=threads, providers=providers, precision=precision)[0]


def _identity(path: Path) -> tuple[Any, ...]:
    """``(mtime, size)`` of the file and of the files its sidecar says it reads weights from."""
    files = [path]
    side = sidecar_path(path)
    if side.is_file():
        try:
            files += [path.parent / name for name in read_sidecar(side).external_data]
        except ModelError:
            pass  # _create reports a bad sidecar
    out: list[Any] = []
    for f in files:
        try:
            st = f.stat()
        except OSError as e:
            if f == path:
                raise ModelError(f"{path}: cannot read ({e.strerror or e})") from None
            out.append(None)  # _create reports the missing file
            continue
        out += [st.st_mtime_ns, st.st_size]
    return tuple(out)


def _cached(path: Path, embedded: bool, chosen: tuple[str, ...], threads: int | None) -> ModelSession:
    # File identity in the key: a model file (or the weights it reads) replaced on disk is loaded
    # afresh, and verified again, not served stale.
    key = (path, _identity(path), chosen, threads)
    with _cache_lock:
        if key not in _cache:
            _cache[key] = _create(path, embedded, chosen, threads)
        return _cache[key]
