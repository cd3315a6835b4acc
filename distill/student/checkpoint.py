"""Training checkpoints (``.pt``): one writer and one reader for trainer, export and tools.

A checkpoint is a dict read back with ``torch.load(..., weights_only=True)``, so it holds only plain
types and tensors. :func:`save_checkpoint` fills the keys it can derive from the student (``format``,
``student``, ``state_dict``, ``factors``, ``preprocess``) and takes the rest from the caller:
``temperature``, ``calibration``, ``teachers``, ``training_data``, ``config``, ``metrics``, ``version``,
``license``, ``seed``, ``git_commit``, ``data_hashes`` (and any resume state such as ``optimizer``).
Writes are atomic (temp file in the same folder, then ``os.replace``): an interrupted save never
leaves a truncated checkpoint behind.
"""

from __future__ import annotations

import collections
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union

import torch

from redaes_lite._atomic import atomic_open
from redaes_lite.errors import ModelError

from .model import Student, rebuild_student

__all__ = ["CHECKPOINT_FORMAT", "DERIVED_KEYS", "save_checkpoint", "load_checkpoint", "load_student", "slim_checkpoint"]

CHECKPOINT_FORMAT = "redaes-checkpoint/1"
#: Keys :func:`save_checkpoint` derives from the student; callers may not pass them.
DERIVED_KEYS = ("format", "student", "state_dict", "factors", "preprocess")

PathLike = Union[str, "os.PathLike[str]"]
# Exact types: numpy scalars subclass float/int but torch.load(weights_only=True) refuses them.
_ATOMS = frozenset({str, bytes, int, float, complex, bool, type(None), torch.Size, torch.dtype, torch.device})
_KEYS = frozenset({str, int, float, bool, type(None)})


def _check_loadable(value: Any, where: str) -> None:
    """Raise TypeError naming the first value ``torch.load(weights_only=True)`` would refuse to read."""
    if type(value) in _ATOMS or isinstance(value, torch.Tensor):
        return
    if type(value) in (dict, collections.OrderedDict):
        for key, item in value.items():
            if type(key) not in _KEYS:
                raise TypeError(f"checkpoint field {where} has a key of type {type(key).__name__}")
            _check_loadable(item, f"{where}.{key}")
        return
    if type(value) in (list, tuple, set):
        for i, item in enumerate(value):
            _check_loadable(item, f"{where}[{i}]")
        return
    raise TypeError(
        f"checkpoint field {where} is a {type(value).__module__}.{type(value).__name__}; store plain Python "
        "types or tensors (torch.load(weights_only=True) cannot read it)"
    )


def save_checkpoint(path: PathLike, student: Student, **fields: Any) -> Path:
    """Write ``student`` and the caller's ``fields`` to ``path`` atomically; returns the path."""
    clash = sorted(set(fields) & set(DERIVED_KEYS))
    if clash:
        raise ValueError(f"save_checkpoint derives {clash} from the student; do not pass them")
    for key, value in fields.items():
        _check_loadable(value, key)
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "student": student.backbone_config(),
        "state_dict": {k: v.detach().cpu() for k, v in student.state_dict().items()},
        "factors": list(student.factor_names),
        "preprocess": student.spec.to_dict(),
        **fields,
    }
    return _write(path, ckpt)


def _write(path: PathLike, ckpt: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, binary=True) as f:
        torch.save(ckpt, f)
    return path


#: What only ``--resume`` needs; a checkpoint kept for later stages (teacher artifacts) drops it.
RESUME_KEYS = ("optimizer", "scheduler", "rng", "trainer_state", "loss_state")


def slim_checkpoint(src: PathLike, dst: PathLike, *, dtype: torch.dtype = torch.float16) -> Path:
    """Write ``src`` to ``dst`` for keeping: floating weights in ``dtype``, resume state dropped.

    Config, data hashes, seed, git commit, metrics and calibration stay; :func:`load_student` reads the
    result like any checkpoint (the weights are cast back to the model's dtype on load).
    """
    ckpt = {k: v for k, v in load_checkpoint(src).items() if k not in RESUME_KEYS}
    ckpt["state_dict"] = {k: v.to(dtype) if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    ckpt["weights_dtype"] = str(dtype).removeprefix("torch.")
    return _write(dst, ckpt)


def load_checkpoint(path: PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``, on CPU), format checked."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelError(f"{path}: not a readable redaes checkpoint ({first})") from None
    _check_format(ckpt, str(path))
    return ckpt


def _check_format(ckpt: Any, name: str) -> None:
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ModelError(f"{name}: not a {CHECKPOINT_FORMAT} checkpoint (format: {found!r})")
    missing = [k for k in DERIVED_KEYS if k not in ckpt]
    if missing:
        raise ModelError(f"{name}: checkpoint lacks {missing}")


def load_student(path_or_ckpt: PathLike | Mapping[str, Any]) -> Student:
    """Rebuild the student of a checkpoint (path or loaded dict) with its weights, in eval mode."""
    if isinstance(path_or_ckpt, Mapping):
        ckpt, name = dict(path_or_ckpt), "checkpoint"
        _check_format(ckpt, name)
    else:
        ckpt, name = load_checkpoint(path_or_ckpt), str(path_or_ckpt)
    student = rebuild_student(ckpt["student"])
    if list(student.factor_names) != list(ckpt["factors"]):
        raise ModelError(
            f"{name}: factors {ckpt['factors']} differ from the student config's {list(student.factor_names)}"
        )
    if student.spec.to_dict() != ckpt["preprocess"]:
        raise ModelError(f"{name}: preprocess spec differs from the student config's")
    try:
        student.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as e:
        raise ModelError(f"{name}: state dict does not fit {student.backbone} ({str(e).splitlines()[0]})") from None
    return student.eval()
