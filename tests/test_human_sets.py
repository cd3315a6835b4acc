"""Human-score data sets: each reads its own column and scale, and refuses what is outside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill.human_sets import HUMAN_SETS, human_set, read_scores
from distill.splits import DATA_ROOT


def test_para_reads_its_aesthetic_column_on_a_1_to_5_scale(tmp_path: Path) -> None:
    csv = tmp_path / "labels.csv"
    csv.write_text("image,aesthetic,quality,session\na.jpg,3.68,3.84,session1\nb.jpg,1.0,2.0,session2\n")
    assert read_scores(human_set("para"), csv) == {"a.jpg": (3.68, "session1"), "b.jpg": (1.0, "session2")}
    csv.write_text("image,aesthetic,quality,session\na.jpg,0.5,3.8,session1\n")  # a 0..1 score is not PARA's
    with pytest.raises(ValueError, match=r"labels.csv:2: aesthetic 0.5 outside"):
        read_scores(human_set("para"), csv)
    with pytest.raises(KeyError, match="known: biq2021, para"):
        human_set("ava")


def test_every_human_set_is_research_use_and_has_its_own_teacher() -> None:
    assert len({s.teacher for s in HUMAN_SETS.values()}) == len(HUMAN_SETS)
    assert all("research" in s.license for s in HUMAN_SETS.values())  # never for the permissive model


@pytest.mark.skipif(not (DATA_ROOT / "para" / "labels.csv").is_file(), reason="PARA not present")
def test_real_para_labels_parse() -> None:
    scores = read_scores(human_set("para"), DATA_ROOT / "para" / "labels.csv")
    assert len(scores) == 7000 and len({g for _, g in scores.values()}) == 446
