"""Does the 0-10 display score spread? Share of scores at exactly 10.00 or 0.00, and percentiles, per model.

    python benchmarks/score_spread.py [--photos DIR] [--model default --model permissive]
                                      [--long-side 1024] [--quality 85] [--upscale] [--json OUT]

Every image in the folder (default: the 439 shared photos) is scored twice with the public API
(``redaes_lite.load(model, threads=1).iter_scores``): as it is ("full"), and as a web-size copy ("web": EXIF
orientation applied, shrunk to ``--long-side`` px on the long side with Lanczos, JPEG ``--quality``, 4:2:0,
no metadata), made in a temporary folder and deleted afterwards. Images already within the long side are
only re-encoded unless ``--upscale``. A score counts at an end when it prints as ``10.00`` or ``0.00`` (two
decimals, as the CLI prints it). Where the folder's file names are in ``distill/splits/photos_val.txt``
a ``val`` row repeats the figures on those photos alone (no model trained on them; the default model's
calibration pool holds them). The target: <= 2% at either end for both kinds of photo.
Prints a table, writes JSON (default ``/tmp/redaes-bench/score-spread.json``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _output import write_json  # noqa: E402

import redaes_lite  # noqa: E402
from distill.splits import DATA_ROOT, SPLIT_DIR  # noqa: E402
from redaes_lite.results import Failure  # noqa: E402

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".heic", ".heif")
PERCENTILES = (1, 10, 50, 90, 99)


def web_copies(paths: list[Path], out: Path, *, long_side: int, quality: int, upscale: bool) -> tuple[list[Path], int]:
    """JPEG copies of ``paths`` in ``out``, shrunk to ``long_side`` (grown too, with ``upscale``); the count resized."""
    copies, resized = [], 0
    for i, path in enumerate(paths):
        copy = out / f"{i:05d}_{path.stem}.jpg"
        copies.append(copy)
        try:
            with Image.open(path) as im:
                im = ImageOps.exif_transpose(im).convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError):
            shutil.copyfile(path, copy)  # unreadable: the copy fails to score as the original does
            continue
        scale = long_side / max(im.size)
        if scale < 1 or (upscale and scale > 1):
            im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.LANCZOS)
            resized += 1
        im.save(copy, "JPEG", quality=quality, subsampling="4:2:0")
    return copies, resized


def spread(scores: list[float]) -> dict:
    """Shares at the printed ends (10.00, 0.00, both), share >= 9, percentiles, lowest and highest display score."""
    printed = [f"{s:.2f}" for s in scores]
    n = len(scores)
    return {
        "n": n,
        "at_10": sum(p == "10.00" for p in printed) / n,
        "at_0": sum(p == "0.00" for p in printed) / n,
        "at_ends": sum(p in ("10.00", "0.00") for p in printed) / n,
        "ge_9": sum(s >= 9 for s in scores) / n,
        "percentiles": {str(q): float(v) for q, v in zip(PERCENTILES, np.percentile(scores, PERCENTILES))},
        "min": float(min(scores)),
        "max": float(max(scores)),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", type=Path, default=DATA_ROOT / "photos", help="folder of images (not recursive)")
    p.add_argument("--model", action="append", help="embedded name or .onnx file (repeatable; default: both embedded)")
    p.add_argument("--long-side", type=int, default=1024, help="web copies' long side in px (default: %(default)s)")
    p.add_argument("--quality", type=int, default=85, help="web copies' JPEG quality (default: %(default)s)")
    p.add_argument("--upscale", action="store_true", help="grow smaller images to the long side too")
    p.add_argument("--json", type=Path, default=Path("/tmp/redaes-bench/score-spread.json"))
    args = p.parse_args(argv)
    if not args.photos.is_dir():
        p.error(f"--photos {args.photos}: not a folder")
    paths = sorted(f for f in args.photos.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
    if not paths:
        print(f"no images in {args.photos}", file=sys.stderr)
        return 2
    val_names = set((SPLIT_DIR / "photos_val.txt").read_text().split())
    is_val = [f.name in val_names for f in paths]
    models = args.model or ["default", "permissive"]
    results = []
    print("| model | photos | subset | n | at 10.00 | at 0.00 | >= 9 | p1 | p10 | p50 | p90 | p99 |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="redaes-spread-") as tmp:
        t0 = time.perf_counter()
        web, resized = web_copies(
            paths, Path(tmp), long_side=args.long_side, quality=args.quality, upscale=args.upscale
        )
        web_s = time.perf_counter() - t0
        for name in models:
            scorer = redaes_lite.load(name, threads=1)
            for kind, files in (("full", paths), ("web", web)):
                out = list(scorer.iter_scores([str(f) for f in files], on_error="record"))
                failed = [str(paths[i]) for i, r in enumerate(out) if isinstance(r, Failure)]
                scores = [None if isinstance(r, Failure) else r.score for r in out]
                subsets = {"all": [s for s in scores if s is not None]}
                if any(is_val):
                    subsets["val"] = [s for s, v in zip(scores, is_val) if v and s is not None]
                for subset, values in subsets.items():
                    if not values:
                        continue
                    row = {
                        "model": name,
                        "version": scorer.info.version,
                        "photos": kind,
                        "subset": subset,
                        **spread(values),
                        "failed": failed if subset == "all" else [],
                    }
                    results.append(row)
                    pc = " | ".join(f"{row['percentiles'][str(q)]:.2f}" for q in PERCENTILES)
                    print(
                        f"| {name} {scorer.info.version} | {kind} | {subset} | {row['n']} | {row['at_10']:.1%} "
                        f"| {row['at_0']:.1%} | {row['ge_9']:.1%} | {pc} |"
                    )
                for f in failed:
                    print(f"failed: {f}", file=sys.stderr)
    print(
        f"\nweb copies: long side {args.long_side} px, JPEG q{args.quality}, {resized} of {len(paths)} resized"
        f"{' (upscale on)' if args.upscale else ''}, made in {web_s:.1f} s"
    )
    report = {
        "photos": str(args.photos),
        "long_side": args.long_side,
        "quality": args.quality,
        "upscale": args.upscale,
        "resized": resized,
        "results": results,
    }
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
