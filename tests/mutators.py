"""Mutations of seed files for the fuzz tests (``tests/test_fuzz.py``) and ``benchmarks/fuzz.py``: each
``(op, a, b)`` triple edits the bytes deterministically, so a failing input is reproduced from its ops."""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Sequence

from fuzzkit import INTERESTING, fix_png_crcs, seeds


# -- mutators --------------------------------------------------------------------------------------
def _at(data: bytearray, a: int, header_bias: bool) -> int:
    """A position in ``data``; half the mutations hit the first 256 bytes, where headers live."""
    span = min(len(data), 256) if header_bias and a % 2 else len(data)
    return (a // 2) % max(span, 1)


def _flip(d: bytearray, a: int, b: int) -> bytearray:
    if d:
        d[_at(d, a, True)] ^= 1 << (b % 8)
    return d


def _byte(d: bytearray, a: int, b: int) -> bytearray:
    if d:
        d[_at(d, a, True)] = (0x00, 0xFF, 0x7F, 0x80, 0x01, b % 256)[b % 6]
    return d


def _int_field(d: bytearray, a: int, b: int) -> bytearray:
    """Overwrite a 2- or 4-byte field, either endianness, with a boundary value (sizes, counts, offsets)."""
    value = INTERESTING[b % len(INTERESTING)]
    width = 2 if (b // 16) % 2 else 4
    fmt = (">" if (b // 32) % 2 else "<") + ("H" if width == 2 else "I")
    i = _at(d, a, True)
    if i + width <= len(d):
        d[i : i + width] = struct.pack(fmt, value & (0xFFFF if width == 2 else 0xFFFFFFFF))
    return d


def _delete(d: bytearray, a: int, b: int) -> bytearray:
    i = _at(d, a, False)
    del d[i : i + 1 + b % 64]
    return d


def _duplicate(d: bytearray, a: int, b: int) -> bytearray:
    """Repeat a block several times: repeated chunks, scans, frames and IFD entries."""
    i = _at(d, a, False)
    block = bytes(d[i : i + 1 + b % 512])
    d[i:i] = block * (1 + (b // 512) % 16)
    return d


def _insert(d: bytearray, a: int, b: int) -> bytearray:
    d[_at(d, a, False) : _at(d, a, False)] = random.Random(b).randbytes(1 + b % 32)
    return d


def _truncate(d: bytearray, a: int, b: int) -> bytearray:
    del d[max(1, _at(d, a, False)) :]
    return d


def _splice(d: bytearray, a: int, b: int) -> bytearray:
    """Head of this input + tail of another seed: valid headers over foreign bodies."""
    pool = list(seeds().values())
    other = pool[b % len(pool)]
    return d[: _at(d, a, False)] + bytearray(other[(b // len(pool)) % max(len(other), 1) :])


MUTATORS: tuple[Callable[[bytearray, int, int], bytearray], ...] = (
    _flip,
    _byte,
    _int_field,
    _int_field,
    _delete,
    _duplicate,
    _insert,
    _truncate,
    _splice,
)


def mutate(data: bytes, ops: Sequence[tuple[int, int, int]]) -> bytes:
    """Apply ``(op, a, b)`` mutations in order; PNG CRCs are then repaired half of the time."""
    d = bytearray(data)
    for op, a, b in ops:
        d = MUTATORS[op % len(MUTATORS)](d, a, b)
    out = bytes(d)
    return fix_png_crcs(out) if ops and ops[0][1] % 2 == 0 else out


def random_ops(rng: random.Random, *, max_ops: int = 6) -> list[tuple[int, int, int]]:
    return [(rng.randrange(64), rng.randrange(1 << 30), rng.randrange(1 << 30)) for _ in range(rng.randint(1, max_ops))]
