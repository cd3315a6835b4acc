"""``nima:mobilenet_v1``: a student trunk started from NIMA's weights computes NIMA's features exactly, builds
at any input size, freezes by stage, exports, and its preprocessing (nearest, NIMA's normalisation) travels in
the spec."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("h5py")

from test_nima import LAYER_NAMES, REAL, synthetic_tensors, write_keras  # noqa: E402

from distill.student import create_student, rebuild_student  # noqa: E402
from distill.teachers.nima import load_nima  # noqa: E402

FACTORS = ["sharpness", "exposure"]


@pytest.fixture(scope="module")
def synthetic_file(tmp_path_factory):
    return write_keras(tmp_path_factory.mktemp("nima") / "w.hdf5", synthetic_tensors(3), LAYER_NAMES)


def test_trunk_from_a_nima_file_computes_its_features(synthetic_file):
    student, _, _ = create_student("nima:mobilenet_v1", factors=FACTORS, pretrained=str(synthetic_file))
    net = load_nima(synthetic_file, sha256=None)
    x = torch.rand(2, 3, 224, 224) * 2 - 1
    student.eval()
    with torch.no_grad():
        assert torch.allclose(student.trunk(x), net.features(x), atol=1e-5)
        assert student.trunk(x).shape == (2, 1024)
    assert student.info()["pretrained"].startswith("nima:")


@pytest.mark.skipif(not REAL.is_file(), reason=f"NIMA weights not at {REAL}")
def test_shipped_release_by_its_id():
    student, _, _ = create_student(
        "nima:mobilenet_v1", factors=FACTORS, pretrained="nima-mobilenet-ava@idealo-0.07", img_size=208
    )
    assert student.pretrained == "nima:nima-mobilenet-ava@idealo-0.07"
    x = torch.rand(1, 3, 224, 224) * 2 - 1
    with torch.no_grad():
        assert torch.equal(student.eval().trunk(x), load_nima().features(x))


def test_spec_carries_nima_normalisation_and_the_interpolation():
    student, _, eval_tf = create_student(
        "nima:mobilenet_v1", factors=FACTORS, img_size=[208, 208], resize="squash", interpolation="nearest"
    )
    spec = student.spec
    assert spec.size == (208, 208) and spec.interpolation == "nearest" and spec.mean == (0.5, 0.5, 0.5)
    assert student.pretrained == "none"
    # x / 127.5 - 1: white is 1, black is -1.
    from PIL import Image

    white = eval_tf(Image.new("RGB", (50, 40), (255, 255, 255)))
    assert white.shape == (3, 208, 208) and torch.allclose(white, torch.ones_like(white))
    # The rebuild from the checkpoint's config keeps the spec.
    rebuilt = rebuild_student(student.backbone_config())
    assert rebuilt.spec == spec and rebuilt.backbone == "nima:mobilenet_v1"


def test_lock_freezes_stages_from_the_input():
    student, _, _ = create_student("nima:mobilenet_v1", factors=FACTORS, unlocked_groups=2)
    stages = student.trunk.stages
    assert len(stages) == 14  # stem + 13 depthwise-separable blocks
    assert not any(p.requires_grad for p in stages[:12].parameters())
    assert all(p.requires_grad for p in stages[12:].parameters())
    with pytest.raises(ValueError, match="only 14 parameter groups"):
        create_student("nima:mobilenet_v1", factors=FACTORS, unlocked_groups=15)


def test_unknown_arch_is_named():
    with pytest.raises(ValueError, match="nima:mobilenet_v1"):
        create_student("nima:mobilenet_v2", factors=FACTORS)


def test_exports_to_onnx_and_matches_torch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    student, _, _ = create_student("nima:mobilenet_v1", factors=FACTORS, img_size=96)
    student.eval()
    x = torch.rand(2, 3, 96, 96) * 2 - 1
    path = tmp_path / "m.onnx"
    torch.onnx.export(student, (x,), path, input_names=["pixel_values"], dynamo=False, opset_version=17)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"pixel_values": x.numpy()})
    with torch.no_grad():
        want = student(x)
    np.testing.assert_allclose(got[0], want[0].numpy(), atol=1e-4)
    np.testing.assert_allclose(got[1], want[1].numpy(), atol=1e-4)


def test_factor_taps_read_the_last_stage_of_each_resolution():
    student, _, _ = create_student("nima:mobilenet_v1", factors=FACTORS, img_size=64, factor_taps=[1, 2])
    trunk = student.trunk
    assert [level["reduction"] for level in trunk.feature_info] == [2, 4, 8, 16, 32]
    x = torch.rand(1, 3, 64, 64)
    final, maps = trunk.forward_intermediates(x, indices=[1, 2])
    assert [tuple(m.shape[1:]) for m in maps] == [(128, 16, 16), (256, 8, 8)]
    assert torch.allclose(trunk.forward_head(final), trunk(x))
    # pooled 1024 + (mean, std) of 128 and 256 channels
    assert student.factor_head.in_features == 1024 + 2 * (128 + 256)
