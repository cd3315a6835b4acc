"""A training source from its config: the group source a :class:`distill.config.SourceConfig` names, with its
unusable frames and, when the config names one, the teacher that relabels it in the loop.

Apart from :mod:`distill.data` so that data never imports :mod:`distill.teacher_loop`, which builds on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from distill.data import CrossGroups, DataContext, EditGroups, GroupSource, LabelledPairs, MosGroups

__all__ = ["build_source"]


def _edit(name: str, scfg: Any, ctx: DataContext, **kw: Any) -> GroupSource:
    from distill.teachers.edit_oracle import EditOracle

    return EditGroups(name, ctx, EditOracle(), n_ops=scfg.n_ops, **kw)


_BUILDERS: dict[str, Callable[..., GroupSource]] = {
    "edit": _edit,
    "mos": lambda name, scfg, ctx, **kw: MosGroups(
        name, ctx, within_fraction=scfg.within_fraction, dataset=scfg.dataset, **kw
    ),
    "labels": lambda name, scfg, ctx, **kw: LabelledPairs(name, ctx, labels=scfg.labels, root=scfg.root, **kw),
    "cross": lambda name, scfg, ctx, **kw: CrossGroups(
        name, ctx, dataset=scfg.dataset, crop_fraction=scfg.crop_fraction, **kw
    ),
}


def _unusable_target(scfg: Any) -> float:
    if scfg.unusable.target is not None:
        return float(scfg.unusable.target)
    from distill.human_sets import human_set

    lo, hi = human_set(scfg.dataset).score_range
    return lo - 0.25 * (hi - lo)


def build_source(name: str, scfg: Any, ctx: DataContext, *, seed: int) -> GroupSource:
    """The source a :class:`distill.config.SourceConfig` describes (wrapped by its teacher, if any)."""
    kw = {"group_size": scfg.group_size, "groups": scfg.groups, "seed": seed, "scale": scfg.scale}
    source = _BUILDERS[scfg.kind](name, scfg, ctx, **kw)
    if scfg.unusable is not None:
        source.with_unusable(scfg.unusable.fraction, scfg.unusable.per_group, _unusable_target(scfg))
    if not scfg.teacher:
        return source
    from distill.teacher_loop import TeacherGroups

    return TeacherGroups(scfg.teacher, source)
