"""``redaes-lite`` command line: score | compare | rank | report | info | eval.

Thin by design: parse options, call the API, write rows. Every input gets one output row; failed
inputs carry an ``error`` and do not stop the run. Exit status: 0 all good, 1 some inputs failed,
2 usage error (bad option, unusable model) or an output that cannot be written (stdout full or closed),
130 / 143 stopped by SIGINT / SIGTERM, 141 the reader of stdout went away. No case ends in a traceback.

Parsed with argparse, as ONNX Runtime's tools are: typer >= 0.29 imports pydantic and rich on every
call, a tenth of a second and two dependencies that a light runtime should not carry.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import textwrap
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ._atomic import stale_temporaries
from ._cli_common import (
    DEFAULT_BATCH_SIZE,  # noqa: F401 - re-exported as cli.NAME (tests compare the limits)
    DEFAULT_MAX_BYTES,  # noqa: F401
    DEFAULT_MAX_DECODE_BYTES,  # noqa: F401
    DEFAULT_MAX_PIXELS,  # noqa: F401
    FORMATS,  # noqa: F401
    HelpFormatter,
    _add_input_options,
    _drop_stdout,
    _results,
    _stdout,
    _VersionAction,
    add_model_option,
    add_model_options,
    add_output_options,
    add_run_options,
    at_least,
    command,
    dispatch,
    fail,
    progress_bar,
    say,
    scorer_for,
    sink,
)
from ._cli_io import MAX_PATH_WIDTH, Progress, compare_row, expand, printable, score_row, tracked, visible, write_rows
from .errors import RedaesError

__all__ = ["main", "run"]

# Exit status after SIGINT / SIGTERM, as a shell reports a process killed by them.
_SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


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


def _table_width(args: argparse.Namespace) -> int | None:
    """The terminal's width for a table printed on it (COLUMNS, else the terminal's size); None (no factor
    columns left out) for other formats, an --output file, or a stdout that is no terminal and no COLUMNS."""
    if args.fmt != "table" or args.output is not None:
        return None
    if not os.environ.get("COLUMNS", "").isdigit() and not (sys.stdout is not None and sys.stdout.isatty()):
        return None
    return shutil.get_terminal_size().columns


def _emit(
    rows: Any,
    args: argparse.Namespace,
    *,
    total: int,
    factors: Any,
    label: str = "",
    inputs: int | None = None,
    paths: Iterable[str] = (),
) -> int:
    """Write rows (streamed, with a progress bar when ``label``); the exit status: 1 if any row has an
    error, 130 / 143 if a signal stopped the run, else 0. ``inputs``: how many inputs the run had (for the
    message on failures; default ``total``); ``paths``: the rows' paths, to align the table's path column."""
    errors = written = 0
    width = _table_width(args)
    label_width = max((len(visible(printable(p))) for p in paths), default=0) if args.fmt == "table" else 0

    def count(row: dict[str, Any]) -> None:
        nonlocal errors, written
        errors += row["error"] is not None
        written += 1

    bar = progress_bar(total, args, label) if label else Progress(total, enabled=False, label="")
    with _stop_on_signal() as stopped:
        try:
            with sink(args.output) as out:
                hidden = write_rows(
                    _until(tracked(rows, bar, count), stopped),
                    out,
                    fmt=args.fmt,
                    factors=factors,
                    width=width,
                    label_width=min(label_width, MAX_PATH_WIDTH),
                )
        except RedaesError as e:  # inputs are recorded as rows; what reaches here is a model failing mid-run
            raise fail(str(e)) from None
        finally:
            bar.close()
            if hasattr(rows, "close"):
                rows.close()  # a generator stopped early ends its decoding now, not when collected
    if hidden:
        say(
            f"{hidden} of {len(factors)} factor columns left out to fit {width} columns; "
            "--format csv or jsonl has them all",
            args.quiet,
        )
    if stopped():
        resumable = args.fmt == "jsonl" and args.output is not None
        say(
            f"interrupted; wrote {written} of {total} rows"
            + (" (run again with --resume to finish)" if resumable else ""),
            args.quiet,
        )
        return _SIGNAL_EXIT[stopped()]
    if errors:
        say(f"{errors} of {total if inputs is None else inputs} inputs failed", args.quiet)
        return 1
    return 0


def _check_resumable(args: argparse.Namespace) -> None:
    if args.output is None or args.fmt != "jsonl":
        raise fail("--resume needs --format jsonl and --output FILE")
    if args.output.exists() and not args.output.is_file():  # a FIFO would block the read; a device has no rows
        raise fail(f"{args.output}: --resume needs --output to be a regular file")


def _previous_rows(output: Path, model: str) -> dict[str, dict[str, Any]]:
    """``--resume``: the rows of ``output`` that were scored without error, by path, and those of the
    temporary file of a run onto ``output`` that was killed (SIGKILL: no handler wrote what it had done).
    A file with rows of another model, or rows that name no model (written before rows named theirs), is
    refused (exit 2, the file left as it is): one file holds the results of one model."""
    done: dict[str, dict[str, Any]] = {}
    others: set[str] = set()
    unnamed = 0
    for source in (output, *stale_temporaries(output)):
        try:
            with open(source, encoding="utf-8") as f:
                for line in f:
                    try:
                        row = json.loads(line)
                    except ValueError:
                        continue  # a cut line (a killed run, or not written by us): its input is scored again
                    if not isinstance(row, dict) or not isinstance(row.get("path"), str):
                        continue
                    if not isinstance(row.get("model"), str):
                        unnamed += 1
                    elif row["model"] != model:
                        others.add(row["model"])
                    elif row.get("error") is None:
                        done[row["path"]] = row
        except FileNotFoundError:
            pass
        except (OSError, UnicodeDecodeError) as e:
            raise fail(f"{source}: cannot read for --resume ({getattr(e, 'strerror', None) or e})") from None
    if others:
        raise fail(
            f"{output}: cannot resume: its rows were made by {', '.join(sorted(others))}, not {model}; "
            "pass the --model that made them, or write to a new --output"
        )
    if unnamed:
        rows = "1 row names" if unnamed == 1 else f"{unnamed} rows name"
        raise fail(
            f"{output}: cannot resume: {rows} no model (written by an older redaes-lite), "
            f"so they may not be {model}'s; score into a new --output"
        )
    return done


def _score_rows(
    scorer: Any, sources: list, done: dict[str, dict[str, Any]], *, batch_size: int, workers: int, quiet: bool
) -> Iterator[dict[str, Any]]:
    """One row per source in order, reusing ``done`` rows; rows of ``done`` for paths not among the
    sources (an earlier run on other inputs) come first, so ``--resume`` never drops a result. ``done`` is
    keyed by the path as rows write it (:func:`printable`)."""
    paths = {printable(path) for path, _ in sources}
    yield from (row for path, row in done.items() if path not in paths)
    todo = [(path, err) for path, err in sources if printable(path) not in done]
    scored = _results(scorer, todo, batch_size, workers, quiet=quiet)
    model = scorer.model_id
    try:
        for path, _ in sources:
            shown = printable(path)
            yield done[shown] if shown in done else score_row(path, next(scored), model)
    finally:
        scored.close()  # on an early stop: end the decoding threads or processes now


# ----------------------------------------------------------------------------------------- commands
def _score(args: argparse.Namespace) -> int:
    """Score images: display score 0..10, raw utility and factor utilities, one row per input.

    Ctrl-C stops after the current batch: the rows done so far are written (exit 130); with
    --format jsonl --output FILE, run the same command with --resume to score only the rest."""
    if args.resume:
        _check_resumable(args)
    scorer = scorer_for(args)
    done = _previous_rows(args.output, scorer.model_id) if args.resume else {}
    sources = expand(args.paths, recursive=args.recursive)
    wanted = {printable(path) for path, _ in sources}
    if done:
        reused = sum(path in done for path in wanted)
        say(f"resuming: {reused} of {len(wanted)} inputs already scored", args.quiet)
    rows = _score_rows(scorer, sources, done, batch_size=args.batch_size, workers=args.workers, quiet=args.quiet)
    total = len(sources) + sum(path not in wanted for path in done)
    return _emit(rows, args, total=total, factors=scorer.info.factors, label="scoring", paths=[*wanted, *done])


def _rank(args: argparse.Namespace) -> int:
    """Rank images best first (ties keep input order; failed inputs last, always listed)."""
    from .api import ranking

    scorer = scorer_for(args)
    sources = expand(args.paths, recursive=args.recursive)
    bar = progress_bar(len(sources), args, "scoring")
    results = []
    for r in _results(scorer, sources, args.batch_size, args.workers, quiet=args.quiet):
        bar.advance()
        results.append(r)
    bar.close()
    rows = [score_row(sources[i][0], results[i], scorer.model_id) for i in ranking(results, top=args.top)]
    return _emit(
        rows,
        args,
        total=len(rows),
        inputs=len(sources),
        factors=scorer.info.factors,
        paths=[row["path"] for row in rows],
    )


def _compare(args: argparse.Namespace) -> int:
    """Compare two images: which is preferred, with what probability, delta = u(b) - u(a), and why."""
    scorer = scorer_for(args)
    try:
        row = compare_row(args.a, args.b, scorer.compare(args.a, args.b), None, scorer.model_id)
    except RedaesError as e:
        row = compare_row(args.a, args.b, None, str(e), scorer.model_id)
    return _emit([row], args, total=1, factors=scorer.info.factors)


def _info_value(value: Any) -> str:
    """One value on one line: numbers to 6 significant digits, flat lists and objects inline; deeper
    structures as a count (``--format json`` shows them)."""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (str, int, bool)) or value is None:
        return json.dumps(value) if value is None or isinstance(value, bool) else str(value)
    flat = lambda v: not isinstance(v, (list, dict))  # noqa: E731
    if not value:
        return "(none)"
    if isinstance(value, list) and all(map(flat, value)):
        return ", ".join(map(_info_value, value))
    if isinstance(value, dict) and all(map(flat, value.values())):  # a record: its name first
        items = sorted(value.items(), key=lambda kv: kv[0] != "name")
        return "  ".join(f"{k}={_info_value(v)}" for k, v in items)
    return f"({len(value)} entries; see --format json)"


def _build_paths(value: Any) -> Any:
    """Absolute paths of the machine that built a model (``refit_on: /work/shared/data/photos, ...``) as
    their last component: they say what the data was, not where it is here."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
        if all(p.startswith("/") and len(p) > 1 for p in parts):
            return ", ".join(Path(p).name for p in parts)
    return value


