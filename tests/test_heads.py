"""``python -m distill heads``: the closed-form factor-head refit (explanations) on frozen features."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from distill import heads
from distill.config import dump_config, load_config
from distill.heads import fit_gains, main, refine_for_explanations, ridge
from distill.splits import DATA_ROOT
from distill.student import create_student, load_checkpoint, load_student, save_checkpoint


def test_ridge_recovers_a_linear_map_and_shrinks_with_strength() -> None:
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(500, 6)), rng.normal(size=(3, 6))
    assert np.allclose(ridge(x, x @ w.T, 1e-9), w, atol=1e-6)
    assert np.linalg.norm(ridge(x, x @ w.T, 10.0)) < 0.5 * np.linalg.norm(w)


def test_gains_let_a_shrunk_factor_win_the_argmax() -> None:
    rng = np.random.default_rng(1)
    edited = rng.integers(0, 3, 600)
    pred = rng.normal(0, 0.2, (600, 3))
    pred[np.arange(600), edited] += 1.0
    pred[:, 2] *= 0.1  # factor 2's head is 10x too small (a least-squares fit shrinks what it is unsure of)
    before = (np.abs(pred).argmax(-1) == edited).mean()
    gains = fit_gains(pred, edited)
    after = (np.abs(pred * gains).argmax(-1) == edited).mean()
    assert before < 0.75 and after > 0.95 and gains[2] > gains[0]


needs_data = pytest.mark.skipif(
    not (DATA_ROOT / "photos" / "manifest.csv").is_file(), reason=f"shared data not found at {DATA_ROOT}"
)


@needs_data
def test_refinement_names_the_edited_factor_more_often_and_stays_anchored() -> None:
    """Both factors' edits move feature 0 alike (confusable statistics) and the start head reads only it, so
    the argmax cannot tell them apart; feature 2 can. The refinement leans on it; a huge anchor keeps the start."""
    rng = np.random.default_rng(2)
    n = 900
    edited = rng.integers(0, 2, n)
    x = rng.normal(0, 0.3, (n, 3))
    x[:, 0] += 1.0  # both factors' edits move feature 0
    x[:, 2] += np.where(edited == 1, 0.6, -0.6)  # only feature 2 tells them apart
    w0 = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    hits = lambda w: float((np.abs(x @ w.T).argmax(-1) == edited).mean())  # noqa: E731
    refined = refine_for_explanations(x, edited, w0, anchor=1.0)
    assert hits(w0) < 0.6 and hits(refined) > 0.9
    rms = lambda w: float(np.sqrt(((x @ w.T) ** 2).mean()))  # noqa: E731
    assert rms(refined) == pytest.approx(rms(w0))  # factor values keep their units
    assert np.allclose(refine_for_explanations(x, edited, w0, anchor=1e9), w0, atol=1e-4)


def _tiny_checkpoint(tmp_path: Path, *, permissive_only: bool) -> tuple[Path, Any, Any]:
    cfg = load_config(
        "distill/configs/tiny.yaml",
        overrides=[
            "student.backbone=timm:test_efficientnet",
            "student.pretrained=null",
            "student.input_size=[32,32]",
            "val.group_size=3",
            f"data.permissive_only={str(permissive_only).lower()}",
        ],
    )
    student, _, _ = create_student(cfg.student.backbone, factors=cfg.factors, img_size=32)
    path = save_checkpoint(tmp_path / "final.pt", student, config=dump_config(cfg), version="0.1.0", temperature=0.5)
    return path, cfg, student


def test_refit_keeps_utility_and_writes_a_tapped_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, cfg, student = _tiny_checkpoint(tmp_path, permissive_only=True)
    assert main([str(path), "--out", str(tmp_path / "heads.pt"), "--groups", "2", "--photos", "12"]) == 0
    summary = load_checkpoint(tmp_path / "heads.pt")["factor_head_refit"]
    assert summary["taps"] == [1, 2] and summary["photos"] == 12 and summary["pairs"] == 12 * 2 * 2
    assert set(summary["gains"]) == set(cfg.factors) and '"with_gains"' in capsys.readouterr().out
    refit = load_student(tmp_path / "heads.pt").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(refit(x)[0], student.eval()(x)[0], atol=1e-6)  # utility untouched
    assert refit.factor_taps == (1, 2)


def test_biq_sources_add_scenes_and_the_cache_serves_the_next_refit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _, _ = _tiny_checkpoint(tmp_path, permissive_only=False)
    args = [str(path), "--groups", "1", "--photos", "4", "--biq-sources", "5", "--cache", str(tmp_path / "cache")]
    assert main([*args, "--out", str(tmp_path / "a.pt")]) == 0
    summary = load_checkpoint(tmp_path / "a.pt")["factor_head_refit"]
    assert summary["biq2021_sources"] == 5 and summary["biq2021_groups"] == 1 and summary["pairs"] == (4 + 5) * 2
    cached = sorted(p.name.split("-")[0] for p in (tmp_path / "cache").iterdir())
    assert cached == ["biq2021", "photos"]
    # A refit from scratch with another ridge, then the same from the cache, which must edit nothing.
    assert main([*args[:-2], "--ridge", "3", "--out", str(tmp_path / "c.pt")]) == 0
    monkeypatch.setattr(heads, "_features", lambda *a, **k: pytest.fail("features recomputed"))
    assert main([*args, "--ridge", "3", "--out", str(tmp_path / "b.pt")]) == 0
    b, c = (load_checkpoint(tmp_path / f"{n}.pt")["state_dict"]["factor_head.weight"] for n in "bc")
    assert torch.allclose(b, c, atol=1e-6)
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_photo_crops_are_other_framings_of_the_training_photos_with_their_own_edits(tmp_path: Path) -> None:
    from distill.evaluate import run_config
    from distill.sources import DataContext, source_key
    from distill.validation import seeded_edit_groups

    path, _, student = _tiny_checkpoint(tmp_path, permissive_only=True)
    cfg = run_config(load_checkpoint(path))
    ctx = DataContext.from_config(cfg, student.spec)
    rows = ctx.photos["train"][:3]
    crops = heads._crop_rows(rows, 2, seed=7)
    assert [c["file"] for c in crops] == [r["file"] for r in rows for _ in range(2)]
    assert crops == heads._crop_rows(rows, 2, seed=7) and crops != heads._crop_rows(rows, 2, seed=8)
    for row in crops:
        left, top, right, bottom = row["crop"]
        assert 0 <= left < right <= 1 and 0 <= top < bottom <= 1 and 0.4 < (right - left) * (bottom - top) < 0.8
        full, part = ctx.photo({k: v for k, v in row.items() if k != "crop"}), ctx.photo(row)
        assert (
            abs(part.width - (right - left) * full.width) <= 1 and abs(part.height - (bottom - top) * full.height) <= 1
        )
    # A crop is edited with its own recipes, not its photo's: another source key, other seeds.
    assert len({source_key(r) for r in [*rows, *crops]}) == len(rows) * 3
    groups = lambda rs: [g.target.tolist() for g, _ in seeded_edit_groups(ctx, rs, cfg.val, groups=1, seed=1)]  # noqa: E731
    assert groups(rows[:1]) != groups(crops[:1])

    assert (
        main(
            [
                str(path),
                "--out",
                str(tmp_path / "h.pt"),
                "--groups",
                "1",
                "--photos",
                "3",
                "--photo-crops",
                "2",
                "--crop-groups",
                "1",
            ]
        )
        == 0
    )
    summary = load_checkpoint(tmp_path / "h.pt")["factor_head_refit"]
    assert summary["photo_crops"] == 2 and summary["crop_groups"] == 1 and summary["pairs"] == (3 + 3 * 2) * 2


def test_biq_sources_are_refused_for_a_permissive_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, _, _ = _tiny_checkpoint(tmp_path, permissive_only=True)
    assert main([str(path), "--out", str(tmp_path / "x.pt"), "--photos", "2", "--biq-sources", "3"]) == 2
    assert "permissive-only" in capsys.readouterr().err and not (tmp_path / "x.pt").exists()


def test_bad_checkpoint_exits_2(tmp_path: Path) -> None:
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    assert main([str(tmp_path / "bad.pt"), "--out", str(tmp_path / "x.pt")]) == 2
