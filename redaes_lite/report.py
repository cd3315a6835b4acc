"""A shoot as a ranked contact sheet: one self-contained HTML file, best first, and a two-photo comparison.

    >>> from redaes_lite.report import build_report, render_report     # doctest: +SKIP
    >>> results = scorer.score_many(paths, on_error="record")          # doctest: +SKIP
    >>> html = render_report(build_report(paths, results, model=scorer.model_id))  # doctest: +SKIP

The order is :func:`redaes_lite.api.ranking`'s, the one ``rank`` uses: best first by utility, ties in input
order, failures last. Stars are those ``examples/cull.py`` writes (:func:`stars`). Each photo shows the
factors whose utility lies furthest from the shoot's median; near-duplicates (a burst) are found from a
64-bit difference hash of each thumbnail, or given as a CSV, and the best of each group is marked.
Importing this module loads neither numpy nor Pillow (``redaes-lite --help`` stays light).
"""

from __future__ import annotations

import base64
import csv
import io
import os
import statistics
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._report_html import render_comparison, render_report

if TYPE_CHECKING:
    from .results import Comparison, Failure, Score

__all__ = [
    "NEAR_DUPLICATE_BITS",
    "STAR_THRESHOLDS",
    "THUMB_SIZE",
    "ComparisonView",
    "Photo",
    "Report",
    "Thumb",
    "build_comparison",
    "build_report",
    "factors_apart",
    "group_labels",
    "near_duplicates",
    "parse_thresholds",
    "read_groups",
    "render_comparison",
    "render_report",
    "stars",
    "thumbnail",
    "thumbnails",
]

#: Lowest display score for 2, 3, 4 and 5 stars (``examples/cull.py --thresholds``' default).
STAR_THRESHOLDS = (2.0, 4.0, 6.0, 8.0)
#: Longest side of a contact-sheet thumbnail, in pixels: sharp at two columns on a phone (2x screens).
THUMB_SIZE = 320
#: Near-duplicates: thumbnails whose difference hashes differ in at most this many of 64 bits. On the 441
#: shared photos, 47 neighbour pairs are within 8 bits, all of one scene (FiveK input/expert, SICE exposure
#: brackets) but one pair of dark night shots; at 10 bits, three pairs of different scenes joined them.
NEAR_DUPLICATE_BITS = 8
_NEIGHBOURS = 8  # each photo is compared with this many before it in input order (bursts are consecutive)
_THUMB_THREADS = max(1, min(4, os.cpu_count() or 1))


def stars(score: float, *, thresholds: Sequence[float] = STAR_THRESHOLDS, reject_below: float | None = None) -> int:
    """The star rating of a 0..10 display score: 1 + the number of ``thresholds`` at or below it (1..5 for
    four), or -1 (rejected) below ``reject_below``. ``examples/cull.py`` writes this into XMP sidecars."""
    if reject_below is not None and score < reject_below:
        return -1
    return 1 + bisect_right(list(thresholds), score)


