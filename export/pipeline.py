"""``export_all``: checkpoint -> fp32 (+ int8, fp16, ``.ort``) files that passed their gates, plus the report.

Layout of ``out`` (each folder is what an app embeds, e.g. as ``redaes_lite/models/<name>/``)::

    fp32/model.onnx  fp32/model.json
    int8/model.onnx  int8/model.json          --int8 (with "auto": the mode chosen by measurement, if any passes)
    fp16/model.onnx  fp16/model.json          --fp16 (weights stored fp16, computed fp32)
    fp16/model.int8.onnx  fp16/model.int8.json      --int8-shared: int8/model.onnx again, reading its
                                              weights from fp16/model.onnx (the folder an app embeds)
    fp32-ort/, int8-ort/: model.ort  model.json  required_operators.config     --ort
    export_report.json  export_report.md

Files are built in a staging folder inside ``out`` and moved into place only after every gate passed:
a failed gate leaves the report (status ``failed``, the figures that failed) and no model files. The
folders above are cleared when a run starts, so ``out`` never mixes files of two runs (a stale int8
folder from an earlier checkpoint could otherwise ship by mistake).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redaes_lite.preprocess import ImageInput

from .checkpoint import read_checkpoint
from .errors import ExportError, ParityError
from .int8 import Int8Recipe, expand_fp16, share_weights
from .onnx import DEFAULT_OPSET, export_onnx
from .parity import (
    MIN_IMAGES,
    Gate,
    Photos,
    PhotoSet,
    identical_ranking_gate,
    ranking_gate,
    stability,
    torch_gate,
)
from .quantize import INT8_MODES, fp16_weights, quantize_int8
from .report import describe_file, latency_ms, machine, measure_latencies, write_report

__all__ = ["ExportOptions", "INT8_CHOICES", "add_int8", "choose_int8", "export_all"]

#: ``--int8`` values: ``auto`` measures both modes and keeps the fastest that passes its gate.
INT8_CHOICES = ("auto", "dynamic", "qdq", "none")
MODEL_FILE = "model.onnx"
#: The int8 file beside the fp16 ``model.onnx`` whose weights it reads (``--int8-shared``).
SHARED_INT8_FILE = "model.int8.onnx"
# The folders export_all owns inside ``out``.
_FOLDERS = ("fp32", "int8", "fp16", "fp32-ort", "int8-ort")


@dataclass(frozen=True)
class ExportOptions:
    """What ``export_all`` builds and how hard it checks; the defaults are the issue's numbers."""

    int8: str = "auto"
    fp16: bool = False
    ort: bool = False
    ort_target: str = "arm"
    exporter: str = "dynamo"
    opset: int = DEFAULT_OPSET
    calibration: Sequence[ImageInput] = ()  # photos for int8-qdq; never among ``parity``
    int8_recipe: Int8Recipe = Int8Recipe()
    int8_shared: bool = False  # int8 quantised from the fp16 weights and written beside them, reading them
    parity: tuple[ImageInput, ...] = ()  # held-out photos for the ranking gates (>= 200 by default)
    torch_images: int = 32  # of ``parity``, for the torch-vs-ONNX gate (torch is the slow side)
    min_parity: int = MIN_IMAGES
    threads: tuple[int, ...] = (1, 2)
    batches: tuple[int, ...] = (1, 32)
    repeats: int = 10
    extra: dict[str, Any] = field(default_factory=dict)  # recorded in the report as given (e.g. photo sources)

    def __post_init__(self) -> None:
        if self.int8 not in INT8_CHOICES:
            raise ExportError(f"--int8 must be one of {', '.join(INT8_CHOICES)}, got {self.int8!r}")
        if len(self.parity) < self.min_parity:
            raise ExportError(f"parity gates need >= {self.min_parity} held-out photos, got {len(self.parity)}")
        # Edited copies (export.calibration.Variants) are compared by the photos they were made from.
        originals = getattr(self.calibration, "originals", self.calibration)
        overlap = {str(p) for p in originals} & {str(p) for p in self.parity}
        if overlap:
            raise ExportError(f"{len(overlap)} calibration photos are also parity photos, e.g. {sorted(overlap)[0]}")
        if self.int8 in ("auto", "qdq") and not self.calibration:
            raise ExportError("int8 qdq needs calibration photos (none given)")
        if self.int8_shared and (self.int8 == "none" or not self.fp16):
            raise ExportError("--int8-shared writes int8 beside the fp16 file: it needs --fp16 and an --int8 mode")


