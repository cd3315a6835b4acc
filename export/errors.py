"""Errors of the export tool chain; both are :class:`redaes_lite.errors.RedaesError` subclasses."""

from __future__ import annotations

from typing import Any

from redaes_lite.errors import RedaesError

__all__ = ["ExportError", "ParityError"]


class ExportError(RedaesError):
    """A checkpoint or model cannot be exported (missing field, exporter failure, bad option)."""


class ParityError(ExportError):
    """An exported file disagrees with its reference beyond a parity gate; the file must not ship.

    ``gate`` is the failed :class:`export.parity.Gate` (its figures go into the export report).
    """

    def __init__(self, message: str, *, gate: Any = None) -> None:
        super().__init__(message)
        self.gate = gate
