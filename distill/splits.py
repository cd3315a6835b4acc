"""The one committed train/validation split, used by every stage (teacher, student, distillation,
calibration, temperature and export's parity gates).

- ``photos``: split by *source scene* (the manifest's ``pair_id`` where set, else the file), so the
  frames of one bracket or the input and expert retouch of one FiveK photo never straddle the split.
- ``biq2021``: split by image.
- ``para``: split by annotation *session* (about 70 images rated by the same people), so no rater group
  scores images on both sides.

Deterministic: inside each stratum, scenes are ordered by ``sha256("<split name>:<scene>")`` and the
first ``round(15%)`` go to validation. Strata keep small groups represented on both sides: for photos
(licence permissive or not) x (exposure fault or not), for BIQ2021 its subset, for PARA the tercile of the
session's mean aesthetic score. The lists live under
``distill/splits/<name>_{train,val}.txt`` (one file name a line, sorted); regenerate them with
``python -m distill.splits`` after the data changes, and commit them.

The manifest's ``commercial_use`` column (``yes``/``no``, set by whoever licenses the photos) marks the photos
the ``permissive`` model may train on (``MODEL_CARD.md``): the rule is data, never read from licence text.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

__all__ = [
    "DATA_ROOT",
    "SPLIT_DIR",
    "VAL_FRACTION",
    "commercial_use",
    "load_split",
    "make",
    "read_manifest",
    "scene_of",
    "split_keys",
    "tags_of",
]

#: Shared data (``../shared/data`` next to the repository); ``REDAES_DATA`` overrides it.
DATA_ROOT = Path(os.environ.get("REDAES_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SPLIT_DIR = Path(__file__).resolve().parent / "splits"
VAL_FRACTION = 0.15
SPLITS = ("photos", "biq2021", "para")
_FAULTS = {"underexposed", "overexposed"}
_COMMERCIAL_USE = {"yes": True, "no": False}


def commercial_use(value: str) -> bool:
    """A manifest's ``commercial_use`` cell: ``yes`` or ``no`` (case and spaces ignored); anything else,
    empty included, is an error, so a photo whose terms nobody checked never reaches the permissive model."""
    key = value.strip().lower()
    if key not in _COMMERCIAL_USE:
        raise ValueError(f"commercial_use must be yes or no, got {value!r}")
    return _COMMERCIAL_USE[key]


def read_manifest(path: str | os.PathLike | None = None) -> list[dict]:
    """Rows of ``photos/manifest.csv``: ``tags`` as in the file (``;``-separated; :func:`tags_of` splits
    them), ``pair_id`` as str or None, sizes as ints, and ``permissive`` from its ``commercial_use`` column
    (:func:`commercial_use`)."""
    path = Path(path) if path is not None else DATA_ROOT / "photos" / "manifest.csv"
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for lineno, r in enumerate(csv.DictReader(f), 2):
            try:
                rows.append(
                    {
                        "file": r["file"],
                        "source": r["source"],
                        "licence": r["licence"],
                        "tags": r["tags"],
                        "pair_id": r["pair_id"] or None,
                        "width": int(r["width"]),
                        "height": int(r["height"]),
                        "permissive": commercial_use(r["commercial_use"] or ""),
                    }
                )
            except (KeyError, ValueError) as e:
                raise ValueError(f"{path}:{lineno}: bad manifest row ({e})") from None
    return rows


def tags_of(row: dict) -> tuple[str, ...]:
    """A manifest row's tags, e.g. ``("well_made", "landscape")``."""
    tags = row.get("tags") or ""
    return tuple(t for t in tags.split(";") if t) if isinstance(tags, str) else tuple(tags)


def scene_of(row: dict) -> str:
    """A photo's source scene: its ``pair_id`` where the manifest sets one, else its file."""
    return row["pair_id"] or row["file"]


def _hash_key(name: str, key: str) -> str:
    return hashlib.sha256(f"{name}:{key}".encode()).hexdigest()


def split_keys(
    keys: Iterable[str], *, name: str, stratum: Callable[[str], object], val_fraction: float = VAL_FRACTION
) -> set[str]:
    """The validation subset of ``keys``: per stratum, the ``round(val_fraction * n)`` keys (at least
    one where the stratum has two or more) that come first in hash order."""
    groups: dict[object, list[str]] = {}
    for k in sorted(set(keys)):
        groups.setdefault(stratum(k), []).append(k)
    val: set[str] = set()
    for members in groups.values():
        n = round(val_fraction * len(members))
        n = max(n, 1) if len(members) >= 2 else n
        val.update(sorted(members, key=lambda k: _hash_key(name, k))[:n])
    return val


