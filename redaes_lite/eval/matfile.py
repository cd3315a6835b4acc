"""A minimal reader of MATLAB level-5 ``.mat`` files (numeric, char and cell arrays), numpy only.

LIVE-in-the-Wild ships its labels as ``.mat`` files; reading them must not pull scipy into the runtime.
Supported: the v5/v6/v7 format (``save -v7`` compresses each variable with zlib), little- or big-endian,
numeric classes, char arrays and cell arrays of those. Structs, objects, sparse matrices and v7.3
(HDF5) files raise :class:`RedaesError` naming the file.

Values come back as: numeric -> ``np.ndarray`` with MATLAB's shape (column-major order kept);
a one-row char array -> ``str`` (several rows -> list of row strings); a cell array -> a flat ``list``
of its elements in column-major order (MATLAB's linear indexing).
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import Any

import numpy as np

from ..errors import RedaesError

__all__ = ["load_mat"]

# Data types of the element tags (miXXX) -> numpy dtype character.
_MI_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8"}
_MI_MATRIX, _MI_COMPRESSED, _MI_UTF8, _MI_UTF16, _MI_UTF32 = 14, 15, 16, 17, 18
# Array classes (mxXXX_CLASS) of a miMATRIX.
_MX_CELL, _MX_CHAR = 1, 4
_MX_NUMERIC = {6: "f8", 7: "f4", 8: "i1", 9: "u1", 10: "i2", 11: "u2", 12: "i4", 13: "u4", 14: "i8", 15: "u8"}
_MX_NAMES = {2: "struct", 3: "object", 5: "sparse"}
_COMPLEX_FLAG = 0x0800


class _Reader:
    """Walks the data elements of one buffer (the file body or a decompressed variable)."""

    def __init__(self, data: bytes, endian: str, name: str) -> None:
        self.data, self.e, self.name, self.pos = data, endian, name, 0

    def fail(self, why: str) -> RedaesError:
        return RedaesError(f"{self.name}: cannot read MATLAB file ({why})")

    def tag(self) -> tuple[int, int, int, bool]:
        """(type, nbytes, data offset, small) of the element at ``pos``."""
        if self.pos + 8 > len(self.data):
            raise self.fail("truncated element tag")
        mi_type, nbytes = struct.unpack_from(self.e + "II", self.data, self.pos)
        if mi_type >> 16:  # small data element: 2-byte size, 2-byte type, data in the tag's last 4 bytes
            return mi_type & 0xFFFF, mi_type >> 16, self.pos + 4, True
        return mi_type, nbytes, self.pos + 8, False

    def element(self, *, padded: bool = True) -> tuple[int, bytes]:
        mi_type, nbytes, start, small = self.tag()
        end = start + nbytes
        if end > len(self.data):
            raise self.fail("truncated data element")
        payload = self.data[start:end]
        if small:
            self.pos += 8
        else:
            self.pos = end + ((-nbytes) % 8 if padded else 0)
        return mi_type, payload

    def array(self, mi_type: int, payload: bytes) -> np.ndarray:
        if mi_type in (_MI_UTF8, _MI_UTF16, _MI_UTF32):
            codec = {_MI_UTF8: "utf-8", _MI_UTF16: "utf-16", _MI_UTF32: "utf-32"}[mi_type]
            codec += "" if mi_type == _MI_UTF8 else ("-le" if self.e == "<" else "-be")
            return np.array([ord(ch) for ch in payload.decode(codec)], dtype=np.uint32)
        if mi_type not in _MI_DTYPES:
            raise self.fail(f"unsupported data type {mi_type}")
        return np.frombuffer(payload, dtype=np.dtype(self.e + _MI_DTYPES[mi_type]))

    def matrix(self, payload: bytes) -> tuple[str, Any]:
        """Parse the body of a miMATRIX element into (name, value)."""
        if not payload:  # an empty element stands for an empty matrix
            return "", np.zeros((0, 0))
        sub = _Reader(payload, self.e, self.name)
        flags = sub.array(*sub.element()).astype(np.uint32)
        dims = tuple(int(d) for d in sub.array(*sub.element()))
        var = bytes(sub.element()[1]).decode("ascii", "replace")
        cls = int(flags[0]) & 0xFF
        if cls == _MX_CELL:
            cells = []
            for _ in range(int(np.prod(dims))):
                mi_type, body = sub.element()
                if mi_type != _MI_MATRIX:
                    raise self.fail(f"cell element of type {mi_type} in {var!r}")
                cells.append(sub.matrix(body)[1])
            return var, cells
        if cls == _MX_CHAR:
            codes = sub.array(*sub.element()).astype(np.uint32).reshape(dims, order="F")
            rows = ["".join(map(chr, row)) for row in codes.reshape(dims[0], -1)] if codes.size else [""]
            return var, rows[0] if len(rows) == 1 else rows
        if cls in _MX_NUMERIC:
            real = sub.array(*sub.element()).astype(_MX_NUMERIC[cls])
            if int(flags[0]) & _COMPLEX_FLAG:
                real = real + 1j * sub.array(*sub.element())
            return var, real.reshape(dims, order="F")
        raise self.fail(f"variable {var!r} is a {_MX_NAMES.get(cls, f'class-{cls}')} array, which is not supported")


def load_mat(path: str | os.PathLike) -> dict[str, Any]:
    """Read the variables of a level-5 MAT file into a ``{name: value}`` dictionary."""
    name = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise RedaesError(f"{name}: cannot read ({e.strerror or e})") from None
    if data[:10] == b"MATLAB 7.3" or data[:4] == b"\x89HDF" or data[512:516] == b"\x89HDF":
        raise RedaesError(f"{name}: MATLAB v7.3 (HDF5) files are not supported; re-save it with save(..., '-v7')")
    if len(data) < 128 or data[126:128] not in (b"IM", b"MI"):
        raise RedaesError(f"{name}: not a MATLAB level-5 .mat file")
    endian = "<" if data[126:128] == b"IM" else ">"
    top = _Reader(data, endian, name)
    top.pos = 128
    out: dict[str, Any] = {}
    while top.pos + 8 <= len(data):
        # Top-level elements follow each other without padding (MATLAB pads inside miMATRIX only).
        mi_type, payload = top.element(padded=False)
        if mi_type == _MI_COMPRESSED:
            try:
                payload = zlib.decompress(payload)
            except zlib.error as e:
                raise top.fail(f"bad compressed variable: {e}") from None
            inner = _Reader(payload, endian, name)
            mi_type, payload = inner.element()
        if mi_type != _MI_MATRIX:
            continue  # e.g. the subsystem data of function handles: nothing a data set needs
        var, value = top.matrix(payload)
        out[var] = value
    return out
