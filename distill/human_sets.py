"""The human-scored data sets the trainer can draw pairs from: where their labels are and what they mean.

Each is a folder with ``labels.csv`` and ``images/``; its entry says which column holds the score, on which
scale, which column groups images rated under shared conditions, which teacher id its pairs carry and under
which terms the data may be used. Scores of different data sets come from different people on different
scales, so pairs are only ever made *within* one data set.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass

__all__ = ["HUMAN_SETS", "HumanScoreSet", "human_set", "read_scores"]


@dataclass(frozen=True)
class HumanScoreSet:
    """A folder of human-scored images: ``<root>/labels.csv`` and ``<root>/images/``.

    ``name`` is also its split name (``distill/splits/<name>_*.txt``) and its ``data.<name>`` root in the
    training config. ``group_column`` names images that share capture or rating conditions (a BIQ2021
    subset, a PARA session): groups drawn within one are about finer differences.
    """

    name: str
    teacher: str
    score_column: str
    score_range: tuple[float, float]
    group_column: str | None
    license: str
    description: str
    image_column: str = "image"


HUMAN_SETS: dict[str, HumanScoreSet] = {
    s.name: s
    for s in (
        HumanScoreSet(
            name="biq2021",
            teacher="biq2021-mos",
            score_column="mos",
            score_range=(0.0, 1.0),
            group_column="subset",
            license="research use (BIQ2021: no licence stated by its authors; subset ss03 from Unsplash)",
            description="BIQ2021 (technical quality, MOS 0..1)",
        ),
        HumanScoreSet(
            name="para",
            teacher="para-aesthetic",
            score_column="aesthetic",
            score_range=(1.0, 5.0),
            group_column="session",
            license="research and non-commercial use only (PARA, Yang et al., CVPR 2022)",
            description="PARA (aesthetics, mean rating 1..5)",
        ),
    )
}


def human_set(name: str) -> HumanScoreSet:
    """The :class:`HumanScoreSet` called ``name``; ``KeyError`` lists the known ones."""
    try:
        return HUMAN_SETS[name]
    except KeyError:
        raise KeyError(f"unknown human-score data set {name!r}; known: {', '.join(HUMAN_SETS)}") from None


def read_scores(spec: HumanScoreSet, labels_csv: str | os.PathLike) -> dict[str, tuple[float, str]]:
    """image -> (score, group) of ``spec``'s ``labels.csv``; a malformed row, a score outside the data set's
    range or a repeated image raises ``ValueError`` naming the file and line."""
    out: dict[str, tuple[float, str]] = {}
    lo, hi = spec.score_range
    with open(labels_csv, newline="", encoding="utf-8") as f:
        for lineno, row in enumerate(csv.DictReader(f), 2):
            try:
                name, score = row[spec.image_column], float(row[spec.score_column])
                group = (row.get(spec.group_column) or "") if spec.group_column else ""
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{labels_csv}:{lineno}: bad label row ({e})") from None
            if not lo <= score <= hi:
                raise ValueError(f"{labels_csv}:{lineno}: {spec.score_column} {score} outside {spec.score_range}")
            if name in out:
                raise ValueError(f"{labels_csv}:{lineno}: image {name!r} listed twice")
            out[name] = (score, group)
    return out
