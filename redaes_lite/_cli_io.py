"""CLI plumbing: expand path arguments, turn results into rows, write rows, show progress.

Rows (README, "Command line"): ``score``/``rank``: ``path, score, utility, factors, model, error``;
``compare``: ``a, b, preferred, probability, delta, factors, model, error``. ``model`` names the model that
made the row (``Scorer.model_id``: ``default@0.5.0``, or ``sha256:<12 hex>@<version>`` for a model file).
In CSV ``factors`` becomes one ``factor.<name>`` column per factor.
"""

from __future__ import annotations

import csv
import fnmatch
import glob
import json
import os
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

if TYPE_CHECKING:  # the results module pulls in numpy and Pillow; `--version` must not
    from .results import Comparison, Failure, Score

__all__ = ["FORMATS", "IMAGE_EXTENSIONS", "Progress", "Source", "compare_row", "expand", "score_row", "write_rows"]

FORMATS = ("table", "json", "jsonl", "csv")
IMAGE_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif",
    ".heic", ".heif", ".avif", ".jp2", ".ppm", ".pgm", ".pnm", ".tga",
})  # fmt: skip
_GLOB_CHARS = frozenset("*?[")

#: One CLI input: the path as shown in its row, and an error found while expanding (else None).
Source = tuple[str, "str | None"]


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
                elif (not images_only or path.suffix.lower() in IMAGE_EXTENSIONS) and entry.is_file():
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


def expand(args: Sequence[str], *, recursive: bool) -> list[Source]:
    """Files stay as given; folders become their images (sorted; subfolders with ``recursive``);
    patterns are globbed. Folders without images, unlistable folders and patterns without matches
    become error rows."""
    out: list[Source] = []
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            found, errors = _walk(path, recursive=recursive)
            hint = "" if recursive else " (use --recursive for subfolders)"
            out.extend((str(p), None) for p in found)
            out.extend(errors)
            if not found and not errors:
                out.append((arg, f"{arg}: folder contains no images{hint}"))
        elif not path.exists() and _GLOB_CHARS & set(arg):
            matches = _glob(arg, recursive=recursive)
            if matches:
                out.extend((m, None) for m in matches)
            else:
                out.append((arg, f"{arg}: no files match"))
        else:
            out.append((arg, None))  # missing or unreadable files fail later with the loader's message
    return out


def score_row(path: str, result: Score | Failure, model: str) -> dict[str, Any]:
    from .results import Failure

    if isinstance(result, Failure):
        return {"path": path, "score": None, "utility": None, "factors": None, "model": model, "error": result.error}
    return {"path": path, **result.to_dict(), "model": model, "error": None}


def compare_row(a: str, b: str, result: Comparison | None, error: str | None, model: str) -> dict[str, Any]:
    row: dict[str, Any] = {"a": a, "b": b, "preferred": None, "probability": None, "delta": None, "factors": None}
    if result is not None:
        row.update(result.to_dict())
    return {**row, "model": model, "error": error}


def _csv_cell(v: Any) -> Any:
    return "" if v is None else v


def _write_csv(rows: Iterable[dict[str, Any]], out: IO[str], factors: Sequence[str]) -> None:
    writer: Any = None
    for row in rows:
        flat = {k: v for k, v in row.items() if k not in ("factors", "model", "error")}
        flat.update({f"factor.{n}": (row["factors"] or {}).get(n) for n in factors})
        flat["model"] = row.get("model")
        flat["error"] = row["error"]
        if writer is None:
            writer = csv.DictWriter(out, fieldnames=list(flat), lineterminator="\n")
            writer.writeheader()
        writer.writerow({k: _csv_cell(v) for k, v in flat.items()})
        out.flush()


def _cell(v: Any, width: int, spec: str) -> str:
    text = "-" if v is None else format(v, spec) if isinstance(v, float) else str(v)
    return text.rjust(width)


# Table columns (key, width, float format) after the path and before the factor columns.
_SCORE_COLS = (("score", 5, ".2f"), ("utility", 8, ".3f"))
_COMPARE_COLS = (("preferred", 9, ""), ("probability", 11, ".3f"), ("delta", 8, "+.3f"))
#: A path wider than this pushes its own row to the right instead of widening every row.
MAX_PATH_WIDTH = 60


def _write_table(rows: Iterable[dict[str, Any]], out: IO[str], factors: Sequence[str], *, width: int | None,
                 label_width: int) -> int:  # fmt: skip
    """The path (``a  b`` for compare) first, padded to ``label_width``; fixed-width numbers; the factor
    columns that fit in ``width`` characters (all when ``None``); the model. Rows are printed as they
    arrive. Returns how many factor columns were left out."""
    hidden = 0
    for i, row in enumerate(rows):
        if i == 0:
            is_compare = "preferred" in row
            cols = _COMPARE_COLS if is_compare else _SCORE_COLS
            head = "a  b" if is_compare else "path"
            first = f"{row['a']}  {row['b']}" if is_compare else row["path"]
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
        label = f"{row['a']}  {row['b']}" if is_compare else row["path"]
        cells = [label.ljust(lw), *(_cell(row[k], w, f) for k, w, f in cols),
                 *(_cell(fac.get(k), w, f) for k, w, f in fcols)]  # fmt: skip
        model = row.get("model") or "-"
        line = "  ".join([*cells, model.ljust(mw) if row["error"] else model])
        out.write(line + (f"  error: {row['error']}" if row["error"] else "") + "\n")
        out.flush()
    return hidden


def write_rows(rows: Iterable[dict[str, Any]], out: IO[str], *, fmt: str, factors: Sequence[str],
               width: int | None = None, label_width: int = 0) -> int:  # fmt: skip
    """Write rows as ``fmt``; rows are consumed (and, except for ``json``, printed) as they come. The
    table's paths are padded to ``label_width`` and its factor columns cut to fit ``width`` characters
    (``None``: all of them); returns how many factor columns the table left out (0 for other formats)."""
    if fmt == "json":
        out.write("[")
        for i, row in enumerate(rows):
            out.write(("," if i else "") + "\n  " + json.dumps(row, ensure_ascii=False))
        out.write("\n]\n")
    elif fmt == "jsonl":
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
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
