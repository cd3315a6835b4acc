"""Training data as GROUPS of images whose teacher utilities share one scale.

A batch holds ``G`` groups of ``M`` images from one source::

    {"images": [G, M, 3, H, W], "target": [G, M], "mask": [G, M], "factor_target": [G, M, K],
     "weight": [G], "source": str}

``target`` is in utility units (teacher units times the source's ``scale``); only differences inside a
group carry meaning. ``factor_target`` is NaN where unknown; ``mask`` marks members with a finite target.

Sources (each a :class:`GroupSource`):

- :class:`EditGroups`: a training photo plus ``M - 1`` random edit recipes; targets ``[0, d1, ...]`` from
  the edit oracle, factor targets from its per-factor deltas (0 for the factors a recipe did not touch).
- :class:`MosGroups`: ``M`` training images of one human-scored data set (BIQ2021, PARA: cross-content);
  target = their human score. Never across data sets: their scales and raters differ.
- :class:`LabelledPairs`: any pair-label JSONL (edit, mos, mllm or model teacher); groups ``[a, b]``
  with targets ``[0, delta]``.
- :class:`CrossGroups`: ``M`` unrelated training images without labels, for a teacher to judge.
- ``distill.teacher_loop.TeacherGroups``: wraps any source; a trained teacher checkpoint relabels its groups
  on the fly (``TeacherLabeller``, run by the trainer on its device).

Determinism: batch ``i`` of a source is a pure function of ``(seed, source name, i)``, whatever the
number of workers, so ``--resume`` at step ``s`` continues with exactly the batches of an unbroken run.
Validation sources never enter a training stream (split by source scene, ``distill.splits``).
"""

from __future__ import annotations

import collections
import hashlib
import os
import random
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from distill.config import ConfigError
from distill.teachers.base import resolve_image
from redaes_lite.pairs import read_pairs
from redaes_lite.preprocess import PreprocessSpec, load_image

__all__ = [
    "CrossGroups",
    "DataContext",
    "EditGroups",
    "Group",
    "GroupSource",
    "ImageCache",
    "LabelledPairs",
    "MosGroups",
    "batch_loader",
    "resolve_image",
]

Transform = Callable[..., torch.Tensor]  # TrainTransform(imgs: list[PIL], *, rng) -> [M, 3, H, W]


