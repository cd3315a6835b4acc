"""Error hierarchy of redaes-lite: every failure a user can cause is a ``RedaesError``.

Messages are one line and name the file (or input) and the cause, so that a CLI row or a log line is
enough to act on.
"""

from __future__ import annotations

__all__ = ["RedaesError", "ImageError", "ModelError"]


class RedaesError(Exception):
    """Base class of all redaes-lite errors."""


class ImageError(RedaesError):
    """An input image cannot be read (missing, unreadable, corrupt, too large, unsupported format)."""


class ModelError(RedaesError):
    """A model file is missing, is not ONNX, lacks the ``redaes.*`` metadata or fails its sha256."""
