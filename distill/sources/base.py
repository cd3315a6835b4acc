"""A training source makes GROUPS of images whose targets share one scale (:class:`Group`, :class:`GroupSource`).

Batch ``i`` of a source is a pure function of ``(seed, source name, i)`` (:meth:`GroupSource.draw`), whatever
the number of workers, so ``--resume`` at step ``s`` continues with exactly the batches of an unbroken run.
Turning the groups into tensors is :mod:`distill.data`'s.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

__all__ = ["Group", "GroupSource", "stable_key"]


def stable_key(text: str) -> int:
    """A process-independent 32-bit integer for a string (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "little")


@dataclass
class Group:
    """One group: ``M`` images, their targets ``[M]`` (NaN: unknown) and factor targets ``[M, K]``."""

    images: list[Image.Image]
    target: np.ndarray
    factor_target: np.ndarray
    weight: float = 1.0


class GroupSource:
    """Base class: ``group(rng)`` makes one group; :meth:`draw` makes the groups of batch ``index``
    deterministically. Each kind is registered in ``distill.registry.SOURCES`` and built by :meth:`from_config`.

    ``datasets`` names the shared data sets whose training split the source draws images from
    (provenance and licences in the checkpoint); :meth:`teacher_ids` the teachers behind its targets.
    """

    datasets: tuple[str, ...] = ()

    def __init__(
        self, name: str, *, group_size: int, groups: int, seed: int, factors: Sequence[str], scale: float = 1.0
    ) -> None:
        self.name = name
        self.group_size = group_size
        self.groups = groups
        self.seed = seed
        self.factors = list(factors)
        self.scale = scale

    @classmethod
    def from_config(cls, name: str, scfg: Any, ctx: Any, **common: Any) -> GroupSource:
        """The source a :class:`distill.config.SourceConfig` of this kind describes; ``common`` holds what every
        source takes (``group_size``, ``groups``, ``seed``, ``scale``)."""
        raise NotImplementedError

    def group(self, rng: np.random.Generator) -> Group:
        raise NotImplementedError

    # Unusable frames swapped into the groups (:meth:`with_unusable`): (fraction, per_group, target) or None.
    unusable: tuple[float, int, float] | None = None

    def teacher_ids(self) -> list[str]:
        return []

    def all_teacher_ids(self) -> list[str]:
        """:meth:`teacher_ids` and the unusable-frame rule when this source uses it."""
        from distill.edits.unusable import TEACHER_ID

        return [*self.teacher_ids(), *([TEACHER_ID] if self.unusable else [])]

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, stable_key(self.name), index])

    def with_unusable(self, fraction: float, per_group: int, target: float) -> GroupSource:
        self.unusable = (fraction, per_group, target)
        return self

    def draw(self, index: int) -> tuple[list[Group], int]:
        """The groups of batch ``index``, and the seed of its augmentation (drawn from the same generator)."""
        rng = self.rng(index)
        groups = [self.group(rng) for _ in range(self.groups)]
        if self.unusable:
            # Its own generator: the groups drawn are the same with or without unusable frames.
            self.swap_in_unusable(groups, np.random.default_rng([self.seed, stable_key(self.name), index, 1]))
        return groups, int(rng.integers(2**63))

    def swap_in_unusable(self, groups: list[Group], rng: np.random.Generator) -> None:
        """Replace the last ``per_group`` members of a ``fraction`` of ``groups`` by unusable frames made
        from the group's members, with target ``target`` and unknown factors."""
        from distill.edits.unusable import unusable_frame

        fraction, per_group, target = self.unusable
        for g in groups:
            if rng.random() >= fraction:
                continue
            for i in range(len(g.images) - per_group, len(g.images)):
                g.images[i] = unusable_frame(g.images[int(rng.integers(len(g.images)))], rng)
                g.target[i] = target
                g.factor_target[i] = np.nan

    def extra_inputs(self, groups: list[Group]) -> dict[str, torch.Tensor]:
        """Tensors a batch of ``groups`` carries beyond the student's (a teacher in the loop adds its pixels)."""
        return {}

    def unknown_factors(self, m: int) -> np.ndarray:
        return np.full((m, len(self.factors)), np.nan)
