"""What the ``redaes-lite`` commands share: option groups, the scorer from options, output sinks, progress, scoring
in order, dispatch. ``cli.py`` (score, compare, rank, info), ``_report_cli.py`` and ``eval/cli.py`` all build on it,
so none of them imports another back.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from . import __version__
from ._atomic import atomic_open
from ._cli_io import Progress, decoder_warnings, printable
from .errors import RedaesError

if TYPE_CHECKING:  # the API loads onnxruntime: imported where a command scores, not for --help
    from .api import Scorer

FORMATS = ("table", "json", "jsonl", "csv")
# = redaes_lite.preprocess.DEFAULT_MAX_PIXELS / DEFAULT_MAX_BYTES / DEFAULT_MAX_DECODE_BYTES and
# api.DEFAULT_BATCH_SIZE (tested); not imported, so that `--version` stays light.
DEFAULT_MAX_PIXELS = 120_000_000
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_DECODE_BYTES = 512 * 1024 * 1024
DEFAULT_BATCH_SIZE = 8


# ------------------------------------------------------------------------------------------ options
def version_text() -> str:
    """``redaes-lite 0.1.0 (models: default@1.0.0+int8, permissive@1.2.0+int8)``: the package and the embedded
    models, as rows name them on this machine by default (``+int8`` where :mod:`redaes_lite.precision` runs the
    int8 file). Read from the models' ``model.json`` with json alone: ``--version`` stays light."""
    from .precision import choose

    found = []
    for sidecar in sorted((Path(__file__).parent / "models").glob("*/model.json")):
        try:
            version = json.loads(sidecar.read_text(encoding="utf-8"))["metadata"]["redaes.version"]
        except (OSError, ValueError, KeyError, TypeError):
            version = "? (unreadable model.json)"
        with contextlib.suppress(RedaesError):  # a bad REDAES_PRECISION is reported where a model loads
            if choose(sidecar.parent, None, ("CPUExecutionProvider",)).precision == "int8":
                version += "+int8"
        found.append(f"{sidecar.parent.name}@{version}")
    order = {"default": 0, "permissive": 1}
    found.sort(key=lambda m: (order.get(m.split("@")[0], 2), m))
    return f"redaes-lite {__version__} (" + (f"models: {', '.join(found)}" if found else "no embedded models") + ")"


class _VersionAction(argparse.Action):
    """``--version``: :func:`version_text`, computed only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(
            option_strings,
            dest,
            nargs=0,
            default=argparse.SUPPRESS,
            help="Show the version of redaes-lite and of its embedded models, and exit.",
        )

    def __call__(self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option_string: Any = None) -> None:
        print(version_text())
        parser.exit()


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written (their paragraphs kept); an option's default shown where it says something."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            action.option_strings
            and "%(default)" not in text
            and not (default is None or default is False or default == argparse.SUPPRESS)
        ):
            text += " [default: %(default)s]"
        return text


def at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer ``>= low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is below {low}")
        return value

    return parse


def add_model_option(p: argparse.ArgumentParser) -> None:
    """--model: which model; --precision: which of its files (fp or int8) runs."""
    p.add_argument("--model", "-m", help="Model file (.onnx/.ort), folder with model.onnx, or 'default'/'permissive'.")
    p.add_argument(
        "--precision",
        choices=("auto", "fp", "int8"),
        help="Which file of a model folder runs: auto (int8 where it ships and the CPU has an int8 dot "
        "product), fp or int8 [default: $REDAES_PRECISION or auto; 'info' says which runs and why].",
    )


def add_model_options(p: argparse.ArgumentParser, *, max_bytes: bool = True) -> None:
    """--model, --threads, --max-pixels [, --max-bytes]: which model, and what it may be given to score."""
    add_model_option(p)
    p.add_argument("--threads", type=at_least(1), metavar="N", help="ONNX Runtime threads [default: all cores].")
    p.add_argument(
        "--max-pixels",
        type=at_least(0),
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help="Refuse images with more pixels (from the header); 0: no limit.",
    )
    if max_bytes:
        p.add_argument(
            "--max-bytes",
            type=at_least(0),
            default=DEFAULT_MAX_BYTES,
            metavar="N",
            help="Refuse files larger than this many bytes (from stat); 0: no limit.",
        )
        p.add_argument(
            "--max-decode-bytes",
            type=at_least(0),
            default=DEFAULT_MAX_DECODE_BYTES,
            metavar="N",
            help="Refuse images whose decode would need more memory (estimated from the header); "
            "also the most the decodes in flight hold together, across threads and --workers; "
            "0: no limit.",
        )


def add_output_options(p: argparse.ArgumentParser, formats: Sequence[str] = FORMATS, what: str = "rows") -> None:
    """--format and --output."""
    p.add_argument("--format", "-f", dest="fmt", choices=formats, default=formats[0], help=f"Format of the {what}.")
    p.add_argument(
        "--output", "-o", type=Path, metavar="FILE", help=f"Write the {what} here (atomically) instead of stdout."
    )


def add_run_options(p: argparse.ArgumentParser) -> None:
    """--batch-size, --quiet, --progress: how a run over many images goes."""
    p.add_argument(
        "--batch-size",
        type=at_least(1),
        default=DEFAULT_BATCH_SIZE,
        metavar="N",
        help="Images per inference batch (more: more memory).",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="No progress bar or messages on stderr.")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="Progress on stderr [default: if stderr is a terminal].",
    )


def _add_input_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="Image files, folders or glob patterns.")
    p.add_argument("--recursive", "-r", action="store_true", help="Descend into subfolders.")
    p.add_argument(
        "--workers",
        "-w",
        type=at_least(0),
        default=0,
        metavar="N",
        help="Decode in this many worker processes; 0: threads in-process.",
    )


def command(sub: Any, name: str, handler: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
    """A subcommand whose help is ``handler``'s docstring (first line in the command list)."""
    doc = inspect.cleandoc(handler.__doc__ or "")
    # No abbreviated options (argparse's default allows --out for --output): a later option must not change
    # what a script's abbreviation means.
    p = sub.add_parser(
        name, help=doc.split("\n")[0], description=doc, formatter_class=HelpFormatter, allow_abbrev=False
    )
    p.set_defaults(handler=handler)
    return p


