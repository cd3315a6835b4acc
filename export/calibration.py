"""Which images int8 QDQ calibrates its activation ranges on: train-split images, and edited copies of them.

The parity gates measure on validation images (:mod:`export.photos`); calibration reads *train* splits
only, so no gate photo is ever a calibration photo, whatever the counts. A :class:`CalibrationSet` names

- ``sources``: which train splits (``photos``: the shared photos; ``biq2021``, ``para``: human-scored
  sets, research use only), and ``licence``: ``any`` or ``commercial`` (only photos whose manifest row
  says ``commercial_use=yes``, and no research-only set: what the permissive model may learn from);
- ``images``: how many, spread evenly over the pool (varied scenes, the same list every time);
- ``variants``: edited copies of each image (a crop, a mirror, a tone change, blur, grain or JPEG): photos
  as users' cameras and edits make them, not only as the data sets hold them.

Everything is deterministic: the same set and seed give the same pixels. Edited copies are made lazily,
one batch at a time, so a large set needs no more memory than a batch.
"""

from __future__ import annotations

import io
import os
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from redaes_lite.preprocess import ImageInput, load_image

from .errors import ExportError
from .photos import _spread, data_roots

__all__ = ["LICENCES", "SOURCES", "CalibrationSet", "Variants", "edited_copy"]

SOURCES = ("photos", "biq2021", "para")
LICENCES = ("any", "commercial")
# Sources under research-only terms: never in a ``commercial`` set.
_RESEARCH_ONLY = frozenset({"biq2021", "para"})
# Train-split images a source holds: (split name, folder under the data root, subfolder of the images).
_LAYOUT = {"photos": ("photos", ""), "biq2021": ("biq2021", "images"), "para": ("para", "images")}


@dataclass(frozen=True)
class CalibrationSet:
    """What int8 calibration reads: ``images`` train-split images of ``sources`` plus ``variants`` edited
    copies of each (see the module docstring)."""

    images: int = 128
    sources: tuple[str, ...] = ("photos",)
    variants: int = 0
    licence: str = "any"
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", tuple(self.sources))
        unknown = [s for s in self.sources if s not in SOURCES]
        if not self.sources or unknown:
            raise ExportError(f"calibration sources must be among {', '.join(SOURCES)}, got {list(self.sources)}")
        if self.licence not in LICENCES:
            raise ExportError(f"calibration licence must be one of {', '.join(LICENCES)}, got {self.licence!r}")
        if self.licence == "commercial" and _RESEARCH_ONLY & set(self.sources):
            bad = sorted(_RESEARCH_ONLY & set(self.sources))
            raise ExportError(f"calibration licence 'commercial' excludes research-only sources {', '.join(bad)}")
        if self.images < 1 or self.variants < 0:
            raise ExportError(f"calibration needs images >= 1 and variants >= 0, got {self.images}, {self.variants}")

    def describe(self) -> str:
        """One line for the report and the model's metadata, e.g. ``373 photos (commercial) + 2 edits each``."""
        edits = f" + {self.variants} edited copies each" if self.variants else ""
        return f"{self.images} train images of {'+'.join(self.sources)} ({self.licence} licence){edits}"

    def pool(self, *, data_root: str | os.PathLike | None = None) -> list[Path]:
        """The train-split images of every source (photos filtered by licence), sorted within a source."""
        from distill.splits import load_split, read_manifest

        root = Path(data_root) if data_root is not None else data_roots()[0].parent
        out: list[Path] = []
        for source in self.sources:
            folder, sub = _LAYOUT[source]
            train = sorted(load_split(source)["train"])
            if source == "photos" and self.licence == "commercial":
                allowed = {r["file"] for r in read_manifest(root / folder / "manifest.csv") if r["permissive"]}
                train = [f for f in train if f in allowed]
            out += [root / folder / sub / f for f in train]
        return out

    def inputs(self, *, data_root: str | os.PathLike | None = None) -> Variants:
        """The calibration images: ``images`` of :meth:`pool`, spread over it, each followed by its copies."""
        chosen = _spread(self.pool(data_root=data_root), self.images)
        missing = [p for p in chosen if not p.is_file()]
        if missing:
            raise ExportError(f"{missing[0]}: calibration image in the split is missing ({len(missing)} missing)")
        return Variants(chosen, self.variants, seed=self.seed)


class Variants(Sequence[ImageInput]):
    """``originals`` each followed by ``per_image`` edited copies, made on access (a lazy sequence)."""

    def __init__(self, originals: Sequence[ImageInput], per_image: int, *, seed: int = 0) -> None:
        self.originals, self.per_image, self.seed = list(originals), per_image, seed

    def __len__(self) -> int:
        return len(self.originals) * (1 + self.per_image)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        original, k = divmod(index % len(self), 1 + self.per_image)
        source = self.originals[original]
        if k == 0:
            return source
        key = f"{self.seed}:{source}:{k}".encode()
        return edited_copy(load_image(source), np.random.default_rng(zlib.crc32(key)))

    def __iter__(self) -> Iterator[ImageInput]:
        return (self[i] for i in range(len(self)))


def _crop(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A crop keeping 45-100% of each side, anywhere in the frame."""
    w, h = im.size
    cw, ch = (max(16, int(s * rng.uniform(0.45, 1.0))) for s in (w, h))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return im.crop((x, y, x + cw, y + ch))


def _tone(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Exposure, contrast and colour moved as far as a quick edit or a camera's auto mode would."""
    for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        im = enhance(im).enhance(float(np.exp(rng.uniform(-0.6, 0.6))))
    return im


def _degrade(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """One of: nothing, blur, grain, heavy JPEG."""
    kind = int(rng.integers(0, 4))
    if kind == 1:
        return im.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.5, 2.5)) * max(im.size) / 500))
    if kind == 2:
        x = np.asarray(im, np.float32) + rng.normal(0.0, rng.uniform(3, 15), (im.size[1], im.size[0], 1))
        return Image.fromarray(np.clip(x, 0, 255).astype(np.uint8))
    if kind == 3:
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=int(rng.integers(10, 60)))
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return im


def edited_copy(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A crop (with a mirror half the time), a tone change and one degradation of ``im``, drawn from ``rng``."""
    im = _crop(im.convert("RGB"), rng)
    if rng.random() < 0.5:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return _degrade(_tone(im, rng), rng)
