"""Atomic file writing: readers see the old file or the complete new one, never half of it.

The new contents go to a temporary file beside the target, ``.<name>.<8 random characters>.tmp``, renamed
onto it when complete. A writer holds an exclusive ``flock`` on its temporary file while it writes, so a
temporary file whose lock can be taken was left by a writer that was killed (SIGKILL, a power cut): the
next write to the same target removes it (:func:`stale_temporaries` finds them, for a reader that wants
their contents first, such as ``redaes-lite score --resume``).
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

try:
    import fcntl
except ImportError:  # Windows: an open file cannot be deleted there, which protects a live writer instead
    fcntl = None  # type: ignore[assignment]

__all__ = ["atomic_open", "stale_temporaries"]


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


def _target(path: Path) -> Path:
    """The file a write to ``path`` should replace: a symlink's target (the link stays a link)."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _is_special(path: Path) -> bool:
    """An existing path that is not a regular file (a FIFO, a device, a socket)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def _lock(fd: int, *, wait: bool) -> bool:
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except OSError:
        return False
    return True


def stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """The temporary files of writes to ``path`` whose writer is gone (their lock is free), oldest first."""
    path = _target(Path(path))
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[A-Za-z0-9_]{{8}}\.tmp")
    found = []
    try:
        names = [e.name for e in os.scandir(path.parent) if pattern.fullmatch(e.name) and e.is_file()]
    except OSError:
        return []
    for name in names:
        tmp = path.parent / name
        try:
            fd = os.open(tmp, os.O_RDONLY)
        except OSError:
            continue
        try:
            if _lock(fd, wait=False):
                found.append((os.fstat(fd).st_mtime_ns, tmp))
        finally:
            os.close(fd)  # closing drops the lock we may have taken
    return [tmp for _, tmp in sorted(found)]


@contextmanager
def _write_through(path: Path, newline: str | None, binary: bool) -> Iterator[IO[Any]]:
    """A FIFO or a device (``-o /dev/stdout``, a named pipe) is written as it is: it cannot be replaced
    atomically, and replacing it would turn ``/dev/null`` into a regular file."""
    text = {} if binary else {"encoding": "utf-8", "newline": newline}
    with open(path, "wb" if binary else "w", **text) as f:
        yield f


@contextmanager
def atomic_open(path: str | os.PathLike, *, newline: str | None = None, binary: bool = False) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` (UTF-8 text, or bytes with ``binary``); on success it is
    fsynced and renamed onto ``path``.

    On any exception the temporary file is removed and ``path`` is left untouched. A symlink is written
    through (its target is replaced, the link kept); a FIFO or device is written directly; temporary files
    that killed writers left beside ``path`` are removed.
    """
    path = Path(path)
    if _is_special(path):  # through its links: /dev/stdout links to /proc/self/fd/1, maybe a pipe
        with _write_through(path, newline, binary) as f:
            yield f
        return
    path = _target(path)
    for old in stale_temporaries(path):
        old.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # Held until the file is closed: the file is not stale while we live. (A cleaner that runs between
        # mkstemp and here would take it for stale; two runs onto one output at once are a race anyway.)
        _lock(fd, wait=True)
        text = {} if binary else {"encoding": "utf-8", "newline": newline}
        with os.fdopen(fd, "wb" if binary else "w", **text) as f:
            yield f
            f.flush()
            os.fchmod(f.fileno(), _final_mode(path))
            os.fsync(f.fileno())
            if fcntl is not None:
                os.replace(tmp, path)  # before closing: a cleaner never sees this file unlocked
        if fcntl is None:
            os.replace(tmp, path)  # Windows renames no open file
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