def _photo_split(rows: Sequence[dict], val_fraction: float) -> dict[str, list[str]]:
    by_scene: dict[str, list[dict]] = {}
    for r in rows:
        by_scene.setdefault(scene_of(r), []).append(r)

    def stratum(scene: str) -> tuple[bool, bool]:
        members = by_scene[scene]
        return all(r["permissive"] for r in members), any(_FAULTS & set(tags_of(r)) for r in members)

    val = split_keys(by_scene, name="photos", stratum=stratum, val_fraction=val_fraction)
    return {
        "train": sorted(r["file"] for s, m in by_scene.items() if s not in val for r in m),
        "val": sorted(r["file"] for s in val for r in by_scene[s]),
    }


def _biq_split(labels_csv: Path, val_fraction: float) -> dict[str, list[str]]:
    with open(labels_csv, newline="", encoding="utf-8") as f:
        subset = {r["image"]: r["subset"] for r in csv.DictReader(f)}
    val = split_keys(subset, name="biq2021", stratum=subset.__getitem__, val_fraction=val_fraction)
    return {"train": sorted(set(subset) - val), "val": sorted(val)}


def _para_split(labels_csv: Path, val_fraction: float) -> dict[str, list[str]]:
    with open(labels_csv, newline="", encoding="utf-8") as f:
        rows = [(r["image"], r["session"], float(r["aesthetic"])) for r in csv.DictReader(f)]
    by_session: dict[str, list[float]] = {}
    for _, session, score in rows:
        by_session.setdefault(session, []).append(score)
    means = sorted(sum(v) / len(v) for v in by_session.values())
    cuts = [means[len(means) // 3], means[2 * len(means) // 3]]

    def stratum(session: str) -> int:
        m = sum(by_session[session]) / len(by_session[session])
        return sum(m >= c for c in cuts)

    val = split_keys(by_session, name="para", stratum=stratum, val_fraction=val_fraction)
    return {
        "train": sorted(img for img, s, _ in rows if s not in val),
        "val": sorted(img for img, s, _ in rows if s in val),
    }


def make(
    *,
    data_root: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
    val_fraction: float = VAL_FRACTION,
) -> dict[str, dict[str, list[str]]]:
    """Compute the splits from the shared data and write ``<out_dir>/<name>_{train,val}.txt`` (PARA's only
    where its ``labels.csv`` is present)."""
    root = Path(data_root) if data_root is not None else DATA_ROOT
    out = Path(out_dir) if out_dir is not None else SPLIT_DIR
    splits = {
        "photos": _photo_split(read_manifest(root / "photos" / "manifest.csv"), val_fraction),
        "biq2021": _biq_split(root / "biq2021" / "labels.csv", val_fraction),
    }
    if (root / "para" / "labels.csv").is_file():
        splits["para"] = _para_split(root / "para" / "labels.csv", val_fraction)
    out.mkdir(parents=True, exist_ok=True)
    for name, parts in splits.items():
        for part, files in parts.items():
            (out / f"{name}_{part}.txt").write_text("".join(f + "\n" for f in files), encoding="utf-8")
    return splits


def load_split(name: str, *, split_dir: str | os.PathLike | None = None) -> dict[str, list[str]]:
    """``{"train": [...], "val": [...]}`` file names (relative to ``photos/`` or ``<data set>/images/``)."""
    if name not in SPLITS:
        raise KeyError(f"unknown split {name!r}; known: {', '.join(SPLITS)}")
    d = Path(split_dir) if split_dir is not None else SPLIT_DIR
    out = {}
    for part in ("train", "val"):
        path = d / f"{name}_{part}.txt"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: split list missing; run `python -m distill.splits`")
        out[part] = [line for line in path.read_text(encoding="utf-8").splitlines() if line]
    return out


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Regenerate the committed train/validation split lists.")
    p.add_argument("--data", default=None, help=f"shared data root (default {DATA_ROOT})")
    p.add_argument("--out", default=None, help=f"output folder (default {SPLIT_DIR})")
    args = p.parse_args(argv)
    for name, parts in make(data_root=args.data, out_dir=args.out).items():
        print(f"{name}: {len(parts['train'])} train, {len(parts['val'])} val")


if __name__ == "__main__":
    main()