def choose_int8(
    fp32: Path,
    stage: Path,
    *,
    mode: str,
    calibration: Sequence[ImageInput],
    parity: Photos,
    min_images: int = MIN_IMAGES,
    recipe: Int8Recipe | None = None,
    reference: Path | None = None,
) -> tuple[Path | None, Gate | None, dict[str, Any]]:
    """Quantise ``fp32`` with each candidate mode (``recipe`` for QDQ), gate each against ``reference``
    (default ``fp32``) and keep the fastest that passes (1 thread, batch 1). Returns ``(file, its gate,
    the choice record)``.

    A named mode (``dynamic``, ``qdq``) that fails its gate raises :class:`ParityError`. With ``auto`` the
    choice is a measurement and "no int8" is one of its outcomes: if no mode passes, the result is
    ``(None, None, record)`` with every candidate's figures, and no int8 file is written.
    """
    modes = INT8_MODES if mode == "auto" else (f"int8-{mode}",)
    tried: dict[str, dict[str, Any]] = {}
    passed: dict[str, tuple[Path, Gate]] = {}
    for m in modes:
        path = quantize_int8(fp32, stage / m / MODEL_FILE, mode=m, calibration=calibration, recipe=recipe)
        try:
            gate = ranking_gate(reference or fp32, path, parity, min_images=min_images)
        except ParityError as e:
            if mode != "auto":
                raise
            tried[m] = {"passed": False, "error": str(e), "figures": e.gate.figures}
            continue
        ms = latency_ms(path, threads=1, batch=1, repeats=5)
        tried[m] = {"passed": True, "figures": gate.figures, "threads1_batch1_ms": round(ms, 3)}
        passed[m] = (path, gate)
    if not passed:
        return (
            None,
            None,
            {"mode": "none", "reason": "no int8 mode passed the gate; no int8 file written", "candidates": tried},
        )
    best = min(passed, key=lambda m: tried[m]["threads1_batch1_ms"])
    if mode != "auto":
        reason = "the mode asked for"
    elif len(passed) > 1:
        reason = "fastest at 1 thread, batch 1, of the modes that passed the gate"
    else:
        reason = "the only mode that passed the gate"
    return passed[best][0], passed[best][1], {"mode": best, "reason": reason, "candidates": tried}


Progress = Callable[[str], None]


def _build(
    checkpoint: Path, stage: Path, opts: ExportOptions, record: dict[str, Any], progress: Progress
) -> dict[str, Path]:
    """Every file, each gated as soon as it exists; gates are appended to ``record`` as they pass."""
    gates: list[dict[str, Any]] = record["gates"]
    parity = PhotoSet(opts.parity)  # decoded once per spec, shared by every gate
    progress(f"exporting fp32 ONNX ({opts.exporter}, opset {opts.opset})")
    files = {"fp32": export_onnx(checkpoint, stage / "fp32" / MODEL_FILE, exporter=opts.exporter, opset=opts.opset)}
    progress(f"gate torch vs fp32 on {min(opts.torch_images, len(parity))} photos")
    gates.append(torch_gate(checkpoint, files["fp32"], parity[: opts.torch_images]).to_dict())
    if opts.int8 != "none" or opts.fp16:
        record["fp32_stability"] = stability(files["fp32"], parity)
    if opts.fp16:
        progress("fp16 weights")
        files["fp16"] = fp16_weights(files["fp32"], stage / "fp16" / MODEL_FILE)
        gates.append(ranking_gate(files["fp32"], files["fp16"], parity, min_images=opts.min_parity).to_dict())
    if opts.int8 != "none":
        _int8(stage, opts, files, record, parity, progress)
    if opts.ort:
        from .mobile import to_ort

        # Not fp16: the converter's optimiser folds the fp32 casts into the weights, so an fp16 .ort
        # would be the fp32 .ort under another name.
        for name in [n for n in files if n not in ("fp16", "int8-shared")]:
            progress(f"ORT format from {name}")
            files[f"{name}-ort"] = to_ort(files[name], stage / f"{name}-ort" / "model.ort", target=opts.ort_target)
            gate = identical_ranking_gate(files[name], files[f"{name}-ort"], parity, min_images=opts.min_parity)
            gates.append(gate.to_dict())
    return files