def parse_thresholds(text: str) -> tuple[float, ...]:
    """``"2,4,6,8"``: four ascending scores, the lowest for 2, 3, 4 and 5 stars. Raises ValueError."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"not numbers: {text!r}") from None
    if len(values) != 4 or list(values) != sorted(values):
        raise ValueError(f"need four ascending scores (for 2..5 stars), got {text!r}")
    return values


# ----------------------------------------------------------------------------------------- thumbnails
@dataclass(frozen=True)
class Thumb:
    """An embedded thumbnail: a ``data:`` URI (WebP, else JPEG), its size, and its 64-bit difference hash."""

    uri: str
    width: int
    height: int
    dhash: int


def _dhash(im: Any) -> int:
    """64-bit difference hash: a 9x8 grey copy, one bit per horizontal neighbour pair (left brighter)."""
    from PIL import Image

    px = im.convert("L").resize((9, 8), Image.Resampling.BOX).tobytes()
    bits = 0
    for row in range(8):
        for col in range(8):
            bits = bits << 1 | (px[row * 9 + col] > px[row * 9 + col + 1])
    return bits


def thumbnail(x: Any, *, size: int = THUMB_SIZE, quality: int = 70, **limits: Any) -> Thumb:
    """A thumbnail of ``x`` (anything :func:`~redaes_lite.preprocess.load_image` reads, with its limits as
    keywords), longest side ``size``, EXIF orientation applied; JPEGs are decoded at a reduced draft size.
    Raises :class:`~redaes_lite.errors.ImageError`."""
    from PIL import Image, features

    from .preprocess import PreprocessSpec, load_image

    im = load_image(x, PreprocessSpec(size=(size, size), pad=(1.0, 1.0, 1.0)), **limits)
    im.thumbnail((size, size), Image.Resampling.LANCZOS)
    fmt = "WEBP" if features.check("webp") else "JPEG"
    out = io.BytesIO()
    im.save(out, fmt, quality=quality, **({"method": 4} if fmt == "WEBP" else {"optimize": True}))
    uri = f"data:image/{fmt.lower()};base64,{base64.b64encode(out.getvalue()).decode('ascii')}"
    return Thumb(uri=uri, width=im.width, height=im.height, dhash=_dhash(im))


def thumbnails(
    inputs: Sequence[Any], *, size: int = THUMB_SIZE, on_done: Callable[[], None] | None = None, **limits: Any
) -> list[Thumb | None]:
    """:func:`thumbnail` of each input (None where it is None or cannot be read), in order, decoded by a few
    threads; ``on_done()`` is called once per input, as each is finished (a progress bar)."""
    from .errors import RedaesError

    def one(x: Any) -> Thumb | None:
        if x is None:
            return None
        try:
            return thumbnail(x, size=size, **limits)
        except RedaesError:
            return None

    out: list[Thumb | None] = []
    with ThreadPoolExecutor(max_workers=_THUMB_THREADS, thread_name_prefix="redaes-thumb") as pool:
        for thumb in pool.map(one, inputs):
            out.append(thumb)
            if on_done is not None:
                on_done()
    return out


# ----------------------------------------------------------------------------------------- groups
def near_duplicates(hashes: Sequence[int | None], *, max_bits: int = NEAR_DUPLICATE_BITS) -> list[str | None]:
    """Group labels (``"1"``, ``"2"``, ... in input order; None for a photo like no other) for photos whose
    difference hashes are within ``max_bits`` of one of the few photos before them in input order (a burst
    is consecutive in file order), joined transitively."""
    parent = list(range(len(hashes)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, h in enumerate(hashes):
        if h is None:
            continue
        for j in range(max(0, i - _NEIGHBOURS), i):
            other = hashes[j]
            if other is not None and bin(h ^ other).count("1") <= max_bits:
                parent[root(i)] = root(j)
    roots = [root(i) for i in range(len(hashes))]
    sizes: dict[int, int] = {}
    for r in roots:
        sizes[r] = sizes.get(r, 0) + 1
    labels: dict[int, str] = {}
    for r in roots:
        if sizes[r] > 1 and r not in labels:
            labels[r] = str(len(labels) + 1)
    return [labels.get(r) for r in roots]


def read_groups(path: str | os.PathLike) -> dict[str, str]:
    """A groups CSV: a header with ``path`` and ``group`` columns, one photo a row. Returns ``{path: group}``,
    paths as written and normalised (``os.path.normpath``). Raises ValueError naming the problem, OSError."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"path", "group"} <= set(reader.fieldnames):
            raise ValueError(
                f"{path}: a groups CSV needs a header with 'path' and 'group' columns, got {reader.fieldnames}"
            )
        groups: dict[str, str] = {}
        for row in reader:
            if row["path"] and row["group"]:
                groups[os.path.normpath(row["path"])] = row["group"]
    return groups


# ----------------------------------------------------------------------------------------- the report
@dataclass(frozen=True)
class Photo:
    """One photo of a report. ``place`` is its rank (1 = best), None for a failed input; ``apart`` the
    factors furthest from the shoot's median, ``(name, f(photo) - median)``, largest first; ``best`` marks
    the best of its ``group``."""

    path: str
    index: int
    place: int | None
    score: float | None
    utility: float | None
    stars: int | None
    apart: tuple[tuple[str, float], ...]
    group: str | None
    best: bool
    thumb: Thumb | None
    error: str | None


@dataclass(frozen=True)
class Report:
    """A contact sheet: ``photos`` in rank order (failures last), the shoot's median factor utilities."""

    title: str
    model: str
    photos: tuple[Photo, ...]
    median: dict[str, float]
    thresholds: tuple[float, ...]
    reject_below: float | None

    @property
    def failed(self) -> tuple[Photo, ...]:
        return tuple(p for p in self.photos if p.error is not None)


def factors_apart(
    factors: dict[str, float], median: dict[str, float], *, top: int = 3
) -> tuple[tuple[str, float], ...]:
    """The ``top`` factors of one photo furthest from the shoot's ``median``: ``(name, difference)``,
    largest absolute difference first (model order on ties); differences of zero are left out."""
    diffs = [(n, v - median[n]) for n, v in factors.items() if n in median]
    diffs.sort(key=lambda nd: -abs(nd[1]))  # stable: model order on ties
    return tuple((n, d) for n, d in diffs[:top] if d != 0)


