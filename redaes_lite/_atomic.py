"""Atomic file writing: readers see the old file or the complete new one, never half of it."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

__all__ = ["atomic_open"]


def _final_mode(path: Path) -> int:
    """The mode a plain ``open(path, "w")`` would give: the old file's, else 0o666 minus the umask.

    ``mkstemp`` creates 0600 files, which would hide reports and model sidecars from other users.
    """
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)  # the only portable way to read the umask is to set it and put it back
        os.umask(umask)
        return 0o666 & ~umask


@contextmanager
def atomic_open(path: str | os.PathLike, *, newline: str | None = None, binary: bool = False) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` (UTF-8 text, or bytes with ``binary``); on success it is
    fsynced and renamed onto ``path``.

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        text = {} if binary else {"encoding": "utf-8", "newline": newline}
        with os.fdopen(fd, "wb" if binary else "w", **text) as f:
            yield f
            f.flush()
            os.fchmod(f.fileno(), _final_mode(path))
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
