"""The ``redaes.*`` model metadata: one parser, one writer, one calibration map.

Everything that reads or writes model metadata goes through this module — the runtime when it loads a
model, ``export`` when it writes one, tests when they build tiny models — so the format has exactly one
implementation. The format is documented in ``docs/model-format.md``.

- :class:`ModelInfo` holds every ``redaes.*`` key parsed into structured values and validates them.
- ``ModelInfo.from_props`` / ``to_props``: the ONNX ``metadata_props`` (string values, JSON where
  structured). ``from_dict`` / ``to_dict``: the structured form stored in the ``model.json`` sidecar.
- :func:`write_sidecar` / :func:`read_sidecar`: ``model.json`` = ``{file, sha256, opset, metadata}``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import atomic_open
from .errors import ModelError
from .preprocess import PreprocessSpec

__all__ = [
    "FACTORS",
    "FORMAT",
    "KEYS",
    "QUANTIZATIONS",
    "ModelInfo",
    "Sidecar",
    "apply_calibration",
    "embed_props",
    "preference_probability",
    "read_sidecar",
    "sha256_file",
    "sidecar_path",
    "write_sidecar",
]

#: Version of the model file contract this runtime reads and writes (``redaes.format``).
FORMAT = "1"
#: Factor vocabulary v1 (docs/model-format.md, section 3); a model uses a subset, in its own order.
FACTORS = (
    "exposure",
    "contrast",
    "saturation",
    "white_balance",
    "sharpness",
    "noise",
    "compression",
    "haze",
    "vignetting",
    "tilt",
    "composition",
)
QUANTIZATIONS = ("fp32", "fp16", "int8-dynamic", "int8-qdq")
PREFIX = "redaes."
# Field name -> whether the value is JSON-encoded in metadata_props. Order is that of docs/model-format.md.
_FIELDS = {
    "format": False,
    "version": False,
    "preprocess": True,
    "factors": True,
    "temperature": False,
    "lapse": False,
    "calibration": True,
    "student": True,
    "teacher": True,
    "training_data": True,
    "quantization": False,
    "license": False,
    "metrics": True,
}
# A model without ``redaes.lapse`` has none (0): files exported before it existed read as they always did.
_OPTIONAL = frozenset({"lapse", "metrics"})
#: Every ``redaes.*`` key in contract order; ``redaes.lapse`` and ``redaes.metrics`` are optional.
KEYS = tuple(PREFIX + name for name in _FIELDS)
# Deepest nesting of lists and objects a metadata value may have (the contract's own need 3): a hostile
# file's 100,000 nested lists would end json.loads, copy.deepcopy or the info table in a RecursionError.
_MAX_DEPTH = 16


def _too_deep(value: Any) -> bool:
    """Whether ``value`` nests lists/objects deeper than ``_MAX_DEPTH``; iterative, so it cannot recurse."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, (list, tuple, dict)):
            if depth > _MAX_DEPTH:
                return True
            stack.extend((x, depth + 1) for x in (v.values() if isinstance(v, dict) else v))
    return False


def _require(ok: bool, key: str, msg: str) -> None:
    """Validation failure: a ``ValueError`` naming the key; readers add the file name in front."""
    if not ok:
        raise ValueError(f"bad {PREFIX}{key}: {msg}")


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _check_records(key: str, value: Any, fields: dict[str, type]) -> tuple[dict[str, Any], ...]:
    """A non-empty list of objects, each with ``fields`` of the given types (numbers: int or float)."""
    _require(isinstance(value, (list, tuple)) and len(value) > 0, key, "expected a non-empty JSON list")
    out = []
    for i, rec in enumerate(value):
        _require(isinstance(rec, Mapping), key, f"item {i} is not a JSON object")
        for name, kind in fields.items():
            v = rec.get(name)
            ok = _is_num(v) if kind is float else isinstance(v, kind) and not isinstance(v, bool)
            _require(ok, key, f"item {i} needs {name!r} ({kind.__name__}), got {v!r}")
        out.append(dict(rec))
    return tuple(out)


