"""Teacher in the loop: a trained network judges fresh groups while the student trains.

:class:`TeacherGroups` wraps any :class:`distill.sources.base.GroupSource`; its workers add the members' pixels in the
*teacher's* preprocessing spec (``teacher_images``), and :class:`TeacherLabeller`, held by the trainer on its
device, replaces ``target`` (and ``factor_target`` where the teacher has matching factor heads) with the
teacher's outputs. The same place takes an MLLM teacher's labels offline (``kind: labels``).

The teacher (a source config's ``teacher``, see :func:`teacher_file`) is one of

- a trained student checkpoint (``runs/big/final.pt``): target = its utility, factor targets from its heads;
- NIMA (``nima``: idealo's release at ``<shared>/weights/nima-mobilenet-ava/``, its sha256 checked; or
  ``nima:PATH`` / any Keras HDF5 file, e.g. a fine-tune): target = NIMA's mean score (1..10), no factor targets.

Either way ``target`` is the teacher's output times the source's ``scale``; only differences inside a group
matter to the losses.

Where NIMA's pixels come from: the workers compute them, like a student teacher's, from the group's own PIL
images (the un-augmented members: photos, crops, edits, as the source made them) with NIMA's preprocessing
(:func:`distill.teachers.nima.nima_preprocess`: 224x224 ignoring aspect, nearest, ``x / 127.5 - 1``), and the
trainer runs the network on its device. The student's ``images`` cannot be re-derived into NIMA's input: they
are augmented (random crop and flip), letterboxed and normalised the student's way, and the resampling alone
moves NIMA's scores. Running NIMA inside the workers instead would take the training step's CPU cores (or a
GPU per worker). One difference from ``python -m distill label --teacher nima`` remains: the group images are
those of the source's image cache (decoded with a JPEG draft and shrunk, antialiased, to the working size,
``data.working_scale`` times the student's input), not full decodes, since edits and crops exist only at that
size. Every member of a group goes the same way, so a group's differences are self-consistent, but the scores
are not those of the offline labels: shrunk images score lower than full decodes and rank the photos a little
differently, less so the larger the working size (idealo's nearest sampling of a full decode is itself
aliasing-noisy, so they never agree exactly). Raise ``data.working_scale`` for a NIMA-taught run if its scores
should sit closer to NIMA's own.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from redaes_lite.metadata import sha256_file
from redaes_lite.preprocess import PreprocessSpec, to_array

from .base import Group, GroupSource

__all__ = ["TeacherGroups", "TeacherLabeller", "teacher_file"]

#: The first bytes of an HDF5 file (NIMA's Keras weights); a torch checkpoint is a zip or pickle.
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def teacher_file(teacher: str | os.PathLike) -> tuple[Path, bool]:
    """``(file, is_nima)`` of a source config's ``teacher``: ``nima`` (idealo's release where the shared weights
    live), ``nima:PATH``, or a path: a Keras HDF5 file is NIMA, anything else a student checkpoint."""
    text = os.fspath(teacher)
    if text == "nima" or text.startswith("nima:"):
        from distill.teachers.nima import default_path

        path = Path(text[5:]) if text.startswith("nima:") else default_path()
        if not path.is_file():
            raise FileNotFoundError(f"teacher {text!r}: NIMA weights not found at {path}")
        return path, True
    path = Path(text)
    with open(path, "rb") as f:  # a missing checkpoint fails here, naming the file
        return path, f.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE


class TeacherGroups(GroupSource):
    """Any source's groups relabelled by a teacher network (teacher in the loop): a trained student checkpoint
    or NIMA (:func:`teacher_file`).

    Workers add ``teacher_images`` (the un-augmented members in the *teacher's* pixel spec, since the teacher
    may see another size; NIMA's own preprocessing for NIMA); the trainer's :class:`TeacherLabeller` fills
    ``target`` on its device. ``checkpoint`` is the teacher's file (``.pt`` or NIMA's ``.hdf5``), ``nima``
    says which, ``teacher_sha256`` is its content hash.
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
        self.inner = inner
        self.checkpoint, self.nima = teacher_file(teacher_checkpoint)
        self.datasets = inner.datasets
        # The file's content names the teacher's version.
        self.teacher_sha256 = sha256_file(self.checkpoint)
        if self.nima:
            from distill.teachers.nima import NIMA_SHA256, teacher_id

            if os.fspath(teacher_checkpoint) == "nima" and self.teacher_sha256 != NIMA_SHA256:
                raise ValueError(
                    f"teacher 'nima': {self.checkpoint} has sha256 {self.teacher_sha256}, not idealo's release "
                    f"{NIMA_SHA256} (name another file as nima:PATH)"
                )
            self.teacher_spec = None
            self.teacher_id = teacher_id(self.teacher_sha256, self.checkpoint)
        else:
            self.teacher_spec = teacher_spec or TeacherLabeller.read_spec(self.checkpoint)
            self.teacher_id = f"model:{self.checkpoint.name}@{self.teacher_sha256[:12]}"

    def teacher_ids(self) -> list[str]:
        return [self.teacher_id]

    def group(self, rng: np.random.Generator) -> Group:
        return self.inner.group(rng)

    def draw(self, index: int) -> tuple[list[Group], int]:
        # The inner source's batches as it draws them: a labels source walks its records, not group().
        return self.inner.draw(index)

    def extra_inputs(self, groups: list[Group]) -> dict[str, torch.Tensor]:
        """``teacher_images [G, M, 3, h, w]``: the members as the teacher sees them, for :class:`TeacherLabeller`."""
        if self.nima:
            from distill.teachers.nima import nima_preprocess

            return {"teacher_images": torch.stack([nima_preprocess(g.images) for g in groups])}
        return {
            "teacher_images": torch.stack(
                [torch.from_numpy(np.stack([to_array(im, self.teacher_spec) for im in g.images])) for g in groups]
            )
        }


