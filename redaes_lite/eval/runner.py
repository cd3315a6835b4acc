"""Score labelled images or preference pairs with a :class:`~redaes_lite.api.Scorer` and report agreement.

Reports are plain JSON-ready dictionaries (``nan`` becomes ``None``) with the keys of
``redaes-lite eval``: ``n, srcc, plcc, plcc_raw, krcc, pair_accuracy`` for scores and
``n, accuracy, mean_probability`` for pairs. Images that fail to load are listed under ``failed``
and excluded (a pair with a failed image is excluded too); ``n`` counts what was evaluated.

When some labelled images trained the model (``training.py``: its ``redaes.training_data`` against the
committed split), the report says how many (``training_overlap``) and gives the same figures on the others
(``held_out``: images that did not train it; ``in_validation_split`` of them are in a committed
validation list). A pair is held out when neither of its images trained the model.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RedaesError
from ..metadata import ModelInfo
from ..pairs import read_pairs
from ..results import Failure
from .datasets import LabelledImage
from .metrics import expected_calibration_error, score_metrics
from .training import TrainingImages, training_images, validation_images

__all__ = [
    "PreferencePair",
    "evaluate_pairs",
    "evaluate_scores",
    "pair_report",
    "read_preference_pairs",
    "score_report",
    "unique_images",
]

#: Called once per scored image (e.g. a progress bar's ``advance``).
Tick = Callable[[], None]
_GROUP_KEYS = ("srcc", "plcc", "plcc_raw", "krcc", "pair_accuracy")
_PAIR_KEYS = ("n", "accuracy", "mean_probability", "ece")


def _overlap(trained: TrainingImages, paths: Sequence[Path]) -> dict[str, Any]:
    """How many of ``paths`` trained the model, and from which of its training data."""
    return {"images": sum(p in trained for p in paths), "of": len(paths), "training_data": trained.sources_of(paths)}


def _held_out(figures: dict[str, Any], keys: Sequence[str], paths: Iterable[Path]) -> dict[str, Any]:
    val = validation_images()
    return {**{k: figures[k] for k in keys}, "in_validation_split": len({p for p in paths if p.name in val})}


@dataclass(frozen=True)
class PreferencePair:
    """Humans preferred ``preferred`` over ``other``."""

    preferred: Path
    other: Path


def _clean(value: Any) -> Any:
    """JSON has no NaN: undefined statistics become ``None``, recursively."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _utilities(scorer: Any, paths: Sequence[Path], batch_size: int, tick: Tick | None) -> Iterator[float | str]:
    """Each image's utility, or the error text when it could not be scored (recorded, never raised)."""
    for result in scorer.iter_scores([str(p) for p in paths], batch_size=batch_size, on_error="record"):
        if tick is not None:
            tick()
        yield result.error if isinstance(result, Failure) else result.utility


# ---------------------------------------------------------------------------------------------- scores


def score_report(
    records: Sequence[LabelledImage],
    utilities: Sequence[float | str],
    *,
    by_group: bool,
    trained: TrainingImages | None = None,
) -> dict[str, Any]:
    """Agreement of ``utilities`` (a float, or the error text of a failed image) with the records' labels;
    with ``trained`` (the model's training images), also ``training_overlap`` and ``held_out``."""
    failed = [{"path": str(r.path), "error": u} for r, u in zip(records, utilities) if isinstance(u, str)]
    ok = [(r, float(u)) for r, u in zip(records, utilities) if not isinstance(u, str)]
    pred = np.array([u for _, u in ok], dtype=np.float64)
    label = np.array([r.label for r, _ in ok], dtype=np.float64)
    report: dict[str, Any] = score_metrics(pred, label)
    if by_group:
        groups: dict[str, list[int]] = {}
        for i, (r, _) in enumerate(ok):
            groups.setdefault(r.group or "", []).append(i)
        per = {g: score_metrics(pred[idx], label[idx]) for g, idx in sorted(groups.items())}
        usable = [m for m in per.values() if m["n"] >= 2 and not math.isnan(m["srcc"])]
        mean = {k: float(np.mean([m[k] for m in usable if not math.isnan(m[k])] or [math.nan])) for k in _GROUP_KEYS}
        report["groups"] = {"count": len(per), "used": len(usable), "mean": mean, "by_group": per}
    inside = [r.path in trained for r in records] if trained else []
    if any(inside):
        keep = [i for i, x in enumerate(inside) if not x]
        held = (
            score_report([records[i] for i in keep], [utilities[i] for i in keep], by_group=False)
            if keep
            else {"n": 0, **dict.fromkeys(_GROUP_KEYS)}
        )
        report["training_overlap"] = _overlap(trained, [r.path for r in records])
        report["held_out"] = _held_out(held, ("n", *_GROUP_KEYS), (records[i].path for i in keep))
    report["n_failed"] = len(failed)
    report["failed"] = failed
    return _clean(report)