def _check_calibration(value: Any) -> dict[str, Any]:
    _require(isinstance(value, Mapping), "calibration", "expected a JSON object")
    missing = [k for k in ("method", "utility", "score", "fitted_on") if k not in value]
    _require(not missing, "calibration", f"missing {missing}")
    u, s = value["utility"], value["score"]
    _require(isinstance(value["method"], str), "calibration", "method must be a string")
    _require(isinstance(value["fitted_on"], str), "calibration", "fitted_on must be a string")
    for name, knots in (("utility", u), ("score", s)):
        ok = isinstance(knots, (list, tuple)) and len(knots) >= 2 and all(_is_num(k) for k in knots)
        _require(ok, "calibration", f"{name} must be a list of >= 2 finite numbers")
    _require(len(u) == len(s), "calibration", f"utility has {len(u)} knots but score has {len(s)}")
    _require(all(b > a for a, b in zip(u, u[1:])), "calibration", "utility knots must be strictly ascending")
    _require(all(b >= a for a, b in zip(s, s[1:])), "calibration", "score knots must be ascending")
    _require(s[0] >= 0 and s[-1] <= 10, "calibration", "score knots must lie in [0, 10]")
    return {**value, "utility": [float(k) for k in u], "score": [float(k) for k in s]}


#: Where a student's trunk comes from (``distill.student.backbones``): provenance a reader can trace.
BACKBONE_SOURCES = ("timm", "open_clip", "nima")


def _check_student(value: Any, size: tuple[int, int]) -> dict[str, Any]:
    _require(isinstance(value, Mapping), "student", "expected a JSON object")
    backbone = value.get("backbone")
    ok = isinstance(backbone, str) and backbone.split(":", 1)[0] in BACKBONE_SOURCES and ":" in backbone
    _require(
        ok, "student", f"backbone must be '<source>:<name>' with source one of {BACKBONE_SOURCES}, got {backbone!r}"
    )
    _require(isinstance(value.get("pretrained"), str), "student", "pretrained must be a string")
    params = value.get("params")
    ok = isinstance(params, int) and not isinstance(params, bool) and params >= 0
    _require(ok, "student", f"params must be an int >= 0, got {params!r}")
    _require(list(value.get("input", ())) == list(size), "student", f"input must equal preprocess size {list(size)}")
    return dict(value)


def apply_calibration(calibration: Mapping[str, Any], utility: Any) -> np.ndarray:
    """Utility -> display score in [0, 10]: linear between knots, the end segments extended, then clamped.

    Extending the end segments (rather than holding the end knots) keeps images beyond the fitted
    range apart until they reach 0 or 10; the map is monotone either way.
    """
    xp = np.asarray(calibration["utility"], np.float64)
    fp = np.asarray(calibration["score"], np.float64)
    u = np.asarray(utility, np.float64)
    y = np.interp(u, xp, fp)
    lo_slope = (fp[1] - fp[0]) / (xp[1] - xp[0])
    hi_slope = (fp[-1] - fp[-2]) / (xp[-1] - xp[-2])
    y = np.where(u < xp[0], fp[0] + (u - xp[0]) * lo_slope, y)
    y = np.where(u > xp[-1], fp[-1] + (u - xp[-1]) * hi_slope, y)
    return np.clip(y, 0.0, 10.0)


def preference_probability(delta: Any, temperature: float, lapse: float = 0.0) -> Any:
    """``P(b better than a) = lapse / 2 + (1 - lapse) * sigmoid(delta / temperature)`` for utility differences
    ``delta = u(b) - u(a)`` (a float or an array). The lapse caps the certainty of even a large difference:
    some share of validation pairs goes against the model however far apart they score (label noise, taste)."""
    return lapse / 2 + (1 - lapse) * 0.5 * (1.0 + np.tanh(0.5 * np.asarray(delta, np.float64) / temperature))


