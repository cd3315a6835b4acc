"""Does the edited factor point to the better photo? Single edits both ways, every factor, any model.

    python benchmarks/factor_signs.py [--model default --model permissive --model FILE.onnx]
                                      [--photos DIR] [--split distill/splits/photos_val.txt] [--n 60]
                                      [--every-photo] [--long-side 640] [--json OUT]

Each photo (default: the validation split of the shared photos, none of which trained a model, those the
manifest tags ``well_made``; ``--every-photo`` takes underexposed, overexposed and unretouched ones too, on which
some edits are improvements: brightening an underexposed frame by 2 EV, say) is compared
with strong single edits of itself in both directions where a factor has two (darker and brighter,
desaturated and oversaturated, cooler and warmer, tilted either way, dark and light corners, ...), made with
Pillow and NumPy in ``tests/signkit.py``, not with the training edits. Per model and edit: ``factor`` is the
share of photos where the edited factor's difference ``f(edit) - f(photo)`` is negative (favours the
photo), ``utility`` the share where the photo is preferred. The target is >= 0.90 on every row for both.
Prints a table, writes JSON (default ``/tmp/redaes-bench/factor-signs.json``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from _output import write_json  # noqa: E402
from PIL import Image  # noqa: E402
from signkit import EDITS, factor_signs, well_made  # noqa: E402

import redaes_lite  # noqa: E402
from distill.splits import DATA_ROOT, SPLIT_DIR  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", help="embedded name or .onnx file (repeatable; default: both embedded)")
    p.add_argument("--photos", type=Path, default=DATA_ROOT / "photos")
    p.add_argument("--split", type=Path, default=SPLIT_DIR / "photos_val.txt", help="file names, one a line")
    p.add_argument("--n", type=int, default=60, help="at most this many photos (default: %(default)s)")
    p.add_argument("--long-side", type=int, default=640, help="photos shrunk to this first (default: %(default)s)")
    p.add_argument(
        "--every-photo", action="store_true", help="not only the manifest's well_made photos (see the docstring)"
    )
    p.add_argument("--json", type=Path, default=Path("/tmp/redaes-bench/factor-signs.json"))
    args = p.parse_args(argv)
    names = [line.strip() for line in args.split.read_text().splitlines() if line.strip()]
    if not args.every_photo:
        names = well_made(names, args.photos / "manifest.csv")
    names = names[: args.n]
    photos = []
    for name in names:
        im = Image.open(args.photos / name).convert("RGB")
        im.thumbnail((args.long_side, args.long_side))
        photos.append(im)
    models = args.model or ["default", "permissive"]
    results = {m: factor_signs(redaes_lite.load(m), photos) for m in models}
    head = f"| factor | direction | {' | '.join(f'{m} factor / utility' for m in models)} |"
    print(head + "\n|" + "---|" * (2 + len(models)))
    for factor, direction, _ in EDITS:
        rows = [results[m][(factor, direction)] for m in models]
        cells = [f"{r['factor_right']:.2f} / {r['utility_right']:.2f}" for r in rows]
        print(f"| {factor} | {direction} | {' | '.join(cells)} |")
    for m in models:
        worst = min(r["factor_right"] for r in results[m].values())
        mean = sum(r["factor_right"] for r in results[m].values()) / len(results[m])
        kind = "photos" if args.every_photo else "well-made photos"
        print(f"{m}: factor signs right, mean {mean:.3f}, worst edit {worst:.2f} ({len(photos)} {kind})")
    out = {m: [{"factor": f, "direction": d, **r} for (f, d), r in res.items()] for m, res in results.items()}
    write_json(args.json, {"photos": len(photos), "every_photo": args.every_photo, "names": names, "models": out})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
