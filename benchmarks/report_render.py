"""`redaes-lite report` on N real photos: time to build the file, its size per photo, and how fast headless
Chromium loads it from disk (the targets: 500 photos under 2 s, under 40 KB a photo).

    python benchmarks/report_render.py /work/shared/data/photos --n 500 --threads 1 [--out /tmp/report-500.html]

Photos are copied into a temporary folder, N of them: a folder with fewer gets mirrored copies (different
pixels, so no two thumbnails share a data: URI that the browser would decode once). Chromium is run three
times on a copy of the page with a timing script (its CSP removed); the load event and first contentful
paint are read back from the DOM, and the browser's wall time is given beside that of an empty page.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from browser import chromium, instrumented, visit  # noqa: E402

from redaes_lite.cli import run  # noqa: E402

TIMING = """
addEventListener('load', function () {
  var paint = performance.getEntriesByName('first-contentful-paint')[0];
  document.documentElement.setAttribute('data-load-ms', performance.now().toFixed(0));
  document.documentElement.setAttribute('data-fcp-ms', paint ? paint.startTime.toFixed(0) : '-1');
});
"""


def gather(source: Path, folder: Path, n: int) -> int:
    from PIL import Image, ImageOps

    photos = sorted(p for p in source.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    for i in range(n):
        src = photos[i % len(photos)]
        if i < len(photos):
            shutil.copy(src, folder / f"{i:04d}_{src.name}")
        else:
            with Image.open(src) as im:
                ImageOps.mirror(ImageOps.exif_transpose(im).convert("RGB")).save(
                    folder / f"{i:04d}_m_{src.name}", quality=90
                )
    return n


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("photos", type=Path)
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--threads", default="1")
    p.add_argument("--out", type=Path, help="keep the report here")
    args = p.parse_args()
    if chromium() is None:
        print("no chromium on PATH", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="redaes-report-bench-") as tmp:
        folder, page = Path(tmp) / "photos", Path(tmp) / "report.html"
        folder.mkdir()
        gather(args.photos, folder, args.n)
        start = time.perf_counter()
        code = run(["report", str(folder), "-o", str(page), "--threads", args.threads, "--quiet"])
        build_s = time.perf_counter() - start
        size = page.stat().st_size
        timed = Path(tmp) / "timed.html"
        timed.write_text(instrumented(page.read_text(encoding="utf-8"), TIMING), encoding="utf-8")
        empty = Path(tmp) / "empty.html"
        empty.write_text("<!DOCTYPE html><title>x</title><p>x</p>", encoding="utf-8")
        loads, paints, walls, blank = [], [], [], []
        for _ in range(3):
            seen = visit(timed, "--dump-dom")
            loads.append(int(seen.stdout.split('data-load-ms="')[1].split('"')[0]))
            paints.append(int(seen.stdout.split('data-fcp-ms="')[1].split('"')[0]))
            walls.append(visit(page, f"--screenshot={tmp}/shot.png").seconds)
            blank.append(visit(empty, f"--screenshot={tmp}/blank.png").seconds)
        console = visit(page, "--dump-dom").console
        if args.out is not None:
            shutil.copy(page, args.out)
    print(
        json.dumps(
            {
                "photos": args.n,
                "exit_code": code,
                "build_s": round(build_s, 2),
                "html_bytes": size,
                "kb_per_photo": round(size / args.n / 1000, 1),
                "load_event_ms": loads,
                "first_contentful_paint_ms": paints,
                "chromium_screenshot_wall_s": [round(w, 2) for w in walls],
                "empty_page_wall_s": [round(w, 2) for w in blank],
                "median_load_ms": statistics.median(loads),
                "console": console,
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
