"""Our embedded models against the NIMA peer (idealo's MobileNet v1 on AVA, real weights), same protocol.

    python benchmarks/nima_peer.py [--labels CSV --images DIR [--ids LIST]] [--pairs JSONL [--pairs-root DIR]]
                                   [--model default --model permissive] [--no-nima] [--json OUT]

The project's rule: a shipped model that loses to the NIMA peer on data it did not train on is not shipped.
``peers.py`` times peer *architectures* with random weights; this script scores with NIMA's released
weights (``distill/teachers/nima.py``: torch, idealo's preprocessing) and with each of our models on:

- a labelled folder (CSV ``image,<label>``; default: BIQ2021's validation split of the shared train set,
  ``distill/splits/biq2021_val.txt``): SRCC, PLCC (after the 4-parameter logistic) and raw PLCC, KRCC
  (``redaes_lite.eval.metrics``). Ours are scored by utility, NIMA by its mean score ``sum(i * p_i)``;
- a pair-label JSONL (optional): pair accuracy (``delta > 0``: b is better; a tie in prediction counts
  half; failed records and ``delta == 0`` skipped), overall and per factor: the ``factors`` entry with the
  largest ``|delta|`` where present, else the ``recipe`` ops joined by ``+``.

An image that cannot be read is recorded under ``failed`` and left out of that model's figures. Prints a
table, writes JSON (default ``/tmp/redaes-bench/nima-peer.json``).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from _output import write_json  # noqa: E402

from distill.splits import DATA_ROOT, SPLIT_DIR  # noqa: E402
from redaes_lite.errors import RedaesError  # noqa: E402
from redaes_lite.eval.datasets import LabelledImage  # noqa: E402
from redaes_lite.eval.runner import score_report  # noqa: E402
from redaes_lite.pairs import PairLabel, read_pairs  # noqa: E402
from redaes_lite.results import Failure  # noqa: E402

#: paths -> one utility (float) or error text (str) per path, in order
ScoreFn = Callable[[Sequence[Path]], list[float | str]]


# ---------------------------------------------------------------------------------------------- scorers


def ours(name: str, *, threads: int) -> tuple[str, ScoreFn]:
    """An embedded model (or ONNX path) scored by utility."""
    from redaes_lite import load

    scorer = load(name, threads=threads)

    def score(paths: Sequence[Path]) -> list[float | str]:
        results = scorer.iter_scores([str(p) for p in paths], on_error="record")
        return [r.error if isinstance(r, Failure) else r.utility for r in results]

    return f"redaes-lite {name} {scorer.info.version}", score


def nima(path: Path | None, *, threads: int, batch_size: int = 32) -> tuple[str, ScoreFn]:
    """NIMA-MobileNet scored by its mean score; unreadable images recorded one by one."""
    import torch

    from distill.teachers.nima import load_nima, mean_score, nima_preprocess

    torch.set_num_threads(threads)
    model = load_nima(path)

    def score(paths: Sequence[Path]) -> list[float | str]:
        out: list[float | str] = []
        for i in range(0, len(paths), batch_size):
            pixels, slots = [], []
            for p in paths[i : i + batch_size]:
                try:
                    pixels.append(nima_preprocess(p))
                    slots.append(len(out))
                    out.append(math.nan)
                except (RedaesError, OSError) as e:
                    out.append(f"{type(e).__name__}: {e}")
            if pixels:
                with torch.inference_mode():
                    scores = mean_score(model(torch.cat(pixels))).tolist()
                for slot, s in zip(slots, scores):
                    out[slot] = float(s)
        return out

    return "NIMA-MobileNet (idealo, AVA)", score


# ---------------------------------------------------------------------------------------------- data


def read_labelled(
    labels: Path, images: Path, *, ids: Path | None, image_col: str, label_col: str
) -> list[LabelledImage]:
    """Rows of ``labels`` (CSV), restricted to the names in ``ids`` (one a line) when given."""
    with open(labels, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if rows and (image_col not in rows[0] or label_col not in rows[0]):
        raise SystemExit(f"{labels}: needs columns {image_col!r} and {label_col!r} (columns: {', '.join(rows[0])})")
    keep = None if ids is None else {ln.strip() for ln in ids.read_text(encoding="utf-8").splitlines() if ln.strip()}
    records = [
        LabelledImage(images / r[image_col], float(r[label_col])) for r in rows if keep is None or r[image_col] in keep
    ]
    if keep is not None and len(records) != len(keep):
        raise SystemExit(f"{ids}: {len(keep) - len(records)} names have no row in {labels}")
    return records


def resolve(root: Path, ref: str) -> Path:
    """A pair-label image reference: a path under ``root``, or ``sha256:<hex>`` stored as ``root/<hex>.<ext>``."""
    if not ref.startswith("sha256:"):
        return root / ref
    hexdigest = ref.split(":", 1)[1]
    found = [p for ext in (".png", ".jpg", ".jpeg", ".webp") if (p := root / f"{hexdigest}{ext}").exists()]
    return found[0] if found else root / f"{hexdigest}.png"  # a missing file fails when scored, and is recorded


def factor_of(record: PairLabel) -> str | None:
    """The factor a pair tests: the largest ``|delta|`` in ``factors``, else the recipe's ops, else None."""
    if record.factors:
        return max(record.factors, key=lambda k: abs(record.factors[k]))
    if record.recipe:
        return "+".join(sorted({str(step.get("op")) for step in record.recipe}))
    return None


