"""``redaes-lite`` command line: score | compare | rank | info | eval.

Thin by design: parse options, call the API, write rows. Every input gets one output row; failed
inputs carry an ``error`` and do not stop the run. Exit status: 0 all good, 1 some inputs failed,
2 usage error (bad option, unusable model).
"""

from __future__ import annotations

import contextlib
import json
import sys
from enum import Enum
from pathlib import Path
from typing import IO, Annotated, Any, Iterator, List, Optional

import click
import typer
from typer.core import TyperGroup

from . import __version__
from ._atomic import atomic_open
from ._cli_io import Progress, compare_row, expand, score_row, tracked, write_rows
from .errors import RedaesError

__all__ = ["app", "main"]

class _Commands(TyperGroup):
    """The root command group; ``eval`` (redaes_lite/eval/cli.py, which pulls in numpy and the metrics)
    is imported only when it is called or listed, so that ``--version`` and the other commands start fast."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name == "eval" and "eval" not in self.commands:
            from .eval.cli import app as eval_app  # reuses _scorer, _progress, _sink, _fail from this module

            self.add_command(typer.main.get_command(eval_app), "eval")
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*self.commands, *(["eval"] if "eval" not in self.commands else [])]


app = typer.Typer(
    cls=_Commands,
    name="redaes-lite",
    help="Relative photo aesthetics: which photo is better, by how much, and why.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

class Format(str, Enum):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"


ModelOpt = Annotated[
    Optional[str],
    typer.Option("--model", "-m", help="Model file (.onnx/.ort), folder with model.onnx, or 'default'/'permissive'."),
]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]
OutputOpt = Annotated[
    Optional[Path], typer.Option("--output", "-o", help="Write here (atomically) instead of stdout.", dir_okay=False)
]
ThreadsOpt = Annotated[Optional[int], typer.Option("--threads", min=1, help="ONNX Runtime threads [default: all].")]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Images per inference batch.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or messages on stderr.")]
ProgressOpt = Annotated[
    Optional[bool], typer.Option("--progress/--no-progress", help="Progress on stderr [default: if a terminal].")
]
RecursiveOpt = Annotated[bool, typer.Option("--recursive", "-r", help="Descend into subfolders.")]
MaxPixelsOpt = Annotated[
    int, typer.Option("--max-pixels", min=0, help="Refuse images with more pixels (from the header); 0: no limit.")
]
# = redaes_lite.preprocess.DEFAULT_MAX_PIXELS (tested); not imported, so that `--version` stays light.
DEFAULT_MAX_PIXELS = 120_000_000
PathsArg = Annotated[List[str], typer.Argument(help="Image files, folders or glob patterns.", show_default=False)]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"redaes-lite {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Relative photo aesthetics: which photo is better, by how much, and why."""


def _fail(message: str) -> typer.Exit:
    """A usage error: one line on stderr, exit status 2."""
    typer.echo(f"redaes-lite: error: {message}", err=True)
    return typer.Exit(2)


def _scorer(model: str | None, threads: int | None, max_pixels: int) -> Any:
    from .session import load

    try:
        return load(model, threads=threads, max_pixels=max_pixels or None)
    except (RedaesError, ValueError) as e:
        raise _fail(str(e)) from None


@contextlib.contextmanager
def _sink(output: Path | None) -> Iterator[IO[str]]:
    if output is None:
        yield sys.stdout
        return
    try:
        with atomic_open(output, newline="") as f:
            yield f
    except OSError as e:
        raise _fail(f"{output}: cannot write ({e.strerror or e})") from None


def _progress(total: int, *, quiet: bool, progress: bool | None, label: str) -> Progress:
    enabled = not quiet and (progress if progress is not None else sys.stderr.isatty())
    return Progress(total, enabled=enabled, label=label)


def _emit(rows: Any, *, total: int, fmt: Format, output: Path | None, factors: Any, quiet: bool,
          progress: bool | None, label: str) -> None:  # fmt: skip
    """Write rows (streamed), then exit 1 if any row has an error."""
    errors = 0

    def count(row: dict[str, Any]) -> None:
        nonlocal errors
        errors += row["error"] is not None

    bar = _progress(total, quiet=quiet, progress=progress, label=label)
    try:
        with _sink(output) as out:
            write_rows(tracked(rows, bar, count), out, fmt=fmt.value, factors=factors)
    except RedaesError as e:  # inputs are recorded as rows; what reaches here is a model failing mid-run
        raise _fail(str(e)) from None
    finally:
        bar.close()
    if errors:
        if not quiet:
            typer.echo(f"redaes-lite: {errors} of {total} inputs failed", err=True)
        raise typer.Exit(1)


