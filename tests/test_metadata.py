"""redaes.* metadata: round trips, validation naming the file and key, calibration, sidecar."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from modelkit import make_info, make_tiny_model

from redaes_lite.errors import ModelError
from redaes_lite.metadata import (
    KEYS,
    ModelInfo,
    apply_calibration,
    embed_props,
    read_sidecar,
    sha256_file,
    sidecar_path,
    write_sidecar,
)


def test_props_round_trip_is_exact():
    info = make_info(metrics={"srcc": 0.71}, temperature=0.37, lapse=0.04)
    props = info.to_props()
    assert all(isinstance(v, str) for v in props.values())
    assert set(props) == set(KEYS)
    assert ModelInfo.from_props(props, source="m.onnx") == info


def test_dict_round_trip_and_optional_metrics():
    info = make_info()
    d = info.to_dict()
    assert "redaes.metrics" not in d and d["redaes.temperature"] == 1.0
    assert d["redaes.preprocess"]["size"] == [32, 32]
    assert ModelInfo.from_dict(json.loads(json.dumps(d)), source="model.json") == info


def test_a_model_without_a_lapse_reads_as_none():
    """Files exported before ``redaes.lapse`` existed keep their probabilities: sigmoid(delta / T)."""
    props = make_info(temperature=0.5).to_props()
    del props["redaes.lapse"]
    info = ModelInfo.from_props(props, source="old.onnx")
    assert info.lapse == 0.0
    assert info.preference(1.0) == pytest.approx(1 / (1 + np.exp(-2.0)))


def test_preference_is_capped_by_the_lapse_and_symmetric():
    info = make_info(temperature=0.25, lapse=0.1)
    d = np.array([-50.0, -0.3, 0.0, 0.3, 50.0])
    p = info.preference(d)
    assert p[2] == 0.5 and p[0] == pytest.approx(0.05) and p[-1] == pytest.approx(0.95)
    np.testing.assert_allclose(p + p[::-1], 1.0)
    assert p[3] == pytest.approx(0.05 + 0.9 / (1 + np.exp(-1.2)))


@pytest.mark.parametrize("key", [k for k in KEYS if k not in ("redaes.metrics", "redaes.lapse")])
def test_missing_key_names_file_and_key(key):
    props = make_info().to_props()
    del props[key]
    with pytest.raises(ModelError, match=rf"^my/model\.onnx: .*{key}"):
        ModelInfo.from_props(props, source="my/model.onnx")


@pytest.mark.parametrize(
    ("key", "value", "cause"),
    [
        ("redaes.format", "2", "format"),
        ("redaes.temperature", "hot", "not a number"),
        ("redaes.temperature", "-1", "> 0"),
        ("redaes.lapse", "some", "not a number"),
        ("redaes.lapse", "1", r"\[0, 1\)"),
        ("redaes.lapse", "-0.1", r"\[0, 1\)"),
        ("redaes.factors", '["exposure", "prettiness"]', "prettiness"),
        ("redaes.factors", '["exposure", "exposure"]', "duplicate"),
        ("redaes.preprocess", "{not json", "not valid JSON"),
        ("redaes.preprocess", '{"resize": "stretch"}', "resize"),
        ("redaes.preprocess", '{"size": 5}', "redaes.preprocess"),
        ("redaes.calibration", '{"method":"x","utility":[1,0],"score":[0,10],"fitted_on":"v"}', "ascending"),
        ("redaes.calibration", '{"method":"x","utility":[0,1],"score":[0,11],"fitted_on":"v"}', r"\[0, 10\]"),
        (
            "redaes.student",
            '{"backbone":"resnet","pretrained":"x","params":1,"input":[32,32]}',
            r"source one of \('timm', 'open_clip', 'nima'\)",
        ),
        ("redaes.student", '{"backbone":"timm:x","pretrained":"x","params":1,"input":[64,64]}', "input"),
        ("redaes.teacher", "[]", "non-empty"),
        ("redaes.training_data", '[{"name":"x","license":"y"}]', "pairs"),
        ("redaes.quantization", "int4", "quantization"),
        ("redaes.license", " ", "license"),
    ],
)
def test_bad_values_name_file_key_and_cause(key, value, cause):
    props = {**make_info().to_props(), key: value}
    with pytest.raises(ModelError, match=cause) as e:
        ModelInfo.from_props(props, source="bad.onnx")
    assert str(e.value).startswith("bad.onnx: ") and key.split(".")[1] in str(e.value)
    assert "\n" not in str(e.value)


def test_to_dict_is_a_copy():
    info = make_info()
    info.to_dict()["redaes.calibration"]["score"][0] = 99.0
    assert info.calibration["score"][0] == 0.0


def test_constructor_validates_too():
    with pytest.raises(ValueError, match="redaes.quantization"):
        replace(make_info(), quantization="fp8")


def test_calibration_is_monotone_clamped_and_extends_end_segments():
    cal = {"method": "isotonic", "utility": [-1.0, 0.0, 2.0], "score": [2.0, 4.0, 8.0], "fitted_on": "val"}
    u = np.linspace(-10, 10, 1001)
    s = apply_calibration(cal, u)
    assert np.all(np.diff(s) >= 0) and s.min() == 0.0 and s.max() == 10.0
    np.testing.assert_allclose(apply_calibration(cal, [-1.0, 0.0, 1.0, 2.0]), [2, 4, 6, 8])
    np.testing.assert_allclose(apply_calibration(cal, [-1.5, 2.5]), [1.0, 9.0])  # end slopes 2 and 2
    info = make_info(calibration=cal)
    assert info.calibrate(np.float32(0.5)).shape == () and float(info.calibrate(0.5)) == 5.0


def test_sidecar_round_trip(tmp_path):
    path = make_tiny_model(tmp_path, temperature=0.5)
    side = read_sidecar(sidecar_path(path))
    assert sidecar_path(path).name == "model.json"
    assert side.file == "model.onnx" and side.model_path == path
    assert side.sha256 == sha256_file(path) and side.opset == 17
    assert side.info.temperature == 0.5
    raw = json.loads(sidecar_path(path).read_text())
    assert set(raw) == {"file", "sha256", "opset", "metadata"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.onnx"]  # no temp files left


def test_write_sidecar_reads_opset_from_file(tmp_path):
    path = make_tiny_model(tmp_path, sidecar=False, filename="m.int8.onnx")
    out = write_sidecar(path, make_info())
    assert out.name == "m.int8.json" and read_sidecar(out).opset == 17


@pytest.mark.parametrize(
    ("text", "cause"),
    [("{", "cannot read"), ("[]", "JSON object"), ('{"file": "m.onnx"}', "lacks")],
)
def test_bad_sidecar(tmp_path, text, cause):
    p = tmp_path / "model.json"
    p.write_text(text)
    with pytest.raises(ModelError, match=cause):
        read_sidecar(p)


def test_embed_props_replaces_only_redaes_keys():
    onnx = pytest.importorskip("onnx")
    model = onnx.ModelProto()
    for k, v in (("producer.note", "keep"), ("redaes.version", "old")):
        e = model.metadata_props.add()
        e.key, e.value = k, v
    info = make_info()
    embed_props(model, info)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["producer.note"] == "keep" and props["redaes.version"] == info.version
    assert len(props) == len(model.metadata_props)
