"""Pair-label JSONL: the one format every teacher writes and the trainer and ``eval`` read.

One JSON object a line, with the fields of :class:`PairLabel` (required: ``id``, ``a``, ``b``, ``source``,
``teacher``, ``group``, ``status``; ``delta`` for ``ok`` records). ``delta`` is always *b minus a* in the teacher's own
units; failed records are kept with ``status="failed"`` and an ``error``, never guessed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from ._atomic import atomic_open

__all__ = ["PairLabel", "SOURCES", "pair_id", "read_pairs", "write_pairs", "append_pairs", "content_hash"]

SOURCES = ("edit", "mos", "mllm", "model")
_REQUIRED = ("id", "a", "b", "source", "teacher", "group", "status")


def content_hash(data: bytes) -> str:
    """``sha256:<hex>`` of some bytes: the id of a generated image, and the key of a stored one."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def pair_id(a_key: str, b_key: str, teacher: str, version: str = "") -> str:
    """Stable record key from both images' content keys, the teacher id and the prompt/recipe version."""
    h = hashlib.sha256("\x1f".join((a_key, b_key, teacher, version)).encode("utf-8"))
    return h.hexdigest()[:32]


@dataclass(frozen=True)
class PairLabel:
    """One labelled pair. ``delta`` is the judged aesthetic difference b - a (positive: b is better)."""

    id: str
    a: str
    b: str
    delta: float | None
    source: str
    teacher: str
    group: str
    status: str = "ok"
    error: str | None = None
    factors: dict[str, float] | None = None
    recipe: list[dict[str, Any]] | None = None
    weight: float = 1.0
    rationale: str | None = None
    samples: list[float] | None = None
    spread: float | None = None

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"pair {self.id}: source must be one of {SOURCES}, got {self.source!r}")
        if self.status not in ("ok", "failed"):
            raise ValueError(f"pair {self.id}: status must be 'ok' or 'failed', got {self.status!r}")
        if self.status == "ok" and (self.delta is None or self.delta != self.delta):
            raise ValueError(f"pair {self.id}: status 'ok' needs a finite delta")
        if self.status == "failed" and not self.error:
            raise ValueError(f"pair {self.id}: status 'failed' needs an error message")
        if self.weight < 0:
            raise ValueError(f"pair {self.id}: weight must be >= 0, got {self.weight}")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """Contract fields; optional ones only when set."""
        d = asdict(self)
        return {k: v for k, v in d.items() if v is not None or k in ("delta",)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PairLabel:
        missing = [k for k in _REQUIRED if k not in d]
        if missing:
            raise ValueError(f"pair record lacks {missing}")
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if known.get("delta") is not None:
            known["delta"] = float(known["delta"])
        known["weight"] = float(known.get("weight", 1.0) if known.get("weight") is not None else 1.0)
        return cls(**known)


def read_pairs(path: str | os.PathLike, *, only_ok: bool = False) -> Iterator[PairLabel]:
    """Yield records of a JSONL file; a malformed line raises ``ValueError`` naming file and line."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = PairLabel.from_dict(json.loads(line))
            except (ValueError, TypeError) as e:
                raise ValueError(f"{path}:{lineno}: bad pair record ({e})") from None
            if rec.ok or not only_ok:
                yield rec


def _dumps(rec: PairLabel) -> str:
    return json.dumps(rec.to_dict(), ensure_ascii=False, separators=(",", ":"))


def append_pairs(path: str | os.PathLike, records: Iterable[PairLabel]) -> int:
    """Append records, flushing each line so an interrupted labelling job keeps all finished work."""
    n = 0
    with open(path, "a", encoding="utf-8") as f:
        for rec in records:
            f.write(_dumps(rec) + "\n")
            f.flush()
            n += 1
        os.fsync(f.fileno())
    return n


def write_pairs(path: str | os.PathLike, records: Iterable[PairLabel]) -> int:
    """Write a whole file atomically (temp file + rename)."""
    n = 0
    with atomic_open(path) as f:
        for rec in records:
            f.write(_dumps(rec) + "\n")
            n += 1
    return n
