"""Tiny synthetic photo and BIQ2021-like data sets for the distill data and trainer tests (offline, fast)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from distill.images import ImageCache
from distill.sources import DataContext
from redaes_lite.preprocess import PreprocessSpec

FACTORS = ["exposure", "contrast", "saturation", "sharpness", "noise", "composition"]


def _photo(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """A smooth colour gradient with a few shapes: enough structure for blur, noise and crops to act on."""
    y, x = np.mgrid[0:h, 0:w] / max(w, h)
    base = rng.uniform(0.2, 0.8, 3)
    slope = rng.uniform(-0.3, 0.3, (2, 3))
    arr = np.clip(base + x[..., None] * slope[0] + y[..., None] * slope[1], 0, 1)
    im = Image.fromarray((arr * 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(im)
    for _ in range(3):
        x0, y0 = rng.integers(0, w // 2), rng.integers(0, h // 2)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.ellipse([x0, y0, x0 + rng.integers(8, w // 2), y0 + rng.integers(8, h // 2)], fill=colour)
    return im


def make_context(root: Path, *, size: int = 32, n_photos: int = 12, n_biq: int = 16, seed: int = 0) -> DataContext:
    """Write photos and scored images under ``root``; a third of each is the validation split."""
    rng = np.random.default_rng(seed)
    photos, biq = root / "photos", root / "biq2021"
    (biq / "images").mkdir(parents=True)
    photos.mkdir()
    rows = []
    for i in range(n_photos):
        name = f"photo_{i:02d}.jpg"
        _photo(rng, 72, 48).save(photos / name, quality=95)
        tags = "well_made" if i % 4 else "underexposed"
        rows.append(
            {
                "file": name,
                "source": "synthetic",
                "licence": "CC0 1.0",
                "tags": tags,
                "pair_id": None,
                "permissive": True,
            }
        )
    items = []
    for i in range(n_biq):
        name = f"ss0{1 + i % 2} ({i}).jpg"
        _photo(rng, 48, 48).save(biq / "images" / name, quality=90)
        items.append((name, round(float(rng.uniform(0.1, 0.9)), 4), f"ss0{1 + i % 2}"))
    (biq / "labels.csv").write_text("image,mos,subset\n" + "".join(f"{n},{m},{s}\n" for n, m, s in items))
    (photos / "manifest.csv").write_text("file\n" + "".join(r["file"] + "\n" for r in rows))
    n_pv, n_bv = n_photos // 3, n_biq // 4
    spec = PreprocessSpec(size=(size, size))
    return DataContext(
        photos_root=photos,
        photos={"train": rows[n_pv:], "val": rows[:n_pv]},
        biq_root=biq,
        biq={"train": items[n_bv:], "val": items[:n_bv]},
        factors=list(FACTORS),
        cache=ImageCache(long_side=round(1.5 * size), spec=spec, capacity=64),
        val_names=frozenset([r["file"] for r in rows[:n_pv]] + [n for n, _, _ in items[:n_bv]]),
    )


def add_para(ctx: DataContext, root: Path, *, n: int = 12) -> DataContext:
    """``ctx`` plus a PARA-like data set under ``root`` (scores 1..5 in three sessions; ``session0`` is
    the validation split), as ``DataContext.from_config`` loads one."""
    import dataclasses

    rng = np.random.default_rng(3)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        name = f"iaa_{i}.jpg"
        _photo(rng, 24, 24).save(root / "images" / name, quality=90)
        rows.append((name, round(float(rng.uniform(1, 5)), 3), f"session{i % 3}"))
    (root / "labels.csv").write_text(
        "image,aesthetic,quality,session\n" + "".join(f"{a},{s},{s},{g}\n" for a, s, g in rows)
    )
    split = {"train": [r for r in rows if r[2] != "session0"], "val": [r for r in rows if r[2] == "session0"]}
    return dataclasses.replace(
        ctx, human={"para": split}, human_roots={"para": root}, val_names=ctx.val_names | {r[0] for r in split["val"]}
    )
