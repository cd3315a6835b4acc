"""``redaes-lite eval``: how well a model agrees with human judgements.

- ``scores LABELS.csv --root DIR``: SRCC, PLCC (4-parameter logistic fit, and raw), KRCC and pairwise
  accuracy against human scores, optionally within groups (``--group-col``) and averaged;
- ``pairs PAIRS.csv --root DIR``: accuracy on human preference pairs and the mean probability the
  model gives the preferred image (CSV with ``preferred``/``other`` columns, or pair-label JSONL);
- ``dataset NAME --root DIR``: ``scores`` on a standard data set in its native layout.

Images that fail to load are listed and excluded; the exit status is then 1 (the report is still
written), 2 for usage errors, as for the other commands.

Labelled images that trained the model (its redaes.training_data against the committed train/validation
split shipped with redaes-lite) make its figures optimistic: eval then warns, and reports the same
figures on the images that did not train it (held_out; on the shared BIQ2021 subset, its committed
validation split). ONNX Runtime is imported only when a
command runs, through the runtime CLI's own model loading, output and progress helpers.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .._cli_common import (
    HelpFormatter,
    add_model_options,
    add_output_options,
    add_run_options,
    command,
    dispatch,
    fail,
    progress_bar,
    say,
    scorer_for,
    sink,
)
from ..errors import RedaesError
from .datasets import LabelledImage, list_datasets, read_dataset, read_labels
from .runner import evaluate_pairs, evaluate_scores, read_preference_pairs, unique_images
from .training import named_without_list

__all__ = ["run"]


def _evaluate(
    args: argparse.Namespace,
    total: int,
    work: Callable[[Any, int, Callable[[], None]], dict[str, Any]],
    *,
    dataset_names: Sequence[str] = (),
) -> dict[str, Any]:
    """Load the model, run ``work(scorer, batch_size, tick)`` under a progress bar; add the model's identity
    and, for a data set (``dataset_names``: its name, title, aliases) that the model's training data names
    but no committed list covers image by image, ``named_in_training_data``."""
    scorer = scorer_for(args)
    bar = progress_bar(total, args, "scoring")
    try:
        report = work(scorer, args.batch_size, bar.advance)
    finally:
        bar.close()
    info = scorer.info
    named = named_without_list(info, dataset_names)
    if named:
        report["named_in_training_data"] = named
    report["model"] = {
        "id": scorer.model_id,
        "path": str(scorer.path),
        "version": info.version,
        "quantization": info.quantization,
    }
    return report


def _training_warning(report: dict[str, Any]) -> str | None:
    """One line when labelled images trained the model: how many, from what, and the held-out figure."""
    overlap, held = report.get("training_overlap"), report.get("held_out")
    if not overlap:
        return None
    key = "srcc" if "srcc" in held else "accuracy"
    figure = f", {key} {_number(held[key])}" if held["n"] else ""
    return (
        f"warning: {overlap['images']} of the {overlap['of']} labelled images trained this model "
        f"({'; '.join(overlap['training_data'])}): the figures on all of them are optimistic; "
        f"held out: {held['n']} {'pairs' if key == 'accuracy' else 'images'}{figure} (see held_out)"
    )


def _finish(args: argparse.Namespace, report: dict[str, Any]) -> int:
    """Write the report; exit status 1 when images failed (they are listed in it)."""
    text = json.dumps(report, indent=2, ensure_ascii=False) if args.fmt == "json" else _table(report)
    with sink(args.output) as out:
        out.write(text + "\n")
    warning = _training_warning(report)
    if warning:
        say(warning, args.quiet)
    for name in report.get("named_in_training_data", []):
        say(
            f"warning: the model's training data names this data set ({name}); unless this split is "
            "disjoint from what it used, the figures are optimistic",
            args.quiet,
        )
    failed = len(report["failed"])
    if failed:
        say(f"{failed} images failed and were excluded", args.quiet)
        return 1
    return 0


def _number(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _table(report: dict[str, Any]) -> str:
    """Aligned ``key value`` lines: metrics, groups, context, then the failed images."""
    lines = []
    for key, value in report.items():
        if key in ("failed", "groups") or isinstance(value, dict):
            continue
        lines.append(f"{key:<18} {'; '.join(map(str, value)) if isinstance(value, list) else _number(value)}")
    groups = report.get("groups")
    if groups:
        lines.append(f"{'groups':<18} {groups['count']} ({groups['used']} with 2+ images and distinct labels)")
        lines.extend(f"  mean {k:<13} {_number(v)}" for k, v in groups["mean"].items())
    overlap = report.get("training_overlap")
    if overlap:
        lines.append(
            f"{'trained on':<18} {overlap['images']} of {overlap['of']} labelled images "
            f"({'; '.join(overlap['training_data'])})"
        )
    for key in ("held_out", "labels", "dataset", "model"):
        if key in report:
            lines.append(f"{key:<18} " + "  ".join(f"{k}={_number(v)}" for k, v in report[key].items()))
    # Loader messages already start with the path; do not print it twice.
    lines.extend(
        f"failed: {f['error'] if f['error'].startswith(f['path']) else f['path'] + ': ' + f['error']}"
        for f in report["failed"]
    )
    return "\n".join(lines)


def _scores_report(
    args: argparse.Namespace, records: list[LabelledImage], *, by_group: bool, dataset_names: Sequence[str] = ()
) -> dict[str, Any]:
    if not records:
        raise fail("no labelled images to evaluate")
    return _evaluate(
        args,
        len(records),
        lambda scorer, batch, tick: evaluate_scores(scorer, records, by_group=by_group, batch_size=batch, tick=tick),
        dataset_names=dataset_names,
    )


def _scores(args: argparse.Namespace) -> int:
    """Agreement with human scores: n, srcc, plcc (logistic), plcc_raw, krcc, pair_accuracy."""
    try:
        records = read_labels(
            args.labels,
            root=args.root,
            image_col=args.image_col,
            label_col=args.label_col,
            group_col=args.group_col,
            lower_better=args.lower_better,
        )
    except RedaesError as e:
        raise fail(str(e)) from None
    report = _scores_report(args, records, by_group=args.group_col is not None)
    report["labels"] = {"file": str(args.labels), "label_col": args.label_col, "lower_better": args.lower_better}
    return _finish(args, report)


def _pairs(args: argparse.Namespace) -> int:
    """Agreement with human preferences: n, accuracy, mean_probability (and ece)."""
    try:
        prefs, skipped = read_preference_pairs(
            args.pairs, root=args.root, preferred_col=args.preferred_col, other_col=args.other_col
        )
    except RedaesError as e:
        raise fail(str(e)) from None
    if not prefs:
        raise fail(f"{args.pairs}: no usable pairs")
    report = _evaluate(
        args,
        unique_images(prefs),
        lambda scorer, batch, tick: evaluate_pairs(scorer, prefs, skipped=skipped, batch_size=batch, tick=tick),
    )
    return _finish(args, report)


def _dataset(args: argparse.Namespace) -> int:
    """`scores` on a standard IAA/IQA data set read from its native layout."""
    try:
        data = read_dataset(args.name, args.root, split=args.split, id_list=args.list)
    except RedaesError as e:
        raise fail(str(e)) from None
    names = (data.spec.name, data.spec.title, *data.spec.aliases)
    report = _scores_report(args, list(data.records), by_group=args.by_group, dataset_names=names)
    report["dataset"] = {"name": data.spec.name, "split": data.split, "labels": str(data.label_file)}
    return _finish(args, report)


def _shared(p: argparse.ArgumentParser) -> None:
    add_model_options(p, max_bytes=False)
    add_output_options(p, ("table", "json"), what="report")
    add_run_options(p)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="redaes-lite eval",
        description=__doc__.replace("``", ""),
        formatter_class=HelpFormatter,
        allow_abbrev=False,
    )
    sub = root.add_subparsers(metavar="COMMAND", required=True)

    p = command(sub, "scores", _scores)
    p.add_argument(
        "labels", type=Path, metavar="LABELS", help="CSV/TSV/XLSX with an image column and a human score column."
    )
    p.add_argument("--root", type=Path, required=True, help="Folder the image paths are relative to.")
    p.add_argument("--image-col", default="image", help="Column of image paths, relative to --root.")
    p.add_argument("--label-col", default="mos", help="Column of human scores.")
    p.add_argument("--group-col", help="Also evaluate within each group (e.g. scene) and average.")
    p.add_argument("--lower-better", action="store_true", help="Lower labels are better (DMOS).")
    _shared(p)

    p = command(sub, "pairs", _pairs)
    p.add_argument("pairs", type=Path, metavar="PAIRS", help="CSV of preferred/other paths, or pair-label JSONL.")
    p.add_argument("--root", type=Path, required=True, help="Folder the image paths are relative to.")
    p.add_argument("--preferred-col", default="preferred", help="Column of the preferred image.")
    p.add_argument("--other-col", default="other", help="CSV column of the other image.")
    _shared(p)

    p = command(sub, "dataset", _dataset)
    p.add_argument("name", metavar="NAME", help=f"Data set: {', '.join(list_datasets())}.")
    p.add_argument("--root", type=Path, required=True, help="The data set's folder, as unpacked.")
    p.add_argument("--split", help="Split [default: the set's test split].")
    p.add_argument(
        "--list", type=Path, metavar="FILE", help="File of image names/ids (one a line) to keep, e.g. a test list."
    )
    p.add_argument("--by-group", action="store_true", help="Also evaluate within the set's groups.")
    _shared(p)
    return root


def run(argv: Sequence[str]) -> int:
    """``redaes-lite eval ARGV``; returns the exit status (usage errors raise ``SystemExit(2)``)."""
    return dispatch(parser(), argv)
