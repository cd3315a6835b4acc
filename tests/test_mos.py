"""Human-score (BIQ2021 MOS) pairs: margins, subsets, determinism, and the registered teacher."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill.registry import TEACHERS
from distill.teachers.base import PairRequest, Teacher
from distill.teachers.mos import BIQ2021MOS, mos_pairs, read_labels, read_mos

LABELS = Path(__file__).resolve().parents[2] / "shared" / "data" / "biq2021" / "labels.csv"


@pytest.fixture()
def labels(tmp_path: Path) -> Path:
    """60 images in three subsets with MOS spread over 0..1."""
    rows = ["image,mos,subset"]
    for i in range(60):
        rows.append(f"s{i % 3} ({i}).jpg,{(i * 37 % 60) / 60:.4f},ss0{i % 3 + 1}")
    path = tmp_path / "labels.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_read_mos_and_its_errors(labels: Path, tmp_path: Path) -> None:
    mos = read_mos(labels)
    assert len(mos) == 60 and mos["s1 (1).jpg"] == pytest.approx(37 / 60, abs=1e-4)
    assert read_labels(labels)["s2 (2).jpg"][1] == "ss03"
    for body, match in [
        ("x.jpg,1.5,ss01", "outside"),
        ("x.jpg,abc,ss01", "bad label row"),
        ("x.jpg,0.5,ss01\nx.jpg,0.6,ss01", "twice"),
    ]:
        bad = tmp_path / "bad.csv"
        bad.write_text("image,mos,subset\n" + body + "\n")
        with pytest.raises(ValueError, match=rf"bad.csv:\d+: .*{match}"):
            read_mos(bad)


def test_pairs_respect_margin_subsets_and_fraction(labels: Path) -> None:
    mos, subset = read_mos(labels), {k: v[1] for k, v in read_labels(labels).items()}
    pairs = mos_pairs(labels, margin=0.2, n_pairs=200, seed=1, within_fraction=0.25)
    assert len(pairs) == 200 and len({frozenset((p.a, p.b)) for p in pairs}) == 200
    for p in pairs:
        assert p.ok and p.source == "mos" and p.teacher == "biq2021-mos"
        assert p.delta == pytest.approx(mos[p.b] - mos[p.a]) and abs(p.delta) > 0.2
        if p.group == "cross":
            assert subset[p.a] != subset[p.b]
        else:
            assert subset[p.a] == subset[p.b] == p.group
    assert sum(p.group != "cross" for p in pairs) == 50
    assert 60 < sum(p.delta > 0 for p in pairs) < 140  # a/b order is random


@pytest.mark.slow
def test_pairs_are_deterministic_restricted_and_fail_loudly(labels: Path) -> None:
    a = mos_pairs(labels, margin=0.1, n_pairs=50, seed=7)
    assert a == mos_pairs(labels, margin=0.1, n_pairs=50, seed=7) != mos_pairs(labels, margin=0.1, n_pairs=50, seed=8)
    subset = sorted(read_mos(labels))[:30]
    assert all({p.a, p.b} <= set(subset) for p in mos_pairs(labels, images=subset, margin=0.1, n_pairs=40, seed=0))
    with pytest.raises(ValueError, match="found only"):
        mos_pairs(labels, margin=0.1, n_pairs=5000, seed=0)
    with pytest.raises(ValueError, match="no label"):
        mos_pairs(labels, images=["nope.jpg"], margin=0.1, n_pairs=1, seed=0)


def test_teacher_labels_requests_and_keeps_failures(labels: Path) -> None:
    assert TEACHERS.get("biq2021-mos") is BIQ2021MOS
    teacher = BIQ2021MOS(labels)
    assert isinstance(teacher, Teacher) and teacher.id == "biq2021-mos"
    ok, bad = teacher.label([PairRequest("s0 (0).jpg", "s1 (1).jpg", "g"), PairRequest("s0 (0).jpg", "x.jpg", "g")])
    assert ok.ok and ok.delta == pytest.approx(37 / 60, abs=1e-4) and ok.group == "g"
    assert bad.status == "failed" and "x.jpg" in bad.error


@pytest.mark.skipif(not LABELS.is_file(), reason="shared BIQ2021 labels not present")
def test_real_labels_use_the_documented_0_to_1_scale() -> None:
    mos = read_mos(LABELS)
    assert len(mos) == 3000 and 0.0 < min(mos.values()) < 0.05 and 0.9 < max(mos.values()) < 1.0
