"""Human-score pairs from BIQ2021 (``source: "mos"``, teacher ``biq2021-mos``); the other human-scored
data sets (PARA) are described in :mod:`distill.human_sets` and drawn by ``distill.sources.MosGroups``.

``labels.csv`` (``image,mos,subset``) holds mean opinion scores of a 1-5 absolute category rating,
rescaled by the data set's authors to 0..1, higher is better (``MOS_RANGE``). In the 3,000 images we
have they span 0.020..0.959 (mean 0.642, std 0.193; ss01 500, ss02 497, ss03 2,003 images). A pair's
``delta`` is ``MOS(b) - MOS(a)`` in those 0..1 units; pairs closer than a ``margin`` are left out,
since a small MOS difference is within the raters' noise.

Paths ``a``/``b`` are image names relative to the BIQ2021 images root (``biq2021/images``).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path

import numpy as np

from distill.human_sets import HUMAN_SETS, HumanScoreSet, human_set, read_scores
from distill.registry import TEACHERS
from distill.teachers.base import PairRequest
from redaes_lite.pairs import PairLabel, pair_id

__all__ = [
    "BIQ2021MOS",
    "HUMAN_SETS",
    "HumanScoreSet",
    "MOS_RANGE",
    "TEACHER_ID",
    "human_set",
    "mos_pairs",
    "read_labels",
    "read_mos",
    "read_scores",
]

TEACHER_ID = HUMAN_SETS["biq2021"].teacher
#: Scale of ``mos`` in labels.csv (a 1-5 rating rescaled to 0-1 by the data set's authors).
MOS_RANGE = HUMAN_SETS["biq2021"].score_range


def read_labels(labels_csv: str | os.PathLike) -> dict[str, tuple[float, str]]:
    """BIQ2021's image -> (MOS, subset) (:func:`read_scores` of ``HUMAN_SETS["biq2021"]``)."""
    return read_scores(HUMAN_SETS["biq2021"], labels_csv)


def read_mos(labels_csv: str | os.PathLike) -> dict[str, float]:
    """image -> MOS (0..1, higher is better)."""
    return {name: mos for name, (mos, _) in read_labels(labels_csv).items()}


def _record(a: str, b: str, mos: dict[str, tuple[float, str]], group: str) -> PairLabel:
    return PairLabel(
        id=pair_id(f"biq2021/{a}", f"biq2021/{b}", TEACHER_ID),
        a=a,
        b=b,
        delta=round(mos[b][0] - mos[a][0], 6),
        source="mos",
        teacher=TEACHER_ID,
        group=group,
    )


def mos_pairs(
    labels_csv: str | os.PathLike,
    *,
    images: Collection[str] | None = None,
    margin: float,
    n_pairs: int,
    seed: int,
    within_fraction: float = 0.5,
) -> list[PairLabel]:
    """``n_pairs`` distinct pairs whose MOS differ by more than ``margin``: ``within_fraction`` of them
    inside one subset (``group`` = the subset, subsets drawn by size), the rest across two subsets
    (``group = "cross"``). Restricted to ``images`` when given (e.g. a split's training list); the
    order inside a pair is random, so ``delta`` is positive about half the time. Deterministic given
    ``seed``; raises ``ValueError`` when the images cannot give that many pairs."""
    labels = read_labels(labels_csv)
    if images is not None:
        missing = [x for x in images if x not in labels]
        if missing:
            raise ValueError(f"{labels_csv}: {len(missing)} requested images have no label, e.g. {missing[0]!r}")
        labels = {x: labels[x] for x in images}
    groups: dict[str, list[str]] = {}
    for name in sorted(labels):
        groups.setdefault(labels[name][1], []).append(name)
    by_subset = {s: np.array(names) for s, names in groups.items()}
    subsets = sorted(by_subset)
    sizes = np.array([len(by_subset[s]) for s in subsets], dtype=np.float64)
    n_within = round(n_pairs * within_fraction)
    if n_pairs - n_within > 0 and len(subsets) < 2:
        raise ValueError(f"{labels_csv}: cross-subset pairs need two subsets, found {subsets}")
    rng = np.random.default_rng(seed)
    seen: set[frozenset[str]] = set()
    out: list[PairLabel] = []
    for _ in range(50 * n_pairs + 1000):
        if len(out) == n_pairs:
            return out
        within = len(out) < n_within
        if within:
            s = subsets[rng.choice(len(subsets), p=sizes / sizes.sum())]
            a, b = rng.choice(by_subset[s], size=2, replace=False) if len(by_subset[s]) >= 2 else (None, None)
        else:
            i, j = rng.choice(len(subsets), size=2, replace=False, p=sizes / sizes.sum())
            a, b = rng.choice(by_subset[subsets[i]]), rng.choice(by_subset[subsets[j]])
        if a is None or abs(round(labels[b][0] - labels[a][0], 6)) <= margin or frozenset((a, b)) in seen:
            continue
        if rng.random() < 0.5:  # subsets differ in mean MOS: without this, cross deltas lean one way
            a, b = b, a
        seen.add(frozenset((a, b)))
        out.append(_record(str(a), str(b), labels, str(s) if within else "cross"))
    raise ValueError(
        f"{labels_csv}: found only {len(out)} of {n_pairs} pairs with |delta| > {margin}; "
        "lower the margin or the number of pairs"
    )


@TEACHERS.register(TEACHER_ID)
class BIQ2021MOS:
    """Labels requested pairs of BIQ2021 images with their MOS difference; a pair with an unlabelled
    image gives ``status="failed"``."""

    id = TEACHER_ID

    def __init__(self, labels_csv: str | os.PathLike | None = None) -> None:
        if labels_csv is None:
            from distill.splits import DATA_ROOT

            labels_csv = DATA_ROOT / "biq2021" / "labels.csv"
        self.labels_csv = Path(labels_csv)
        self.labels = read_labels(self.labels_csv)

    def label(self, pairs: Iterable[PairRequest]) -> Iterator[PairLabel]:
        for req in pairs:
            unknown = [x for x in (req.a, req.b) if x not in self.labels]
            if unknown:
                yield PairLabel(
                    id=pair_id(f"biq2021/{req.a}", f"biq2021/{req.b}", TEACHER_ID),
                    a=req.a,
                    b=req.b,
                    delta=None,
                    source="mos",
                    teacher=TEACHER_ID,
                    group=req.group,
                    status="failed",
                    error=f"{self.labels_csv}: no MOS for {unknown[0]!r}",
                )
                continue
            yield _record(req.a, req.b, self.labels, req.group)