@dataclass(frozen=True)
class ModelInfo:
    """Every ``redaes.*`` key of a model, parsed and validated (raises ``ValueError`` naming the key)."""

    version: str
    preprocess: PreprocessSpec
    factors: tuple[str, ...]
    temperature: float
    calibration: dict[str, Any]
    student: dict[str, Any]
    teacher: tuple[dict[str, Any], ...]
    training_data: tuple[dict[str, Any], ...]
    quantization: str
    license: str
    lapse: float = 0.0
    metrics: dict[str, Any] | None = None
    format: str = FORMAT
    # Not part of the contract: where this info was read from, for error messages.
    source: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        put = lambda name, v: object.__setattr__(self, name, v)  # noqa: E731 - frozen dataclass setter
        _require(self.format == FORMAT, "format", f"this runtime reads format {FORMAT!r}, got {self.format!r}")
        _require(isinstance(self.version, str) and bool(self.version), "version", "must be a non-empty string")
        if isinstance(self.preprocess, Mapping):
            try:
                put("preprocess", PreprocessSpec.from_dict(dict(self.preprocess)))
            except (ValueError, TypeError) as e:
                _require(False, "preprocess", str(e))
        _require(isinstance(self.preprocess, PreprocessSpec), "preprocess", "expected a preprocessing spec")
        factors = tuple(self.factors) if isinstance(self.factors, (list, tuple)) else ()
        _require(len(factors) > 0, "factors", "expected a non-empty JSON list of factor names")
        unknown = [f for f in factors if f not in FACTORS]
        _require(not unknown, "factors", f"unknown names {unknown} (vocabulary: {', '.join(FACTORS)})")
        _require(len(set(factors)) == len(factors), "factors", f"duplicate names in {list(factors)}")
        put("factors", factors)
        _require(_is_num(self.temperature) and self.temperature > 0, "temperature", "must be a number > 0")
        put("temperature", float(self.temperature))
        _require(_is_num(self.lapse) and 0 <= self.lapse < 1, "lapse", "must be a number in [0, 1)")
        put("lapse", float(self.lapse))
        put("calibration", _check_calibration(self.calibration))
        put("student", _check_student(self.student, self.preprocess.size))
        put("teacher", _check_records("teacher", self.teacher, {"name": str, "version": str, "weight": float}))
        put(
            "training_data",
            _check_records("training_data", self.training_data, {"name": str, "license": str, "pairs": int}),
        )
        _require(self.quantization in QUANTIZATIONS, "quantization", f"must be one of {QUANTIZATIONS}")
        _require(isinstance(self.license, str) and bool(self.license.strip()), "license", "must be non-empty")
        _require(self.metrics is None or isinstance(self.metrics, Mapping), "metrics", "expected a JSON object")

    def _values(self) -> dict[str, Any]:
        """Field name -> JSON-ready value, contract order; ``metrics`` only when set."""
        out: dict[str, Any] = {}
        for name in _FIELDS:
            v = getattr(self, name)
            if v is None and name in _OPTIONAL:
                continue
            if isinstance(v, PreprocessSpec):
                v = v.to_dict()
            elif isinstance(v, tuple):
                v = list(v)
            out[name] = copy.deepcopy(v)  # callers may edit the result; this info stays as it was
        return out

    def to_props(self) -> dict[str, str]:
        """The ONNX ``metadata_props`` to write: ``redaes.<key>`` -> string (compact JSON where structured)."""
        return {
            PREFIX + k: json.dumps(v, separators=(",", ":"), sort_keys=True) if _FIELDS[k] else str(v)
            for k, v in self._values().items()
        }

    def to_dict(self) -> dict[str, Any]:
        """Structured form (``redaes.<key>`` -> parsed value), the ``metadata`` object of ``model.json``."""
        return {PREFIX + k: v for k, v in self._values().items()}

    @classmethod
    def from_props(cls, props: Mapping[str, str], *, source: str) -> ModelInfo:
        """Parse ONNX ``metadata_props``; raises :class:`ModelError` naming ``source`` and the bad key."""
        values: dict[str, Any] = {}
        for name, is_json in _FIELDS.items():
            raw = props.get(PREFIX + name)
            if raw is None:
                continue
            if not is_json:
                values[name] = raw
                continue
            try:
                values[name] = json.loads(raw)
            except json.JSONDecodeError as e:
                raise ModelError(f"{source}: bad {PREFIX}{name}: not valid JSON ({e.msg})") from None
            except RecursionError:
                raise ModelError(f"{source}: bad {PREFIX}{name}: nested deeper than {_MAX_DEPTH} levels") from None
        for name in ("temperature", "lapse"):
            if name in values:
                try:
                    values[name] = float(values[name])
                except ValueError:
                    raise ModelError(f"{source}: bad {PREFIX}{name}: not a number") from None
        return cls._build(values, source)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, source: str) -> ModelInfo:
        """Parse the structured form (``to_dict``); raises :class:`ModelError` like ``from_props``."""
        if not isinstance(d, Mapping):
            raise ModelError(f"{source}: metadata must be a JSON object")
        return cls._build({k[len(PREFIX) :]: v for k, v in d.items() if k.startswith(PREFIX)}, source)

    @classmethod
    def _build(cls, values: dict[str, Any], source: str) -> ModelInfo:
        missing = [PREFIX + k for k in _FIELDS if k not in values and k not in _OPTIONAL]
        if missing:
            raise ModelError(f"{source}: not a redaes-lite model: metadata lacks {', '.join(missing)}")
        known = {k: v for k, v in values.items() if k in _FIELDS}
        deep = [PREFIX + k for k, v in known.items() if _too_deep(v)]
        if deep:
            raise ModelError(f"{source}: bad {deep[0]}: nested deeper than {_MAX_DEPTH} levels")
        try:
            return cls(**known, source=source)
        except (ValueError, TypeError) as e:
            raise ModelError(f"{source}: {e}") from None

    def preference(self, delta: Any) -> Any:
        """``P(b better than a)`` for ``delta = u(b) - u(a)``: :func:`preference_probability` with this model's
        ``redaes.temperature`` and ``redaes.lapse``."""
        return preference_probability(delta, self.temperature, self.lapse)

    def calibrate(self, utility: Any) -> np.ndarray:
        """Display scores in [0, 10] for utilities (any shape), via ``redaes.calibration``."""
        return apply_calibration(self.calibration, utility)


