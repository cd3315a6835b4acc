"""export.int8 and export.calibration: the int8 recipe, the fp16 weights shared by the int8 file, and
the calibration images (train splits only, edited copies, licence filter).

Uses the tiny trained student of test_export.py (its ``data`` and ``fp32`` fixtures, rebuilt here).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from test_export import N_PARITY, _options, _utilities, make_data  # noqa: E402

import redaes_lite  # noqa: E402
from export import pipeline  # noqa: E402
from export.calibration import CalibrationSet, Variants  # noqa: E402
from export.errors import ExportError, ParityError  # noqa: E402
from export.int8 import Int8Recipe, expand_fp16, float_layer_nodes, share_weights, shared_data_files  # noqa: E402
from export.mobile import to_ort  # noqa: E402
from export.onnx import export_onnx  # noqa: E402
from export.parity import identical_ranking_gate  # noqa: E402
from export.quantize import fp16_weights, head_nodes, quantize_int8  # noqa: E402
from redaes_lite.errors import ModelError  # noqa: E402
from redaes_lite.metadata import read_sidecar, sha256_file  # noqa: E402


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return make_data(tmp_path_factory.mktemp("int8"))


@pytest.fixture(scope="module")
def fp32(data: dict) -> Path:
    return export_onnx(data["ckpt"], data["root"] / "fp32" / "model.onnx")


@pytest.fixture(scope="module")
def fp16(fp32: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fp16_weights(fp32, tmp_path_factory.mktemp("fp16") / "model.onnx")


def _float_weight_convs(path: Path) -> list[str]:
    """Conv nodes whose weight is not the output of a DequantizeLinear (they compute in float)."""
    graph = onnx.load(str(path)).graph
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    return [n.name for n in graph.node if n.op_type == "Conv" and n.input[1] not in dequantized]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"method": "kl"}, "int8 method must be one of minmax, entropy, percentile"),
        ({"float_layers": -1}, "float_layers must be an int >= 0"),
        ({"percentile": 40.0}, "percentile must be in"),
    ],
)
def test_recipe_refuses_bad_values(changes: dict, message: str) -> None:
    with pytest.raises(ExportError, match=message):
        Int8Recipe(**changes)


def test_float_layers_keep_the_first_convolutions_float(data: dict, fp32: Path, tmp_path: Path) -> None:
    plain = quantize_int8(fp32, tmp_path / "a.onnx", mode="int8-qdq", calibration=data["calibration"])
    kept = quantize_int8(
        fp32,
        tmp_path / "b.onnx",
        mode="int8-qdq",
        calibration=data["calibration"],
        recipe=Int8Recipe(float_layers=2),
    )
    graph = onnx.load(str(fp32))
    first_two = [n.name for n in graph.graph.node if n.op_type == "Conv"][:2]
    assert _float_weight_convs(plain) == [] and _float_weight_convs(kept) == first_two
    # The pixels go into a float convolution: nothing rounds them to 8 bits any more.
    assert not any(
        n.op_type == "QuantizeLinear" and n.input[0] == "pixel_values" for n in onnx.load(str(kept)).graph.node
    )
    heads = frozenset(head_nodes(graph))
    with pytest.raises(ExportError, match="has only"):
        float_layer_nodes(graph, 10_000, heads=heads)


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_other_calibration_methods_make_a_working_file(data: dict, fp32: Path, tmp_path: Path, method: str) -> None:
    recipe = Int8Recipe(method=method, float_layers=1)
    out = quantize_int8(fp32, tmp_path / "m.onnx", mode="int8-qdq", calibration=data["calibration"], recipe=recipe)
    photos = data["parity"].images[:16]
    assert np.corrcoef(_utilities(out, photos), _utilities(fp32, photos))[0, 1] > 0.9


def test_expanded_fp16_computes_exactly_like_the_fp16_file(fp16: Path, tmp_path: Path, data: dict) -> None:
    expanded = expand_fp16(fp16, tmp_path / "model.onnx")
    photos = data["parity"].images[:8]
    assert _utilities(expanded, photos).tolist() == _utilities(fp16, photos).tolist()
    with pytest.raises(ExportError, match="no fp16 weights to expand"):
        expand_fp16(expanded, tmp_path / "again.onnx")


def test_shared_int8_reads_the_fp16_weights_and_computes_the_same(fp16: Path, data: dict, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "ship"
    folder.mkdir()
    for suffix in (".onnx", ".json"):
        shutil.copyfile(fp16.with_suffix(suffix), folder / f"model{suffix}")
    expanded = expand_fp16(folder / "model.onnx", tmp_path / "expanded" / "model.onnx")
    recipe = Int8Recipe(float_layers=1)
    inline = quantize_int8(
        expanded, tmp_path / "int8" / "model.onnx", mode="int8-qdq", calibration=data["calibration"], recipe=recipe
    )
    shared = share_weights(inline, folder / "model.onnx", folder / "model.int8.onnx")
    assert shared_data_files(shared) == ["model.onnx"] and shared_data_files(inline) == []
    assert shared.stat().st_size < 0.5 * inline.stat().st_size
    side = read_sidecar(shared.with_suffix(".json"))
    assert side.external_data == {"model.onnx": sha256_file(folder / "model.onnx")}
    assert side.info.quantization == "int8-qdq"
    identical_ranking_gate(inline, shared, data["parity"], min_images=N_PARITY, exact=True)
    s = redaes_lite.load(folder, precision="int8")
    assert s.path == shared.resolve() and s.verified
    ort_file = to_ort(shared, tmp_path / "ort" / "model.ort")  # self-contained: the weights are inside it
    identical_ranking_gate(shared, ort_file, data["parity"], min_images=N_PARITY)
    with pytest.raises(ExportError, match="must sit beside model.onnx"):
        share_weights(inline, folder / "model.onnx", tmp_path / "elsewhere.onnx")
    # The fp16 file changed under it: the int8 file would compute with other weights, so it is refused.
    (folder / "model.onnx").write_bytes((folder / "model.onnx").read_bytes() + b"\0")
    with pytest.raises(ModelError, match="sha256|weights of model.int8.onnx"):
        redaes_lite.load(folder / "model.int8.onnx")


def test_export_all_writes_the_shared_int8_beside_fp16(data: dict, tmp_path: Path) -> None:
    options = _options(data, int8="qdq", ort=False, int8_shared=True, int8_recipe=Int8Recipe(float_layers=1))
    report = json.loads(pipeline.export_all(data["ckpt"], tmp_path, options=options).read_text())
    assert report["status"] == "ok", report.get("error")
    assert set(report["files"]) == {"fp32", "fp16", "int8", "int8-shared"}
    assert report["files"]["int8-shared"]["path"] == "fp16/model.int8.onnx"
    assert (
        report["int8_choice"]["recipe"]["float_layers"] == 1
        and report["int8_choice"]["quantised_from"] == "fp16-expanded"
    )
    assert [g["name"] for g in report["gates"]][-1] == "same-computation"
    assert sorted(p.name for p in (tmp_path / "fp16").iterdir()) == [
        "model.int8.json",
        "model.int8.onnx",
        "model.json",
        "model.onnx",
    ]
    assert redaes_lite.load(tmp_path / "fp16", precision="int8").verified
    with pytest.raises(ExportError, match="needs --fp16"):
        _options(data, int8="qdq", fp16=False, int8_shared=True)


def test_add_int8_gives_a_shipped_folder_its_int8_file_only_when_it_passes(
    fp16: Path, fp32: Path, data: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from export import parity

    folder = tmp_path / "model"
    folder.mkdir()
    for suffix in (".onnx", ".json"):
        shutil.copyfile(fp16.with_suffix(suffix), folder / f"model{suffix}")
    before = sha256_file(folder / "model.onnx")
    kwargs = dict(calibration=data["calibration"], parity=data["parity"], min_images=N_PARITY)
    record = pipeline.add_int8(folder, recipe=Int8Recipe(float_layers=1), reference=fp32, **kwargs)
    assert [g["name"] for g in record["gates"]] == ["fp32-reduced", "same-computation"]
    assert record["gates"][0]["reference"] == str(fp32) and record["recipe"]["float_layers"] == 1
    assert sorted(p.name for p in folder.iterdir()) == [
        "model.int8.json",
        "model.int8.onnx",
        "model.json",
        "model.onnx",
    ]
    assert sha256_file(folder / "model.onnx") == before  # the fp file is untouched
    s = redaes_lite.load(folder, precision="int8")
    assert s.verified and s.path.name == "model.int8.onnx"

    # A gate that fails: nothing is written and nothing is left behind.
    for name in ("model.int8.onnx", "model.int8.json"):
        (folder / name).unlink()

    def impossible(reference, candidate, images, **kw):  # noqa: ANN001, ANN202
        return parity.ranking_gate(reference, candidate, images, min_pairwise=1.01, **kw)

    monkeypatch.setattr(pipeline, "ranking_gate", impossible)
    with pytest.raises(ParityError, match="pairwise agreement"):
        pipeline.add_int8(folder, **kwargs)
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "model.onnx"]
    with pytest.raises(ExportError, match="no model.onnx"):
        pipeline.add_int8(tmp_path / "empty", **kwargs)


def test_variants_are_lazy_deterministic_and_follow_their_original(data: dict) -> None:
    originals = data["calibration"][:3]
    v = Variants(originals, 2, seed=5)
    assert len(v) == 9 and v[0] == originals[0] and v[3] == originals[1]
    a, b = np.asarray(v[4]), np.asarray(Variants(originals, 2, seed=5)[4])
    assert a.shape == b.shape and (a == b).all()
    assert not np.array_equal(np.asarray(v[1]), np.asarray(v[2]))  # two different edits of one photo
    assert not np.array_equal(np.asarray(Variants(originals, 2, seed=6)[1]), np.asarray(v[1]))


def test_calibration_set_checks_sources_and_licences() -> None:
    with pytest.raises(ExportError, match="excludes research-only sources biq2021"):
        CalibrationSet(sources=("photos", "biq2021"), licence="commercial")
    with pytest.raises(ExportError, match="sources must be among"):
        CalibrationSet(sources=("imagenet",))
    assert "2 edited copies each" in CalibrationSet(variants=2).describe()


def test_calibration_images_come_from_train_splits_and_honour_the_licence() -> None:
    from distill.splits import load_split, read_manifest
    from export.photos import data_roots, parity_photos

    root = data_roots()[0]
    if not (root / "manifest.csv").is_file():
        pytest.skip("shared photos not present")
    permissive = {r["file"] for r in read_manifest(root / "manifest.csv") if r["permissive"]}
    commercial = CalibrationSet(images=10_000, licence="commercial").inputs()
    names = {p.name for p in commercial.originals}
    assert names and names <= permissive and names <= set(load_split("photos")["train"])
    mixed = CalibrationSet(images=300, sources=("photos", "biq2021", "para"), variants=1).inputs()
    assert len(mixed) == 600 and not {str(p) for p in mixed.originals} & {str(p) for p in parity_photos()}
    assert [str(p) for p in mixed.originals] == [
        str(p) for p in CalibrationSet(images=300, sources=("photos", "biq2021", "para"), variants=1).inputs().originals
    ]
