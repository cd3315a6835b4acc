"""Training images on disk, for teachers and sources alike: a pair-label image reference resolved to its file,
and the per-process cache of decoded images shrunk to the working size that the sources draw from.

Below both :mod:`distill.teachers` and :mod:`distill.sources`, so that an image path goes one way, down to
``redaes_lite.preprocess.load_image``.
"""

from __future__ import annotations

import collections
import os
from pathlib import Path

from PIL import Image

from redaes_lite.preprocess import PreprocessSpec, load_image

__all__ = ["ImageCache", "resolve_image"]


def resolve_image(root: Path, ref: str) -> Path:
    """A pair-label image reference -> file: a path relative to ``root``, or ``sha256:<hex>`` stored as
    ``root/<hex>.<ext>`` (how ``python -m distill edits`` writes generated images)."""
    if ref.startswith("sha256:"):
        hexdigest = ref.split(":", 1)[1]
        for ext in (".png", ".jpg", ".jpeg", ".webp"):
            if (root / f"{hexdigest}{ext}").exists():
                return root / f"{hexdigest}{ext}"
        raise FileNotFoundError(f"{root}: no file for generated image {ref}")
    return root / ref


class ImageCache:
    """LRU cache of decoded images shrunk to a working size (long side ``long_side``), per process.

    Edits run on these small images, and the 2 cores are not spent decoding the same JPEG again.
    """

    def __init__(self, *, long_side: int, spec: PreprocessSpec, capacity: int = 1024) -> None:
        self.long_side = long_side
        self.spec = spec
        self.capacity = capacity
        self._items: collections.OrderedDict[str, Image.Image] = collections.OrderedDict()

    def get(self, path: str | os.PathLike) -> Image.Image:
        key = str(path)
        im = self._items.get(key)
        if im is not None:
            self._items.move_to_end(key)
            return im
        im = load_image(key, self.spec)
        if max(im.size) > self.long_side:
            s = self.long_side / max(im.size)
            im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.Resampling.BILINEAR)
        self._items[key] = im
        if len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return im
