"""``redaes-lite eval`` end to end with the tiny pixel-statistics model (utility grows with brightness)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from clirun import invoke
from PIL import Image

from redaes_lite.eval.cli import run
from redaes_lite.pairs import PairLabel, write_pairs

LEVELS = (40, 80, 120, 160, 200, 240)


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    """Grey images of rising brightness g40.jpg .. g240.jpg, and a corrupt one."""
    root = tmp_path / "photos"
    root.mkdir()
    for v in LEVELS:
        Image.new("RGB", (48, 40), (v, v, v)).save(root / f"g{v}.jpg", quality=95)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    return root


def _invoke(*args: str) -> tuple[int, str, str]:
    result = invoke(run, *args)
    return result.exit_code, result.stdout, result.stderr


def test_scores_json_report_and_failed_images_excluded(photos: Path, tiny_model: Path) -> None:
    # Human scores agree with brightness except that the two darkest are swapped.
    mos = {40: 2.0, 80: 1.0, 120: 3.0, 160: 4.0, 200: 5.0, 240: 6.0}
    rows = [f"g{v}.jpg,{m}" for v, m in mos.items()] + ["broken.jpg,3.5", "missing.jpg,1.5"]
    labels = photos / "labels.csv"
    labels.write_text("image,mos\n" + "\n".join(rows) + "\n")
    code, out, err = _invoke("scores", labels, "--root", photos, "--model", tiny_model, "--format", "json")
    assert code == 1, err  # some images failed: reported, and the exit status says so
    report = json.loads(out)
    assert report["n"] == 6 and report["n_failed"] == 2
    assert {Path(f["path"]).name for f in report["failed"]} == {"broken.jpg", "missing.jpg"}
    assert report["srcc"] == pytest.approx(1 - 6 * 2 / (6 * 35))  # one adjacent swap
    assert report["pair_accuracy"] == pytest.approx(14 / 15)
    assert 0 < report["plcc_raw"] <= report["plcc"] <= 1
    assert report["krcc"] == pytest.approx(13 / 15)
    assert report["model"]["path"] == str(tiny_model.resolve())
    assert "2 images failed" in err and "scoring" not in err  # no progress bar when stderr is not a terminal


def test_scores_by_group_averages_within_group_results(photos: Path, tiny_model: Path) -> None:
    labels = photos / "labels.csv"
    # Scene A agrees with the model, scene B disagrees completely; one singleton scene is unusable.
    labels.write_text(
        "image,mos,scene\ng40.jpg,1,A\ng80.jpg,2,A\ng120.jpg,3,A\n"
        "g160.jpg,3,B\ng200.jpg,2,B\ng240.jpg,1,B\ng40.jpg,5,C\n"
    )
    code, out, _ = _invoke(
        "scores", labels, "--root", photos, "--model", tiny_model, "--group-col", "scene", "--format", "json"
    )
    assert code == 0
    groups = json.loads(out)["groups"]
    assert groups["count"] == 3 and groups["used"] == 2
    assert groups["by_group"]["A"]["srcc"] == pytest.approx(1.0)
    assert groups["by_group"]["B"]["srcc"] == pytest.approx(-1.0)
    assert groups["mean"]["srcc"] == pytest.approx(0.0) and groups["mean"]["pair_accuracy"] == pytest.approx(0.5)


def test_scores_table_to_output_file(photos: Path, tiny_model: Path, tmp_path: Path) -> None:
    labels = photos / "labels.csv"
    labels.write_text("file,dmos\n" + "".join(f"g{v}.jpg,{300 - v}\n" for v in LEVELS))
    out_file = tmp_path / "report.txt"
    code, out, _ = _invoke(
        "scores",
        labels,
        "--root",
        photos,
        "--model",
        tiny_model,
        "--image-col",
        "file",
        "--label-col",
        "dmos",
        "--lower-better",
        "--output",
        out_file,
    )
    assert code == 0 and out == ""
    text = out_file.read_text()
    assert "srcc               1.0000" in text and "lower_better=True" in text


def test_pairs_csv_and_jsonl(photos: Path, tiny_model: Path) -> None:
    csv_file = photos / "pairs.csv"
    csv_file.write_text("preferred,other\ng240.jpg,g40.jpg\ng160.jpg,g120.jpg\ng40.jpg,g200.jpg\ng80.jpg,broken.jpg\n")
    code, out, _ = _invoke("pairs", csv_file, "--root", photos, "--model", tiny_model, "--format", "json")
    assert code == 1
    report = json.loads(out)
    assert report["n"] == 3 and report["accuracy"] == pytest.approx(2 / 3) and report["n_failed"] == 1
    assert 0 < report["mean_probability"] < 1 and report["ece"] is not None

    def rec(a: str, b: str, delta: float, **kw) -> PairLabel:
        return PairLabel(id=a + b, a=a, b=b, delta=delta, source="mos", teacher="test", group="g", **kw)

    jsonl = photos / "pairs.jsonl"
    records = [
        rec("g40.jpg", "g240.jpg", 1.5),
        rec("g80.jpg", "g200.jpg", -0.5),
        rec("g40.jpg", "g80.jpg", 0.0),  # a tie: skipped
        rec("g40.jpg", "g80.jpg", None, status="failed", error="x"),  # failed: skipped
    ]
    write_pairs(jsonl, records)
    code, out, _ = _invoke("pairs", jsonl, "--root", photos, "--model", tiny_model, "--format", "json")
    report = json.loads(out)
    assert code == 0 and report["n"] == 2 and report["n_skipped"] == 2
    # delta > 0: b preferred (the brighter g240, as the model agrees); delta < 0: a (the darker g80: it disagrees).
    assert report["accuracy"] == 0.5


def test_dataset_command_reads_native_layout(photos: Path, tiny_model: Path, tmp_path: Path) -> None:
    root = tmp_path / "koniq"
    (root / "1024x768").mkdir(parents=True)
    lines = ['"image_name","MOS","set"']
    for v in LEVELS:
        Image.open(photos / f"g{v}.jpg").save(root / "1024x768" / f"{v}.jpg")
        lines.append(f'"{v}.jpg",{v / 60:.3f},"{"test" if v != 40 else "training"}"')
    (root / "koniq10k_distributions_sets.csv").write_text("\n".join(lines) + "\n")
    code, out, _ = _invoke("dataset", "koniq10k", "--root", root, "--model", tiny_model, "--format", "json")
    assert code == 0
    report = json.loads(out)
    assert report["n"] == 5 and report["srcc"] == pytest.approx(1.0)
    assert report["dataset"]["name"] == "koniq10k" and report["dataset"]["split"] == "test"


def test_usage_errors_exit_2_with_one_line(photos: Path, tiny_model: Path) -> None:
    labels = photos / "labels.csv"
    labels.write_text("file,score\ng40.jpg,1\n")
    code, _, err = _invoke("scores", labels, "--root", photos, "--model", tiny_model)
    assert code == 2 and "no column 'image'" in err
    code, _, err = _invoke("dataset", "konik", "--root", photos, "--model", tiny_model)
    assert code == 2 and "did you mean koniq" in err
    labels.write_text("image,mos\ng40.jpg,1\n")
    code, _, err = _invoke("scores", labels, "--root", photos, "--model", photos / "nope.onnx")
    assert code == 2 and "nope.onnx" in err


def test_importing_eval_cli_loads_no_onnxruntime() -> None:
    code = "import sys, redaes_lite.eval.cli; sys.exit(int('onnxruntime' in sys.modules or 'torch' in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
