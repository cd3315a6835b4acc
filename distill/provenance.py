"""What a checkpoint records about where it came from: teachers, training data, licence, data hashes.

Export copies these into ``redaes.teacher``, ``redaes.training_data`` and ``redaes.license``
(``docs/model-format.md``); the model card quotes them. Everything here is derived from the config and the data
actually used, so a research-only photo in the training split cannot go unmentioned.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from distill.human_sets import HUMAN_SETS
from distill.sources import DataContext, GroupSource, LabelledPairs, TeacherGroups
from distill.teachers.nima import NIMA_FILE, NIMA_SHA256
from distill.teachers.nima import TEACHER_ID as NIMA_TEACHER_ID
from distill.teachers.nima import TRAINING_DATA_NAME as NIMA_DATA_NAME
from distill.teachers.nima import training_data as nima_training_data
from redaes_lite.metadata import sha256_file

__all__ = ["data_hashes", "describe_data"]

BIQ2021_LICENSE = HUMAN_SETS["biq2021"].license


def _split_id(teacher_id: str) -> tuple[str, str]:
    name, _, version = teacher_id.partition("@")
    return name, version or "1"


def _source_weight(cfg: Any, name: str) -> float:
    """The largest weight a source has in the base config or any stage."""
    weights = [cfg.sources[name].weight] if name in cfg.sources else []
    weights += [
        float(s.sources[name].get("weight", weights[0] if weights else 1.0)) for s in cfg.stages if name in s.sources
    ]
    return float(max(weights, default=1.0))


def _photo_licence(ctx: DataContext) -> str:
    """A one-line licence summary of the training photos (``permissive: ...`` only when all are)."""
    rows = ctx.photos["train"]
    free = sum(1 for r in rows if r["permissive"])
    if free == len(rows):
        return f"permissive: all {len(rows)} photos CC0, CC BY, Unsplash, Pexels, Pixabay or Kodak licensed"
    return f"mixed: {free} of {len(rows)} photos permissive, the others research-only or unknown (see manifest)"


def _data_of(src: GroupSource, ctx: DataContext, pairs: int) -> list[dict[str, Any]]:
    """Training-data records of one source (a teacher checkpoint's own data comes along)."""
    inner = src.inner if isinstance(src, TeacherGroups) else src
    out = []
    if "photos" in src.datasets:
        out.append(
            {"name": f"redaes photos, train split ({len(ctx.photos['train'])} photos)", "license": _photo_licence(ctx)}
        )
    if "biq2021" in src.datasets:
        out.append({"name": f"BIQ2021 train split ({len(ctx.biq['train'])} images)", "license": BIQ2021_LICENSE})
    for name in (d for d in src.datasets if d in ctx.human):
        spec = HUMAN_SETS[name]
        out.append(
            {
                "name": f"{spec.description}, train split ({len(ctx.human[name]['train'])} images)",
                "license": spec.license,
            }
        )
    if isinstance(inner, LabelledPairs):
        out.append(
            {
                "name": f"pair labels {inner.path.name} ({len(inner.records)} pairs)",
                "license": f"unknown: that of the images under {inner.root}",
            }
        )
    if isinstance(inner, LabelledPairs) and NIMA_TEACHER_ID in inner.teachers:
        out.append(nima_training_data(NIMA_SHA256, NIMA_FILE))  # labels written by --teacher nima
    if isinstance(src, TeacherGroups) and src.nima:
        # NIMA's weights are what a NIMA-taught model learns from: Apache-2.0 for idealo's release.
        out.append(nima_training_data(src.teacher_sha256, src.checkpoint))
    elif isinstance(src, TeacherGroups):
        from distill.student import load_checkpoint

        for rec in load_checkpoint(src.checkpoint).get("training_data", []):
            out.append({**rec, "name": f"via teacher {src.checkpoint.name}: {rec['name']}", "pairs": int(rec["pairs"])})
    for rec in out:
        rec.setdefault("pairs", pairs)
    return out


def _merge(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per data set: pairs drawn by several sources add up; a teacher's own records count once."""
    out: dict[str, dict[str, Any]] = {}
    for rec in records:
        if rec["name"] in out and not rec["name"].startswith("via teacher"):
            out[rec["name"]]["pairs"] += rec["pairs"]
        else:
            out.setdefault(rec["name"], dict(rec))
    return list(out.values())


def describe_data(
    cfg: Any, ctx: DataContext, sources: Mapping[str, GroupSource], pairs_seen: Mapping[str, int]
) -> dict[str, Any]:
    """``teachers``, ``training_data``, ``license`` and ``data_hashes`` checkpoint fields."""
    teachers: dict[tuple[str, str], float] = {}
    data: list[dict[str, Any]] = []
    for name, src in sources.items():
        weight = _source_weight(cfg, name)
        for teacher_id in src.all_teacher_ids():
            key = _split_id(teacher_id)
            teachers[key] = max(teachers.get(key, 0.0), weight)
        data += _data_of(src, ctx, int(pairs_seen.get(name, 0)))
    data = _merge(data)
    research = [d["name"] for d in data if not d["license"].startswith("permissive")]
    nima = any(d["name"] == NIMA_DATA_NAME for d in data)
    taught = "; taught by NIMA-MobileNet, idealo's Apache-2.0 weights trained on AVA" if nima else ""
    license_ = cfg.license or (
        "research and non-commercial use only: trained on data that is not all permissively licensed ("
        + "; ".join(research)
        + ")"
        if research
        else f"Apache-2.0 (trained on permissively licensed photos only{taught})"
    )
    inners = [src.inner if isinstance(src, TeacherGroups) else src for src in sources.values()]
    labels = [str(src.path) for src in inners if isinstance(src, LabelledPairs)]
    return {
        "teachers": [{"name": n, "version": v, "weight": w} for (n, v), w in teachers.items()],
        "training_data": data,
        "license": license_,
        "data_hashes": data_hashes(ctx, labels),
    }


def data_hashes(ctx: DataContext, label_files: Sequence[str | os.PathLike] = ()) -> dict[str, str]:
    """sha256 of what defines the training data: split lists, manifest, MOS labels and JSONL labels."""

    def digest(names: Sequence[str]) -> str:
        return hashlib.sha256("\n".join(names).encode("utf-8")).hexdigest()

    out = {f"photos.{k}": digest([r["file"] for r in v]) for k, v in ctx.photos.items()}
    out |= {f"biq2021.{k}": digest([n for n, _, _ in v]) for k, v in ctx.biq.items()}
    for name, splits in ctx.human.items():
        out |= {f"{name}.{k}": digest([n for n, _, _ in v]) for k, v in splits.items()}
    files = [
        ("photos/manifest.csv", ctx.photos_root / "manifest.csv"),
        ("biq2021/labels.csv", ctx.biq_root / "labels.csv"),
    ]
    files += [(f"{name}/labels.csv", root / "labels.csv") for name, root in ctx.human_roots.items()]
    for name, path in files:
        if Path(path).exists():
            out[name] = sha256_file(path)
    for path in label_files:
        out[f"labels:{Path(path).name}"] = sha256_file(path)
    return out
