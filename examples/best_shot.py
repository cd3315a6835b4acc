#!/usr/bin/env python3
"""Pick the best frame of a burst: rank the photos, print the table, optionally copy the winner.

    python examples/best_shot.py ~/Pictures/burst/                 # a folder (not recursive)
    python examples/best_shot.py IMG_01.jpg IMG_02.jpg IMG_03.jpg  # or files
    python examples/best_shot.py burst/ --copy-to picks/ --model permissive

Exit status: 0 a winner was chosen and every photo was scored; 1 a winner was chosen but some photos
could not be read (they are listed last); 2 usage error (no photos, unusable model, --copy-to target
exists); 3 no photo could be scored.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import redaes_lite
from redaes_lite import Failure, Ranked, RedaesError

# Suffixes Pillow reads (plus HEIC with the heif extra); anything else in a folder is ignored.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".heic", ".heif", ".avif"})


def burst_files(args: list[str]) -> list[Path]:
    """Files as given, and the images directly inside each folder (sorted, so the order is stable)."""
    files: list[Path] = []
    for arg in map(Path, args):
        if arg.is_dir():
            files += sorted(p for p in arg.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files.append(arg)  # a missing file becomes a Failure row, not a crash
    return files


def print_table(ranked: list[Ranked | Failure]) -> None:
    print(f"{'rank':>4}  {'score':>5}  {'utility':>8}  path")
    for place, r in enumerate(ranked, start=1):
        if isinstance(r, Failure):
            print(f"{'-':>4}  {'-':>5}  {'-':>8}  {r.input}  (error: {r.error})")
        else:
            print(f"{place:>4}  {r.score.score:5.2f}  {r.score.utility:8.3f}  {r.input}")


def copy_winner(winner: Path, folder: Path) -> Path:
    """Copy ``winner`` into ``folder`` (created if needed), keeping its name and timestamps; never overwrite."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / winner.name
    if target.exists():
        raise FileExistsError(f"{target}: already exists, not overwritten")
    shutil.copy2(winner, target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Pick the best frame of a burst of photos.")
    parser.add_argument("photos", nargs="+", help="image files and/or folders holding a burst")
    parser.add_argument("--model", default="default", help="'default', 'permissive' or a model file (default: default)")
    parser.add_argument("--copy-to", type=Path, metavar="DIR", help="copy the winning photo into DIR")
    args = parser.parse_args(argv)

    files = burst_files(args.photos)
    if not files:
        print("error: no photos found in " + ", ".join(args.photos), file=sys.stderr)
        return 2
    try:
        scorer = redaes_lite.load(args.model)
    except RedaesError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # rank() is best first by utility, failures last; "record" keeps one bad frame from stopping the burst.
    ranked = scorer.rank(files, on_error="record")
    print_table(ranked)
    best = ranked[0]
    if isinstance(best, Failure):
        print("error: no photo could be scored", file=sys.stderr)
        return 3
    print(f"best: {best.input}")
    if args.copy_to is not None:
        try:
            print(f"copied to: {copy_winner(best.input, args.copy_to)}")
        except OSError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    return 1 if isinstance(ranked[-1], Failure) else 0


if __name__ == "__main__":
    sys.exit(main())
