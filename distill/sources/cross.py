"""Cross-content groups (``kind: cross``): unrelated training images without labels of their own, for a teacher
in the loop to judge (:mod:`distill.sources.teacher_loop`)."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from distill.config import ConfigError
from distill.registry import SOURCES

from .base import Group
from .context import DataContext
from .human import MosGroups

__all__ = ["CrossGroups"]


@SOURCES.register("cross")
class CrossGroups(MosGroups):
    """``M`` unrelated training images with no labels: a teacher judges them. ``dataset``: ``photos`` (the
    training photos only: what a permissive model may see) or ``biq2021`` (photos and BIQ2021 images)."""

    def __init__(
        self, name: str, ctx: DataContext, *, dataset: str = "biq2021", crop_fraction: float = 0.0, **kw: Any
    ) -> None:
        super().__init__(name, ctx, dataset="biq2021" if dataset == "photos" else dataset, **kw)
        self.crop_fraction = crop_fraction
        if dataset == "photos":
            self.items, self.datasets = [], ("photos",)
        else:
            self.datasets = ("photos", dataset)
        if len(ctx.photos["train"]) + len(self.items) < self.group_size:
            raise ConfigError(f"source {name!r}: fewer than {self.group_size} training images")

    @classmethod
    def from_config(cls, name: str, scfg: Any, ctx: DataContext, **common: Any) -> CrossGroups:
        return cls(name, ctx, dataset=scfg.dataset, crop_fraction=scfg.crop_fraction, **common)

    def _crop(self, im: Image.Image, rng: np.random.Generator) -> Image.Image:
        """A random crop keeping 25-80% of the frame: another composition of the same scene."""
        w, h = im.size
        side = np.sqrt(rng.uniform(0.25, 0.8))
        cw, ch = max(1, round(w * side * rng.uniform(0.9, 1.1) ** 0.5)), max(1, round(h * side))
        cw = min(cw, w)
        x, y = int(rng.integers(w - cw + 1)), int(rng.integers(h - ch + 1))
        return im.crop((x, y, x + cw, y + ch))

    def teacher_ids(self) -> list[str]:
        return []  # unlabelled: its teacher is the TeacherGroups wrapped around it

    def group(self, rng: np.random.Generator) -> Group:
        n_photos = len(self.ctx.photos["train"])
        picks = rng.choice(n_photos + len(self.items), self.group_size, replace=False)
        images = [
            self.ctx.photo(self.ctx.photos["train"][i])
            if i < n_photos
            else self.ctx.scored_image(self.dataset, self.items[i - n_photos][0])
            for i in picks
        ]
        if self.crop_fraction:
            images = [self._crop(im, rng) if rng.random() < self.crop_fraction else im for im in images]
        return Group(images, np.full(len(images), np.nan), self.unknown_factors(len(images)))
