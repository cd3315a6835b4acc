"""``redaes-lite`` command line: score | compare | rank | info | eval.

Thin by design: parse options, call the API, write rows. Every input gets one output row; failed
inputs carry an ``error`` and do not stop the run. Exit status: 0 all good, 1 some inputs failed,
2 usage error (bad option, unusable model).
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
from enum import Enum
from pathlib import Path
from typing import IO, Annotated, Any, Callable, Iterable, Iterator, List, Optional

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
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Images per inference batch (more: more memory).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or messages on stderr.")]
ProgressOpt = Annotated[
    Optional[bool], typer.Option("--progress/--no-progress", help="Progress on stderr [default: if a terminal].")
]
RecursiveOpt = Annotated[bool, typer.Option("--recursive", "-r", help="Descend into subfolders.")]
MaxPixelsOpt = Annotated[
    int, typer.Option("--max-pixels", min=0, help="Refuse images with more pixels (from the header); 0: no limit.")
]
MaxBytesOpt = Annotated[
    int, typer.Option("--max-bytes", min=0, help="Refuse files larger than this many bytes (from stat); 0: no limit.")
]
WorkersOpt = Annotated[
    int, typer.Option("--workers", "-w", min=0, help="Decode in this many worker processes; 0: threads in-process.")
]
ResumeOpt = Annotated[
    bool, typer.Option("--resume", help="Keep the rows already scored in --output (jsonl) and score only the rest.")
]
# = redaes_lite.preprocess.DEFAULT_MAX_PIXELS / DEFAULT_MAX_BYTES and api.DEFAULT_BATCH_SIZE (tested); not
# imported, so that `--version` stays light.
DEFAULT_MAX_PIXELS = 120_000_000
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
DEFAULT_BATCH_SIZE = 8
# Exit status after SIGINT / SIGTERM, as a shell reports a process killed by them.
_SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
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


def _scorer(model: str | None, threads: int | None, max_pixels: int, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    from .session import load

    try:
        return load(model, threads=threads, max_pixels=max_pixels or None, max_bytes=max_bytes or None)
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


@contextlib.contextmanager
def _stop_on_signal() -> Iterator[Callable[[], int | None]]:
    """While active, SIGINT and SIGTERM only ask the run to stop: the caller checks between rows, writes
    what was done and exits 130 / 143. A second signal aborts at once (an ``--output`` file is then left
    as it was). Yields a function returning the signal received, else None."""
    received: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if received:
            raise KeyboardInterrupt
        received.append(signum)

    if threading.current_thread() is not threading.main_thread():  # signals go to the main thread only
        yield lambda: None
        return
    previous = {sig: signal.signal(sig, handler) for sig in _SIGNAL_EXIT}
    try:
        yield lambda: received[0] if received else None
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _until(rows: Iterable[dict[str, Any]], stopped: Callable[[], int | None]) -> Iterator[dict[str, Any]]:
    """Pass rows through until a stop is asked; the row being made when it came is still passed."""
    for row in rows:
        yield row
        if stopped():
            return


def _emit(rows: Any, *, total: int, fmt: Format, output: Path | None, factors: Any, quiet: bool,
          progress: bool | None, label: str) -> None:  # fmt: skip
    """Write rows (streamed), then exit 1 if any row has an error, 130/143 if a signal stopped the run."""
    errors = written = 0

    def count(row: dict[str, Any]) -> None:
        nonlocal errors, written
        errors += row["error"] is not None
        written += 1

    bar = _progress(total, quiet=quiet, progress=progress, label=label)
    with _stop_on_signal() as stopped:
        try:
            with _sink(output) as out:
                write_rows(_until(tracked(rows, bar, count), stopped), out, fmt=fmt.value, factors=factors)
        except RedaesError as e:  # inputs are recorded as rows; what reaches here is a model failing mid-run
            raise _fail(str(e)) from None
        finally:
            bar.close()
            if hasattr(rows, "close"):
                rows.close()  # a generator stopped early ends its decoding now, not when collected
    if stopped():
        if not quiet:
            hint = " (run again with --resume to finish)" if fmt is Format.jsonl and output is not None else ""
            typer.echo(f"redaes-lite: interrupted; wrote {written} of {total} rows{hint}", err=True)
        raise typer.Exit(_SIGNAL_EXIT[stopped()])
    if errors:
        if not quiet:
            typer.echo(f"redaes-lite: {errors} of {total} inputs failed", err=True)
        raise typer.Exit(1)


def _results(scorer: Any, sources: list, batch_size: int, workers: int = 0) -> Iterator[Any]:
    """Score the sources in order; inputs that failed expansion become Failures without loading. With
    ``workers``, images are decoded by that many processes (same pixels, same results, same order)."""
    from .results import Failure

    good = [path for path, err in sources if err is None]
    with contextlib.ExitStack() as stack:
        if workers and good:
            from ._decode_pool import DecodePool

            limits = {"max_pixels": scorer.max_pixels, "max_bytes": scorer.max_bytes}
            pool = stack.enter_context(DecodePool(workers, spec=scorer.info.preprocess, **limits))
            scored = scorer._score_decoded(pool.batches(good, batch_size))
        else:
            scored = scorer.iter_scores(good, batch_size=batch_size, on_error="record")
        for i, (path, err) in enumerate(sources):
            yield Failure(input=path, index=i, error=err) if err is not None else next(scored)


def _previous_rows(output: Path | None, fmt: Format) -> dict[str, dict[str, Any]]:
    """``--resume``: the rows of ``output`` that were scored without error, by path."""
    if output is None or fmt is not Format.jsonl:
        raise _fail("--resume needs --format jsonl and --output FILE")
    done: dict[str, dict[str, Any]] = {}
    try:
        with open(output, encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue  # a cut line (the file was not written by us): its input is scored again
                if isinstance(row, dict) and isinstance(row.get("path"), str) and row.get("error") is None:
                    done[row["path"]] = row
    except FileNotFoundError:
        pass
    except (OSError, UnicodeDecodeError) as e:
        raise _fail(f"{output}: cannot read for --resume ({getattr(e, 'strerror', None) or e})") from None
    return done


def _score_rows(scorer: Any, sources: list, done: dict[str, dict[str, Any]], *, batch_size: int,
                workers: int) -> Iterator[dict[str, Any]]:  # fmt: skip
    """One row per source in order, reusing ``done`` rows; rows of ``done`` for paths not among the
    sources (an earlier run on other inputs) come first, so ``--resume`` never drops a result."""
    paths = {path for path, _ in sources}
    yield from (row for path, row in done.items() if path not in paths)
    todo = [(path, err) for path, err in sources if path not in done]
    scored = _results(scorer, todo, batch_size, workers)
    try:
        for path, _ in sources:
            yield done[path] if path in done else score_row(path, next(scored))
    finally:
        scored.close()  # on an early stop: end the decoding threads or processes now


@app.command()
def score(
    paths: PathsArg,
    model: ModelOpt = None,
    fmt: FormatOpt = Format.table,
    output: OutputOpt = None,
    threads: ThreadsOpt = None,
    batch_size: BatchOpt = DEFAULT_BATCH_SIZE,
    quiet: QuietOpt = False,
    progress: ProgressOpt = None,
    recursive: RecursiveOpt = False,
    max_pixels: MaxPixelsOpt = DEFAULT_MAX_PIXELS,
    max_bytes: MaxBytesOpt = DEFAULT_MAX_BYTES,
    workers: WorkersOpt = 0,
    resume: ResumeOpt = False,
) -> None:
    """Score images: display score 0..10, raw utility and factor utilities, one row per input.

    Ctrl-C stops after the current batch: the rows done so far are written (exit 130); with
    ``--format jsonl --output FILE``, run the same command with ``--resume`` to score only the rest."""
    done = _previous_rows(output, fmt) if resume else {}
    scorer = _scorer(model, threads, max_pixels, max_bytes)
    sources = expand(paths, recursive=recursive)
    wanted = {path for path, _ in sources}
    if done and not quiet:
        reused = sum(path in done for path in wanted)
        typer.echo(f"redaes-lite: resuming: {reused} of {len(wanted)} inputs already scored", err=True)
    rows = _score_rows(scorer, sources, done, batch_size=batch_size, workers=workers)
    total = len(sources) + sum(path not in wanted for path in done)
    _emit(rows, total=total, fmt=fmt, output=output, factors=scorer.info.factors, quiet=quiet,
          progress=progress, label="scoring")  # fmt: skip


@app.command()
def rank(
    paths: PathsArg,
    top: Annotated[Optional[int], typer.Option("--top", "-k", min=0, help="Keep only the K best.")] = None,
    model: ModelOpt = None,
    fmt: FormatOpt = Format.table,
    output: OutputOpt = None,
    threads: ThreadsOpt = None,
    batch_size: BatchOpt = DEFAULT_BATCH_SIZE,
    quiet: QuietOpt = False,
    progress: ProgressOpt = None,
    recursive: RecursiveOpt = False,
    max_pixels: MaxPixelsOpt = DEFAULT_MAX_PIXELS,
    max_bytes: MaxBytesOpt = DEFAULT_MAX_BYTES,
    workers: WorkersOpt = 0,
) -> None:
    """Rank images best first (ties keep input order; failed inputs last, always listed)."""
    from .api import ranking

    scorer = _scorer(model, threads, max_pixels, max_bytes)
    sources = expand(paths, recursive=recursive)
    bar = _progress(len(sources), quiet=quiet, progress=progress, label="scoring")
    results = []
    for r in _results(scorer, sources, batch_size, workers):
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
    max_bytes: MaxBytesOpt = DEFAULT_MAX_BYTES,
) -> None:
    """Compare two images: which is preferred, with what probability, delta = u(b) - u(a), and why."""
    scorer = _scorer(model, threads, max_pixels, max_bytes)
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
