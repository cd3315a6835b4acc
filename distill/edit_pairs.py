"""``python -m distill edits``: edit pairs written to disk, for teachers that need files (an MLLM).

Each group is a photo of one split plus ``group_size - 1`` random recipes; every image is written once
as ``OUT/<sha256>.png`` (the pair-label convention for generated images, ``sha256:<hex>``) and every
(source, edit) pair gets an edit-oracle record in ``OUT/pairs.jsonl``. Relabel them with another
teacher (``python -m distill label --pairs OUT/pairs.jsonl --root OUT ...``) and train on the result
with ``python -m distill train CONFIG --labels labels.jsonl --labels-root OUT``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from distill.teachers.base import PairRequest
from redaes_lite.pairs import content_hash, write_pairs
from redaes_lite.preprocess import load_image

__all__ = ["write_edit_pairs"]


def _store(im: Image.Image, out: Path) -> str:
    """Write ``im`` as PNG named by its content hash; returns the ``sha256:<hex>`` reference."""
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    ref = content_hash(buf.getvalue())
    path = out / f"{ref.split(':', 1)[1]}.png"
    if not path.exists():
        path.write_bytes(buf.getvalue())
    return ref


def write_edit_pairs(
    out: str | os.PathLike,
    *,
    groups: int,
    group_size: int = 4,
    split: str = "train",
    seed: int = 0,
    size: int = 512,
    photos: str | os.PathLike | None = None,
) -> int:
    """Write ``groups`` edit groups under ``out``; returns the number of pairs in ``pairs.jsonl``."""
    from distill import edits
    from distill.splits import DATA_ROOT, load_split, read_manifest, tags_of
    from distill.teachers.edit_oracle import EditOracle

    if groups < 1 or group_size < 2:
        raise ValueError(f"need groups >= 1 and group_size >= 2, got {groups} and {group_size}")
    root = Path(photos) if photos is not None else DATA_ROOT / "photos"
    rows = {r["file"]: r for r in read_manifest(root / "manifest.csv")}
    pool = [rows[f] for f in load_split("photos")[split]]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    requests = []
    for _ in range(groups):
        row = pool[int(rng.integers(len(pool)))]
        src = load_image(root / row["file"])
        src.thumbnail((size, size), Image.Resampling.LANCZOS)
        a = _store(src, out)
        tags = tags_of(row)
        for _ in range(group_size - 1):
            recipe = edits.random_recipe(rng, tags=tags)
            b = _store(edits.apply(src, recipe, seed=int(rng.integers(2**31))), out)
            requests.append(PairRequest(a=a, b=b, group=row["file"], recipe=tuple(recipe), tags=tags))
    return write_pairs(out / "pairs.jsonl", EditOracle().label(requests))