def _info_table(doc: dict[str, Any], width: int | None = None) -> Iterator[str]:
    """``key  value`` lines; objects and lists of objects one entry a line below their key, indented.
    With ``width`` (a terminal's), long values wrap under their value column; piped output keeps one line
    per value, for grep."""

    def line(head: str, text: str) -> str:
        if width is None or len(head) + len(text) <= width:
            return head + text
        return textwrap.fill(text, width, initial_indent=head, subsequent_indent=" " * len(head))

    for key, value in doc.items():
        if isinstance(value, dict):
            yield key
            yield from (line(f"  {k:<28} ", _info_value(_build_paths(v))) for k, v in value.items())
        elif isinstance(value, list) and any(isinstance(v, dict) for v in value):
            yield key
            yield from (line("  - ", _info_value(v)) for v in value)
        else:
            yield line(f"{key:<30} ", _info_value(value))


def _precision_doc(scorer: Any) -> dict[str, Any]:
    """Which file of the model runs and why, and what this CPU offers int8 (redaes_lite.precision)."""
    from .precision import cpu_int8

    choice, cpu = scorer.choice, cpu_int8()
    doc: dict[str, Any] = {}
    if choice is not None:
        doc["precision"] = f"{choice.precision} ({choice.file.name}): {choice.reason}"
        doc["precision_setting"] = f"{choice.requested} (from {choice.source})"
    support = {True: "yes", False: "no", None: "unknown"}[cpu.supported]
    doc["cpu_int8_dot_product"] = f"{support}: {cpu.detail} ({cpu.machine})"
    return doc


