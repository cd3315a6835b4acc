"""export: a tiny trained student -> ONNX / int8 / fp16 / .ort that the runtime loads, gated against the checkpoint.

The student is ``timm:test_efficientnet`` (~100k parameters) at 48x48, trained for a few dozen steps to
read brightness, contrast and sharpness off synthetic photos, so that its utilities differ between
images by more than int8 rounding (a purely random network scores every image alike, and then any
ranking comparison is noise). Gates run on a few dozen photos instead of 200 (``min_images``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

import redaes_lite  # noqa: E402
from export import pipeline  # noqa: E402
from export.__main__ import EXIT_ERROR, EXIT_OK, EXIT_PARITY, main  # noqa: E402
from export.errors import ExportError, ParityError  # noqa: E402
from export.metadata import read_info, stamp  # noqa: E402
from export.mobile import OPERATORS_CONFIG, to_ort  # noqa: E402
from export.onnx import export_onnx  # noqa: E402
from export.parity import PhotoSet, identical_ranking_gate, ranking_gate, torch_gate  # noqa: E402
from export.quantize import QDQ_OPS, fp16_weights, quantize_int8  # noqa: E402
from redaes_lite.eval.metrics import pair_accuracy  # noqa: E402
from redaes_lite.metadata import read_sidecar, sha256_file  # noqa: E402
from redaes_lite.preprocess import preprocess  # noqa: E402

SIZE = 48
FACTORS = ("exposure", "contrast", "sharpness")
N_PARITY = 40
CALIBRATION = {"method": "linear", "utility": [-2.0, 0.0, 2.0], "score": [0.0, 5.0, 10.0], "fitted_on": "test"}


def _photos(directory: Path, n: int, seed: int) -> list[Path]:
    """Synthetic JPEG 'photos' that differ in brightness, contrast, sharpness and tint."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        coarse = Image.fromarray((rng.random((6, 8, 3)) * 255).astype(np.uint8)).resize((128, 96), Image.BICUBIC)
        x = np.asarray(coarse, np.float32) / 255 - 0.5
        x = rng.uniform(0.15, 0.85) + rng.uniform(0.1, 1.0) * x + rng.uniform(0, 0.25) * rng.standard_normal(x.shape)
        x = x * rng.uniform(0.8, 1.2, 3)
        path = directory / f"p{seed}_{i:03d}.jpg"
        Image.fromarray((np.clip(x, 0, 1) * 255).astype(np.uint8)).save(path, quality=92)
        paths.append(path)
    return paths


def _targets(pixels: torch.Tensor, spec) -> tuple[torch.Tensor, torch.Tensor]:
    raw = pixels * torch.tensor(spec.std).view(1, 3, 1, 1) + torch.tensor(spec.mean).view(1, 3, 1, 1)
    sharpness = (raw[..., 1:] - raw[..., :-1]).abs().mean((1, 2, 3))
    f = torch.stack([raw.mean((1, 2, 3)), raw.std((2, 3)).mean(1), sharpness], 1)
    f = (f - f.mean(0)) / f.std(0)
    return f @ torch.tensor([1.0, 0.5, 0.25]), f


def _save(path: Path, student, **changes) -> Path:
    from distill.student import save_checkpoint

    fields = dict(
        temperature=0.5,
        lapse=0.04,
        calibration=CALIBRATION,
        version="0.0.1+test",
        license="test weights (Apache-2.0)",
        teachers=[{"name": "pixel-statistics", "version": "1", "weight": 1.0}],
        training_data=[{"name": "synthetic", "license": "CC0", "pairs": 0}],
        config={},
        metrics={"val_srcc": 0.9},
        seed=0,
        git_commit="test",
        data_hashes={},
    )
    fields.update(changes)
    return save_checkpoint(path, student, **{k: v for k, v in fields.items() if v is not None})


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return make_data(tmp_path_factory.mktemp("export"))