class TeacherLabeller:
    """A frozen teacher on the trainer's device: fills a :class:`TeacherGroups` batch's targets.

    ``checkpoint`` is a student checkpoint or NIMA (anything :func:`teacher_file` takes). A student teacher's
    utility (and its factor heads named like the student's factors, with ``use_factors``) become the targets;
    NIMA's mean score becomes ``target`` and ``factor_target`` stays NaN (NIMA has no factor heads). Both are
    multiplied by ``scale``; ``mask`` marks every member with a finite target (all of them). The teacher's
    pooled features go to ``teacher_features [G, M, D]`` for the ``feature`` loss.
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike,
        *,
        factors: Sequence[str],
        scale: float = 1.0,
        use_factors: bool = True,
        device: torch.device | str = "cpu",
    ) -> None:
        path, self.nima = teacher_file(checkpoint)
        self.device = torch.device(device)
        self.scale = scale
        if self.nima:
            from distill.teachers.nima import load_nima

            # TeacherGroups checked the release's sha256 (``nima``) or recorded the file's (``nima:PATH``).
            self.model = load_nima(path, sha256=None).to(device).eval()
            self.factor_index = [-1] * len(factors)
            return
        from distill.student import load_student

        self.model = load_student(path).to(device).eval()
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
        if self.nima:
            from distill.teachers.nima import mean_score

            features = self.model.features(timg.flatten(0, 1))
            utility, factors = mean_score(self.model.head(features)), None
        else:
            utility, factors, features = self.model(timg.flatten(0, 1), with_features=True)
        target = (utility.float() * self.scale).view(g, m)
        ftarget = torch.full((g, m, len(self.factor_index)), float("nan"), device=self.device)
        for k, j in enumerate(self.factor_index):
            if j >= 0:
                ftarget[..., k] = factors[:, j].float().view(g, m) * self.scale
        batch["target"] = target.to(batch["target"].device)
        batch["mask"] = torch.isfinite(batch["target"])
        batch["factor_target"] = ftarget.to(batch["factor_target"].device)
        batch["teacher_features"] = features.float().view(g, m, -1).to(batch["target"].device)
        return batch
