"""``redaes-lite eval``: how well a model agrees with human judgements.

- ``scores LABELS.csv --root DIR``: SRCC, PLCC (4-parameter logistic fit, and raw), KRCC and pairwise
  accuracy against human scores, optionally within groups (``--group-col``) and averaged;
- ``pairs PAIRS.csv --root DIR``: accuracy on human preference pairs and the mean probability the
  model gives the preferred image (CSV with ``preferred``/``other`` columns, or pair-label JSONL);
- ``dataset NAME --root DIR``: ``scores`` on a standard data set in its native layout.

Images that fail to load are listed and excluded; the exit status is then 1 (the report is still
written), 2 for usage errors, as for the other commands. ONNX Runtime is imported only when a
command runs, through the runtime CLI's own model loading, output and progress helpers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from ..cli import DEFAULT_BATCH_SIZE, DEFAULT_MAX_PIXELS
from ..errors import RedaesError
from .datasets import LabelledImage, list_datasets, read_dataset, read_labels
from .runner import evaluate_pairs, evaluate_scores, read_preference_pairs, unique_images

__all__ = ["app"]

app = typer.Typer(
    name="eval",
    help="Evaluate a model against human scores or preferences.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class ReportFormat(str, Enum):
    table = "table"
    json = "json"


RootOpt = Annotated[
    Path, typer.Option("--root", help="Folder the image paths are relative to.", file_okay=False, show_default=False)
]
ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", help="Model file (.onnx/.ort), folder with model.onnx, or 'default'/'permissive'."),
]
FormatOpt = Annotated[ReportFormat, typer.Option("--format", "-f", help="Report format.")]
OutputOpt = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write the report here (atomically).", dir_okay=False)
]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", min=1, help="ONNX Runtime threads (default: all cores).")]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Images per inference batch.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or messages on stderr.")]
ProgressOpt = Annotated[
    bool | None, typer.Option("--progress/--no-progress", help="Progress on stderr (default: if a terminal).")
]
MaxPixelsOpt = Annotated[
    int, typer.Option("--max-pixels", min=0, help="Refuse images with more pixels (from the header); 0: no limit.")
]


class _Run:
    """Options every eval command shares: model, threads, output and progress."""

    def __init__(self, *, model: str | None, threads: int | None, max_pixels: int, batch_size: int,
                 fmt: ReportFormat, output: Path | None, quiet: bool, progress: bool | None) -> None:  # fmt: skip
        self.model, self.threads, self.max_pixels, self.batch_size = model, threads, max_pixels, batch_size
        self.fmt, self.output, self.quiet, self.progress = fmt, output, quiet, progress

    def evaluate(self, total: int, work: Callable[[Any, int, Callable[[], None]], dict[str, Any]]) -> dict[str, Any]:
        """Load the model, run ``work(scorer, batch_size, tick)`` under a progress bar; add the model's identity."""
        from ..cli import _progress, _scorer

        scorer = _scorer(self.model, self.threads, self.max_pixels)
        bar = _progress(total, quiet=self.quiet, progress=self.progress, label="scoring")
        try:
            report = work(scorer, self.batch_size, bar.advance)
        finally:
            bar.close()
        info = scorer.info
        report["model"] = {"path": str(scorer.path), "version": info.version, "quantization": info.quantization}
        return report

    def finish(self, report: dict[str, Any]) -> None:
        """Write the report; exit 1 when images failed (they are listed in it)."""
        from ..cli import _sink

        text = json.dumps(report, indent=2, ensure_ascii=False) if self.fmt is ReportFormat.json else _table(report)
        with _sink(self.output) as out:
            out.write(text + "\n")
        failed = len(report["failed"])
        if failed:
            if not self.quiet:
                typer.echo(f"redaes-lite: {failed} images failed and were excluded", err=True)
            raise typer.Exit(1)


def _usage(message: str) -> typer.Exit:
    from ..cli import _fail

    return _fail(message)


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
        lines.append(f"{key:<18} {_number(value)}")
    groups = report.get("groups")
    if groups:
        lines.append(f"{'groups':<18} {groups['count']} ({groups['used']} with 2+ images and distinct labels)")
        lines.extend(f"  mean {k:<13} {_number(v)}" for k, v in groups["mean"].items())
    for key in ("labels", "dataset", "model"):
        if key in report:
            lines.append(f"{key:<18} " + "  ".join(f"{k}={v}" for k, v in report[key].items()))
    # Loader messages already start with the path; do not print it twice.
    lines.extend(f"failed: {f['error'] if f['error'].startswith(f['path']) else f['path'] + ': ' + f['error']}"
                 for f in report["failed"])  # fmt: skip
    return "\n".join(lines)


def _scores_report(run: _Run, records: list[LabelledImage], *, by_group: bool) -> dict[str, Any]:
    if not records:
        raise _usage("no labelled images to evaluate")
    return run.evaluate(
        len(records),
        lambda scorer, batch, tick: evaluate_scores(scorer, records, by_group=by_group, batch_size=batch, tick=tick),
    )