def make_data(root: Path) -> dict:
    """Calibration photos, held-out parity photos and a briefly trained tiny student's checkpoint."""
    from distill.student import create_student

    calibration, parity = _photos(root / "cal", 32, seed=1), _photos(root / "val", N_PARITY, seed=2)
    torch.manual_seed(0)
    student, _, _ = create_student("timm:test_efficientnet", factors=FACTORS, img_size=SIZE)
    x = torch.from_numpy(preprocess(calibration, student.spec))
    target_u, target_f = _targets(x, student.spec)
    opt = torch.optim.Adam(student.parameters(), lr=3e-3)
    student.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: threads only contend
    for _ in range(40):
        idx = torch.randint(0, len(x), (16,))
        u, f = student(x[idx])
        loss = ((u - target_u[idx]) ** 2).mean() + ((f - target_f[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.set_num_threads(threads)
    ckpt = _save(root / "tiny.pt", student.eval())
    return {"root": root, "ckpt": ckpt, "student": student, "calibration": calibration, "parity": PhotoSet(parity)}


@pytest.fixture(scope="module")
def fp32(data: dict) -> Path:
    return export_onnx(data["ckpt"], data["root"] / "fp32" / "model.onnx")


def _utilities(model: Path, photos: list[Path]) -> np.ndarray:
    return np.array([s.utility for s in redaes_lite.load(model).score_many(photos)])


def _corrupt_normalisation(src: Path, out: Path) -> Path:
    """A copy of ``src`` whose metadata claims a different std than the weights were trained with."""
    import dataclasses
    import shutil

    info = read_info(src)
    if out != src:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, out)
    stamp(out, dataclasses.replace(info, preprocess=dataclasses.replace(info.preprocess, std=(0.5, 0.5, 0.5))))
    return out


def test_fp32_loads_in_runtime_and_matches_torch(data: dict, fp32: Path) -> None:
    photos = data["parity"].images[:8]
    with torch.no_grad():
        expected, _ = data["student"](torch.from_numpy(preprocess(photos, data["student"].spec)))
    scorer = redaes_lite.load(fp32)
    np.testing.assert_allclose(_utilities(fp32, photos), expected.numpy(), atol=1e-4)
    assert scorer.info.factors == FACTORS
    graph = onnx.load(str(fp32)).graph
    assert [i.name for i in graph.input] == ["pixel_values"] and graph.input[0].type.tensor_type.shape.dim[0].dim_param
    assert [o.name for o in graph.output] == ["utility", "factors"]
    # The exporter's per-node stack traces (build paths) are stripped.
    assert not any(n.metadata_props for n in graph.node)


def test_metadata_round_trips(data: dict, fp32: Path) -> None:
    info = read_info(fp32)
    side = read_sidecar(fp32.with_suffix(".json"))
    assert side.info == info and side.file == "model.onnx" and side.sha256 == sha256_file(fp32)
    assert side.opset == 18
    assert info.preprocess == data["student"].spec and info.factors == FACTORS
    assert (info.temperature, info.lapse, info.version) == (0.5, 0.04, "0.0.1+test")
    assert info.calibration["utility"] == [-2.0, 0.0, 2.0]
    assert info.student["backbone"] == "timm:test_efficientnet" and info.student["input"] == [SIZE, SIZE]
    assert info.quantization == "fp32" and info.metrics == {"val_srcc": 0.9}


def test_checkpoint_without_calibration_is_refused(data: dict, tmp_path: Path) -> None:
    ckpt = _save(tmp_path / "bad.pt", data["student"], calibration=None)
    with pytest.raises(ExportError, match="lacks calibration"):
        export_onnx(ckpt, tmp_path / "model.onnx")


def test_torch_gate_passes_and_fails_on_wrong_normalisation(data: dict, fp32: Path, tmp_path: Path) -> None:
    gate = torch_gate(data["ckpt"], fp32, data["parity"][:8])
    assert gate.passed and gate.figures["max_abs_utility"] <= 1e-4
    bad = _corrupt_normalisation(fp32, tmp_path / "bad" / "model.onnx")
    with pytest.raises(ParityError, match="torch-onnx parity gate failed") as err:
        torch_gate(data["ckpt"], bad, data["parity"][:8])
    assert err.value.gate.figures["max_abs_utility"] > 1e-4


@pytest.mark.parametrize("mode", ["int8-qdq", "int8-dynamic"])
def test_int8_passes_its_gate_and_keeps_the_ranking(data: dict, fp32: Path, tmp_path: Path, mode: str) -> None:
    out = quantize_int8(fp32, tmp_path / "model.onnx", mode=mode, calibration=data["calibration"])
    gate = ranking_gate(fp32, out, data["parity"], min_images=N_PARITY)
    assert gate.figures["spearman"] >= 0.99 and read_info(out).quantization == mode
    photos = data["parity"].images
    assert pair_accuracy(_utilities(out, photos), _utilities(fp32, photos)) >= 0.98
    assert out.stat().st_size < 0.7 * fp32.stat().st_size


def test_qdq_quantises_conv_matmul_gemm_weights_and_keeps_heads_fp32(data: dict, fp32: Path, tmp_path: Path) -> None:
    out = quantize_int8(fp32, tmp_path / "m.onnx", mode="int8-qdq", calibration=data["calibration"])
    graph = onnx.load(str(out)).graph
    weights = {i.name for i in graph.initializer}
    dq_weights = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in weights}
    users = {n.op_type for n in graph.node if set(n.input) & dq_weights}
    assert users and users <= set(QDQ_OPS)
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    heads = [n for n in graph.node if n.op_type == "Gemm"]
    assert len(heads) == 2 and not any(set(n.input) & dequantized for n in heads)


def test_ranking_gate_fails_on_corrupted_int8_and_too_few_photos(data: dict, fp32: Path, tmp_path: Path) -> None:
    good = quantize_int8(fp32, tmp_path / "q" / "model.onnx", mode="int8-dynamic")
    bad = _corrupt_normalisation(good, tmp_path / "bad" / "model.onnx")
    with pytest.raises(ParityError, match="metadata differs from the reference in redaes.preprocess"):
        ranking_gate(fp32, bad, data["parity"], min_images=N_PARITY)
    with pytest.raises(ParityError, match="only 40 photos, the gate needs >= 200"):
        ranking_gate(fp32, good, data["parity"])


def test_fp16_weights_halve_the_file_and_keep_the_ranking(data: dict, fp32: Path, tmp_path: Path) -> None:
    out = fp16_weights(fp32, tmp_path / "model.onnx")
    assert out.stat().st_size < 0.7 * fp32.stat().st_size and read_info(out).quantization == "fp16"
    assert ranking_gate(fp32, out, data["parity"], min_images=N_PARITY).figures["spearman"] > 0.999
    photos = data["parity"].images[:8]
    np.testing.assert_allclose(_utilities(out, photos), _utilities(fp32, photos), atol=1e-2)


def test_ort_file_scores_like_its_onnx(data: dict, fp32: Path, tmp_path: Path) -> None:
    out = to_ort(fp32, tmp_path / "ort" / "model.ort")
    identical_ranking_gate(fp32, out, data["parity"], min_images=N_PARITY)
    side = read_sidecar(out.with_suffix(".json"))
    assert side.file == "model.ort" and side.sha256 == sha256_file(out) and side.info == read_info(fp32)
    assert read_info(out) == read_info(fp32)
    assert "ai.onnx;" in (out.parent / OPERATORS_CONFIG).read_text()
    photos = data["parity"].images
    assert list(np.argsort(_utilities(out, photos))) == list(np.argsort(_utilities(fp32, photos)))


def _options(data: dict, **changes) -> pipeline.ExportOptions:
    fields = dict(
        int8="auto",
        fp16=True,
        ort=True,
        calibration=tuple(data["calibration"]),
        parity=tuple(data["parity"].images),
        min_parity=N_PARITY,
        torch_images=8,
        threads=(1,),
        batches=(1, 4),
        repeats=1,
    )
    return pipeline.ExportOptions(**{**fields, **changes})


@pytest.mark.slow
def test_export_all_writes_gated_files_and_report(data: dict, tmp_path: Path) -> None:
    report = json.loads(pipeline.export_all(data["ckpt"], tmp_path, options=_options(data)).read_text())
    assert report["status"] == "ok" and report["int8_choice"]["mode"] in ("int8-qdq", "int8-dynamic")
    assert set(report["files"]) == {"fp32", "int8", "fp16", "fp32-ort", "int8-ort"}
    assert {g["name"] for g in report["gates"]} == {"torch-onnx", "fp32-reduced", "onnx-ort"}
    assert all(g["passed"] for g in report["gates"])
    assert set(report["latency_ms"]["int8"]) == {"threads1_batch1", "threads1_batch4"}
    assert 0.5 < report["fp32_stability"]["noise_spearman"] <= 1.0
    for f in report["files"].values():
        path = tmp_path / f["path"]
        assert f["bytes"] == path.stat().st_size and read_sidecar(path.with_suffix(".json")).sha256 == f["sha256"]
    photos = data["parity"].images
    for onnx_name in ("fp32", "int8"):
        onnx_file, ort_file = (tmp_path / report["files"][n]["path"] for n in (onnx_name, f"{onnx_name}-ort"))
        assert list(np.argsort(_utilities(ort_file, photos))) == list(np.argsort(_utilities(onnx_file, photos)))
    assert (tmp_path / "export_report.md").read_text().startswith("# Export report: ok")
    assert not list(tmp_path.glob(".stage-*"))


def test_export_all_ships_nothing_when_a_gate_fails(data: dict, tmp_path: Path, monkeypatch) -> None:
    real = pipeline.export_onnx

    def corrupted(checkpoint, out, **kw):
        path = real(checkpoint, out, **kw)
        return _corrupt_normalisation(path, path)

    monkeypatch.setattr(pipeline, "export_onnx", corrupted)
    (tmp_path / "int8").mkdir()
    (tmp_path / "int8" / "model.onnx").write_bytes(b"an earlier run's file")
    with pytest.raises(ParityError, match="torch-onnx"):
        options = _options(data, int8="none", fp16=False, ort=False, exporter="legacy")
        pipeline.export_all(data["ckpt"], tmp_path, options=options)
    report = json.loads((tmp_path / "export_report.json").read_text())
    assert report["status"] == "failed" and "torch-onnx" in report["error"] and not report["gates"][-1]["passed"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export_report.json", "export_report.md"]


def test_int8_auto_writes_no_int8_when_no_mode_passes(data: dict, fp32: Path, tmp_path: Path, monkeypatch) -> None:
    def strict(reference, candidate, images, **kw):
        return ranking_gate(reference, candidate, images, **{**kw, "min_pairwise": 1.01})

    monkeypatch.setattr(pipeline, "ranking_gate", strict)
    args = dict(calibration=data["calibration"], parity=data["parity"], min_images=N_PARITY)
    path, gate, choice = pipeline.choose_int8(fp32, tmp_path, mode="auto", **args)
    assert (path, gate, choice["mode"]) == (None, None, "none")
    assert set(choice["candidates"]) == {"int8-dynamic", "int8-qdq"}
    assert not any(c["passed"] for c in choice["candidates"].values())
    with pytest.raises(ParityError, match="pairwise agreement"):
        pipeline.choose_int8(fp32, tmp_path, mode="qdq", **args)


def test_cli_exit_codes(data: dict, fp32: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    import export.photos

    monkeypatch.setattr(export.photos, "parity_photos", lambda n: data["parity"].images[:n])
    legacy = tmp_path / "a" / "model.onnx"
    assert main(["onnx", str(data["ckpt"]), str(legacy), "--exporter", "legacy"]) == EXIT_OK
    assert capsys.readouterr().out.strip() == str(legacy) and read_info(legacy) == read_info(fp32)
    assert main(["parity", str(fp32), "--against", str(data["ckpt"]), "--parity-photos", "8"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["passed"] is True
    bad = _corrupt_normalisation(fp32, tmp_path / "bad" / "model.onnx")
    assert main(["parity", str(bad), "--against", str(data["ckpt"]), "--parity-photos", "8"]) == EXIT_PARITY
    assert main(["onnx", str(tmp_path / "missing.pt"), str(tmp_path / "b.onnx")]) == EXIT_ERROR
    assert "missing.pt" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["quantize", str(fp32), str(tmp_path / "q.onnx"), "--mode", "int4"])
    assert usage.value.code == 2


def test_split_photos_are_held_out_and_deterministic() -> None:
    from export.photos import calibration_photos, data_roots, parity_photos

    if not all(root.is_dir() for root in data_roots()):
        pytest.skip("shared photo data not present")
    calibration, parity = calibration_photos(), parity_photos()
    assert (len(calibration), len(parity)) == (128, 200) and not set(calibration) & set(parity)
    assert parity == parity_photos() and calibration == calibration_photos()
    with pytest.raises(ExportError, match="held-out photos"):
        parity_photos(100_000)


def test_student_with_factor_taps_exports_and_matches_torch(data: dict, tmp_path: Path) -> None:
    """A student after ``distill heads`` (early-layer statistics at the factor head) is still one graph."""
    from distill.student import rebuild_student

    overrides = {"factor_taps": [1, 2], "factor_tap_centre": True}
    tapped = rebuild_student({**data["student"].backbone_config(), "overrides": overrides}).eval()
    path = export_onnx(_save(tmp_path / "tapped.pt", tapped), tmp_path / "tapped" / "model.onnx")
    photos = data["parity"].images[:4]
    with torch.no_grad():
        _, expected = tapped(torch.from_numpy(preprocess(photos, tapped.spec)))
    got = np.array([[s.factors[f] for f in FACTORS] for s in redaes_lite.load(path).score_many(photos)])
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-4)


def test_benchmark_probe_ridge_is_the_heads_ridge_bit_for_bit():
    from distill.heads import ridge
    from export.benchmark import _ridge

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 12)), rng.normal(size=(40, 1))
    for strength in (0.0, 1.0, 3.5):
        assert np.array_equal(_ridge(x, y, strength), ridge(x, y, strength))
