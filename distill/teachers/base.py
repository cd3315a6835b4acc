"""The Teacher protocol: anything that turns pairs of images into pair-label records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Protocol, runtime_checkable

from redaes_lite.pairs import PairLabel

__all__ = ["PairRequest", "Teacher"]


@dataclass(frozen=True)
class PairRequest:
    """A pair to be labelled: image references (paths relative to ``root`` or ``sha256:`` keys) plus context.

    ``group`` ties pairs that form a ranking (e.g. edits of one source); ``recipe`` is set for edit pairs;
    ``tags`` carries source-photo tags from the manifest (e.g. ``underexposed``).
    """

    a: str
    b: str
    group: str
    recipe: tuple[dict, ...] | None = None
    tags: tuple[str, ...] = ()


@runtime_checkable
class Teacher(Protocol):
    """``id`` is ``name@version``; ``label`` yields one record per request, ``status="failed"`` on failure."""

    id: str

    def label(self, pairs: Iterable[PairRequest]) -> Iterator[PairLabel]: ...