def embed_props(model: Any, info: ModelInfo) -> None:
    """Write ``info`` into an ``onnx.ModelProto``'s ``metadata_props`` (old ``redaes.*`` entries replaced).

    Works on the proto object alone, so this module does not need the ``onnx`` package.
    """
    keep = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    for key, value in [*keep, *info.to_props().items()]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sidecar_path(onnx_path: str | os.PathLike) -> Path:
    """The sidecar of ``dir/<stem>.onnx`` is ``dir/<stem>.json`` (``model.onnx`` -> ``model.json``)."""
    return Path(onnx_path).with_suffix(".json")


@dataclass(frozen=True)
class Sidecar:
    """A parsed ``model.json``: the ONNX file it describes, its sha256, opset and metadata."""

    path: Path
    file: str
    sha256: str
    opset: int
    info: ModelInfo
    #: Files beside it that the model reads weights from (ONNX external data), each with its sha256:
    #: an int8 file that shares the fp16 file's weights names ``model.onnx`` here, so that it never runs
    #: with the weights of another version of that file.
    external_data: dict[str, str] = field(default_factory=dict)

    @property
    def model_path(self) -> Path:
        return self.path.parent / self.file


def _onnx_opset(onnx_path: Path) -> int:
    try:
        import onnx  # the export extra; the runtime itself never needs it
    except ImportError:
        raise ModelError(f"{onnx_path}: pass opset= or install 'redaes-lite[export]' to read it") from None
    model = onnx.load(str(onnx_path), load_external_data=False)
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def write_sidecar(
    onnx_path: str | os.PathLike,
    info: ModelInfo,
    *,
    opset: int | None = None,
    external_data: Mapping[str, str] | None = None,
) -> Path:
    """Write ``<stem>.json`` next to ``onnx_path`` atomically and return its path.

    ``opset`` defaults to the default-domain opset read from the file (needs the ``onnx`` package).
    ``external_data``: ``{file name: sha256}`` of the files beside it that the model reads weights from.
    """
    onnx_path = Path(onnx_path)
    doc: dict[str, Any] = {
        "file": onnx_path.name,
        "sha256": sha256_file(onnx_path),
        "opset": int(opset if opset is not None else _onnx_opset(onnx_path)),
        "metadata": info.to_dict(),
    }
    if external_data:
        doc["external_data"] = dict(external_data)
    out = sidecar_path(onnx_path)
    with atomic_open(out) as f:
        f.write(json.dumps(doc, indent=2) + "\n")
    return out


def read_sidecar(path: str | os.PathLike) -> Sidecar:
    """Parse a ``model.json``; raises :class:`ModelError` naming the file and the problem."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"{path}: cannot read sidecar ({e})") from None
    except RecursionError:
        raise ModelError(f"{path}: cannot read sidecar (JSON nested too deeply)") from None
    if not isinstance(doc, dict):
        raise ModelError(f"{path}: sidecar must be a JSON object")
    missing = [k for k in ("file", "sha256", "opset", "metadata") if k not in doc]
    if missing:
        raise ModelError(f"{path}: sidecar lacks {missing}")
    if not isinstance(doc["file"], str) or not isinstance(doc["sha256"], str) or not isinstance(doc["opset"], int):
        raise ModelError(f"{path}: sidecar file/sha256 must be strings and opset an int")
    info = ModelInfo.from_dict(doc["metadata"], source=str(path))
    external = doc.get("external_data", {})
    valid = isinstance(external, dict) and all(
        isinstance(k, str) and k == Path(k).name and isinstance(v, str) for k, v in external.items()
    )
    if not valid:
        raise ModelError(f"{path}: sidecar external_data must map file names beside it to sha256 strings")
    return Sidecar(
        path=path,
        file=doc["file"],
        sha256=doc["sha256"].lower(),
        opset=doc["opset"],
        info=info,
        external_data={k: v.lower() for k, v in external.items()},
    )
