"""Teacher in the loop: a trained network judges fresh groups while the student trains (issue 10).

:class:`TeacherGroups` wraps any :class:`distill.data.GroupSource`; its workers add the members' pixels in the
*teacher's* preprocessing spec (``teacher_images``), and :class:`TeacherLabeller`, held by the trainer on its
device, replaces ``target`` (and ``factor_target`` where the teacher has matching factor heads) with the
teacher's outputs. The same place takes an MLLM teacher's labels offline (``kind: labels``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distill.data import Group, GroupSource, Transform
from redaes_lite.metadata import sha256_file
from redaes_lite.preprocess import PreprocessSpec, to_array

__all__ = ["TeacherGroups", "TeacherLabeller"]


class TeacherGroups(GroupSource):
    """Any source's groups relabelled by a trained teacher checkpoint (teacher in the loop).

    Workers add ``teacher_images`` (the un-augmented members in the *teacher's* pixel spec, since the
    teacher may see another size); the trainer's :class:`TeacherLabeller` fills ``target`` on its device.
    """

    def __init__(
        self, teacher_checkpoint: str | os.PathLike, inner: GroupSource, *, teacher_spec: PreprocessSpec | None = None
    ) -> None:
        super().__init__(
            inner.name,
            group_size=inner.group_size,
            groups=inner.groups,
            seed=inner.seed,
            factors=inner.factors,
            scale=inner.scale,
        )
        self.inner, self.checkpoint = inner, Path(teacher_checkpoint)
        self.kind, self.datasets = inner.kind, inner.datasets
        self.teacher_spec = teacher_spec or TeacherLabeller.read_spec(self.checkpoint)
        # The checkpoint's content names the teacher's version.
        self.teacher_id = f"model:{self.checkpoint.name}@{sha256_file(self.checkpoint)[:12]}"

    def teacher_ids(self) -> list[str]:
        return [self.teacher_id]

    def group(self, rng: np.random.Generator) -> Group:
        return self.inner.group(rng)

    def collate(self, groups: list[Group], transform: Transform, rng: np.random.Generator) -> dict[str, Any]:
        out = super().collate(groups, transform, rng)
        out["teacher_images"] = torch.stack(
            [torch.from_numpy(np.stack([to_array(im, self.teacher_spec) for im in g.images])) for g in groups]
        )
        return out


class TeacherLabeller:
    """A frozen teacher Student on the trainer's device: fills a :class:`TeacherGroups` batch's targets."""

    def __init__(
        self,
        checkpoint: str | os.PathLike,
        *,
        factors: Sequence[str],
        scale: float = 1.0,
        use_factors: bool = True,
        device: torch.device | str = "cpu",
    ) -> None:
        from distill.student import load_student

        self.model = load_student(checkpoint).to(device).eval()
        self.device = torch.device(device)
        self.scale = scale
        names = list(self.model.factor_names)
        # Student factor k <- teacher factor index (or -1: the teacher has no such head).
        self.factor_index = [names.index(f) if use_factors and f in names else -1 for f in factors]

    @staticmethod
    def read_spec(checkpoint: str | os.PathLike) -> PreprocessSpec:
        from distill.student import load_checkpoint

        return PreprocessSpec.from_dict(load_checkpoint(checkpoint)["preprocess"])

    @torch.no_grad()
    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        timg = batch.pop("teacher_images").to(self.device)
        g, m = timg.shape[:2]
        utility, factors = self.model(timg.flatten(0, 1))
        target = (utility.float() * self.scale).view(g, m)
        ftarget = torch.full((g, m, len(self.factor_index)), float("nan"), device=self.device)
        for k, j in enumerate(self.factor_index):
            if j >= 0:
                ftarget[..., k] = factors[:, j].float().view(g, m) * self.scale
        batch["target"] = target.to(batch["target"].device)
        batch["mask"] = torch.isfinite(batch["target"])
        batch["factor_target"] = ftarget.to(batch["factor_target"].device)
        return batch