def _info(args: argparse.Namespace) -> int:
    """Show a model's metadata, sha256 and execution providers."""
    import onnxruntime as ort

    from .metadata import sha256_file

    scorer = scorer_for(args)
    doc = {
        "model": scorer.model_id,
        "path": printable(str(scorer.path)),
        "sha256": sha256_file(scorer.path),
        "integrity": (
            f"verified: sha256 matches {scorer.path.stem}.json"
            if scorer.verified
            else f"NOT verified: no {scorer.path.stem}.json beside it records its sha256"
        ),
        "providers": list(scorer.providers),
        **_precision_doc(scorer),
        "available_providers": ort.get_available_providers(),
        "onnxruntime": ort.__version__,
        **scorer.info.to_dict(),
    }
    if args.fmt == "table":
        width = shutil.get_terminal_size().columns if sys.stdout is not None and sys.stdout.isatty() else None
        text = "\n".join(_info_table(doc, width))
    else:
        text = json.dumps(doc, indent=2 if args.fmt == "json" else None, ensure_ascii=False)
    with sink(None) as out:
        out.write(text + "\n")
    return 0


def parser() -> argparse.ArgumentParser:
    """The root parser. ``eval`` is listed here but parsed by redaes_lite/eval/cli.py, imported only when
    it runs (it pulls in numpy and the metrics)."""
    root = argparse.ArgumentParser(
        prog="redaes-lite",
        description="Relative photo aesthetics: which photo is better, by how much, and why.",
        epilog="exit status: 0 all good, 1 some inputs failed (each has an error row), 2 usage error or an\n"
        "output that cannot be written, 130 / 143 stopped by SIGINT / SIGTERM, 141 the reader of stdout went\n"
        "away. `redaes-lite COMMAND --help` shows a command's options.",
        formatter_class=HelpFormatter,
        allow_abbrev=False,
    )
    root.add_argument("--version", action=_VersionAction)
    sub = root.add_subparsers(metavar="COMMAND", required=True)

    p = command(sub, "score", _score)
    _add_input_options(p)
    add_model_options(p)
    add_output_options(p)
    add_run_options(p)
    p.add_argument(
        "--resume",
        action="store_true",
        help="Keep the rows already scored in --output (jsonl) and score only the rest. Refused "
        "(exit 2, the file left as it is) when its rows were made by another model, or name no "
        "model (files of redaes-lite before rows named their model).",
    )

    p = command(sub, "rank", _rank)
    _add_input_options(p)
    p.add_argument("--top", "-k", type=at_least(1), metavar="K", help="Keep only the K best (K >= 1).")
    add_model_options(p)
    add_output_options(p)
    add_run_options(p)

    p = command(sub, "compare", _compare)
    p.add_argument("a", help="First image (the reference).")
    p.add_argument("b", help="Second image; delta > 0 means b is better.")
    add_model_options(p)
    add_output_options(p)
    p.add_argument("--quiet", "-q", action="store_true", help="No messages on stderr.")

    from ._report_cli import add_command as add_report  # its own module: the contact sheet's options and run

    add_report(sub)

    p = command(sub, "info", _info)
    add_model_option(p)  # info scores no images: no threads or limits
    p.add_argument(
        "--format",
        "-f",
        dest="fmt",
        choices=("table", "json", "jsonl"),
        default="table",
        help="Format of the metadata.",
    )

    sub.add_parser(
        "eval", help="Evaluate a model against human scores or preferences (see `eval --help`).", add_help=False
    )
    return root


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit status. Usage errors
    raise ``SystemExit(2)``, as argparse does, after one line on stderr."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["eval"]:
        from .eval.cli import run as run_eval

        return run_eval(argv[1:])
    return dispatch(parser(), argv)


def main() -> None:
    """Console-script entry point."""
    if hasattr(sys.stdout, "reconfigure"):
        # A character stdout's encoding cannot hold (PYTHONIOENCODING=ascii, a Latin-1 terminal) is written
        # as a backslash escape instead of ending the run; rows' file names are already valid UTF-8.
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        code = run()
        if sys.stdout is not None:
            with _stdout():  # a closed pipe or a full disk shows here, in the handlers, not at interpreter exit
                pass
    except BrokenPipeError:
        # The reader went away (`redaes-lite score DIR | head`): stop quietly with the status a shell gives
        # a process killed by SIGPIPE.
        _drop_stdout()
        code = 141
    except KeyboardInterrupt:
        # Ctrl-C before the run's own handler is in place (loading the model, ranking) or a second Ctrl-C:
        # the status a shell gives, without a traceback. An --output file is left as it was.
        print("redaes-lite: interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)