def _int8(
    stage: Path,
    opts: ExportOptions,
    files: dict[str, Path],
    record: dict[str, Any],
    parity: PhotoSet,
    progress: Progress,
) -> None:
    """The int8 file (gated against fp32) and, with ``int8_shared``, its copy reading the fp16 weights."""
    source = files["fp32"]
    if opts.int8_shared:  # quantise the weights that ship, so that the int8 file can read them from there
        source = expand_fp16(files["fp16"], stage / "fp16-expanded" / MODEL_FILE)
    progress(f"int8 ({opts.int8}; {opts.int8_recipe.describe()}): quantising, gating on {len(parity)} photos")
    path, gate, choice = choose_int8(
        source,
        stage,
        mode=opts.int8,
        calibration=opts.calibration,
        parity=parity,
        min_images=opts.min_parity,
        recipe=opts.int8_recipe,
        reference=files["fp32"],
    )
    record["int8_choice"] = {**choice, "recipe": opts.int8_recipe.to_dict(), "quantised_from": source.parent.name}
    if path is None:
        progress(f"int8: {choice['reason']} (figures in the report)")
        return
    files["int8"] = path.parent.rename(stage / "int8") / MODEL_FILE
    record["gates"].append(dataclasses.replace(gate, candidate=str(files["int8"])).to_dict())
    if opts.int8_shared:
        progress(f"int8 reading the fp16 weights: {SHARED_INT8_FILE} beside fp16/{MODEL_FILE}")
        files["int8-shared"], same = _shared_copy(files["int8"], files["fp16"], parity, opts.min_parity)
        record["gates"].append(same.to_dict())


def _shared_copy(int8: Path, fp16: Path, parity: PhotoSet, min_images: int) -> tuple[Path, Gate]:
    """``int8`` rewritten to read ``fp16``'s weights, beside it, and the gate that it computes the same bit for bit."""
    shared = share_weights(int8, fp16, fp16.parent / SHARED_INT8_FILE)
    return shared, identical_ranking_gate(int8, shared, parity, min_images=min_images, exact=True)


def _relative(obj: Any, stage: Path) -> Any:
    """Paths inside the staging folder, as they will be named once moved into ``out``."""
    if isinstance(obj, dict):
        return {k: _relative(v, stage) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_relative(v, stage) for v in obj]
    if isinstance(obj, str) and obj.startswith(str(stage) + os.sep):
        return obj[len(str(stage)) + 1 :]
    return obj


def _provenance(checkpoint: Path) -> dict[str, Any]:
    ckpt = read_checkpoint(checkpoint)
    return {k: ckpt.get(k) for k in ("version", "git_commit", "seed", "data_hashes", "student")}


