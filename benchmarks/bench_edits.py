"""Speed of each photo edit and of random recipes at a working size (default 512 px long side).

    python benchmarks/bench_edits.py [--size 512] [--photos 8] [--repeat 5] [--json out.json]

Prints the median milliseconds per edit (strengths -1, -0.5, 0.5, 1 over a few shared photos) and per
random recipe, on one core. Target: under 15 ms per edit, since edits run on the fly in training.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from distill import edits
from distill.registry import EDITS
from distill.splits import DATA_ROOT, read_manifest


def _photos(n: int, size: int) -> list[Image.Image]:
    rows = [r for r in read_manifest() if "well_made" in r["tags"]][:: max(1, 300 // n)][:n]
    out = []
    for r in rows:
        img = Image.open(DATA_ROOT / "photos" / r["file"]).convert("RGB")
        img.thumbnail((size, size))
        out.append(img)
    return out


def _ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--photos", type=int, default=8)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    photos = _photos(args.photos, args.size)
    result: dict[str, float] = {}
    for name in EDITS.names():
        fn = EDITS.get(name).fn
        samples = [
            _ms(lambda fn=fn, img=img, s=s: fn(img, s, np.random.default_rng(0)), args.repeat)
            for img in photos
            for s in (-1, -0.5, 0.5, 1)
        ]
        result[name] = statistics.median(samples)
    rng = random.Random(0)
    recipes = [edits.random_recipe(rng) for _ in range(50)]
    result["random_recipe"] = statistics.median(
        _ms(lambda i=i, r=r: edits.apply(photos[i % len(photos)], r, seed=i), 1) for i, r in enumerate(recipes)
    )
    for name, ms in sorted(result.items(), key=lambda kv: -kv[1]):
        print(f"{name:16s} {ms:6.1f} ms")
    if args.json:
        args.json.write_text(json.dumps({"size": args.size, "ms": result}, indent=1))


if __name__ == "__main__":
    main()
