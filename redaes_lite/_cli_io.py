"""CLI plumbing: expand path arguments, turn results into rows, write rows, show progress.

Rows (README, "Command line"): ``score``/``rank``: ``path, score, utility, factors, model, error``;
``compare``: ``a, b, preferred, probability, delta, factors, model, error``. ``model`` names the model that
made the row (``Scorer.model_id``: ``default@0.5.0``, or ``sha256:<12 hex>@<version>`` for a model file).
In CSV ``factors`` becomes one ``factor.<name>`` column per factor.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import fnmatch
import functools
import glob
import io
import json
import os
import re
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:  # the results module pulls in numpy and Pillow; `--version` must not
    from .results import Comparison, Failure, Score

__all__ = [
    "FORMATS",
    "IMAGE_EXTENSIONS",  # noqa: F822 - the module's __getattr__ computes it when first asked for
    "Progress",
    "Source",
    "compare_row",
    "decoder_warnings",
    "expand",
    "image_extensions",
    "printable",
    "score_row",
    "write_rows",
]

FORMATS = ("table", "json", "jsonl", "csv")
# pillow-heif's extensions: it registers them with Pillow only when imported, on the first HEIF file. Listed
# even where it is not installed, so that such a file gets a row saying what to install, not silence.
_HEIF_EXTENSIONS = frozenset({".heic", ".heics", ".heif", ".heifs", ".hif", ".avif", ".avifs"})
_GLOB_CHARS = frozenset("*?[")

#: One CLI input: the path as shown in its row, and an error found while expanding (else None).
Source = tuple[str, "str | None"]


@functools.cache
def image_extensions() -> frozenset[str]:
    """The file extensions folder walks take as images: every extension Pillow registers for a format the
    loader decodes (``redaes_lite._safe_open``'s list; MPO through the JPEG decoder), and HEIF/AVIF's.
    Computed on first use: it imports Pillow's plugins, which ``--version`` must not."""
    from PIL import Image

    from ._safe_open import DECODED_FORMATS

    Image.init()
    allowed = {*DECODED_FORMATS, "MPO"}  # Pillow's JPEG opener returns multi-picture files as MPO
    found = {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in allowed}
    return frozenset(found | _HEIF_EXTENSIONS)


def __getattr__(name: str) -> Any:  # IMAGE_EXTENSIONS, computed when first asked for (PEP 562)
    if name == "IMAGE_EXTENSIONS":
        return image_extensions()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _walk(folder: Path, *, recursive: bool, images_only: bool = True) -> tuple[list[Path], list[Source]]:
    """Files (images only, by extension) under ``folder``, sorted, and an error row for each folder that
    cannot be listed.

    Symlinked folders are not descended (like ``find`` and ``pathlib``), and each real folder is listed
    once (by device and inode), so symlink and bind-mount loops end; unreadable folders are reported.
    """
    files: list[Path] = []
    errors: list[Source] = []
    seen: set[tuple[int, int]] = set()
    stack = [folder]
    while stack:
        current = stack.pop()
        try:
            st = current.stat()
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            with os.scandir(current) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            errors.append((str(current), f"{current}: cannot list folder ({e.strerror or e})"))
            continue
        for entry in entries:
            path = Path(entry.path)
            try:
                if entry.is_dir(follow_symlinks=False):
                    if recursive:
                        stack.append(path)
                elif (not images_only or path.suffix.lower() in image_extensions()) and entry.is_file():
                    files.append(path)
            except OSError:
                continue  # vanished or unreadable entry: not an input we can name
    return sorted(files), errors


def _match(parts: Sequence[str], pattern: Sequence[str]) -> bool:
    """Glob match by path components; ``**`` matches any number of them (hidden names only explicitly)."""
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        spans = range(len(parts) + 1)
        return any(_match(parts[i:], rest) for i in spans if not any(p.startswith(".") for p in parts[:i]))
    if not parts or (parts[0].startswith(".") and not head.startswith(".")):
        return False
    return fnmatch.fnmatchcase(parts[0], head) and _match(parts[1:], rest)


def _glob(arg: str, *, recursive: bool) -> list[str]:
    """Files matching a pattern, sorted. ``**`` (with ``recursive``) walks with :func:`_walk`, loop-safe:
    ``glob.glob`` follows symlinked folders and never ends on a folder that links to its parent."""
    if not recursive or "**" not in arg:
        return sorted(m for m in glob.glob(arg) if not os.path.isdir(m))
    parts = Path(arg).parts
    fixed = next(i for i, p in enumerate(parts) if _GLOB_CHARS & set(p))
    base = Path(*parts[:fixed]) if fixed else Path(".")
    found, _ = _walk(base, recursive=True, images_only=False)
    rel = [(p, p.relative_to(base).parts) for p in found]
    return sorted(str(p) if fixed else str(Path(*r)) for p, r in rel if _match(r, parts[fixed:]))


def _probe(path: Path, test: Callable[[], bool]) -> bool:
    """``path.is_dir()`` / ``exists()``, False where it cannot be asked: pathlib raises PermissionError for a
    path inside a folder we may not traverse, which the loader then reports as the input's error row."""
    try:
        return test()
    except (OSError, ValueError):
        return False


def expand(args: Sequence[str], *, recursive: bool) -> list[Source]:
    """Files stay as given; folders become their images (sorted; subfolders with ``recursive``);
    patterns are globbed. Folders without images, unlistable folders and patterns without matches
    become error rows."""
    out: list[Source] = []
    for arg in args:
        path = Path(arg)
        if _probe(path, path.is_dir):
            found, errors = _walk(path, recursive=recursive)
            hint = "" if recursive else " (use --recursive for subfolders)"
            out.extend((str(p), None) for p in found)
            out.extend(errors)
            if not found and not errors:
                out.append((arg, f"{arg}: folder contains no images{hint}"))
        elif _GLOB_CHARS & set(arg) and not _probe(path, path.exists):
            matches = _glob(arg, recursive=recursive)
            if matches:
                out.extend((m, None) for m in matches)
            else:
                out.append((arg, f"{arg}: no files match"))
        else:
            out.append((arg, None))  # missing or unreadable files fail later with the loader's message
    return out


def printable(text: str) -> str:
    """``text`` as UTF-8 can hold it: a file name that is not valid UTF-8 reaches Python with each bad byte as
    a lone surrogate (PEP 383), which no UTF-8 writer accepts; each such byte is written ``\\xHH`` instead
    (``caf\\xe9.jpg`` for the Latin-1 name ``caf<0xE9>.jpg``)."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # surrogates that came from no file name: escape them as they are
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def score_row(path: str, result: Score | Failure, model: str) -> dict[str, Any]:
    from .results import Failure

    path = printable(path)
    if isinstance(result, Failure):
        error = printable(result.error)
        return {"path": path, "score": None, "utility": None, "factors": None, "model": model, "error": error}
    return {"path": path, **result.to_dict(), "model": model, "error": None}


def compare_row(a: str, b: str, result: Comparison | None, error: str | None, model: str) -> dict[str, Any]:
    row: dict[str, Any] = {
        "a": printable(a),
        "b": printable(b),
        "preferred": None,
        "probability": None,
        "delta": None,
        "factors": None,
    }
    if result is not None:
        row.update(result.to_dict())
    return {**row, "model": model, "error": None if error is None else printable(error)}


# A text cell starting with one of these is a formula to Excel, LibreOffice or Google Sheets (a file named
# `=HYPERLINK(...).jpg` would run on opening the CSV); OWASP's advice: prefix a single quote. Numbers are
# written as numbers (a negative utility stays -0.5), so only text cells are escaped.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, str) and v.startswith(_FORMULA_START):
        return "'" + v
    return v


def _write_csv(rows: Iterable[dict[str, Any]], out: IO[str], factors: Sequence[str]) -> None:
    writer: Any = None
    buf = io.StringIO()
    for row in rows:
        flat = {k: v for k, v in row.items() if k not in ("factors", "model", "error")}
        flat.update({f"factor.{n}": (row["factors"] or {}).get(n) for n in factors})
        flat["model"] = row.get("model")
        flat["error"] = row["error"]
        if writer is None:
            # The csv module quotes a cell holding a character of its line terminator, and only those: with
            # "\r\n", a CR as well as a LF in a file name is quoted; each record is then ended with "\n".
            writer = csv.DictWriter(buf, fieldnames=list(flat), lineterminator="\r\n")
            writer.writeheader()
            out.write(_record(buf))
        writer.writerow({k: _csv_cell(v) for k, v in flat.items()})
        out.write(_record(buf))
        out.flush()


def _record(buf: io.StringIO) -> str:
    """The one record the csv writer put in ``buf``, ending in "\n" instead of "\r\n"; ``buf`` emptied."""
    text = buf.getvalue()
    buf.seek(0)
    buf.truncate()
    return text[:-2] + "\n"


# Characters a terminal acts on instead of showing (C0/C1 controls, DEL, bidirectional overrides that
# would reorder the rest of the line): the table shows them as escapes, so a file name cannot move the
# cursor, clear the screen or disguise the row.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def visible(text: str) -> str:
    """``text`` with control characters as ``\\t``, ``\\n``, ``\\r``, ``\\xHH`` or ``\\uHHHH``."""

    def escape(m: re.Match[str]) -> str:
        c = m.group()
        return _NAMED.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")

    return _CONTROL.sub(escape, text)


def _cell(v: Any, width: int, spec: str) -> str:
    text = "-" if v is None else format(v, spec) if isinstance(v, float) else visible(str(v))
    return text.rjust(width)


# Table columns (key, width, float format) after the path and before the factor columns.
_SCORE_COLS = (("score", 5, ".2f"), ("utility", 8, ".3f"))
_COMPARE_COLS = (("preferred", 9, ""), ("probability", 11, ".3f"), ("delta", 8, "+.3f"))
#: A path wider than this pushes its own row to the right instead of widening every row.
MAX_PATH_WIDTH = 60


def _write_table(
    rows: Iterable[dict[str, Any]], out: IO[str], factors: Sequence[str], *, width: int | None, label_width: int
) -> int:
    """The path (``a  b`` for compare) first, padded to ``label_width``; fixed-width numbers; the factor
    columns that fit in ``width`` characters (all when ``None``); the model. Rows are printed as they
    arrive. Returns how many factor columns were left out."""
    hidden = 0
    for i, row in enumerate(rows):
        if i == 0:
            is_compare = "preferred" in row
            cols = _COMPARE_COLS if is_compare else _SCORE_COLS
            head = "a  b" if is_compare else "path"
            first = visible(f"{row['a']}  {row['b']}" if is_compare else row["path"])
            lw = max(len(head), len(first) if is_compare else min(label_width, MAX_PATH_WIDTH))
            mw = max(len("model"), len(row.get("model") or "-"))
            fcols = [(n, max(8, len(n)), "+.3f" if is_compare else ".3f") for n in factors]
            if width is not None:
                room = width - (lw + sum(2 + w for _, w, _ in cols) + 2 + mw)
                keep = 0
                while keep < len(fcols) and room >= 2 + fcols[keep][1]:
                    room -= 2 + fcols[keep][1]
                    keep += 1
                hidden, fcols = len(fcols) - keep, fcols[:keep]
            header = [head.ljust(lw), *(k.rjust(w) for k, w, _ in (*cols, *fcols)), "model"]
            out.write("  ".join(header) + "\n")
        fac = row["factors"] or {}
        label = visible(f"{row['a']}  {row['b']}" if is_compare else row["path"])
        cells = [
            label.ljust(lw),
            *(_cell(row[k], w, f) for k, w, f in cols),
            *(_cell(fac.get(k), w, f) for k, w, f in fcols),
        ]
        model = visible(row.get("model") or "-")
        line = "  ".join([*cells, model.ljust(mw) if row["error"] else model])
        out.write(line + (f"  error: {visible(row['error'])}" if row["error"] else "") + "\n")
        out.flush()
    return hidden


def _holds_unicode(out: IO[str]) -> bool:
    """Whether a text stream encodes every character (a UTF encoding, or no encoding: an in-memory stream)."""
    encoding = getattr(out, "encoding", None)
    try:
        return encoding is None or codecs.lookup(encoding).name.startswith("utf")
    except LookupError:
        return False


def write_rows(
    rows: Iterable[dict[str, Any]],
    out: IO[str],
    *,
    fmt: str,
    factors: Sequence[str],
    width: int | None = None,
    label_width: int = 0,
) -> int:
    """Write rows as ``fmt``; rows are consumed (and, except for ``json``, printed) as they come. The
    table's paths are padded to ``label_width`` and its factor columns cut to fit ``width`` characters
    (``None``: all of them); returns how many factor columns the table left out (0 for other formats)."""
    # JSON to a stream that cannot hold all of Unicode (stdout under PYTHONIOENCODING=ascii, a Latin-1
    # locale): JSON's own \\u escapes, which every reader decodes, instead of a write error mid-run.
    ascii_only = not _holds_unicode(out)
    if fmt == "json":
        out.write("[")
        for i, row in enumerate(rows):
            out.write(("," if i else "") + "\n  " + json.dumps(row, ensure_ascii=ascii_only))
        out.write("\n]\n")
    elif fmt == "jsonl":
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=ascii_only) + "\n")
            out.flush()
    elif fmt == "csv":
        _write_csv(rows, out, factors)
    else:
        return _write_table(rows, out, factors, width=width, label_width=label_width)
    return 0


class Progress:
    """A one-line ``done/total`` counter on stderr, redrawn at most every 0.1 s."""

    def __init__(self, total: int, *, enabled: bool, label: str, stream: IO[str] | None = None) -> None:
        self.total, self.enabled, self.label = total, enabled, label
        self.stream = stream or sys.stderr
        self.done = 0
        self._last = 0.0

    def advance(self) -> None:
        self.done += 1
        now = time.monotonic()
        if self.enabled and (now - self._last >= 0.1 or self.done == self.total):
            self._last = now
            self.stream.write(f"\r{self.label} {self.done}/{self.total}")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.done:
            self.stream.write("\n")
            self.stream.flush()


def tracked(
    rows: Iterable[dict[str, Any]], progress: Progress, on_row: Callable[[dict[str, Any]], None]
) -> Iterator[dict[str, Any]]:
    """Pass rows through, advancing the progress bar and calling ``on_row`` (e.g. to count errors)."""
    for row in rows:
        progress.advance()
        on_row(row)
        yield row


@contextlib.contextmanager
def decoder_warnings(*, quiet: bool) -> Iterator[None]:
    """What decoders say during the block: Python warnings (Pillow's on malformed EXIF: 3,998 lines for one
    PNG) and Pillow's log records (``PIL`` loggers: "More samples per pixel than can be decoded"). None
    with ``quiet``; else at most one line on stderr per input file, its first message, naming the file
    (from any decode thread: :func:`~redaes_lite.preprocess.decoding` says which file a thread is on).
    Outside a decode: each text once. What C libraries print themselves is dropped (see
    :func:`_c_stderr_silenced`). Filters, hook and handlers are put back after the block."""
    import logging

    from .preprocess import decoding

    shown: set[str] = set()
    lock = threading.Lock()

    def report(text: str) -> None:
        name = decoding()
        text = text.strip().splitlines()[0] if text.strip() else "warning"
        with lock:
            key = f"file:{name}" if name is not None else f"text:{text}"
            if key in shown:
                return
            shown.add(key)
        if sys.stderr is not None:
            where = "" if name is None else f"{printable(name)}: "
            print(f"redaes-lite: warning: {where}{printable(text[:200])}", file=sys.stderr)

    def show(message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        report(str(message) or category.__name__)

    class Lines(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if not quiet:
                report(record.getMessage())

    pil = logging.getLogger("PIL")
    handler, propagate = Lines(logging.WARNING), pil.propagate
    pil.addHandler(handler)
    pil.propagate = False  # else, with no handler configured, logging's last resort prints every record
    try:
        with warnings.catch_warnings(), _c_stderr_silenced():
            # Set before any decode thread starts: the loader's own catch_warnings blocks copy these filters.
            # Without quiet the filters stay Python's (DeprecationWarnings hidden, a warning once per place).
            if quiet:
                warnings.simplefilter("ignore")
            warnings.showwarning = show
            yield
    finally:
        pil.removeHandler(handler)
        pil.propagate = propagate


@contextlib.contextmanager
def _c_stderr_silenced() -> Iterator[None]:
    """File descriptor 2 on /dev/null during the block, ``sys.stderr`` on a copy of the old one: libtiff
    prints its errors on malformed TIFFs ("JPEGLib: Bogus Huffman table definition.", two lines for one
    file) straight to the descriptor, past Python; the file's row already says that it failed. Python's
    own output (our messages, a traceback) still shows. Only where ``sys.stderr`` is descriptor 2 (not an
    in-memory stream, as in tests)."""
    python_stderr = sys.stderr
    try:
        on_fd = python_stderr is not None and python_stderr.fileno() == 2
        saved = os.dup(2) if on_fd else -1
    except (AttributeError, OSError, ValueError):  # closed, or in memory
        on_fd = False
    if not on_fd:
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        python_stderr.flush()
        sys.stderr = open(
            saved,
            "w",
            closefd=False,
            encoding=python_stderr.encoding,  # noqa: SIM115
            errors="backslashreplace",
            buffering=1,
        )
        os.dup2(null, 2)
        yield
    finally:
        sys.stderr.flush()
        sys.stderr = python_stderr
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
