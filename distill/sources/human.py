"""Human-score groups (``kind: mos``): images of one human-scored data set (BIQ2021, PARA) of different content,
their targets the people's scores. Never across data sets: their scales and raters differ."""

from __future__ import annotations

import collections
from typing import Any

import numpy as np

from distill.config import ConfigError
from distill.human_sets import human_set
from distill.registry import SOURCES

from .base import Group, GroupSource
from .context import DataContext

__all__ = ["MosGroups"]


@SOURCES.register("mos")
class MosGroups(GroupSource):
    """``M`` training images of one human-scored data set (``dataset``: BIQ2021 by default, or PARA), of
    different content; target = the human score (times ``scale``). ``within_fraction`` of the groups are
    drawn inside one of the data set's groups (a BIQ2021 subset, a PARA session)."""

    def __init__(
        self, name: str, ctx: DataContext, *, within_fraction: float = 0.5, dataset: str = "biq2021", **kw: Any
    ) -> None:
        super().__init__(name, factors=ctx.factors, **kw)
        self.ctx, self.within_fraction, self.dataset = ctx, within_fraction, dataset
        self.datasets = (dataset,)
        self.items = ctx.scored(dataset)["train"]
        by_subset: dict[str, list[int]] = collections.defaultdict(list)
        for i, (_, _, subset) in enumerate(self.items):
            by_subset[subset].append(i)
        self.subsets = [np.asarray(v) for _, v in sorted(by_subset.items()) if len(v) >= self.group_size]
        if len(self.items) < self.group_size:
            raise ConfigError(f"source {name!r}: {dataset} train split has fewer than {self.group_size} images")

    @classmethod
    def from_config(cls, name: str, scfg: Any, ctx: DataContext, **common: Any) -> MosGroups:
        return cls(name, ctx, within_fraction=scfg.within_fraction, dataset=scfg.dataset, **common)

    def pick(self, rng: np.random.Generator) -> np.ndarray:
        if self.subsets and rng.random() < self.within_fraction:
            # Within one subset: same capture conditions, so the ranking is about finer differences.
            sizes = np.asarray([len(s) for s in self.subsets], np.float64)
            pool = self.subsets[int(rng.choice(len(sizes), p=sizes / sizes.sum()))]
            return pool[rng.choice(len(pool), self.group_size, replace=False)]
        return rng.choice(len(self.items), self.group_size, replace=False)

    def group(self, rng: np.random.Generator) -> Group:
        chosen = [self.items[i] for i in self.pick(rng)]
        images = [self.ctx.scored_image(self.dataset, name) for name, _, _ in chosen]
        return Group(images, np.asarray([m for _, m, _ in chosen]), self.unknown_factors(len(chosen)))

    def teacher_ids(self) -> list[str]:
        return [human_set(self.dataset).teacher]