def pair_figures(
    pairs: Sequence[tuple[Path, Path, float, str | None]], utility: dict[Path, float | str]
) -> dict[str, Any]:
    """Accuracy overall and per factor; pairs with a failed image are counted in ``n_failed`` and left out."""
    right: dict[str, list[float]] = defaultdict(list)
    failed = 0
    for a, b, delta, factor in pairs:
        ua, ub = utility[a], utility[b]
        if isinstance(ua, str) or isinstance(ub, str):
            failed += 1
            continue
        d = (ub - ua) * math.copysign(1.0, delta)
        hit = 1.0 if d > 0 else 0.5 if d == 0 else 0.0
        right["all"].append(hit)
        if factor is not None:
            right[factor].append(hit)
    order = sorted(right, key=lambda k: (k != "all", k))  # "all" first
    acc = {k: {"n": len(right[k]), "accuracy": sum(right[k]) / len(right[k])} for k in order}
    overall = acc["all"]["accuracy"] if "all" in acc else None
    return {"n": len(right["all"]), "n_failed": failed, "accuracy": overall, "by_factor": acc}


# ---------------------------------------------------------------------------------------------- main


def _fmt(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    records = read_labelled(args.labels, args.images, ids=args.ids, image_col=args.image_col, label_col=args.label_col)
    pairs: list[tuple[Path, Path, float, str | None]] = []
    skipped = 0
    if args.pairs:
        root = args.pairs_root or args.pairs.parent
        for r in read_pairs(args.pairs):
            if r.ok and r.delta:
                pairs.append((resolve(root, r.a), resolve(root, r.b), r.delta, factor_of(r)))
            else:
                skipped += 1
    peers = [lambda name=name: ours(name, threads=args.threads) for name in args.model or ["default", "permissive"]]
    if not args.no_nima:
        peers.append(lambda: nima(args.nima, threads=args.threads))
    results = []
    for make in peers:
        label, score = make()
        t0 = time.perf_counter()
        row: dict[str, Any] = {"model": label}
        row["scores"] = score_report(records, score([r.path for r in records]), by_group=False)
        row["scores"].update(data=str(args.labels), ids=str(args.ids) if args.ids else None)
        if pairs:
            images = list(dict.fromkeys(p for a, b, _, _ in pairs for p in (a, b)))
            row["pairs"] = {
                **pair_figures(pairs, dict(zip(images, score(images)))),
                "n_skipped": skipped,
                "data": str(args.pairs),
            }
        row["seconds"] = round(time.perf_counter() - t0, 1)
        results.append(row)
        print(f"scored {label} in {row['seconds']} s", file=sys.stderr, flush=True)
    return results


def print_table(results: list[dict[str, Any]]) -> None:
    factors = sorted({k for r in results for k in r.get("pairs", {}).get("by_factor", {}) if k != "all"})
    head = ["model", "n", "SRCC", "PLCC", "PLCC raw", "KRCC"]
    if any("pairs" in r for r in results):
        head += ["pairs n", "pair acc.", *factors]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in results:
        s = r["scores"]
        cells = [r["model"], str(s["n"]), _fmt(s["srcc"]), _fmt(s["plcc"]), _fmt(s["plcc_raw"]), _fmt(s["krcc"])]
        if "pairs" in r:
            by = r["pairs"]["by_factor"]
            cells += [str(r["pairs"]["n"]), _fmt(r["pairs"]["accuracy"])]
            cells += [f"{_fmt(by[f]['accuracy'])} ({by[f]['n']})" if f in by else "" for f in factors]
        print("| " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--labels", type=Path, default=DATA_ROOT / "biq2021" / "labels.csv", help="CSV image,label")
    p.add_argument("--images", type=Path, default=DATA_ROOT / "biq2021" / "images", help="folder of --labels' images")
    p.add_argument("--ids", type=Path, default=SPLIT_DIR / "biq2021_val.txt", help="names to keep, one a line")
    p.add_argument("--all-rows", action="store_true", help="ignore --ids: every row of --labels")
    p.add_argument("--image-col", default="image")
    p.add_argument("--label-col", default="mos")
    p.add_argument("--pairs", type=Path, help="pair-label JSONL (optional)")
    p.add_argument("--pairs-root", type=Path, help="image root of --pairs (default: its folder)")
    p.add_argument("--model", action="append", help="our model, embedded name or path (default: default, permissive)")
    p.add_argument("--nima", type=Path, help="NIMA weights (default: the shared copy)")
    p.add_argument("--no-nima", action="store_true", help="score our models only")
    p.add_argument("--threads", type=int, default=1, help="threads for every model (default 1)")
    p.add_argument("--json", type=Path, default=Path("/tmp/redaes-bench/nima-peer.json"))
    args = p.parse_args(argv)
    if args.all_rows:
        args.ids = None
    results = run(args)
    print_table(results)
    print()
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