def stable_key(text: str) -> int:
    """A process-independent 32-bit integer for a string (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "little")


class ImageCache:
    """LRU cache of decoded images shrunk to a working size (long side ``long_side``), per process.

    Edits run on these small images, and the 2 cores are not spent decoding the same JPEG again.
    """

    def __init__(self, *, long_side: int, spec: PreprocessSpec, capacity: int = 1024) -> None:
        self.long_side = long_side
        self.spec = spec
        self.capacity = capacity
        self._items: collections.OrderedDict[str, Image.Image] = collections.OrderedDict()

    def get(self, path: str | os.PathLike) -> Image.Image:
        key = str(path)
        im = self._items.get(key)
        if im is not None:
            self._items.move_to_end(key)
            return im
        im = load_image(key, self.spec)
        if max(im.size) > self.long_side:
            s = self.long_side / max(im.size)
            im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.Resampling.BILINEAR)
        self._items[key] = im
        if len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return im


@dataclass
class DataContext:
    """What every source shares: split lists, labels, the student's pixel spec and the image cache."""

    photos_root: Path
    photos: dict[str, list[dict[str, Any]]]  # split -> manifest rows
    biq_root: Path
    biq: dict[str, list[tuple[str, float, str]]]  # split -> (image, mos, subset)
    factors: list[str]
    cache: ImageCache
    val_names: frozenset[str] = field(default_factory=frozenset)  # every validation file name
    # Human-score data sets other than BIQ2021 (``distill.human_sets.HUMAN_SETS``) that the config uses:
    # name -> split -> (image, score, group), and name -> root folder.
    human: dict[str, dict[str, list[tuple[str, float, str]]]] = field(default_factory=dict)
    human_roots: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: Any, spec: PreprocessSpec) -> DataContext:
        """Read the committed splits (``distill.splits``), the photo manifest and BIQ2021 labels."""
        from distill.human_sets import human_set, read_scores
        from distill.splits import load_split, read_manifest
        from distill.teachers.mos import read_labels

        photos_root, biq_root = Path(cfg.data.photos), Path(cfg.data.biq2021)
        rows = {r["file"]: r for r in read_manifest(photos_root / "manifest.csv")}
        photo_split = load_split("photos")
        labels = read_labels(biq_root / "labels.csv")  # image -> (MOS, subset)
        biq_split = load_split("biq2021")
        long_side = round(cfg.data.working_scale * max(spec.size))
        human, human_roots, human_val = {}, {}, []
        for name in _extra_human_sets(cfg):
            root = Path(getattr(cfg.data, name))
            scores = read_scores(human_set(name), root / "labels.csv")
            split = load_split(name)
            human[name] = {k: [(f, *scores[f]) for f in split[k]] for k in ("train", "val")}
            human_roots[name] = root
            human_val += split["val"]
        return cls(
            photos_root=photos_root,
            photos={
                k: [rows[f] for f in photo_split[k] if rows[f]["permissive"] or not cfg.data.permissive_only]
                for k in ("train", "val")
            },
            biq_root=biq_root,
            biq={k: [(f, *labels[f]) for f in biq_split[k]] for k in ("train", "val")},
            factors=list(cfg.factors),
            cache=ImageCache(long_side=long_side, spec=spec, capacity=cfg.data.cache_size),
            val_names=frozenset([*photo_split["val"], *biq_split["val"], *human_val]),
            human=human,
            human_roots=human_roots,
        )

    def photo(self, row: dict[str, Any]) -> Image.Image:
        """A manifest row's photo; a row marked ``dataset: biq2021`` names a BIQ2021 image instead, and a row
        with ``crop: (left, top, right, bottom)`` (fractions of the frame) that part of the image."""
        biq = row.get("dataset") == "biq2021"
        im = self.biq_image(row["file"]) if biq else self.cache.get(self.photos_root / row["file"])
        if "crop" not in row:
            return im
        left, top, right, bottom = row["crop"]
        w, h = im.size
        return im.crop((round(left * w), round(top * h), round(right * w), round(bottom * h)))

    def biq_image(self, name: str) -> Image.Image:
        return self.scored_image("biq2021", name)

    def scored(self, dataset: str) -> dict[str, list[tuple[str, float, str]]]:
        """A human-score data set's split: ``{"train"|"val": [(image, score, group), ...]}``."""
        if dataset == "biq2021":
            return self.biq
        if dataset not in self.human:
            raise ConfigError(f"human-score data set {dataset!r} is not loaded (set data.{dataset} to its folder)")
        return self.human[dataset]

    def scored_path(self, dataset: str, name: str) -> Path:
        root = self.biq_root if dataset == "biq2021" else self.human_roots[dataset]
        return root / "images" / name

    def scored_image(self, dataset: str, name: str) -> Image.Image:
        return self.cache.get(self.scored_path(dataset, name))


def _extra_human_sets(cfg: Any) -> list[str]:
    """The human-score data sets besides BIQ2021 that a config's sources or validation use."""
    used = set(cfg.val.human_sets)
    for stage in [None, *cfg.stages]:
        used |= {s.dataset for s in cfg.stage_config(stage)[0].values() if s.kind == "mos"}
    return sorted(n for n in used if n and n != "biq2021")


def photo_tags(row: dict[str, Any]) -> tuple[str, ...]:
    return tuple(t for t in str(row.get("tags", "")).split(";") if t)


def source_key(row: dict[str, Any]) -> str:
    """What names an edit source: its file, and the crop box of a cropped source (its own edits and seeds)."""
    return row["file"] if "crop" not in row else row["file"] + "#crop=" + ",".join(f"{v:.6f}" for v in row["crop"])


@dataclass
class Group:
    """One group: ``M`` images, their targets ``[M]`` (NaN: unknown) and factor targets ``[M, K]``."""

    images: list[Image.Image]
    target: np.ndarray
    factor_target: np.ndarray
    weight: float = 1.0


