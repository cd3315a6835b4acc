"""The Teacher protocol: anything that turns pairs of images into pair-label records."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from distill.images import resolve_image
from redaes_lite.errors import ImageError
from redaes_lite.pairs import PairLabel, content_hash

__all__ = ["ImageRefs", "PairRequest", "Teacher"]


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


class ImageRefs:
    """For teachers that read the images they label: image references resolved under ``root`` and keyed by
    content, so a record's id survives a moved or renamed file. Subclasses set ``root`` and ``_hashes = {}``."""

    root: Path
    _hashes: dict[str, str]

    def _read(self, ref: str) -> bytes:
        """The bytes of ``ref``: a path under ``root``, or ``sha256:<hex>`` stored as ``root/<hex>.<ext>``;
        :class:`ImageError` when they cannot be read."""
        try:
            return resolve_image(self.root, ref).read_bytes()
        except OSError as e:
            raise ImageError(f"{e.filename or ref}: cannot read ({e.strerror or e})") from None

    def image_key(self, ref: str) -> str:
        """``sha256:<hex>`` of the image's bytes (memoised); ``unreadable:<ref>`` when it cannot be read."""
        if ref.startswith("sha256:"):
            return ref
        if ref not in self._hashes:
            try:
                self._hashes[ref] = content_hash(self._read(ref))
            except ImageError:
                return f"unreadable:{ref}"
        return self._hashes[ref]