def evaluate_scores(
    scorer: Any,
    records: Sequence[LabelledImage],
    *,
    by_group: bool = False,
    batch_size: int = 16,
    tick: Tick | None = None,
) -> dict[str, Any]:
    """Score every record's image (failures recorded, not raised) and report :func:`score_report`."""
    utilities = list(_utilities(scorer, [r.path for r in records], batch_size, tick))
    return score_report(records, utilities, by_group=by_group, trained=training_images(scorer.info))


# ---------------------------------------------------------------------------------------------- pairs


def read_preference_pairs(
    path: str | os.PathLike,
    *,
    root: str | os.PathLike,
    preferred_col: str = "preferred",
    other_col: str = "other",
) -> tuple[list[PreferencePair], int]:
    """Pairs from a CSV (``preferred``/``other`` columns) or pair-label JSONL (``delta > 0``: b preferred).

    Returns ``(pairs, skipped)``; JSONL records that failed or judge a tie (``delta == 0``) are skipped.
    """
    path, root = Path(path), Path(root)
    if not path.is_file():
        raise RedaesError(f"{path}: no such pairs file")
    if path.suffix.lower() in (".jsonl", ".json"):
        try:
            records = list(read_pairs(path))
        except ValueError as e:
            raise RedaesError(str(e)) from None
        pairs = [
            PreferencePair(root / (r.b if r.delta > 0 else r.a), root / (r.a if r.delta > 0 else r.b))
            for r in records
            if r.ok and r.delta
        ]
        return pairs, len(records) - len(pairs)
    from .tables import read_rows

    rows = read_rows(path)
    if rows and (preferred_col not in rows[0] or other_col not in rows[0]):
        raise RedaesError(f"{path}: needs columns {preferred_col!r} and {other_col!r} (columns: {', '.join(rows[0])})")
    return [PreferencePair(root / row[preferred_col], root / row[other_col]) for row in rows], 0


def pair_report(
    pairs: Sequence[PreferencePair],
    utility: dict[Path, float | str],
    *,
    info: ModelInfo,
    skipped: int = 0,
    trained: TrainingImages | None = None,
) -> dict[str, Any]:
    """Accuracy (preferred scored higher; a tie counts half), the mean probability the model gives the
    preferred image, and the ECE of the model's own choices (``info.preference(|delta|)`` vs. being right);
    with ``trained`` (the model's training images), also ``training_overlap`` and ``held_out``."""
    failed = sorted({p for pair in pairs for p in (pair.preferred, pair.other) if isinstance(utility[p], str)})
    deltas = np.array(
        [
            float(utility[p.preferred]) - float(utility[p.other])
            for p in pairs
            if not isinstance(utility[p.preferred], str) and not isinstance(utility[p.other], str)
        ],
        dtype=np.float64,
    )
    right = np.where(deltas > 0, 1.0, np.where(deltas == 0, 0.5, 0.0))
    prob_preferred = info.preference(deltas)
    confidence = info.preference(np.abs(deltas))
    report: dict[str, Any] = {
        "n": int(deltas.size),
        "accuracy": float(right.mean()) if deltas.size else math.nan,
        "mean_probability": float(prob_preferred.mean()) if deltas.size else math.nan,
        "ece": expected_calibration_error(confidence, right) if deltas.size else math.nan,
    }
    images = list(dict.fromkeys(p for pair in pairs for p in (pair.preferred, pair.other)))
    inside = sum(p in trained for p in images) if trained else 0
    if inside:
        keep = [pair for pair in pairs if pair.preferred not in trained and pair.other not in trained]
        held = pair_report(keep, utility, info=info) if keep else {"n": 0, **dict.fromkeys(_PAIR_KEYS[1:])}
        report["training_overlap"] = _overlap(trained, images)
        report["held_out"] = _held_out(held, _PAIR_KEYS, (p for pair in keep for p in (pair.preferred, pair.other)))
    report |= {
        "n_skipped": skipped,  # JSONL records that failed or judged a tie
        "n_failed": len(pairs) - int(deltas.size),  # pairs excluded because an image failed
        "failed": [{"path": str(p), "error": utility[p]} for p in failed],
    }
    return _clean(report)


def evaluate_pairs(
    scorer: Any,
    pairs: Sequence[PreferencePair],
    *,
    skipped: int = 0,
    batch_size: int = 16,
    tick: Tick | None = None,
) -> dict[str, Any]:
    """Score each distinct image once, then report :func:`pair_report`."""
    images = list(dict.fromkeys(p for pair in pairs for p in (pair.preferred, pair.other)))
    utility = dict(zip(images, _utilities(scorer, images, batch_size, tick)))
    return pair_report(pairs, utility, info=scorer.info, skipped=skipped, trained=training_images(scorer.info))


def unique_images(pairs: Iterable[PreferencePair]) -> int:
    """How many distinct images the pairs need scored (the progress bar's total)."""
    return len({p for pair in pairs for p in (pair.preferred, pair.other)})