@app.command()
def scores(
    labels: Annotated[
        Path,
        typer.Argument(
            help="CSV/TSV/XLSX with an image column and a human score column.", dir_okay=False, show_default=False
        ),
    ],
    root: RootOpt,
    image_col: Annotated[str, typer.Option("--image-col", help="Column of image paths, relative to --root.")] = "image",
    label_col: Annotated[str, typer.Option("--label-col", help="Column of human scores.")] = "mos",
    group_col: Annotated[
        str | None, typer.Option("--group-col", help="Also evaluate within each group (e.g. scene) and average.")
    ] = None,
    lower_better: Annotated[bool, typer.Option("--lower-better", help="Lower labels are better (DMOS).")] = False,
    model: ModelOpt = None,
    fmt: FormatOpt = ReportFormat.table,
    output: OutputOpt = None,
    threads: ThreadsOpt = None,
    batch_size: BatchOpt = DEFAULT_BATCH_SIZE,
    quiet: QuietOpt = False,
    progress: ProgressOpt = None,
    max_pixels: MaxPixelsOpt = DEFAULT_MAX_PIXELS,
) -> None:
    """Agreement with human scores: n, srcc, plcc (logistic), plcc_raw, krcc, pair_accuracy."""
    run = _Run(model=model, threads=threads, max_pixels=max_pixels, batch_size=batch_size, fmt=fmt, output=output,
               quiet=quiet, progress=progress)  # fmt: skip
    try:
        records = read_labels(labels, root=root, image_col=image_col, label_col=label_col, group_col=group_col,
                              lower_better=lower_better)  # fmt: skip
    except RedaesError as e:
        raise _usage(str(e)) from None
    report = _scores_report(run, records, by_group=group_col is not None)
    report["labels"] = {"file": str(labels), "label_col": label_col, "lower_better": lower_better}
    run.finish(report)


@app.command()
def pairs(
    pairs_file: Annotated[
        Path,
        typer.Argument(
            metavar="PAIRS",
            help="CSV of preferred/other paths, or pair-label JSONL.",
            dir_okay=False,
            show_default=False,
        ),
    ],
    root: RootOpt,
    preferred_col: Annotated[str, typer.Option("--preferred-col", help="Column of the preferred image.")] = "preferred",
    other_col: Annotated[str, typer.Option("--other-col", help="CSV column of the other image.")] = "other",
    model: ModelOpt = None,
    fmt: FormatOpt = ReportFormat.table,
    output: OutputOpt = None,
    threads: ThreadsOpt = None,
    batch_size: BatchOpt = DEFAULT_BATCH_SIZE,
    quiet: QuietOpt = False,
    progress: ProgressOpt = None,
    max_pixels: MaxPixelsOpt = DEFAULT_MAX_PIXELS,
) -> None:
    """Agreement with human preferences: n, accuracy, mean_probability (and ece)."""
    run = _Run(model=model, threads=threads, max_pixels=max_pixels, batch_size=batch_size, fmt=fmt, output=output,
               quiet=quiet, progress=progress)  # fmt: skip
    try:
        prefs, skipped = read_preference_pairs(pairs_file, root=root, preferred_col=preferred_col, other_col=other_col)
    except RedaesError as e:
        raise _usage(str(e)) from None
    if not prefs:
        raise _usage(f"{pairs_file}: no usable pairs")
    report = run.evaluate(
        unique_images(prefs),
        lambda scorer, batch, tick: evaluate_pairs(scorer, prefs, skipped=skipped, batch_size=batch, tick=tick),
    )
    run.finish(report)


@app.command()
def dataset(
    name: Annotated[str, typer.Argument(help=f"Data set: {', '.join(list_datasets())}.", show_default=False)],
    root: Annotated[
        Path, typer.Option("--root", help="The data set's folder, as unpacked.", file_okay=False, show_default=False)
    ],
    split: Annotated[str | None, typer.Option("--split", help="Split (default: the set's test split).")] = None,
    id_list: Annotated[
        Path | None, typer.Option("--list", help="File of image names/ids (one a line) to keep, e.g. a test list.")
    ] = None,
    by_group: Annotated[bool, typer.Option("--by-group", help="Also evaluate within the set's groups.")] = False,
    model: ModelOpt = None,
    fmt: FormatOpt = ReportFormat.table,
    output: OutputOpt = None,
    threads: ThreadsOpt = None,
    batch_size: BatchOpt = DEFAULT_BATCH_SIZE,
    quiet: QuietOpt = False,
    progress: ProgressOpt = None,
    max_pixels: MaxPixelsOpt = DEFAULT_MAX_PIXELS,
) -> None:
    """`scores` on a standard IAA/IQA data set read from its native layout."""
    run = _Run(model=model, threads=threads, max_pixels=max_pixels, batch_size=batch_size, fmt=fmt, output=output,
               quiet=quiet, progress=progress)  # fmt: skip
    try:
        data = read_dataset(name, root, split=split, id_list=id_list)
    except RedaesError as e:
        raise _usage(str(e)) from None
    report = _scores_report(run, list(data.records), by_group=by_group)
    report["dataset"] = {"name": data.spec.name, "split": data.split, "labels": str(data.label_file)}
    run.finish(report)
