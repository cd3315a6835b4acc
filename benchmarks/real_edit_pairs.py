"""Agreement with real edits that people made or chose: the before/after pairs among the shared photos.

    python benchmarks/real_edit_pairs.py [--model default --model permissive] [--json out.json]

The photo manifest groups some photos by ``pair_id``: MIT-Adobe FiveK inputs with an expert's retouch
(the ``expert_retouched`` photo preferred) and SICE exposure brackets (``well_exposed`` preferred over the
under- and over-exposed shots). Neither the edit oracle nor our edit code made these pairs, so they check
what the edit-pair validation cannot: edits done by other tools and chosen by people. Reported for all
pairs and for those whose scene is in the validation split: the other photos were training sources (each
image seen alone, under synthetic edits; their relation was never a label). Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from distill.splits import DATA_ROOT, load_split, read_manifest, tags_of
from redaes_lite import load
from redaes_lite._atomic import atomic_open
from redaes_lite.eval.runner import PreferencePair, evaluate_pairs

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
    print("| model | pairs | n | accuracy | mean probability | ECE | accuracy by source |\n|---|---|---|---|---|---|---|")
    for name in args.model or ["default", "permissive"]:
        scorer = load(name)
        for subset, pairs in subsets.items():
            report = evaluate_pairs(scorer, [pr for _, pr in pairs])
            by_source = {
                src: evaluate_pairs(scorer, [pr for s, pr in pairs if s == src])["accuracy"]
                for src in sorted({s for s, _ in pairs})
            }
            row = {"model": name, "version": scorer.info.version, "subset": subset, **report, "by_source": by_source}
            results.append(row)
            sources = ", ".join(f"{s} {a:.2f}" for s, a in by_source.items())
            print(f"| {name} {scorer.info.version} | {subset} | {report['n']} | {report['accuracy']:.3f} "
                  f"| {report['mean_probability']:.3f} | {report['ece']:.3f} | {sources} |")  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(args.json) as f:
        json.dump(results, f, indent=2)
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
