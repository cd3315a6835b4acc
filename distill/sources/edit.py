"""Edit groups (``kind: edit``): a training photo and random edits of it, judged by the edit oracle; the same
groups, drawn from fixed seeds, make the validation's edit pairs (:func:`edit_group`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from distill import edits
from distill.config import ConfigError
from distill.registry import SOURCES
from distill.splits import tags_of
from distill.teachers.edit_oracle import EditOracle

from .base import Group, GroupSource
from .context import DataContext

__all__ = ["EditGroups", "edit_group", "source_key"]


def source_key(row: dict[str, Any]) -> str:
    """What names an edit source: its file, and the crop box of a cropped source (its own edits and seeds)."""
    return row["file"] if "crop" not in row else row["file"] + "#crop=" + ",".join(f"{v:.6f}" for v in row["crop"])


@SOURCES.register("edit")
class EditGroups(GroupSource):
    """Edits of one training photo: ``[source, edit_1, ..., edit_{M-1}]`` judged by the edit oracle."""

    datasets = ("photos",)

    def __init__(
        self, name: str, ctx: DataContext, oracle: Any, *, split: str = "train", n_ops: int | None = None, **kw: Any
    ) -> None:
        super().__init__(name, factors=ctx.factors, **kw)
        self.ctx, self.oracle, self.n_ops = ctx, oracle, n_ops
        self.rows = ctx.photos[split]
        if not self.rows:
            raise ConfigError(f"source {name!r}: the photos {split} split is empty")

    @classmethod
    def from_config(cls, name: str, scfg: Any, ctx: DataContext, **common: Any) -> EditGroups:
        return cls(name, ctx, EditOracle(), n_ops=scfg.n_ops, **common)

    def group(self, rng: np.random.Generator) -> Group:
        row = self.rows[int(rng.integers(len(self.rows)))]
        tags = tags_of(row)
        recipes = [edits.random_recipe(rng, n_ops=self.n_ops, tags=tags) for _ in range(self.group_size - 1)]
        return edit_group(self.ctx, row, recipes, self.oracle, rng, factors=self.factors)

    def teacher_ids(self) -> list[str]:
        return [self.oracle.id]


def edit_group(
    ctx: DataContext,
    row: dict[str, Any],
    recipes: list[list[dict]],
    oracle: Any,
    rng: np.random.Generator,
    *,
    factors: Sequence[str],
) -> Group:
    """The source photo and its edits, with oracle targets; shared by training and validation sets."""
    src = ctx.photo(row)
    tags = tags_of(row)
    images, target = [src], [0.0]
    ftarget = np.full((len(recipes) + 1, len(factors)), np.nan)
    ftarget[0] = 0.0
    for i, recipe in enumerate(recipes, 1):
        images.append(edits.apply(src, recipe, seed=int(rng.integers(2**31))))
        delta, by_factor = oracle.judge(recipe, tags=tags)
        target.append(float(delta))
        # The oracle splits delta over the factors the recipe moved; the others did not change. (A single
        # edit moves one factor: its delta there, none elsewhere, which teaches the heads to be specific.)
        ftarget[i] = 0.0
        for name, d in by_factor.items():
            if name in factors:
                ftarget[i, factors.index(name)] = float(d)
    return Group(images, np.asarray(target), ftarget)
