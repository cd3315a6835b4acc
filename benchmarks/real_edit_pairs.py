"""Agreement with real edits that people made or chose: the before/after pairs among the shared photos.

    python benchmarks/real_edit_pairs.py [--model default --model permissive] [--json out.json]

The photo manifest groups some photos by ``pair_id``: MIT-Adobe FiveK inputs with an expert's retouch
(the ``expert_retouched`` photo preferred) and SICE exposure brackets (``well_exposed`` preferred over the
under- and over-exposed shots). Neither the edit oracle nor our edit code made these pairs, so they check
what the edit-pair validation cannot: edits done by other tools and chosen by people. Reported for all
pairs and for those whose scene is in the validation split: the other photos were training sources (each
image seen alone, under synthetic edits; their relation was never a label). Also the explanation: the factor
with the largest change from the other image to the preferred one, counted by source (an exposure bracket
should read ``exposure``). Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from _output import write_json  # noqa: E402

from distill.splits import DATA_ROOT, load_split, read_manifest, tags_of  # noqa: E402
from redaes_lite import load  # noqa: E402
from redaes_lite.eval.runner import PreferencePair, pair_report  # noqa: E402
from redaes_lite.results import Failure  # noqa: E402

#: Tags that mark the preferred member of a manifest pair.
PREFERRED_TAGS = ("expert_retouched", "well_exposed")


def real_pairs(photos: Path = DATA_ROOT / "photos") -> dict[str, list[tuple[str, PreferencePair]]]:
    """``{"all": [...], "val": [...]}``: (source data set, pair) for every preferred x other member of a group."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in read_manifest(photos / "manifest.csv"):
        if row["pair_id"]:
            groups[row["pair_id"]].append(row)
    val = set(load_split("photos")["val"])
    out: dict[str, list[tuple[str, PreferencePair]]] = {"all": [], "val": []}
    for rows in groups.values():
        good = [r for r in rows if any(t in tags_of(r) for t in PREFERRED_TAGS)]
        bad = [r for r in rows if r not in good]
        for g in good:
            for b in bad:
                pair = (g["source"], PreferencePair(photos / g["file"], photos / b["file"]))
                out["all"].append(pair)
                if g["file"] in val:
                    out["val"].append(pair)
    return out


def top_factors(pairs: list[tuple[str, PreferencePair]], scores: dict[Path, Any]) -> dict[str, dict[str, int]]:
    """Per source: how often each factor has the largest ``|f(preferred) - f(other)|`` (failed images skipped)."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for source, pair in pairs:
        a, b = scores[pair.other], scores[pair.preferred]
        if isinstance(a, Failure) or isinstance(b, Failure):
            continue
        counts[source][max(b.factors, key=lambda k: abs(b.factors[k] - a.factors[k]))] += 1
    return {src: dict(c.most_common()) for src, c in sorted(counts.items())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", help="model file or embedded name (default: default and permissive)")
    p.add_argument("--json", type=Path, default=Path("/tmp/redaes-bench/real-edit-pairs.json"))
    args = p.parse_args(argv)
    subsets = real_pairs()
    if not subsets["all"]:
        print(f"no before/after pairs in {DATA_ROOT / 'photos' / 'manifest.csv'}", file=sys.stderr)
        return 2
    results = []
    print("| model | pairs | n | accuracy | mean probability | ECE | accuracy by source | largest factor change |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.model or ["default", "permissive"]:
        scorer = load(name)
        # Each image once ("val" is a subset of "all"): utilities for the pair figures, factors for the explanation.
        images = list(dict.fromkeys(p for _, pr in subsets["all"] for p in (pr.preferred, pr.other)))
        scores = dict(zip(images, scorer.iter_scores([str(p) for p in images], on_error="record")))
        utility = {p: s.error if isinstance(s, Failure) else s.utility for p, s in scores.items()}
        for subset, pairs in subsets.items():
            report = pair_report([pr for _, pr in pairs], utility, info=scorer.info)
            by_source = {
                src: pair_report([pr for s, pr in pairs if s == src], utility, info=scorer.info)["accuracy"]
                for src in sorted({s for s, _ in pairs})
            }
            factors = top_factors(pairs, scores)
            row = {
                "model": name,
                "version": scorer.info.version,
                "subset": subset,
                **report,
                "by_source": by_source,
                "largest_factor_change": factors,
            }
            results.append(row)
            sources = ", ".join(f"{s} {a:.2f}" for s, a in by_source.items())
            named = "; ".join(f"{src}: " + ", ".join(f"{k} {n}" for k, n in c.items()) for src, c in factors.items())
            print(
                f"| {name} {scorer.info.version} | {subset} | {report['n']} | {report['accuracy']:.3f} "
                f"| {report['mean_probability']:.3f} | {report['ece']:.3f} | {sources} | {named} |"
            )
    print()
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
