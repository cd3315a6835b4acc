"""Preprocessing speed of a camera-like 12 MP JPEG on one core: full decode vs draft decode vs our path.

The test image is the camera-like JPEG of ``benchmarks/README.md``: a photo upscaled to 4000x3000 with Gaussian
grain sigma 6, saved at quality 92 (~3 MB). It is written once to ``--cache`` (not the repository).

    python benchmarks/preprocess_speed.py [--photo PATH] [--size 224] [--repeat 15] [--json out.json]

Prints a table (median and min ms, ratio to the draft-decode floor) and writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from redaes_lite.preprocess import PreprocessSpec, load_image, to_array  # noqa: E402

DEFAULT_PHOTO_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"


def make_camera_jpeg(photo: Path, out: Path, *, seed: int = 0) -> Path:
    """``photo`` upscaled to 4000x3000 (bicubic), Gaussian grain sigma 6, JPEG quality 92."""
    im = Image.open(photo).convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC)
    rng = np.random.default_rng(seed)
    arr = np.asarray(im, np.float32) + rng.normal(0.0, 6.0, (3000, 4000, 3)).astype(np.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8)).save(out, quality=92)
    return out


def _time_interleaved(cases: dict[str, Callable[[], object]], repeat: int) -> dict[str, list[float]]:
    """Run the cases round-robin, so that load from other processes hits them all alike."""
    for fn in cases.values():
        fn()  # warm the page cache and Pillow's plugin registry
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1000)
    return times


def run(path: Path, spec: PreprocessSpec, repeat: int) -> dict[str, dict[str, float]]:
    h, w = spec.size

    def full_decode() -> None:
        with Image.open(path) as im:
            im.load()

    def draft_decode() -> None:  # the decode floor: open + draft + load
        with Image.open(path) as im:
            im.draft("RGB", (2 * w, 2 * h))
            im.load()

    def preprocess_full_decode() -> None:  # what preprocessing would cost without draft()
        with Image.open(path) as im:
            im.load()
            to_array(im.convert("RGB"), spec)

    def preprocess_ours() -> None:  # redaes_lite: load_image (draft, EXIF, RGB) + to_array
        to_array(load_image(path, spec), spec)

    cases = {
        "full decode": full_decode,
        "draft decode (floor)": draft_decode,
        "preprocess, full decode": preprocess_full_decode,
        "preprocess (redaes_lite)": preprocess_ours,
    }
    results = {
        name: {"median_ms": statistics.median(t), "min_ms": min(t)}
        for name, t in _time_interleaved(cases, repeat).items()
    }
    floor = results["draft decode (floor)"]["median_ms"]
    for r in results.values():
        r["ratio_to_floor"] = r["median_ms"] / floor
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photo", type=Path, help="source photo [default: first JPEG of ../shared/data/photos]")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/redaes-bench/camera_12mp.jpg"))
    parser.add_argument("--size", type=int, default=224, help="model input side (square)")
    parser.add_argument("--resize", default="letterbox", choices=("letterbox", "squash", "center_crop"))
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--json", type=Path, default=Path("/tmp/redaes-bench/preprocess_speed.json"))
    parser.add_argument("--all-cores", action="store_true", help="do not pin to one core")
    args = parser.parse_args()

    if not args.all_cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    if not args.cache.exists():
        photo = args.photo or sorted(DEFAULT_PHOTO_DIR.glob("*.jpg"))[0]
        make_camera_jpeg(photo, args.cache)
    spec = PreprocessSpec(size=(args.size, args.size), resize=args.resize)
    results = run(args.cache, spec, args.repeat)

    print(
        f"{args.cache} ({args.cache.stat().st_size / 1e6:.2f} MB, 4000x3000) -> {args.size}x{args.size} "
        f"{args.resize}, {'all cores' if args.all_cores else 'one core'}, median of {args.repeat}"
    )
    print(f"{'case':<28} {'median ms':>10} {'min ms':>8} {'x floor':>8}")
    for name, r in results.items():
        print(f"{name:<28} {r['median_ms']:>10.1f} {r['min_ms']:>8.1f} {r['ratio_to_floor']:>8.2f}")
    doc = {
        "image": str(args.cache),
        "bytes": args.cache.stat().st_size,
        "size": [args.size, args.size],
        "resize": args.resize,
        "one_core": not args.all_cores,
        "repeat": args.repeat,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "pillow": Image.__version__,
        },
        "results": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
