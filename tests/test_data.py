"""Training groups: shapes and targets, determinism, worker-count independence, split by source, teachers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic_data import FACTORS, add_para, make_context

from distill.data import batch_loader, make_batch
from distill.sources import EditGroups, LabelledPairs, MosGroups, TeacherGroups, TeacherLabeller
from distill.student import TrainTransform, create_student, save_checkpoint

pytest.importorskip("distill.teachers.edit_oracle")
from distill.teachers.edit_oracle import EditOracle

G, M = 3, 4


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory):
    return make_context(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def tf(ctx) -> TrainTransform:
    return TrainTransform(ctx.cache.spec)


def edits(ctx, **kw) -> EditGroups:
    return EditGroups("edit", ctx, EditOracle(), group_size=M, groups=G, seed=7, **kw)


def test_edit_groups_shapes_and_targets(ctx, tf) -> None:
    batch = make_batch(edits(ctx, n_ops=1), 0, tf)
    assert batch["images"].shape == (G, M, 3, 32, 32)
    assert batch["target"].shape == batch["mask"].shape == (G, M)
    assert batch["factor_target"].shape == (G, M, len(FACTORS))
    assert batch["weight"].tolist() == [1.0] * G and batch["source"] == "edit"
    assert torch.all(batch["target"][:, 0] == 0)  # the source photo is the reference of its group
    assert batch["mask"].all()
    ft = batch["factor_target"]
    assert torch.all(ft[:, 0] == 0)
    for row in ft[:, 1:].reshape(-1, len(FACTORS)):
        if torch.isfinite(row).all():  # a single edit on a factor in the list: at most one non-zero entry
            assert int((row != 0).sum()) <= 1


def test_edit_group_members_differ_from_their_source(ctx, tf) -> None:
    batch = make_batch(edits(ctx, n_ops=1), 1, tf)
    diff = (batch["images"][:, 1:] - batch["images"][:, :1]).abs().flatten(2).mean(-1)
    assert (diff > 0).float().mean() > 0.5  # most edits change the pixels visibly


def test_batches_are_deterministic_by_index(ctx, tf) -> None:
    a, b, c = make_batch(edits(ctx), 5, tf), make_batch(edits(ctx), 5, tf), make_batch(edits(ctx), 6, tf)
    for key in ("images", "target"):
        assert torch.equal(a[key], b[key])
    assert torch.allclose(a["factor_target"], b["factor_target"], equal_nan=True)
    assert not torch.equal(a["images"], c["images"])


def test_stream_is_the_same_for_any_number_of_workers(ctx, tf) -> None:
    src = MosGroups("mos", ctx, group_size=M, groups=G, seed=3)
    streams = [batch_loader(src, tf, start=4, num_workers=n) for n in (0, 2)]
    for _ in range(3):
        x, y = (next(s) for s in streams)
        assert torch.equal(x["images"], y["images"]) and torch.equal(x["target"], y["target"])
    direct = make_batch(src, 7, tf)
    assert torch.equal(next(streams[0])["target"], direct["target"])  # start=4: the 4th batch is index 7


def test_training_streams_never_touch_validation_sources(ctx, tf, monkeypatch) -> None:
    seen: list[str] = []
    get = ctx.cache.get
    monkeypatch.setattr(ctx.cache, "get", lambda p: seen.append(Path(p).name) or get(p))
    for i in range(6):
        make_batch(edits(ctx), i, tf)
        make_batch(MosGroups("mos", ctx, group_size=M, groups=G, seed=1), i, tf)
    assert seen and not set(seen) & ctx.val_names


def test_mos_groups_target_is_mos_times_scale(ctx, tf) -> None:
    src = MosGroups("mos", ctx, group_size=M, groups=G, seed=0, scale=10.0, within_fraction=1.0)
    items = ctx.biq["train"]
    picks = [src.pick(src.rng(i)) for i in range(5)]
    assert all(len({items[j][2] for j in p}) == 1 for p in picks)  # within one subset
    assert np.isnan(src.group(src.rng(0)).factor_target).all()
    batch = make_batch(src, 0, tf)
    assert batch["target"].shape == (G, M)
    mos = np.asarray([m for _, m, _ in items])
    for value in batch["target"].numpy().ravel():
        assert np.abs(mos * 10 - value).min() < 1e-4


def test_labelled_pairs_skip_failed_and_validation_records(ctx, tf, tmp_path: Path) -> None:
    train = [r["file"] for r in ctx.photos["train"]]
    val = ctx.photos["val"][0]["file"]
    recs = [
        {
            "id": "1",
            "a": train[0],
            "b": train[1],
            "delta": 0.5,
            "source": "mllm",
            "teacher": "t@1",
            "group": "g1",
            "status": "ok",
            "factors": {"noise": 0.25},
            "weight": 2.0,
        },
        {
            "id": "2",
            "a": train[2],
            "b": train[3],
            "delta": None,
            "source": "mllm",
            "teacher": "t@1",
            "group": "g2",
            "status": "failed",
            "error": "no answer",
        },
        {
            "id": "3",
            "a": val,
            "b": train[3],
            "delta": 1.0,
            "source": "mllm",
            "teacher": "t@1",
            "group": "g3",
            "status": "ok",
        },
    ]
    path = tmp_path / "labels.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    src = LabelledPairs(
        "llm", ctx, labels=str(path), root=str(ctx.photos_root), group_size=2, groups=2, seed=0, scale=2.0
    )
    assert len(src.records) == 1 and src.dropped_val == 1
    batch = make_batch(src, 0, tf)
    assert batch["images"].shape == (2, 2, 3, 32, 32)
    assert batch["target"].tolist() == [[0.0, 1.0], [0.0, 1.0]]
    assert batch["weight"].tolist() == [2.0, 2.0]
    noise = FACTORS.index("noise")
    assert batch["factor_target"][0, 1, noise] == 0.25 and torch.isnan(batch["factor_target"][0, 1, 0])
    # A teacher in the loop relabels the same pairs (teacher: on a labels source).
    torch.manual_seed(0)
    teacher, _, _ = create_student("timm:test_efficientnet", factors=FACTORS[:3], img_size=40)
    relabelled = TeacherGroups(save_checkpoint(tmp_path / "teacher.pt", teacher), src)
    again = make_batch(relabelled, 0, tf)
    assert torch.equal(again["images"], batch["images"]) and again["teacher_images"].shape == (2, 2, 3, 40, 40)


def test_teacher_groups_are_labelled_by_the_teacher(ctx, tf, tmp_path: Path) -> None:
    torch.manual_seed(0)
    teacher, _, _ = create_student("timm:test_efficientnet", factors=FACTORS[:3], img_size=40)
    ckpt = save_checkpoint(tmp_path / "teacher.pt", teacher)
    src = TeacherGroups(ckpt, MosGroups("cross", ctx, group_size=M, groups=G, seed=0))
    batch = make_batch(src, 0, tf)
    assert batch["teacher_images"].shape == (G, M, 3, 40, 40)
    labelled = TeacherLabeller(ckpt, factors=FACTORS, scale=2.0)(dict(batch))
    with torch.no_grad():
        u, f = teacher.eval()(batch["teacher_images"].flatten(0, 1))
    assert torch.allclose(labelled["target"], 2.0 * u.view(G, M), atol=1e-5)
    assert labelled["mask"].all() and "teacher_images" not in labelled
    ft = labelled["factor_target"]
    assert torch.allclose(ft[..., 0], 2.0 * f[:, 0].view(G, M), atol=1e-5)
    assert torch.isnan(ft[..., FACTORS.index("noise")]).all()  # the teacher has no noise head


def test_mos_groups_of_another_data_set_stay_inside_it(ctx, tf, tmp_path: Path) -> None:
    pctx = add_para(ctx, tmp_path / "para")
    src = MosGroups("para", pctx, group_size=M, groups=G, seed=0, scale=2.0, within_fraction=1.0, dataset="para")
    assert src.datasets == ("para",) and src.teacher_ids() == ["para-aesthetic"]
    items = pctx.human["para"]["train"]
    picks = [src.pick(src.rng(i)) for i in range(5)]
    assert all(len({items[j][2] for j in p}) == 1 for p in picks)  # within one session
    scores = np.asarray([m for _, m, _ in items])
    batch = make_batch(src, 0, tf)
    assert batch["target"].shape == (G, M)
    for value in batch["target"].numpy().ravel():  # PARA training scores x 2, never a BIQ2021 MOS
        assert np.abs(scores * 2 - value).min() < 1e-4
    with pytest.raises(Exception, match="not loaded"):
        MosGroups("x", ctx, group_size=M, groups=G, seed=0, dataset="para")


def test_every_kind_a_config_may_name_is_a_registered_source() -> None:
    from distill.config import SOURCE_KINDS
    from distill.registry import SOURCES

    assert SOURCES.names() == sorted(SOURCE_KINDS)