# ------------------------------------------------------------------------------------------ helpers
def fail(message: str) -> SystemExit:
    """A usage error: one line on stderr; raise the result to exit with status 2."""
    print(f"redaes-lite: error: {printable(message)}", file=sys.stderr)
    return SystemExit(2)


def say(message: str, quiet: bool) -> None:
    if not quiet:
        print(f"redaes-lite: {printable(message)}", file=sys.stderr)


def scorer_for(args: argparse.Namespace) -> Scorer:
    """The model the options name, loaded with their limits; a model that cannot be used is a usage error."""
    from .api import load

    # Commands that score no images (info) have no limit options: the runtime's defaults then stand.
    max_pixels = getattr(args, "max_pixels", DEFAULT_MAX_PIXELS)
    max_bytes = getattr(args, "max_bytes", DEFAULT_MAX_BYTES)
    max_decode_bytes = getattr(args, "max_decode_bytes", DEFAULT_MAX_DECODE_BYTES)
    try:
        scorer = load(
            args.model,
            precision=getattr(args, "precision", None),
            threads=getattr(args, "threads", None),
            max_pixels=max_pixels or None,
            max_bytes=max_bytes or None,
            max_decode_bytes=max_decode_bytes or None,
        )
    except (RedaesError, ValueError) as e:
        raise fail(str(e)) from None
    if not scorer.verified:
        say(
            f"warning: {scorer.path}: integrity not verified (no {scorer.path.stem}.json beside it records its sha256)",
            getattr(args, "quiet", False),
        )
    return scorer


def _drop_stdout() -> None:
    """Point file descriptor 1 at /dev/null: Python's exit flushes stdout again, and a write that failed once
    (a closed pipe, a full disk) would print an 'Exception ignored' notice after our own message."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # no stdout, or an in-memory one (tests)
        return
    os.dup2(os.open(os.devnull, os.O_WRONLY), fd)


@contextlib.contextmanager
def _stdout() -> Iterator[IO[str]]:
    """stdout for rows; a stdout that cannot take them (closed with ``>&-``, full like /dev/full) is one
    line on stderr and exit 2. A reader that went away (BrokenPipeError) is left to :func:`main`: exit 141."""
    if sys.stdout is None:
        raise fail("stdout is closed; pass --output FILE")
    try:
        yield sys.stdout
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as e:
        _drop_stdout()
        raise fail(f"cannot write to stdout ({e.strerror or e})") from None


@contextlib.contextmanager
def sink(output: Path | None) -> Iterator[IO[str]]:
    if output is None:
        with _stdout() as out:
            yield out
        return
    try:
        with atomic_open(output, newline="") as f:
            yield f
    except OSError as e:
        raise fail(f"{output}: cannot write ({e.strerror or e})") from None


def progress_bar(total: int, args: argparse.Namespace, label: str) -> Progress:
    on_terminal = sys.stderr is not None and sys.stderr.isatty()  # None: started with stderr closed
    enabled = not args.quiet and (args.progress if args.progress is not None else on_terminal)
    return Progress(total, enabled=enabled, label=label)


def _results(scorer: Any, sources: list, batch_size: int, workers: int = 0, *, quiet: bool = False) -> Iterator[Any]:
    """Score the sources in order; inputs that failed expansion become Failures without loading. With
    ``workers``, images are decoded by that many processes (same pixels, same results, same order; their
    decoder warnings shown as :func:`decoder_warnings` shows the CLI's, or none when ``quiet``)."""
    from .results import Failure

    good = [path for path, err in sources if err is None]
    with contextlib.ExitStack() as stack:
        if workers and good:
            from ._decode_pool import DecodePool

            limits = {
                "max_pixels": scorer.max_pixels,
                "max_bytes": scorer.max_bytes,
                "max_decode_bytes": scorer.max_decode_bytes,
            }
            pool = stack.enter_context(DecodePool(workers, spec=scorer.info.preprocess, quiet=quiet, **limits))
            scored = scorer.score_preprocessed(pool.batches(good, batch_size))
        else:
            scored = scorer.iter_scores(good, batch_size=batch_size, on_error="record")
        for i, (path, err) in enumerate(sources):
            yield Failure(input=path, index=i, error=err) if err is not None else next(scored)


def dispatch(root: argparse.ArgumentParser, argv: Sequence[str]) -> int:
    """Parse ``argv`` and run the command's handler; no arguments at all prints the help (status 2)."""
    if not argv:
        root.print_help(sys.stderr)
        return 2
    args = root.parse_args(argv)
    with decoder_warnings(quiet=getattr(args, "quiet", False)):
        return args.handler(args)
