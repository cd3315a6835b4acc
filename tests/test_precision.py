"""Which file of a model folder runs (redaes_lite.precision): fp or int8, by the documented rule.

The folders here hold two tiny models (tests/modelkit.py): ``model.onnx`` and ``model.int8.onnx``, the
second with its utility weights doubled so that a score says which file made it. The CPU's features are
replaced by monkeypatching ``precision.cpu_int8``; ``classify`` is tested on the flags themselves.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from clirun import invoke
from modelkit import make_tiny_model
from onnx import numpy_helper

import redaes_lite.precision as precision
import redaes_lite.session as session
from redaes_lite import load
from redaes_lite.cli import run
from redaes_lite.errors import ModelError
from redaes_lite.metadata import read_sidecar, sha256_file, write_sidecar
from redaes_lite.precision import CpuInt8, choose, classify, requested

WITH_DOT = CpuInt8(True, "avx512_vnni", "x86_64")
WITHOUT_DOT = CpuInt8(False, "no VNNI (AVX2 int8 kernels can saturate)", "x86_64")
UNKNOWN = CpuInt8(None, "unknown (riscv64: CPU features not readable here)", "riscv64")


def _pair(folder: Path, *, external: bool = False) -> Path:
    """``folder`` with model.onnx (fp16) and model.int8.onnx (int8-qdq, utility x2), each with its sidecar."""
    fp = make_tiny_model(folder, quantization="fp16")
    int8 = make_tiny_model(folder, quantization="int8-qdq", filename="model.int8.onnx")
    model = onnx.load(str(int8))
    w = next(i for i in model.graph.initializer if i.name == "W_u")
    w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w) * 2, "W_u"))
    onnx.save(model, str(int8))
    side = read_sidecar(int8.with_suffix(".json"))
    write_sidecar(int8, side.info, opset=side.opset, external_data={fp.name: sha256_file(fp)} if external else None)
    return folder


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return _pair(tmp_path / "m")


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(precision.ENV, raising=False)


def _cpu(monkeypatch: pytest.MonkeyPatch, cpu: CpuInt8) -> None:
    monkeypatch.setattr(precision, "cpu_int8", lambda: cpu)


@pytest.mark.parametrize(
    ("machine", "flags", "supported"),
    [
        ("x86_64", {"avx2", "avx512f", "avx512_vnni"}, True),
        ("x86_64", {"avx2", "avx_vnni"}, True),
        ("amd64", {"amx_int8"}, True),
        ("x86_64", {"avx2", "fma", "avx512f"}, False),
        ("aarch64", {"fp", "asimd", "asimddp"}, True),
        ("arm64", {"asimd"}, False),
        ("x86_64", None, None),
        ("riscv64", {"v"}, None),
    ],
)
def test_cpu_int8_support_is_read_from_the_dot_product_flags(machine, flags, supported) -> None:
    got = classify(machine, flags)
    assert got.supported is supported
    if supported is False and machine.startswith("x86"):
        assert "saturate" in got.detail


def test_auto_runs_int8_only_where_the_cpu_has_an_int8_dot_product(folder, monkeypatch) -> None:
    _cpu(monkeypatch, WITH_DOT)
    s = load(folder)
    assert (s.path.name, s.choice.precision, s.choice.requested, s.choice.source) == (
        "model.int8.onnx",
        "int8",
        "auto",
        "default",
    )
    assert "avx512_vnni" in s.choice.reason
    for cpu in (WITHOUT_DOT, UNKNOWN):
        _cpu(monkeypatch, cpu)
        s = load(folder)
        assert (s.path.name, s.choice.precision) == ("model.onnx", "fp")
        assert cpu.detail in s.choice.reason


def test_auto_runs_fp_where_no_int8_file_ships_or_providers_are_not_cpu(tmp_path, monkeypatch) -> None:
    _cpu(monkeypatch, WITH_DOT)
    only_fp = make_tiny_model(tmp_path / "fp").parent
    s = load(only_fp)
    assert (s.path.name, s.choice.reason) == ("model.onnx", "only model.onnx ships for this model")
    both = _pair(tmp_path / "both")
    gpu = choose(both, None, ("CUDAExecutionProvider", "CPUExecutionProvider"))
    assert (gpu.file.name, gpu.precision) == ("model.onnx", "fp")


def test_argument_beats_environment_beats_default(folder, monkeypatch) -> None:
    _cpu(monkeypatch, WITH_DOT)
    monkeypatch.setenv(precision.ENV, "fp")
    assert requested(None) == ("fp", precision.ENV)
    assert load(folder).path.name == "model.onnx"
    s = load(folder, precision="int8")
    assert (s.path.name, s.choice.source) == ("model.int8.onnx", "argument")
    _cpu(monkeypatch, WITHOUT_DOT)
    assert load(folder, precision="int8").path.name == "model.int8.onnx"  # forced: the CPU is not asked


@pytest.mark.parametrize("bad", ["fast", "FP32", "int4"])
def test_unknown_settings_are_refused(folder, monkeypatch, bad) -> None:
    with pytest.raises(ValueError, match="precision must be one of auto, fp, int8"):
        load(folder, precision=bad)
    monkeypatch.setenv(precision.ENV, bad)
    with pytest.raises(ValueError, match="REDAES_PRECISION must be one of"):
        load(folder)


def test_int8_asked_where_none_ships_is_an_error(tmp_path) -> None:
    only_fp = make_tiny_model(tmp_path / "fp").parent
    with pytest.raises(ModelError, match="no model.int8.onnx ships for this model"):
        load(only_fp, precision="int8")


def test_a_file_given_by_path_runs_whatever_the_setting(folder, monkeypatch) -> None:
    _cpu(monkeypatch, WITH_DOT)
    monkeypatch.setenv(precision.ENV, "int8")
    s = load(folder / "model.onnx")
    assert (s.path.name, s.choice.precision, s.choice.reason) == ("model.onnx", "fp", "the file given")
    assert load(folder / "model.int8.onnx").choice.precision == "int8"
    with pytest.raises(ValueError, match="applies to a model folder or name"):
        load(folder / "model.onnx", precision="int8")


def test_each_file_gives_bit_identical_scores_and_the_files_differ(folder, monkeypatch, tmp_path) -> None:
    from PIL import Image

    images = [Image.new("RGB", (40, 30), (v, 2 * v % 256, 90)) for v in (20, 90, 200)]
    _cpu(monkeypatch, WITH_DOT)
    auto = [s.utility for s in load(folder).score_many(images)]
    again = [s.utility for s in load(folder, precision="auto").score_many(images)]
    direct = [s.utility for s in load(folder / "model.int8.onnx").score_many(images)]
    fp = [s.utility for s in load(folder, precision="fp").score_many(images)]
    assert auto == again == direct
    np.testing.assert_allclose(auto, 2 * np.asarray(fp), rtol=1e-5)  # the int8 stand-in doubles utility


def test_embedded_int8_names_itself_and_is_verified_with_the_weights_it_reads(tmp_path, monkeypatch) -> None:
    _cpu(monkeypatch, WITH_DOT)
    monkeypatch.setattr(session, "_MODELS_DIR", tmp_path)
    embedded = _pair(tmp_path / "default", external=True)
    s = load()
    version = s.info.version
    assert (s.path.name, s.model_id, s.verified) == ("model.int8.onnx", f"default@{version}+int8", True)
    assert load(precision="fp").model_id == f"default@{version}"
    # A new model.onnx (its own sidecar updated) under an int8 file made for the old one: refused.
    make_tiny_model(embedded, quantization="fp16", temperature=2.0)
    with pytest.raises(ModelError, match="weights of model.int8.onnx are not the ones model.int8.json records"):
        load()
    assert load(precision="fp").info.temperature == 2.0


def test_sidecar_external_data_round_trips_and_is_checked(folder, tmp_path) -> None:
    int8 = folder / "model.int8.onnx"
    side = read_sidecar(int8.with_suffix(".json"))
    write_sidecar(int8, side.info, opset=side.opset, external_data={"model.onnx": "AB" * 32})
    assert read_sidecar(int8.with_suffix(".json")).external_data == {"model.onnx": "ab" * 32}
    doc = json.loads(int8.with_suffix(".json").read_text())
    doc["external_data"] = {"../model.onnx": "ab"}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="external_data must map file names beside it"):
        read_sidecar(bad)


def test_info_says_which_file_runs_and_why(folder, monkeypatch) -> None:
    _cpu(monkeypatch, WITH_DOT)
    r = invoke(run, "info", "--model", folder, "--format", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["precision"].startswith("int8 (model.int8.onnx): CPU has an int8 dot product")
    assert doc["precision_setting"] == "auto (from default)"
    assert doc["cpu_int8_dot_product"] == "yes: avx512_vnni (x86_64)"
    r = invoke(run, "info", "--model", folder, "--precision", "fp")
    assert "fp (model.onnx): model.onnx asked for" in r.stdout
    assert "auto (from default)" not in r.stdout and "fp (from argument)" in r.stdout
    r = invoke(run, "info", "--model", folder, "--precision", "fast")
    assert r.exit_code == 2
