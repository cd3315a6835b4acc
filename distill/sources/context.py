"""What every training source draws from: the committed splits of the shared data read once per run, and the
image cache that serves their pixels (:class:`DataContext`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from distill.config import ConfigError
from distill.human_sets import human_set, read_scores
from distill.images import ImageCache
from distill.splits import load_split, read_manifest
from redaes_lite.preprocess import PreprocessSpec

__all__ = ["DataContext"]


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
        photos_root, biq_root = Path(cfg.data.photos), Path(cfg.data.biq2021)
        rows = {r["file"]: r for r in read_manifest(photos_root / "manifest.csv")}
        photo_split = load_split("photos")
        labels = read_scores(human_set("biq2021"), biq_root / "labels.csv")  # image -> (MOS, subset)
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