class GroupSource:
    """Base class: ``group(rng)`` makes one group; :meth:`batch` makes batch ``index`` deterministically.

    ``datasets`` names the shared data sets whose training split the source draws images from
    (provenance and licences in the checkpoint); :meth:`teacher_ids` the teachers behind its targets.
    """

    kind = "base"
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

    def batch(self, index: int, transform: Transform) -> dict[str, Any]:
        rng = self.rng(index)
        groups = [self.group(rng) for _ in range(self.groups)]
        if self.unusable:
            # Its own generator: the groups drawn are the same with or without unusable frames.
            self.swap_in_unusable(groups, np.random.default_rng([self.seed, stable_key(self.name), index, 1]))
        return self.collate(groups, transform, rng)

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

    def collate(self, groups: list[Group], transform: Transform, rng: np.random.Generator) -> dict[str, Any]:
        target = torch.tensor(np.stack([g.target for g in groups]) * self.scale, dtype=torch.float32)
        # The student's TrainTransform draws its crop/flip from a random.Random: seed it from this batch.
        aug = random.Random(int(rng.integers(2**63)))
        return {
            "images": torch.stack([transform(g.images, rng=aug) for g in groups]),
            "target": target,
            "mask": torch.isfinite(target),
            "factor_target": torch.tensor(np.stack([g.factor_target for g in groups]), dtype=torch.float32),
            "weight": torch.tensor([g.weight for g in groups], dtype=torch.float32),
            "source": self.name,
        }

    def unknown_factors(self, m: int) -> np.ndarray:
        return np.full((m, len(self.factors)), np.nan)


class EditGroups(GroupSource):
    """Edits of one training photo: ``[source, edit_1, ..., edit_{M-1}]`` judged by the edit oracle."""

    kind = "edit"
    datasets = ("photos",)

    def __init__(
        self, name: str, ctx: DataContext, oracle: Any, *, split: str = "train", n_ops: int | None = None, **kw: Any
    ) -> None:
        super().__init__(name, factors=ctx.factors, **kw)
        self.ctx, self.oracle, self.n_ops = ctx, oracle, n_ops
        self.rows = ctx.photos[split]
        if not self.rows:
            raise ConfigError(f"source {name!r}: the photos {split} split is empty")

    def group(self, rng: np.random.Generator) -> Group:
        from distill import edits

        row = self.rows[int(rng.integers(len(self.rows)))]
        tags = photo_tags(row)
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
    from distill import edits

    src = ctx.photo(row)
    tags = photo_tags(row)
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


class MosGroups(GroupSource):
    """``M`` training images of one human-scored data set (``dataset``: BIQ2021 by default, or PARA), of
    different content; target = the human score (times ``scale``). ``within_fraction`` of the groups are
    drawn inside one of the data set's groups (a BIQ2021 subset, a PARA session)."""

    kind = "mos"

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
        from distill.human_sets import human_set

        return [human_set(self.dataset).teacher]


class CrossGroups(MosGroups):
    """``M`` unrelated training images with no labels: a teacher judges them. ``dataset``: ``photos`` (the
    training photos only: what a permissive model may see) or ``biq2021`` (photos and BIQ2021 images)."""

    kind = "cross"

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


class LabelledPairs(GroupSource):
    """Pairs from a pair-label JSONL (any teacher): groups ``[a, b]``, targets ``[0, delta]``.

    Failed records are skipped; records touching a validation file are dropped (split by source).
    Batches walk a seeded permutation of the records, a new one each epoch.
    """

    kind = "labels"

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

    def teacher_ids(self) -> list[str]:
        return sorted(self.teachers)

    def _touches_val(self, rec: Any) -> bool:
        return any(Path(ref).name in self.ctx.val_names for ref in (rec.a, rec.b, rec.group))

    def batch(self, index: int, transform: Transform) -> dict[str, Any]:
        n = len(self.records)
        groups = []
        for g in range(self.groups):
            item = index * self.groups + g
            epoch, pos = divmod(item, n)
            order = np.random.default_rng([self.seed, stable_key(self.name), epoch]).permutation(n)
            groups.append(self.pair_group(self.records[int(order[pos])]))
        return self.collate(groups, transform, self.rng(index))

    def pair_group(self, rec: Any) -> Group:
        images = [self.ctx.cache.get(resolve_image(self.root, ref)) for ref in (rec.a, rec.b)]
        ftarget = self.unknown_factors(2)
        if rec.factors:
            ftarget[0] = 0.0
            ftarget[1] = [rec.factors.get(f, np.nan) for f in self.factors]
        return Group(images, np.asarray([0.0, float(rec.delta)]), ftarget, weight=float(rec.weight))


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
            yield self.source.batch((self.start + j) * self.world + self.rank, self.transform)
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
