"""Read a distillation checkpoint and rebuild its student, for export.

The checkpoint (``distill.student.save_checkpoint``) carries everything the model file's metadata needs;
export copies those fields and never invents them, so a missing one is an :class:`ExportError`.
"""

from __future__ import annotations

import os
from typing import Any

from .errors import ExportError

__all__ = ["read_checkpoint", "trained_student"]

# Checkpoint fields the model metadata is made from (``docs/model-format.md``).
_REQUIRED = ("temperature", "calibration", "teachers", "training_data", "version", "license")


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """``distill.student.load_checkpoint`` plus a check that the fields export copies are there."""
    from distill.student import load_checkpoint

    ckpt = load_checkpoint(path)
    missing = [k for k in _REQUIRED if ckpt.get(k) is None]
    if missing:
        lacks = ", ".join(missing)
        raise ExportError(f"{path}: checkpoint lacks {lacks} (the trainer writes them; export copies them)")
    return ckpt


def trained_student(ckpt: dict[str, Any]) -> Any:
    """The checkpoint's student with its weights, in eval mode, on CPU."""
    from distill.student import load_student

    return load_student(ckpt).eval().cpu()
