"""Unusable frames: what they look like, how a source swaps them in, and the configs that may use them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from synthetic_data import make_context

from distill.config import ConfigError, config_from_dict
from distill.data import make_batch
from distill.edits.unusable import TEACHER_ID, UNUSABLE_KINDS, unusable_frame
from distill.sources import MosGroups, build_source
from distill.student import TrainTransform

PHOTO = Image.fromarray(np.random.default_rng(0).integers(40, 200, (48, 64, 3)).astype(np.uint8), "RGB").resize(
    (128, 96), Image.BILINEAR
)


@pytest.mark.parametrize("kind", UNUSABLE_KINDS)
def test_each_kind_is_an_rgb_frame_of_the_photo_size_and_deterministic(kind: str) -> None:
    a = unusable_frame(PHOTO, np.random.default_rng(3), kind=kind)
    b = unusable_frame(PHOTO, np.random.default_rng(3), kind=kind)
    assert a.mode == "RGB" and a.size == PHOTO.size
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_the_frames_carry_no_photo() -> None:
    rng = np.random.default_rng(1)
    photo = np.asarray(PHOTO, np.float64)
    frame = {k: np.asarray(unusable_frame(PHOTO, rng, kind=k), np.float64) for k in UNUSABLE_KINDS}
    assert frame["solid"].std(axis=(0, 1)).max() == 0
    assert frame["crushed"].mean() < 10 and frame["blown"].mean() > 240
    assert frame["smeared"].std() < 0.25 * photo.std()
    noise = frame["noise"]
    assert abs(noise.mean() - 127.5) < 10 and noise.std() > 60  # no structure, the full range
    with pytest.raises(ValueError, match="unknown unusable-frame kind"):
        unusable_frame(PHOTO, rng, kind="lens-cap")


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory):
    return make_context(tmp_path_factory.mktemp("data"))


def test_a_source_swaps_frames_into_its_last_members_and_keeps_the_rest(ctx) -> None:
    tf = TrainTransform(ctx.cache.spec)
    plain = MosGroups("mos", ctx, group_size=4, groups=6, seed=2, scale=8.0)
    swapped = MosGroups("mos", ctx, group_size=4, groups=6, seed=2, scale=8.0).with_unusable(0.5, 1, -0.25)
    a, b = make_batch(plain, 4, tf), make_batch(swapped, 4, tf)
    changed = (a["target"] != b["target"]).any(1)
    assert 0 < int(changed.sum()) < 6  # about half the groups
    assert torch.all(b["target"][changed, -1] == -2.0)  # -0.25 MOS times the scale: below every image
    assert torch.equal(a["target"][:, :-1], b["target"][:, :-1])
    assert torch.equal(a["images"][~changed], b["images"][~changed])
    assert torch.isnan(b["factor_target"][changed, -1]).all()
    assert TEACHER_ID in swapped.all_teacher_ids() and TEACHER_ID not in plain.all_teacher_ids()


def test_config_targets_mos_sources_below_their_range_and_needs_a_target_elsewhere(ctx) -> None:
    cfg = config_from_dict({"sources": {"biq": {"kind": "mos", "unusable": {"fraction": 1.0}}}})
    assert build_source("biq", cfg.sources["biq"], ctx, seed=0).unusable == (1.0, 1, -0.25)
    bad = [
        ({"kind": "edit", "unusable": {}}, "unusable.target is needed"),
        ({"kind": "mos", "group_size": 2, "unusable": {"per_group": 2}}, "per_group < group_size"),
        ({"kind": "mos", "unusable": {"fraction": 0}}, "0 < fraction"),
        ({"kind": "labels", "group_size": 2, "labels": "x.jsonl", "unusable": {"target": -8}}, "edit or mos"),
        ({"kind": "mos", "teacher": "nima", "unusable": {}}, "edit or mos source with its own targets"),
    ]
    for source, message in bad:
        with pytest.raises(ConfigError, match=message):
            config_from_dict({"sources": {"s": source}})


def test_cross_groups_of_photos_only_draw_no_scored_image_and_crop_some_members(ctx) -> None:
    from distill.sources import CrossGroups

    src = CrossGroups("nima", ctx, dataset="photos", crop_fraction=0.5, group_size=4, groups=2, seed=0)
    assert src.datasets == ("photos",) and src.items == []
    photo_sizes = {ctx.photo(r).size for r in ctx.photos["train"]}
    sizes = [im.size for _ in range(10) for im in src.group(np.random.default_rng(_)).images]
    cropped = [s for s in sizes if s not in photo_sizes]
    assert 0 < len(cropped) < len(sizes)
    assert all(w * h < 0.85 * max(pw * ph for pw, ph in photo_sizes) for w, h in cropped)
    with pytest.raises(ConfigError, match="draw from the photos only"):
        config_from_dict({"data": {"permissive_only": True}, "sources": {"x": {"kind": "cross", "teacher": "nima"}}})
    permissive = {
        "data": {"permissive_only": True},
        "sources": {"x": {"kind": "cross", "teacher": "nima", "dataset": "photos"}},
    }
    assert config_from_dict(permissive).sources["x"].dataset == "photos"
