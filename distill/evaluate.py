"""``python -m distill evaluate``: validate checkpoints on the full-resolution data, side by side.

A run trained elsewhere (a GPU machine on a packed copy, :mod:`distill.pack`) validated on that copy; this
rebuilds each checkpoint's validation sets from the data in place (``--data``), with the checkpoint's own
validation settings, and reports what the trainer reports at its end (edit-pair accuracy overall and per
factor, explanations, BIQ2021 SRCC/PLCC, temperature, lapse and ECE). ``--refit DIR`` also writes each
checkpoint with its temperature, lapse and display calibration refitted on this data (what ``export`` embeds).

    python -m distill evaluate runs/a/final.pt runs/b/final.pt --json runs/compare.json
    python -m distill evaluate runs/gpu/final.pt --refit runs/refit --version 0.2.0
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from redaes_lite._atomic import atomic_open

__all__ = ["evaluate_checkpoint", "main", "run_config"]

#: Columns of the printed table (full figures, per-factor accuracies included, go to ``--json``).
_COLUMNS = (
    "mos_srcc",
    "mos_plcc",
    "para_srcc",
    "human_srcc",
    "edit_acc",
    "edit_srcc",
    "explain_acc",
    "factor_sign_acc",
    "temperature",
    "lapse",
    "ece_edit",
    "ece_mos",
    "unusable_acc",
    "unusable_score_max",
)


def run_config(ckpt: dict[str, Any], data: Path | None = None) -> Any:
    """The checkpoint's training config, reading its data from ``data`` (default: the shared data): the
    run's own paths may name a packed copy on another machine."""
    from distill.config import config_from_dict
    from distill.splits import DATA_ROOT

    cfg, root = config_from_dict(ckpt["config"]), data or DATA_ROOT
    cfg.data.photos, cfg.data.biq2021, cfg.data.para = (str(root / d) for d in ("photos", "biq2021", "para"))
    return cfg


def evaluate_checkpoint(
    path: str | Path,
    *,
    data: Path | None = None,
    refit: Path | None = None,
    version: str | None = None,
    extra_metrics: dict[str, Any] | None = None,
    val_config: Any = None,
) -> dict[str, Any]:
    """Validation figures of checkpoint ``path`` on ``data`` (default: the shared data); see module doc.

    ``refit``: write the checkpoint there with refitted temperature and calibration (and model ``version``),
    its metrics joined by ``extra_metrics``. ``val_config``: validate with this ``val`` section instead of the
    one the checkpoint was trained with.
    """
    from distill.sources import DataContext
    from distill.student import DERIVED_KEYS, EvalTransform, load_checkpoint, load_student, save_checkpoint
    from distill.validation import ValSets, finalize

    ckpt = load_checkpoint(path)
    cfg = run_config(ckpt, data)
    if val_config is not None:  # a build refits with its own config's validation section
        cfg.val = val_config
    model = load_student(ckpt)
    val = ValSets.build(DataContext.from_config(cfg, model.spec), cfg)
    fields = finalize(model, EvalTransform(model.spec), val, cfg, device=torch.device("cpu"))
    if refit is not None:
        fields["metrics"]["stages"] = ckpt.get("metrics", {}).get("stages", [])
        fields["metrics"]["refit_on"] = f"{cfg.data.photos}, {cfg.data.biq2021}"
        fields["metrics"].update(extra_metrics or {})
        kept = {k: v for k, v in ckpt.items() if k not in DERIVED_KEYS}
        if version is not None:
            kept["version"] = version
        save_checkpoint(refit, model, **{**kept, **fields})
    return {"checkpoint": str(path), "step": ckpt.get("step"), "student": ckpt["student"], **fields["metrics"]}


def _table(rows: list[dict[str, Any]], factors: Sequence[str]) -> str:
    cols = [*_COLUMNS, *(f"edit_acc.{f}" for f in factors)]
    head = ["checkpoint", *(c.removeprefix("edit_acc.") for c in cols)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [f"{r[c]:.3f}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in cols]
        lines.append(f"| {r['checkpoint']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m distill evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+", type=Path, help="training checkpoints (final.pt)")
    p.add_argument("--data", type=Path, default=None, help="data root with photos/ and biq2021/ (default: shared)")
    p.add_argument("--refit", type=Path, default=None, help="folder for the refitted checkpoints (<stem>.pt)")
    p.add_argument("--version", default=None, help="with --refit: the model version to stamp (redaes.version)")
    p.add_argument("--json", type=Path, default=None, help="write every figure here")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for path in args.checkpoints:
        name = path.stem if path.stem not in ("final", "last", "best") else path.parent.name
        out = args.refit / f"{name}.pt" if args.refit else None
        rows.append({**evaluate_checkpoint(path, data=args.data, refit=out, version=args.version), "checkpoint": name})
        print(f"{name}: done", file=sys.stderr)
    factors = sorted({k.removeprefix("edit_acc.") for r in rows for k in r if k.startswith("edit_acc.")})
    print(_table(rows, factors))
    if args.json:
        with atomic_open(args.json) as f:
            json.dump(rows, f, indent=2, default=float)
    return 0