def export_all(
    checkpoint: str | os.PathLike, out: str | os.PathLike, *, options: ExportOptions, progress: Progress | None = None
) -> Path:
    """Build, gate and measure every file ``options`` asks for under ``out``; returns the report's path.

    ``progress`` receives one line per step (the CLI prints them to stderr).

    Raises :class:`ParityError` (after writing a ``failed`` report) when a gate fails, and
    :class:`ExportError` when the checkpoint cannot be exported.
    """
    checkpoint, out = Path(checkpoint), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in _FOLDERS:
        shutil.rmtree(out / name, ignore_errors=True)
    record: dict[str, Any] = {
        "status": "failed",
        "checkpoint": str(checkpoint),
        "provenance": _provenance(checkpoint),
        "exporter": options.exporter,
        "opset": options.opset,
        "images": {
            "calibration": len(options.calibration),
            "parity": len(options.parity),
            "torch": min(options.torch_images, len(options.parity)),
            **options.extra,
        },
        "gates": [],
        "machine": machine(),
    }
    stage = Path(tempfile.mkdtemp(prefix=".stage-", dir=out))
    try:
        progress = progress or (lambda line: None)
        files = _build(checkpoint, stage, options, record, progress)
        record["files"] = {name: describe_file(p, root=stage) for name, p in files.items()}
        progress(f"latency of {len(files)} files ({len(options.threads) * len(options.batches)} settings each)")
        timing = {"threads": options.threads, "batches": options.batches, "repeats": options.repeats}
        record["latency_ms"] = {name: measure_latencies(p, **timing) for name, p in files.items()}
        for folder in dict.fromkeys(p.parent for p in files.values()):  # fp16/ holds two files
            folder.rename(out / folder.name)
        record["status"] = "ok"
    except ExportError as e:
        if isinstance(e, ParityError) and e.gate is not None:
            record["gates"].append(e.gate.to_dict())
        record["error"] = str(e)
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        write_report(_relative(record, stage), out)
    return out / "export_report.json"


def add_int8(
    folder: str | os.PathLike,
    *,
    calibration: Sequence[ImageInput],
    parity: Photos,
    recipe: Int8Recipe | None = None,
    reference: str | os.PathLike | None = None,
    min_images: int = MIN_IMAGES,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Give a model folder whose ``model.onnx`` has fp16 weights its int8 file: ``model.int8.onnx`` and
    ``model.int8.json`` beside it, reading its weights, as ``--int8-shared`` writes them.

    The int8 file is quantised from ``model.onnx``'s weights (``recipe``, calibrated on ``calibration``) and
    gated against ``reference``, an fp32 ONNX of the same model when one is at hand, else ``model.onnx``
    itself computed in fp32 (the file the int8 one stands in for); then the copy reading the shared weights
    must compute the same utilities bit for bit. Both files are written only after both gates passed.
    Returns the record: the gates and the recipe. Raises :class:`ParityError` when a gate fails.
    """
    folder = Path(folder)
    progress = progress or (lambda line: None)
    fp16 = folder / MODEL_FILE
    if not fp16.is_file():
        raise ExportError(f"{folder}: no {MODEL_FILE}")
    recipe = recipe or Int8Recipe()
    photos = parity if isinstance(parity, PhotoSet) else PhotoSet(parity)
    with tempfile.TemporaryDirectory(prefix=".int8-", dir=folder) as tmp:
        stage = Path(tmp)
        expanded = expand_fp16(fp16, stage / "expanded" / MODEL_FILE)
        ref = Path(reference) if reference is not None else expanded
        progress(f"int8 ({recipe.describe()}): quantising, gating on {len(photos)} photos against {ref.name}")
        path, gate, _ = choose_int8(
            expanded,
            stage,
            mode="qdq",
            calibration=calibration,
            parity=photos,
            min_images=min_images,
            recipe=recipe,
            reference=ref,
        )
        assert path is not None and gate is not None  # a named mode raises ParityError instead
        progress(", ".join(f"{k} {v:.4f}" for k, v in gate.figures.items() if isinstance(v, float)))
        beside = stage / "ship"
        beside.mkdir()
        shutil.copyfile(fp16, beside / MODEL_FILE)  # the shared file names its weights' file by sha256
        progress(f"{SHARED_INT8_FILE} reading {MODEL_FILE}'s weights: checking it computes the same")
        shared, same = _shared_copy(path, beside / MODEL_FILE, photos, min_images)
        sidecar = shared.with_suffix(".json")
        for src in (shared, sidecar):
            os.replace(src, folder / src.name)  # same file system: each lands whole
    described = str(reference) if reference is not None else f"{fp16} computed in fp32 (export.int8.expand_fp16)"
    named = {"reference": described, "candidate": str(folder / SHARED_INT8_FILE)}
    return {
        "folder": str(folder),
        "recipe": recipe.to_dict(),
        "calibration_images": len(calibration),
        "gates": [dataclasses.replace(gate, **named).to_dict(), dataclasses.replace(same, **named).to_dict()],
        "file": describe_file(folder / SHARED_INT8_FILE, root=folder),
    }
