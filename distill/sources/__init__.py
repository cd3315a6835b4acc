"""Training sources: where the groups of images and their targets come from, each kind registered by name in
``distill.registry.SOURCES`` (the ``kind`` of a :class:`distill.config.SourceConfig`):

- ``edit`` (:class:`EditGroups`): a training photo plus random edit recipes judged by the edit oracle;
- ``mos`` (:class:`MosGroups`): images of one human-scored data set (BIQ2021, PARA), their human scores;
- ``labels`` (:class:`LabelledPairs`): any pair-label JSONL (edit, mos, MLLM, NIMA or model teacher);
- ``cross`` (:class:`CrossGroups`): unrelated training images without labels, for a teacher to judge;

and around any of them a teacher in the loop (:class:`TeacherGroups`: a trained checkpoint or NIMA relabels the
groups while the student trains; :class:`TeacherLabeller` runs it on the trainer's device). All draw their
images through one :class:`DataContext`. :mod:`distill.data` turns their groups into batches.
"""

from __future__ import annotations

from typing import Any

from distill.human_sets import human_set
from distill.registry import SOURCES

from .base import Group, GroupSource, stable_key
from .context import DataContext
from .cross import CrossGroups
from .edit import EditGroups, edit_group, source_key
from .human import MosGroups
from .labels import LabelledPairs
from .teacher_loop import TeacherGroups, TeacherLabeller, teacher_file

__all__ = [
    "CrossGroups",
    "DataContext",
    "EditGroups",
    "Group",
    "GroupSource",
    "LabelledPairs",
    "MosGroups",
    "TeacherGroups",
    "TeacherLabeller",
    "build_source",
    "edit_group",
    "source_key",
    "stable_key",
    "teacher_file",
]


def _unusable_target(scfg: Any) -> float:
    if scfg.unusable.target is not None:
        return float(scfg.unusable.target)
    lo, hi = human_set(scfg.dataset).score_range
    return lo - 0.25 * (hi - lo)


def build_source(name: str, scfg: Any, ctx: DataContext, *, seed: int) -> GroupSource:
    """The source a :class:`distill.config.SourceConfig` describes (wrapped by its teacher, if any)."""
    common = {"group_size": scfg.group_size, "groups": scfg.groups, "seed": seed, "scale": scfg.scale}
    source = SOURCES.get(scfg.kind).from_config(name, scfg, ctx, **common)
    if scfg.unusable is not None:
        source.with_unusable(scfg.unusable.fraction, scfg.unusable.per_group, _unusable_target(scfg))
    if not scfg.teacher:
        return source
    return TeacherGroups(scfg.teacher, source)
