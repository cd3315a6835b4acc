"""Contact sheets of edits, for eyeballing that they look like real photo edits.

``python -m distill.edits.sheet PHOTO OUT.png [--ops exposure,noise] [--strengths -1,-0.5,0.5,1]``
draws one row per edit: the source, then the edit at each strength, each tile captioned with the edit
oracle's delta for a well-made source (or for ``--tags``).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence

from PIL import Image, ImageDraw

from distill.registry import EDITS

from . import apply

__all__ = ["contact_sheet"]


def contact_sheet(
    img: Image.Image,
    rows: Sequence[Sequence[Sequence[Mapping]]],
    *,
    captions: Sequence[Sequence[str]],
    seed: int = 0,
    tile: int = 200,
) -> Image.Image:
    """Grid of ``apply(img, recipe)`` tiles, one row per list of recipes, each tile fitted into
    ``tile`` x ``tile`` and captioned below."""
    cap_h = 14
    ncol = max(len(r) for r in rows)
    sheet = Image.new("RGB", (ncol * (tile + 4), len(rows) * (tile + cap_h + 4)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (recipes, caps) in enumerate(zip(rows, captions)):
        for j, (recipe, cap) in enumerate(zip(recipes, caps)):
            out = apply(img, recipe, seed=seed)
            out.thumbnail((tile, tile))
            x, y = j * (tile + 4), i * (tile + cap_h + 4)
            sheet.paste(out, (x + (tile - out.width) // 2, y + (tile - out.height) // 2))
            draw.text((x + 2, y + tile + 1), cap, fill="black")
    return sheet


def main(argv: Sequence[str] | None = None) -> None:
    from distill.teachers.edit_oracle import EditOracle

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("photo")
    p.add_argument("out")
    p.add_argument("--ops", default=",".join(EDITS.names()), help="comma-separated edit names")
    p.add_argument("--strengths", default="-1,-0.5,-0.2,0.2,0.5,1")
    p.add_argument("--tags", default="", help="manifest tags of the photo, e.g. underexposed")
    p.add_argument("--size", type=int, default=512, help="working size (long side) before editing")
    args = p.parse_args(argv)
    img = Image.open(args.photo).convert("RGB")
    img.thumbnail((args.size, args.size))
    strengths = [float(s) for s in args.strengths.split(",")]
    tags = [t for t in args.tags.split(",") if t]
    oracle = EditOracle()
    rows, captions = [], []
    for op in args.ops.split(","):
        recipes = [[]] + [[{"op": op, "strength": s}] for s in strengths]
        rows.append(recipes)
        deltas = [oracle.judge(r, tags=tags)[0] for r in recipes[1:]]
        captions.append([f"source {op}"] + [f"{s:+.2f} d={d:+.2f}" for s, d in zip(strengths, deltas)])
    contact_sheet(img, rows, captions=captions).save(args.out)


if __name__ == "__main__":
    main()