def _median(scores: Iterable[Score]) -> dict[str, float]:
    columns: dict[str, list[float]] = {}
    for s in scores:
        for name, value in s.factors.items():
            columns.setdefault(name, []).append(value)
    return {name: statistics.median(values) for name, values in columns.items()}


def _best_of_groups(order: Sequence[int], labels: Sequence[str | None], scored: set[int]) -> set[int]:
    """Index of the best-ranked photo of each group that has at least two scored photos."""
    count: dict[str, int] = {}
    for i in scored:
        if labels[i] is not None:
            count[labels[i]] = count.get(labels[i], 0) + 1
    best: dict[str, int] = {}
    for i in order:
        label = labels[i]
        if i in scored and label is not None and count[label] > 1 and label not in best:
            best[label] = i
    return set(best.values())


def build_report(
    paths: Sequence[str],
    results: Sequence[Score | Failure],
    *,
    model: str,
    thumbs: Sequence[Thumb | None] | None = None,
    groups: Sequence[str | None] | None = None,
    thresholds: Sequence[float] = STAR_THRESHOLDS,
    reject_below: float | None = None,
    title: str | None = None,
    top_factors: int = 3,
) -> Report:
    """A :class:`Report` of ``results`` (``score_many(..., on_error="record")``, in input order) for ``paths``
    (their names as shown). ``thumbs`` and ``groups`` (a label or None per input) are aligned with them;
    without ``groups``, near-duplicates are found from the thumbnails' hashes."""
    from .api import ranking
    from .results import Score

    n = len(results)
    if len(paths) != n or (thumbs is not None and len(thumbs) != n) or (groups is not None and len(groups) != n):
        raise ValueError("paths, results, thumbs and groups must have one entry per input")
    thumbs = list(thumbs) if thumbs is not None else [None] * n
    if groups is None:
        groups = near_duplicates([t.dhash if t is not None else None for t in thumbs])
    order = ranking(results)
    scored = {i for i, r in enumerate(results) if isinstance(r, Score)}
    median = _median(r for r in results if isinstance(r, Score))
    best = _best_of_groups(order, groups, scored)
    photos = []
    for place, i in enumerate(order, start=1):
        r = results[i]
        if isinstance(r, Score):
            photos.append(
                Photo(
                    path=paths[i],
                    index=i,
                    place=place,
                    score=r.score,
                    utility=r.utility,
                    stars=stars(r.score, thresholds=thresholds, reject_below=reject_below),
                    apart=factors_apart(r.factors, median, top=top_factors),
                    group=groups[i],
                    best=i in best,
                    thumb=thumbs[i],
                    error=None,
                )
            )
        else:
            photos.append(
                Photo(
                    path=paths[i],
                    index=i,
                    place=None,
                    score=None,
                    utility=None,
                    stars=None,
                    apart=(),
                    group=groups[i],
                    best=False,
                    thumb=None,
                    error=r.error,
                )
            )
    shown = title if title is not None else f"{len(scored)} photos, best first"
    return Report(
        title=shown,
        model=model,
        photos=tuple(photos),
        median=median,
        thresholds=tuple(thresholds),
        reject_below=reject_below,
    )


def group_labels(paths: Sequence[str], groups: dict[str, str]) -> list[str | None]:
    """Each path's label in a :func:`read_groups` mapping (matched as written, normalised), else None."""
    return [groups.get(os.path.normpath(p)) for p in paths]


@dataclass(frozen=True)
class ComparisonView:
    """Two photos side by side: ``a`` and ``b`` (as :class:`Photo`, place 1 = the preferred one) and the
    :class:`~redaes_lite.results.Comparison` of b against a (None when either failed)."""

    title: str
    model: str
    a: Photo
    b: Photo
    comparison: Comparison | None


def build_comparison(
    a: str,
    b: str,
    results: Sequence[Score | Failure],
    comparison: Comparison | None,
    *,
    model: str,
    thumbs: Sequence[Thumb | None] = (None, None),
    thresholds: Sequence[float] = STAR_THRESHOLDS,
    reject_below: float | None = None,
    title: str | None = None,
) -> ComparisonView:
    """A :class:`ComparisonView` from the two photos' results (``score_many([a, b], on_error="record")``),
    their ``scorer.compare(a, b)`` and thumbnails."""
    report = build_report(
        [a, b],
        results,
        model=model,
        thumbs=thumbs,
        groups=[None, None],
        thresholds=thresholds,
        reject_below=reject_below,
        top_factors=0,
    )
    by_index = {p.index: p for p in report.photos}
    shown = title if title is not None else "A or B?"
    return ComparisonView(title=shown, model=model, a=by_index[0], b=by_index[1], comparison=comparison)
