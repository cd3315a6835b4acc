"""Trainer: the loss goes down, resume continues exactly, Ctrl-C leaves a usable checkpoint, final.pt is complete."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic_data import FACTORS, add_para, make_context

from distill.config import TrainConfig, load_config
from distill.data import make_batch
from distill.student import load_checkpoint, load_student
from distill.train_setup import lr_factor
from distill.trainer import Run
from redaes_lite.metadata import apply_calibration

pytest.importorskip("distill.teachers.edit_oracle")


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory):
    return make_context(tmp_path_factory.mktemp("data"))


def tiny_cfg(out: Path, *overrides: str) -> TrainConfig:
    return load_config(
        overrides=[
            f"out={out}",
            "student.backbone=timm:test_efficientnet",
            "student.input_size=[32, 32]",
            f"factors={json.dumps(FACTORS)}",
            "num_workers=0",
            "steps=6",
            "log_every=1",
            "checkpoint_every=2",
            "val.every=3",
            "val.photos_groups=1",
            "val.group_size=3",
            "val.batch_size=16",
            "sources={mos: {kind: mos, group_size: 3, groups: 3}, edit: {kind: edit, group_size: 3, groups: 2}}",
            "losses={relative: {}, ranking: {}, factor: {weight: 0.5}, temperature: {weight: 0.1}}",
            "optim.warmup_steps=1",
            "threads=1",
            "optim.lr=0.003",
            *overrides,
        ]
    )


def log_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def train_losses(out: Path) -> list[float]:
    return [r["loss"] for r in log_lines(out) if r["kind"] == "train"]


def params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_lr_schedule_warms_up_then_decays() -> None:
    f = [lr_factor(s, total=100, warmup=10, min_ratio=0.1) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert np.all(np.diff(f[10:]) <= 0) and f[-1] == pytest.approx(0.1, abs=1e-3)


def test_a_few_steps_reduce_the_loss(ctx, tmp_path: Path) -> None:
    cfg = tiny_cfg(
        tmp_path / "run",
        "steps=15",
        "val.every=1000",
        "sources={mos: {kind: mos, group_size: 4, groups: 4}}",
        "losses={relative: {}, ranking: {}}",
        "optim.lr=0.01",
    )
    run = Run(cfg, ctx=ctx)
    run.enter_stage(0, None)
    fixed = [{k: v for k, v in make_batch(run.sources["mos"], i, run.train_tf).items()} for i in range(4)]

    def loss() -> float:
        with torch.no_grad():
            return float(sum(run.compute_loss({"mos": b})[0] for b in fixed))

    before = loss()
    run.fit()
    assert loss() < 0.7 * before


def test_resume_continues_exactly(ctx, tmp_path: Path) -> None:
    stages = "stages=[{name: mos, steps: 3, only: [mos]}, {name: both, steps: 3}]"
    straight = Run(tiny_cfg(tmp_path / "a", stages), ctx=ctx)
    straight.fit()
    first = Run(tiny_cfg(tmp_path / "b", stages), ctx=ctx)
    assert first.fit(until=4) is None  # stopped mid-stage, like a session running out
    resumed = Run(tiny_cfg(tmp_path / "b", stages), ctx=ctx, resume=True)
    assert resumed.state.step == 4
    resumed.fit()
    a, b = params(straight.model), params(resumed.model)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert train_losses(tmp_path / "a") == train_losses(tmp_path / "b")


def test_final_checkpoint_has_everything_export_needs(ctx, tmp_path: Path) -> None:
    out = tmp_path / "run"
    final = Run(tiny_cfg(out), ctx=ctx).fit()
    assert final == out / "final.pt"
    assert {p.name for p in out.iterdir()} >= {"config.yaml", "metrics.jsonl", "last.pt", "best.pt", "final.pt"}
    ckpt = load_checkpoint(final)
    assert ckpt["temperature"] > 0 and ckpt["factors"] == FACTORS
    cal = ckpt["calibration"]
    assert (
        cal["method"]
        and cal["fitted_on"]
        and np.all(np.diff(cal["utility"]) > 0)
        and np.all(np.diff(cal["score"]) >= 0)
    )
    scores = apply_calibration(cal, np.linspace(-100, 100, 50))
    assert np.all(np.diff(scores) >= 0) and scores[0] == 0 and scores[-1] == 10
    names = {t["name"] for t in ckpt["teachers"]}
    assert {"edit-oracle", "biq2021-mos"} <= names
    assert all(d["pairs"] > 0 and d["license"] for d in ckpt["training_data"])
    assert {"photos.train", "photos.val", "biq2021.train", "biq2021.val"} <= set(ckpt["data_hashes"])
    assert ckpt["git_commit"] and ckpt["seed"] == 0 and ckpt["config"]["steps"] == 6
    for key in ("edit_acc", "mos_srcc", "explain_acc", "ece_edit", "ece_mos", "temperature", "unusable_acc"):
        assert key in ckpt["metrics"]
    assert 0 <= ckpt["metrics"]["unusable_score_max"] <= 10
    kinds = {r["kind"] for r in log_lines(out)}
    assert kinds == {"train", "val"}
    student = load_student(final)
    x = torch.randn(2, 3, 32, 32)
    run_model = load_student(out / "last.pt")  # last.pt is a loadable student too
    with torch.no_grad():
        assert torch.allclose(student(x)[0], run_model(x)[0])


def test_ctrl_c_stops_cleanly_with_a_resumable_checkpoint(ctx, tmp_path: Path, monkeypatch) -> None:
    # What was there before (SIG_IGN under a background job, not Python's default) must come back.
    before = signal.getsignal(signal.SIGINT)
    run = Run(tiny_cfg(tmp_path / "run", "checkpoint_every=100", "val.every=100"), ctx=ctx)
    step = run.step

    def interrupted_step() -> dict:
        out = step()
        if run.state.step == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(run, "step", interrupted_step)
    assert run.fit() is None
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["step"] == 2 and "optimizer" in ckpt
    assert signal.getsignal(signal.SIGINT) is before  # handler restored
    assert Run(tiny_cfg(tmp_path / "run"), ctx=ctx, resume=True).state.step == 2


def test_a_second_human_data_set_trains_is_validated_and_recorded(ctx, tmp_path: Path) -> None:
    pctx = add_para(ctx, tmp_path / "para")
    sources = (
        "sources={mos: {kind: mos, group_size: 3, groups: 2}, para: {kind: mos, dataset: para, group_size: 3,"
        " groups: 2, scale: 2.0}, edit: {kind: edit, group_size: 3, groups: 2}}"
    )
    out = tmp_path / "run"
    cfg = tiny_cfg(out, sources, "steps=2", "val.every=100", "val.human_sets=[para]", "val.best_metric=human_srcc")
    ckpt = load_checkpoint(Run(cfg, ctx=pctx).fit())
    metrics = ckpt["metrics"]
    assert -1 <= metrics["para_srcc"] <= 1
    assert metrics["human_srcc"] == pytest.approx((metrics["mos_srcc"] + metrics["para_srcc"]) / 2, abs=1e-4)
    assert "para-aesthetic" in {t["name"] for t in ckpt["teachers"]}
    para = [d for d in ckpt["training_data"] if d["name"].startswith("PARA")]
    assert len(para) == 1 and "research" in para[0]["license"] and para[0]["pairs"] > 0
    assert "PARA" in ckpt["license"] and {"para.train", "para.val", "para/labels.csv"} <= set(ckpt["data_hashes"])
