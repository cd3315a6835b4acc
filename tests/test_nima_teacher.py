"""NIMA as a teacher: pair-label JSONL from ``python -m distill label --teacher nima`` and NIMA in the loop
(``teacher: nima`` in a source config), with the checkpoint's provenance.

A tiny synthetic NIMA (random weights in the Keras 2.1.6 HDF5 layout, written with ``tests/test_nima.py``'s
writer) makes the synthetic tests exact and offline; the real release (skipped when absent) checks the
direction of a delta on a photo and its heavy blur.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("h5py")

from PIL import Image, ImageFilter  # noqa: E402
from synthetic_data import FACTORS, make_context  # noqa: E402
from test_nima import LAYER_NAMES, PHOTO, REAL, synthetic_tensors, write_keras  # noqa: E402

from distill import label as lab  # noqa: E402
from distill.config import SourceConfig, TrainConfig  # noqa: E402
from distill.data import make_batch  # noqa: E402
from distill.provenance import describe_data  # noqa: E402
from distill.sources import CrossGroups, EditGroups, TeacherGroups, TeacherLabeller, teacher_file  # noqa: E402
from distill.teachers import nima  # noqa: E402
from distill.teachers.base import PairRequest  # noqa: E402
from distill.teachers.nima import (  # noqa: E402
    TEACHER_ID,
    TRAINING_DATA_NAME,
    NimaTeacher,
    load_nima,
    mean_score,
    nima_preprocess,
    nima_scores,
)
from redaes_lite.pairs import read_pairs  # noqa: E402

pytest.importorskip("distill.teachers.edit_oracle")
from distill.teachers.edit_oracle import EditOracle  # noqa: E402

G, M = 2, 3


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> None:
    torch.set_num_threads(1)


def teacher_tensors(seed: int = 3) -> dict[str, np.ndarray]:
    """Random weights that keep the image in the output: He-initialised convolutions (depthwise fan-in 9),
    identity BatchNorm and a unit-scale dense head (``synthetic_tensors``' small ones wash the input out)."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, v in synthetic_tensors(seed).items():
        weight = key.split("/")[1]
        if weight == "depthwise_kernel":
            v = rng.normal(0, np.sqrt(2 / 9), v.shape)
        elif weight == "kernel":
            v = rng.normal(0, np.sqrt(2 / np.prod(v.shape[:-1])) if v.ndim == 4 else 1.0, v.shape)
        elif weight in ("gamma", "moving_variance"):
            v = np.ones_like(v)
        elif weight in ("beta", "moving_mean"):
            v = np.zeros_like(v)
        out[key] = np.asarray(v, np.float32)
    return out


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_keras(tmp_path_factory.mktemp("nima") / "synthetic.hdf5", teacher_tensors(), LAYER_NAMES)


@pytest.fixture(scope="module")
def sha(weights: Path) -> str:
    return hashlib.sha256(weights.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def model(weights: Path):
    return load_nima(weights, sha256=None)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory):
    return make_context(tmp_path_factory.mktemp("data"))


@pytest.fixture
def as_release(monkeypatch: pytest.MonkeyPatch, sha: str) -> None:
    """Make the synthetic file pass for idealo's release (its id and licence), without the 13 MB file."""
    monkeypatch.setattr(nima, "NIMA_SHA256", sha)


def _images(root: Path) -> dict[str, Path]:
    """A few photos-like images: a gradient, its blur, a crop, a generated (sha256:) edit; a broken file."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:90, 0:120] / 120
    arr = np.clip(np.stack([x, y, 1 - x], -1) + rng.normal(0, 0.15, (90, 120, 3)), 0, 1)
    photo = Image.fromarray((arr * 255).astype(np.uint8))
    (root / "photos").mkdir(parents=True)
    out = {"photo": root / "photos" / "p1.jpg", "blur": root / "photos" / "p1_blur.png"}
    photo.save(out["photo"], quality=95)
    photo.filter(ImageFilter.GaussianBlur(6)).save(out["blur"])
    photo.crop((10, 10, 90, 70)).save(root / "photos" / "p1_crop.png")
    out["crop"] = root / "photos" / "p1_crop.png"
    edit = Image.fromarray((arr[::-1] * 200).astype(np.uint8))
    edit.save(root / "tmp.png")
    digest = hashlib.sha256((root / "tmp.png").read_bytes()).hexdigest()
    (root / "tmp.png").rename(root / f"{digest}.png")
    out["edit"] = root / f"{digest}.png"
    (root / "photos" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return out | {"sha256_ref": f"sha256:{digest}"}  # type: ignore[dict-item]


def _pairs(path: Path, pairs: list[tuple[str, str]]) -> Path:
    path.write_text("".join(json.dumps({"a": a, "b": b, "group": "p1"}) + "\n" for a, b in pairs))
    return path


# ---------------------------------------------------------------------------------------------- JSONL


def test_label_writes_model_records_with_score_differences(tmp_path: Path, weights: Path, sha: str, model) -> None:
    files = _images(tmp_path)
    pairs = [
        ("photos/p1.jpg", "photos/p1_blur.png"),
        ("photos/p1.jpg", "photos/p1_crop.png"),
        ("photos/p1.jpg", files["sha256_ref"]),
        ("photos/p1_blur.png", "photos/p1.jpg"),
    ]
    bad = [("photos/p1.jpg", "photos/broken.jpg"), ("photos/missing.jpg", "photos/p1.jpg")]
    pairs_file = _pairs(tmp_path / "pairs.jsonl", pairs + bad)
    out = tmp_path / "labels.jsonl"
    argv = [
        "--teacher",
        f"nima:{weights}",
        "--pairs",
        str(pairs_file),
        "--root",
        str(tmp_path),
        "--out",
        str(out),
        "--batch-size",
        "2",
        "--device",
        "cpu",
    ]
    assert lab.main(argv) == 0
    recs = list(read_pairs(out))
    assert len(recs) == 6
    teacher = f"nima-mobilenet:synthetic@{sha[:12]}"
    assert all(r.source == "model" and r.teacher == teacher and r.group == "p1" for r in recs)
    path = {
        "photos/p1.jpg": files["photo"],
        "photos/p1_blur.png": files["blur"],
        "photos/p1_crop.png": files["crop"],
        files["sha256_ref"]: files["edit"],
    }
    score = dict(zip(path, nima_scores(model, list(path.values())), strict=True))
    for rec in recs[:4]:
        assert rec.ok and rec.delta == pytest.approx(score[rec.b] - score[rec.a], abs=1e-5)
    assert recs[3].delta == pytest.approx(-recs[0].delta, abs=1e-5)
    assert len({round(r.delta, 4) for r in recs[:3]}) == 3 and abs(recs[0].delta) > 1e-3  # not a constant
    # An unreadable image gives a failed record naming it, never a crash or a guessed delta.
    broken, missing = recs[4], recs[5]
    assert broken.status == "failed" and broken.delta is None
    assert broken.error.startswith("b: photos/broken.jpg: cannot decode")
    assert missing.status == "failed" and missing.error.startswith("a: ") and "missing.jpg" in missing.error
    # Ids hash the images' content: rerunning skips everything; so does a copy of the images under a new name.
    assert lab.main(argv) == 0 and len(list(read_pairs(out))) == 6
    shutil.copytree(tmp_path / "photos", tmp_path / "moved")
    moved = _pairs(
        tmp_path / "moved.jsonl", [(a.replace("photos/", "moved/"), b.replace("photos/", "moved/")) for a, b in pairs]
    )
    assert (
        lab.main(["--teacher", f"nima:{weights}", "--pairs", str(moved), "--root", str(tmp_path), "--out", str(out)])
        == 0
    )
    assert len(list(read_pairs(out))) == 6
    t = NimaTeacher(tmp_path, path=weights, device="cpu")
    assert t.id == teacher and t.key(PairRequest("photos/p1.jpg", "photos/p1_blur.png", "x")) == recs[0].id


def test_label_options_for_nima(tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture) -> None:
    pairs_file = _pairs(tmp_path / "pairs.jsonl", [("a.jpg", "b.jpg")])
    base = ["--pairs", str(pairs_file), "--out", str(tmp_path / "o.jsonl")]
    assert lab.main(["--teacher", f"nima:{weights}", "--samples", "3", *base]) == 2
    assert "--samples only apply to an MLLM teacher, not 'nima'" in capsys.readouterr().err
    assert lab.main(["--teacher", f"nima:{tmp_path / 'nope.hdf5'}", *base]) == 2
    assert "NIMA weights not found" in capsys.readouterr().err
    assert lab.main(["--teacher", "edit-oracle:x", *base]) == 2  # NAME:FILE only for teachers that take a file
    assert "takes no file" in capsys.readouterr().err


def test_release_id_and_licence(as_release: None, weights: Path, sha: str) -> None:
    assert TEACHER_ID == "nima-mobilenet-ava@idealo-0.07"
    assert NimaTeacher(path=weights, device="cpu").id == TEACHER_ID
    rec = nima.training_data(sha, weights)
    assert rec["name"] == TRAINING_DATA_NAME == "NIMA-MobileNet (idealo, trained on AVA), Apache-2.0 weights"
    assert rec["license"].startswith("permissive") and "Apache-2.0" in rec["license"]
    other = nima.training_data("0" * 64, "tuned.hdf5")
    assert not other["license"].startswith("permissive") and nima.teacher_id("0" * 64, "tuned.hdf5").startswith(
        "nima-mobilenet:tuned@"
    )


# ---------------------------------------------------------------------------------------------- in the loop


def test_teacher_file_spellings(weights: Path, tmp_path: Path) -> None:
    assert teacher_file(f"nima:{weights}") == (weights, True)
    assert teacher_file(weights) == (weights, True)  # any Keras HDF5 file is NIMA
    ckpt = tmp_path / "x.pt"
    ckpt.write_bytes(b"PK\x03\x04 a zip")
    assert teacher_file(ckpt) == (ckpt, False)
    with pytest.raises(FileNotFoundError, match="NIMA weights not found"):
        teacher_file(f"nima:{tmp_path / 'nope.hdf5'}")


def test_nima_in_the_loop_relabels_groups(ctx, model, weights: Path, sha: str) -> None:
    from distill.student import TrainTransform

    tf = TrainTransform(ctx.cache.spec)
    inner = CrossGroups("cross", ctx, group_size=M, groups=G, seed=0, scale=0.5)
    src = TeacherGroups(f"nima:{weights}", inner)
    assert src.nima and src.checkpoint == weights and src.teacher_ids() == [f"nima-mobilenet:synthetic@{sha[:12]}"]
    batch = make_batch(src, 0, tf)
    assert batch["images"].shape == (G, M, 3, 32, 32) and torch.isnan(batch["target"]).all()
    # NIMA's pixels come from the group's own (un-augmented) PIL images, preprocessed NIMA's way.
    rng = src.rng(0)
    groups = [src.group(rng) for _ in range(G)]
    assert torch.equal(batch["teacher_images"], torch.stack([nima_preprocess(g.images) for g in groups]))
    labeller = TeacherLabeller(src.checkpoint, factors=FACTORS, scale=0.5)  # as the trainer builds it
    out = labeller(dict(batch))
    assert "teacher_images" not in out
    with torch.no_grad():
        scores = mean_score(model(batch["teacher_images"].flatten(0, 1))).view(G, M)
    assert torch.allclose(out["target"], 0.5 * scores, atol=1e-5)
    diffs = out["target"] - out["target"][:, :1]
    assert torch.allclose(diffs, 0.5 * (scores - scores[:, :1]), atol=1e-5) and diffs.abs().max() > 1e-3
    assert out["mask"].all() and out["mask"].shape == (G, M)
    assert out["factor_target"].shape == (G, M, len(FACTORS)) and torch.isnan(out["factor_target"]).all()
    # Its pooled features ride along for the feature loss, one per member.
    with torch.no_grad():
        feats = model.features(batch["teacher_images"].flatten(0, 1))
    assert torch.allclose(out["teacher_features"], feats.view(G, M, -1), atol=1e-5)
    # The trainer sets the stage's scale on the labeller; the spelling of the config works too.
    again = TeacherLabeller(f"nima:{weights}", factors=FACTORS, scale=2.0)(make_batch(src, 0, tf))
    assert torch.allclose(again["target"], 2.0 * scores, atol=1e-5)


def test_teacher_nima_needs_idealos_release(monkeypatch: pytest.MonkeyPatch, ctx, weights: Path) -> None:
    monkeypatch.setattr(nima, "default_path", lambda: weights)  # ``nima`` = the release where it lives
    inner = CrossGroups("cross", ctx, group_size=M, groups=G, seed=0)
    with pytest.raises(ValueError, match="not idealo's release"):
        TeacherGroups("nima", inner)
    monkeypatch.setattr(nima, "NIMA_SHA256", hashlib.sha256(weights.read_bytes()).hexdigest())
    assert TeacherGroups("nima", inner).teacher_ids() == [TEACHER_ID]


def test_provenance_names_nima(as_release: None, ctx, weights: Path) -> None:
    cfg = TrainConfig(sources={"nima_edit": SourceConfig(weight=0.5, teacher="nima")})
    src = TeacherGroups(f"nima:{weights}", EditGroups("nima_edit", ctx, EditOracle(), group_size=M, groups=G, seed=0))
    desc = describe_data(cfg, ctx, {"nima_edit": src}, {"nima_edit": 12})
    assert desc["teachers"] == [{"name": "nima-mobilenet-ava", "version": "idealo-0.07", "weight": 0.5}]
    rec = next(d for d in desc["training_data"] if d["name"] == TRAINING_DATA_NAME)
    assert rec["license"].startswith("permissive") and rec["pairs"] == 12
    assert desc["license"].startswith("Apache-2.0") and "NIMA" in desc["license"]  # photos permissive too


def test_provenance_of_another_nima_file_is_not_permissive(ctx, weights: Path, sha: str) -> None:
    cfg = TrainConfig()
    src = TeacherGroups(f"nima:{weights}", CrossGroups("x", ctx, group_size=M, groups=G, seed=0))
    desc = describe_data(cfg, ctx, {"x": src}, {"x": 3})
    assert desc["teachers"] == [{"name": "nima-mobilenet:synthetic", "version": sha[:12], "weight": 1.0}]
    assert desc["license"].startswith("research") and "not idealo's release" in desc["license"]


def test_training_with_nima_in_the_loop_records_the_teacher(as_release: None, ctx, weights: Path, tmp_path: Path):
    from test_trainer import tiny_cfg

    from distill.student import load_checkpoint
    from distill.trainer import Run

    cfg = tiny_cfg(
        tmp_path / "run",
        "steps=2",
        "val.every=1000",
        f"sources={{edit: {{kind: edit, group_size: 2, groups: 2, teacher: 'nima:{weights}', scale: 0.5}}}}",
        "losses={relative: {}, ranking: {}}",
    )
    final = Run(cfg, ctx=ctx).fit()
    ckpt = load_checkpoint(final)
    assert {"name": "nima-mobilenet-ava", "version": "idealo-0.07", "weight": 1.0} in ckpt["teachers"]
    assert "edit-oracle" not in {t["name"] for t in ckpt["teachers"]}  # NIMA replaced the oracle's targets
    rec = next(d for d in ckpt["training_data"] if d["name"] == TRAINING_DATA_NAME)
    assert rec["license"].startswith("permissive") and rec["pairs"] > 0


def test_feature_loss_learns_nima_features_and_resumes(as_release: None, ctx, weights: Path, tmp_path: Path):
    from test_trainer import tiny_cfg

    from distill.trainer import Run

    args = (
        f"sources={{x: {{kind: cross, group_size: 3, groups: 2, teacher: 'nima:{weights}'}},"
        " edit: {kind: edit, group_size: 2, groups: 1}}",
        "losses={ranking: {}, feature: {weight: 1.0}}",
        "optim.lr=0.01",
        "val.every=1000",
    )
    run = Run(tiny_cfg(tmp_path / "run", "steps=12", *args), ctx=ctx)
    fn = run.loss_fns["feature"]
    assert fn.proj.in_features == run.model.utility_head.in_features and fn.proj.out_features == 1024
    # Training-only: the map is an optimised parameter of the run, never a part of the student.
    assert any(p is fn.proj.weight for g in run.optimizer.param_groups for p in g["params"])
    assert not any(p is fn.proj.weight for p in run.model.parameters())
    run.enter_stage(0, None)
    logs = [run.step() for _ in range(12)]
    assert all("edit/feature" not in r for r in logs)  # the edit oracle has no features to match
    first, last = logs[0]["x/feature"], sum(r["x/feature"] for r in logs[-3:]) / 3
    assert last < first
    run.save("last.pt", resume=True)
    again = Run(tiny_cfg(tmp_path / "run", "steps=12", *args), ctx=ctx, resume=True)
    assert torch.equal(again.loss_fns["feature"].proj.weight, fn.proj.weight)


def test_feature_loss_names_a_width_mismatch() -> None:
    from distill.losses import FeatureLoss

    fn = FeatureLoss(teacher_width=8)
    with pytest.raises(RuntimeError, match="bind"):
        fn(torch.zeros(4, 5), torch.zeros(4, 8))
    fn.bind(5)
    with pytest.raises(ValueError, match="teacher_width"):
        fn(torch.zeros(4, 5), torch.zeros(4, 7))
    # Centred on the batch: a shift every image shares costs nothing, only how they differ counts.
    t = torch.randn(6, 8)
    with torch.no_grad():
        fn.proj.weight.copy_(torch.randn(8, 5))
    s = torch.randn(6, 5)
    with torch.no_grad():
        assert float(fn(s, fn.proj(s) + 3.0)["loss"]) < 1e-5
        assert float(fn(s, t)["loss"]) > 0.1


# ---------------------------------------------------------------------------------------------- real file


@pytest.mark.skipif(not REAL.is_file() or not PHOTO.is_file(), reason=f"needs {REAL} and {PHOTO}")
def test_real_nima_prefers_the_photo_to_its_heavy_blur(tmp_path: Path) -> None:
    Image.open(PHOTO).convert("RGB").filter(ImageFilter.GaussianBlur(8)).save(tmp_path / "blur.png")
    (tmp_path / PHOTO.name).symlink_to(PHOTO)
    pairs_file = _pairs(tmp_path / "pairs.jsonl", [(PHOTO.name, "blur.png"), ("blur.png", PHOTO.name)])
    out = tmp_path / "labels.jsonl"
    assert (
        lab.main(
            [
                "--teacher",
                "nima",
                "--pairs",
                str(pairs_file),
                "--root",
                str(tmp_path),
                "--out",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    worse, better = list(read_pairs(out))
    assert worse.teacher == better.teacher == TEACHER_ID and worse.source == "model"
    assert worse.delta < -0.1 and better.delta == pytest.approx(-worse.delta, abs=1e-5)
