"""Labelled pairs (``kind: labels``): the pair-label JSONL of any teacher, offline (edit oracle, human scores, an
MLLM, NIMA, a trained model), as groups ``[a, b]``."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import numpy as np

from distill.config import ConfigError
from distill.images import resolve_image
from distill.registry import SOURCES
from redaes_lite.pairs import read_pairs

from .base import Group, GroupSource, stable_key
from .context import DataContext

__all__ = ["LabelledPairs"]


@SOURCES.register("labels")
class LabelledPairs(GroupSource):
    """Pairs from a pair-label JSONL (any teacher): groups ``[a, b]``, targets ``[0, delta]``.

    Failed records are skipped; records touching a validation file are dropped (split by source).
    Batches walk a seeded permutation of the records, a new one each epoch.
    """

    def __init__(self, name: str, ctx: DataContext, *, labels: str, root: str | None = None, **kw: Any) -> None:
        super().__init__(name, factors=ctx.factors, **kw)
        self.ctx, self.path = ctx, Path(labels)
        self.root = Path(root) if root else self.path.parent
        records = list(read_pairs(self.path, only_ok=True))
        self.records = [r for r in records if not self._touches_val(r)]
        self.dropped_val = len(records) - len(self.records)
        if not self.records:
            raise ConfigError(f"{labels}: no usable pair records (ok and outside the validation split)")
        self.teachers = collections.Counter(r.teacher for r in self.records)

    @classmethod
    def from_config(cls, name: str, scfg: Any, ctx: DataContext, **common: Any) -> LabelledPairs:
        return cls(name, ctx, labels=scfg.labels, root=scfg.root, **common)

    def teacher_ids(self) -> list[str]:
        return sorted(self.teachers)

    def _touches_val(self, rec: Any) -> bool:
        return any(Path(ref).name in self.ctx.val_names for ref in (rec.a, rec.b, rec.group))

    def draw(self, index: int) -> tuple[list[Group], int]:
        n = len(self.records)
        groups = []
        for g in range(self.groups):
            item = index * self.groups + g
            epoch, pos = divmod(item, n)
            order = np.random.default_rng([self.seed, stable_key(self.name), epoch]).permutation(n)
            groups.append(self.pair_group(self.records[int(order[pos])]))
        return groups, int(self.rng(index).integers(2**63))

    def pair_group(self, rec: Any) -> Group:
        images = [self.ctx.cache.get(resolve_image(self.root, ref)) for ref in (rec.a, rec.b)]
        ftarget = self.unknown_factors(2)
        if rec.factors:
            ftarget[0] = 0.0
            ftarget[1] = [rec.factors.get(f, np.nan) for f in self.factors]
        return Group(images, np.asarray([0.0, float(rec.delta)]), ftarget, weight=float(rec.weight))
