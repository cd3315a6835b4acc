"""The models shipped inside the wheel: present, small, verified, licensed, and sane on real photos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import redaes_lite
from redaes_lite.session import EMBEDDED

MODELS = Path(redaes_lite.__file__).parent / "models"
PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"


#: The trunk each shipped model runs (MODEL_CARD.md): the permissive one is NIMA's MobileNet v1, fine-tuned.
SHIPPED_BACKBONE = {"default": "timm:tf_efficientnet_lite0", "permissive": "nima:mobilenet_v1"}


@pytest.mark.parametrize("name", EMBEDDED)
def test_embedded_model_is_complete_small_and_verified(name):
    folder = MODELS / name
    assert sum(f.stat().st_size for f in folder.iterdir()) <= 8 * 1024 * 1024  # every file it ships, together
    assert (folder / "NOTICE").read_text().strip()
    side = json.loads((folder / "model.json").read_text())
    assert side["file"] == "model.onnx" and len(side["sha256"]) == 64
    info = redaes_lite.load(name).info
    assert info.student["backbone"] == SHIPPED_BACKBONE[name]
    assert info.quantization in ("fp32", "fp16", "int8-dynamic", "int8-qdq")


@pytest.mark.parametrize("name", EMBEDDED)
def test_the_int8_file_ships_in_the_wheel_verified_beside_the_fp_file(name):
    import tomllib

    root = Path(__file__).resolve().parents[1]
    package_data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert {"models/*/model.int8.onnx", "models/*/model.int8.json"} <= set(package_data["redaes_lite"])
    fp, int8 = (redaes_lite.load(name, precision=p) for p in ("fp", "int8"))
    assert fp.path.name == "model.onnx" and int8.path.name == "model.int8.onnx"
    assert fp.verified and int8.verified
    assert int8.info.quantization == "int8-qdq" and int8.model_id == fp.model_id + "+int8"
    assert int8.info.preprocess == fp.info.preprocess and int8.info.factors == fp.info.factors


def test_licences_say_what_each_model_may_be_used_for():
    assert "research" in redaes_lite.load("default").info.license
    permissive = redaes_lite.load("permissive").info
    assert permissive.license.startswith("Apache-2.0")
    assert all(d["license"].startswith("permissive") for d in permissive.training_data)
    assert not any(t["name"].startswith("biq2021") for t in permissive.teacher)


@pytest.mark.parametrize("name", EMBEDDED)
def test_broken_frames_score_below_one(name):
    scorer = redaes_lite.load(name)
    rng = np.random.default_rng(0)
    frames = [
        np.zeros((240, 320, 3), np.uint8),
        np.full((240, 320, 3), 255, np.uint8),
        rng.integers(0, 256, (240, 320, 3), dtype=np.uint8),
    ]
    for frame in frames:
        assert scorer.score(frame).score < 1.0


@pytest.mark.skipif(not PHOTOS.is_dir(), reason="shared photos not available")
@pytest.mark.parametrize("name", EMBEDDED)
def test_a_photo_beats_its_heavily_degraded_copy(name):
    from PIL import Image, ImageFilter

    photo = Image.open(PHOTOS / "kodak_03.jpg").convert("RGB")
    blurred = photo.filter(ImageFilter.GaussianBlur(8))
    dark = photo.point(lambda v: v // 6)
    scorer = redaes_lite.load(name)
    for worse in (blurred, dark):
        c = scorer.compare(photo, worse)
        assert c.preferred == "a" and c.probability > 0.5