def _results(scorer: Any, sources: list, batch_size: int) -> Iterator[Any]:
    """Score the sources in order; inputs that failed expansion become Failures without loading."""
    from .results import Failure

    good = [path for path, err in sources if err is None]
    scored = scorer.iter_scores(good, batch_size=batch_size, on_error="record")
    for i, (path, err) in enumerate(sources):
        yield Failure(input=path, index=i, error=err) if err is not None else next(scored)


@app.command()
def score(
    paths: PathsArg,
    model: ModelOpt = None,
    fmt: FormatOpt = Format.table,
    output: OutputOpt = None,
    threads: ThreadsOpt = None,
    batch_size: BatchOpt = 16,
    quiet: QuietOpt = False,
    progress: ProgressOpt = None,
    recursive: RecursiveOpt = False,
    max_pixels: MaxPixelsOpt = DEFAULT_MAX_PIXELS,
) -> None:
    """Score images: display score 0..10, raw utility and factor utilities, one row per input."""
    scorer = _scorer(model, threads, max_pixels)
    sources = expand(paths, recursive=recursive)
    rows = (score_row(path, r) for (path, _), r in zip(sources, _results(scorer, sources, batch_size)))
    _emit(rows, total=len(sources), fmt=fmt, output=output, factors=scorer.info.factors, quiet=quiet,
          progress=progress, label="scoring")  # fmt: skip


@app.command()
def rank(
    paths: PathsArg,
    top: Annotated[Optional[int], typer.Option("--top", "-k", min=0, help="Keep only the K best.")] = None,
    model: ModelOpt = None,
    fmt: FormatOpt = Format.table,
    output: OutputOpt = None,
    threads: ThreadsOpt = None,
    batch_size: BatchOpt = 16,
    quiet: QuietOpt = False,
    progress: ProgressOpt = None,
    recursive: RecursiveOpt = False,
    max_pixels: MaxPixelsOpt = DEFAULT_MAX_PIXELS,
) -> None:
    """Rank images best first (ties keep input order; failed inputs last, always listed)."""
    from .api import ranking

    scorer = _scorer(model, threads, max_pixels)
    sources = expand(paths, recursive=recursive)
    bar = _progress(len(sources), quiet=quiet, progress=progress, label="scoring")
    results = []
    for r in _results(scorer, sources, batch_size):
        bar.advance()
        results.append(r)
    bar.close()
    keep = ranking(results, top=top)
    rows = [score_row(sources[i][0], results[i]) for i in keep]
    _emit(rows, total=len(rows), fmt=fmt, output=output, factors=scorer.info.factors, quiet=quiet,
          progress=False, label="")  # fmt: skip


@app.command()
def compare(
    a: Annotated[str, typer.Argument(help="First image (the reference).", show_default=False)],
    b: Annotated[str, typer.Argument(help="Second image; delta > 0 means b is better.", show_default=False)],
    model: ModelOpt = None,
    fmt: FormatOpt = Format.table,
    output: OutputOpt = None,
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
    max_pixels: MaxPixelsOpt = DEFAULT_MAX_PIXELS,
) -> None:
    """Compare two images: which is preferred, with what probability, delta = u(b) - u(a), and why."""
    scorer = _scorer(model, threads, max_pixels)
    try:
        row = compare_row(a, b, scorer.compare(a, b), None)
    except RedaesError as e:
        row = compare_row(a, b, None, str(e))
    _emit([row], total=1, fmt=fmt, output=output, factors=scorer.info.factors, quiet=quiet,
          progress=False, label="")  # fmt: skip


@app.command()
def info(
    model: ModelOpt = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="table or json.")] = Format.table,
) -> None:
    """Show a model's metadata, sha256 and execution providers."""
    import onnxruntime as ort

    from .metadata import sha256_file

    scorer = _scorer(model, None, 0)
    doc = {
        "path": str(scorer.path),
        "sha256": sha256_file(scorer.path),
        "providers": list(scorer.providers),
        "available_providers": ort.get_available_providers(),
        "onnxruntime": ort.__version__,
        **scorer.info.to_dict(),
    }
    if fmt in (Format.json, Format.jsonl):
        typer.echo(json.dumps(doc, indent=2 if fmt is Format.json else None, ensure_ascii=False))
        return
    for key, value in doc.items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        typer.echo(f"{key:<24} {text}")


def main() -> None:
    """Console-script entry point; ``--version`` answers before the heavier imports."""
    if sys.argv[1:] == ["--version"]:
        print(f"redaes-lite {__version__}")
        return
    app()
