"""Training data as batches: the groups a source draws (:mod:`distill.sources`) collated into tensors, and the
endless, deterministic stream of them the trainer reads.

A batch holds ``G`` groups of ``M`` images from one source::

    {"images": [G, M, 3, H, W], "target": [G, M], "mask": [G, M], "factor_target": [G, M, K],
     "weight": [G], "source": str}

plus what the source adds (a teacher in the loop: ``teacher_images``). ``target`` is in utility units (teacher
units times the source's ``scale``); only differences inside a group carry meaning. ``factor_target`` is NaN
where unknown; ``mask`` marks members with a finite target.

Determinism: batch ``i`` of a source is a pure function of ``(seed, source name, i)``, whatever the
number of workers, so ``--resume`` at step ``s`` continues with exactly the batches of an unbroken run.
Validation sources never enter a training stream (split by source scene, ``distill.splits``).
"""

from __future__ import annotations

import random
import signal
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from distill.sources import Group, GroupSource

__all__ = ["Transform", "batch_loader", "collate", "make_batch"]

Transform = Callable[..., torch.Tensor]  # TrainTransform(imgs: list[PIL], *, rng) -> [M, 3, H, W]


def collate(source: GroupSource, groups: list[Group], transform: Transform, seed: int) -> dict[str, Any]:
    """``groups`` of ``source`` as a batch; ``seed`` seeds the augmentation (the student's TrainTransform draws
    its crop and flip from a ``random.Random``)."""
    target = torch.tensor(np.stack([g.target for g in groups]) * source.scale, dtype=torch.float32)
    aug = random.Random(seed)
    return {
        "images": torch.stack([transform(g.images, rng=aug) for g in groups]),
        "target": target,
        "mask": torch.isfinite(target),
        "factor_target": torch.tensor(np.stack([g.factor_target for g in groups]), dtype=torch.float32),
        "weight": torch.tensor([g.weight for g in groups], dtype=torch.float32),
        "source": source.name,
        **source.extra_inputs(groups),
    }


def make_batch(source: GroupSource, index: int, transform: Transform) -> dict[str, Any]:
    """Batch ``index`` of ``source``, the same in every process."""
    groups, seed = source.draw(index)
    return collate(source, groups, transform, seed)


class _BatchStream(torch.utils.data.IterableDataset):
    """Batches ``start, start+1, ...`` of a source; this process takes ``index * world + rank``.

    DataLoader workers take turns (worker ``w`` makes every ``n``-th batch) and the loader returns
    them in turn order, so the stream is identical for any number of workers.
    """

    def __init__(self, source: GroupSource, transform: Transform, *, start: int, rank: int, world: int) -> None:
        self.source, self.transform = source, transform
        self.start, self.rank, self.world = start, rank, world

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        j = wid
        while True:
            yield make_batch(self.source, (self.start + j) * self.world + self.rank, self.transform)
            j += nw


def batch_loader(
    source: GroupSource, transform: Transform, *, start: int, num_workers: int, rank: int = 0, world: int = 1
) -> Iterator[dict[str, Any]]:
    """An endless iterator of batches ``start, start+1, ...`` of ``source``, built by ``num_workers``."""
    stream = _BatchStream(source, transform, start=start, rank=rank, world=world)
    loader = torch.utils.data.DataLoader(
        stream,
        batch_size=None,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,
        prefetch_factor=2 if num_workers else None,
        # A private generator: starting workers must not draw from the global torch RNG (exact resume).
        generator=torch.Generator().manual_seed(source.seed),
        worker_init_fn=_worker_init,
    )
    return iter(loader)


def _worker_init(worker_id: int) -> None:
    # One thread per worker: the cores belong to the training step; decoding and edits are cheap.
    torch.set_num_threads(1)
    # Ctrl-C reaches the whole process group; only the main process handles it (clean stop, checkpoint).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
