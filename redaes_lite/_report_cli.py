"""``redaes-lite report``: the contact sheet (:mod:`redaes_lite.report`) from the command line.

Kept apart from ``cli.py``, which only registers it (:func:`add_command`); the shared option builders and
run helpers come from ``_cli_common``, as ``cli.py``'s and ``eval/cli.py``'s do.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["add_command"]


def _thresholds(text: str) -> tuple[float, ...]:
    """``--thresholds``: four ascending scores, as ``examples/cull.py`` takes them."""
    from .report import parse_thresholds

    try:
        return parse_thresholds(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _write(args: argparse.Namespace, text: str) -> None:
    from . import _cli_common as cli

    with cli.sink(args.output) as out:
        out.write(text)


def _limits(scorer: Any) -> dict[str, Any]:
    return {"max_pixels": scorer.max_pixels, "max_bytes": scorer.max_bytes, "max_decode_bytes": scorer.max_decode_bytes}


def _compare_view(args: argparse.Namespace) -> int:
    from . import _cli_common as cli
    from ._cli_io import printable
    from .errors import RedaesError
    from .report import STAR_THRESHOLDS, build_comparison, render_comparison, thumbnails
    from .results import Score

    if len(args.paths) != 2:
        raise cli.fail(f"--compare takes two photos, A and B; got {len(args.paths)} paths")
    a, b = args.paths
    scorer = cli.scorer_for(args)
    results = scorer.score_many([a, b], batch_size=2, on_error="record")
    comparison = None
    if all(isinstance(r, Score) for r in results):
        try:
            comparison = scorer.compare(a, b)
        except RedaesError:  # a file that changed between the two reads: shown as no comparison
            comparison = None
    size = args.thumb_size or 2 * 320
    thumbs = thumbnails(
        [x if isinstance(r, Score) else None for x, r in zip((a, b), results)], size=size, **_limits(scorer)
    )
    view = build_comparison(
        printable(a),
        printable(b),
        results,
        comparison,
        model=scorer.model_id,
        thumbs=thumbs,
        thresholds=args.thresholds or STAR_THRESHOLDS,
        reject_below=args.reject_below,
        title=args.title,
    )
    _write(args, render_comparison(view))
    failed = sum(not isinstance(r, Score) for r in results)
    if failed:
        cli.say(f"{failed} of 2 inputs failed", args.quiet)
    return 1 if failed else 0


def _report(args: argparse.Namespace) -> int:
    """Write a ranked contact sheet: one self-contained HTML file of thumbnails, best first.

    Each photo shows its 0-10 score, its stars (as examples/cull.py sets them), and the factors furthest
    from the shoot's median; failed files are listed with their errors; the best of each group of
    near-duplicates (or of each --groups group) is marked. The file needs no network: open it from disk.
    With --compare A B: the two photos side by side and their factor differences as a bar chart."""
    from . import _cli_common as cli
    from ._cli_io import expand, printable
    from .report import (
        NEAR_DUPLICATE_BITS,
        STAR_THRESHOLDS,
        THUMB_SIZE,
        build_report,
        group_labels,
        near_duplicates,
        read_groups,
        render_report,
        thumbnails,
    )
    from .results import Score

    if args.compare:
        return _compare_view(args)
    groups_csv = None
    if args.groups is not None:
        try:
            groups_csv = read_groups(args.groups)
        except (OSError, ValueError, UnicodeDecodeError) as e:
            raise cli.fail(f"--groups: {getattr(e, 'strerror', None) or e}") from None
    scorer = cli.scorer_for(args)
    sources = expand(args.paths, recursive=args.recursive)
    bar = cli.progress_bar(len(sources), args, "scoring")
    results = []
    for r in cli._results(scorer, sources, args.batch_size, args.workers, quiet=args.quiet):
        bar.advance()
        results.append(r)
    bar.close()
    inputs = [path if isinstance(r, Score) else None for (path, _), r in zip(sources, results)]
    bar = cli.progress_bar(sum(x is not None for x in inputs), args, "thumbnails")
    thumbs = thumbnails(inputs, size=args.thumb_size or THUMB_SIZE, on_done=bar.advance, **_limits(scorer))
    bar.close()
    if groups_csv is not None:
        groups = group_labels([path for path, _ in sources], groups_csv)
    else:
        bits = NEAR_DUPLICATE_BITS if args.near_duplicates is None else args.near_duplicates
        groups = near_duplicates([t.dhash if t else None for t in thumbs], max_bits=bits) if bits >= 0 else None
    report = build_report(
        [printable(path) for path, _ in sources],
        results,
        model=scorer.model_id,
        thumbs=thumbs,
        groups=groups or [None] * len(sources),
        thresholds=args.thresholds or STAR_THRESHOLDS,
        reject_below=args.reject_below,
        title=args.title,
    )
    _write(args, render_report(report))
    failed = len(report.failed)
    if failed:
        cli.say(f"{failed} of {len(sources)} inputs failed", args.quiet)
    return 1 if failed else 0


def add_command(sub: Any) -> argparse.ArgumentParser:
    """Register ``report`` on ``cli``'s subparsers."""
    from . import _cli_common as cli

    p = cli.command(sub, "report", _report)
    cli._add_input_options(p)
    p.add_argument(
        "--output", "-o", type=Path, metavar="FILE", help="Write the HTML here (atomically) instead of stdout."
    )
    p.add_argument(
        "--compare",
        action="store_true",
        help="Two photos, A then B: side by side, with their factor "
        "differences as a bar chart, instead of a contact sheet.",
    )
    p.add_argument(
        "--groups",
        type=Path,
        metavar="CSV",
        help="Groups of photos (columns path, group): the best of "
        "each is marked, instead of groups of near-duplicates found from the thumbnails.",
    )
    p.add_argument(
        "--near-duplicates",
        type=cli.at_least(-1),
        metavar="BITS",
        help="Photos whose thumbnails' 64-bit difference hashes differ in at most BITS bits, among the 8 "
        "before each in input order, are a group of near-duplicates; -1: no groups [default: 8].",
    )
    p.add_argument(
        "--thresholds",
        type=_thresholds,
        metavar="T2,T3,T4,T5",
        help="Lowest score for 2, 3, 4 and 5 stars, as examples/cull.py takes them [default: 2,4,6,8].",
    )
    p.add_argument("--reject-below", type=float, metavar="SCORE", help="Show photos scoring below SCORE as rejected.")
    p.add_argument("--title", help="Title of the page.")
    p.add_argument(
        "--thumb-size",
        type=cli.at_least(16),
        metavar="PX",
        help="Longest side of the thumbnails [default: 320; 640 with --compare].",
    )
    cli.add_model_options(p)
    cli.add_run_options(p)
    return p
