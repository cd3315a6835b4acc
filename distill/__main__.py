"""``python -m distill train|label|edits``: the training tool chain's command line (thin).

python -m distill train distill/configs/tiny.yaml --set steps=200 --out runs/tiny
python -m distill train distill/configs/tiny.yaml --out runs/tiny --resume
torchrun --nproc_per_node 4 -m distill train distill/configs/teacher.yaml
python -m distill label --teacher PATH_OR_ID --pairs pairs.jsonl --out labels.jsonl
python -m distill edits --out runs/edit-pairs --groups 100 --split train
python -m distill pack --out runs/pack
python -m distill evaluate runs/a/final.pt runs/b/final.pt --json runs/compare.json
python -m distill slim runs/teacher/final.pt --out distill/artifacts/teacher-lite2.pt
python -m distill heads runs/default/final.pt --out runs/default/heads.pt
python -m distill build distill/configs/default-v1.yaml --out runs/build-default
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence

# Idle OpenMP threads sleep instead of spinning: on a shared CPU, a spinning torch thread waiting for a
# descheduled sibling made training steps 4-6x slower here (2 cores, other jobs running). It must be set
# before torch is imported; a value already in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _train(args: argparse.Namespace) -> int:
    from distill.config import ConfigError, load_config
    from distill.trainer import train

    overrides = list(args.set or [])
    if args.out:
        overrides.append(f"out={args.out}")
    for i, path in enumerate(args.labels or []):
        # Each --labels file becomes a source of pairs: labels, labels1, ... (weights via --set).
        name = "labels" if i == 0 else f"labels{i}"
        overrides += [f"sources.{name}.kind=labels", f"sources.{name}.labels={path}", f"sources.{name}.group_size=2"]
        if args.labels_root:
            overrides.append(f"sources.{name}.root={args.labels_root}")
    cfg = load_config(args.config, overrides=overrides)
    if args.labels_only:
        if not args.labels or cfg.stages:
            raise ConfigError("--labels-only needs --labels and a config without stages")
        cfg.sources = {k: v for k, v in cfg.sources.items() if v.kind == "labels"}
    final = train(cfg, resume=args.resume, until=args.until)
    if final is not None:
        print(final)
    return 0


def _edits(args: argparse.Namespace) -> int:
    from distill.edit_pairs import write_edit_pairs

    n = write_edit_pairs(
        args.out, groups=args.groups, group_size=args.group_size, split=args.split, seed=args.seed, size=args.size
    )
    print(json.dumps({"pairs": n, "out": str(args.out)}))
    return 0


def _slim(args: argparse.Namespace) -> int:
    from distill.student import slim_checkpoint

    print(slim_checkpoint(args.checkpoint, args.out))
    return 0


#: Subcommands whose modules own their arguments: name -> (module with ``main(argv)``, one-line help).
_OWN_CLIS = {
    "label": ("distill.label", "label pairs with a teacher"),
    "evaluate": ("distill.evaluate", "validate checkpoints on the full data"),
    "pack": ("distill.pack", "shrunk copy of the data and weights for a GPU machine"),
    "heads": ("distill.heads", "refit the factor head on frozen features (explanations)"),
    "build": ("distill.build", "train, refit and export one shipped model from its config (resumable)"),
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m distill", description="redaes-lite training tool chain")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser(
        "train",
        help="train a student from a YAML config",
        description=(
            "Train a student. Output folder: config.yaml, metrics.jsonl, last.pt (resume), best.pt, final.pt "
            "(export). Ctrl-C stops cleanly and writes last.pt. "
            "Multi-GPU: torchrun --nproc_per_node N -m distill train ..."
        ),
    )
    t.add_argument("config", help="YAML config (see distill/configs/)")
    t.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set steps=500 --set sources.edit.weight=0.5",
    )
    t.add_argument("--out", help="output folder (overrides the config's out)")
    t.add_argument(
        "--labels",
        action="append",
        metavar="JSONL",
        help="also train on this pair-label file (any teacher; repeatable)",
    )
    t.add_argument("--labels-root", metavar="DIR", help="image root of --labels files (default: each file's folder)")
    t.add_argument("--labels-only", action="store_true", help="train on the --labels files alone")
    t.add_argument("--resume", action="store_true", help="continue exactly from OUT/last.pt")
    t.add_argument(
        "--until",
        type=int,
        metavar="STEP",
        help="stop at this step and write last.pt (for sessions shorter than the run)",
    )
    t.set_defaults(func=_train)
    for name, (_, what) in _OWN_CLIS.items():  # listed here, parsed by their own modules
        sub.add_parser(name, help=f"{what} (see: python -m distill {name} --help)", add_help=False)
    e = sub.add_parser(
        "edits",
        help="write edit pairs (images + oracle pair-label JSONL) for other teachers",
        description="Write source photos and random edits as PNGs plus edit-oracle labels "
        "(pairs.jsonl, images referenced as sha256:<hex> files in OUT).",
    )
    e.add_argument("--out", required=True, help="output folder")
    e.add_argument("--groups", type=int, default=100, help="source photos drawn (with replacement)")
    e.add_argument("--group-size", type=int, default=4, help="source + this many minus one edits")
    e.add_argument("--split", choices=("train", "val"), default="train", help="photos split to draw from")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--size", type=int, default=512, help="long side of the written images")
    e.set_defaults(func=_edits)
    s = sub.add_parser(
        "slim",
        help="fp16 copy of a checkpoint without resume state (teacher artifacts under distill/artifacts/)",
        description="Write CHECKPOINT with float16 weights and without optimizer/RNG state to --out.",
    )
    s.add_argument("checkpoint", help="a training checkpoint (final.pt)")
    s.add_argument("--out", required=True, help="output .pt")
    s.set_defaults(func=_slim)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] and argv[0] in _OWN_CLIS:
        module = importlib.import_module(_OWN_CLIS[argv[0]][0])
        return int(module.main(argv[1:]) or 0)
    args = _parser().parse_args(argv)
    from redaes_lite.errors import RedaesError

    try:
        return args.func(args)
    except (RedaesError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
