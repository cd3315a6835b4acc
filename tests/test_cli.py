"""CLI: rows, formats, inputs (files, folders, globs), atomic --output and exit codes 0/1/2."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from clirun import invoke
from PIL import Image
from test_preprocess import photo

from redaes_lite import cli, load, preprocess

SCORE_FIELDS = ["path", "score", "utility", "factors", "error"]
COMPARE_FIELDS = ["a", "b", "preferred", "probability", "delta", "factors", "error"]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """A folder: dark.png, mid.jpg, bright.png, sub/deep.png, notes.txt, and broken.jpg (text)."""
    d = tmp_path_factory.mktemp("images")
    Image.fromarray(np.full((30, 40, 3), 40, np.uint8)).save(d / "dark.png")
    photo(seed=3).save(d / "mid.jpg", quality=90)
    Image.fromarray(np.full((30, 40, 3), 220, np.uint8)).save(d / "bright.png")
    (d / "sub").mkdir()
    photo(seed=4).save(d / "sub" / "deep.png")
    (d / "notes.txt").write_text("not an image")
    (d / "broken.jpg").write_text("not a jpeg either")
    return d


def run(*args: str):
    return invoke(cli.run, *args)


def rows_of(out: str, fmt: str) -> list[dict]:
    if fmt == "json":
        return json.loads(out)
    if fmt == "jsonl":
        return [json.loads(line) for line in out.splitlines()]
    return list(csv.DictReader(io.StringIO(out)))


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_score_rows_match_the_api(tiny_model, images, fmt):
    r = run("score", images / "dark.png", images / "mid.jpg", "--model", tiny_model, "-f", fmt)
    assert r.exit_code == 0, r.output
    rows = rows_of(r.stdout, fmt)
    assert [list(row) for row in rows] == [SCORE_FIELDS] * 2
    expected = load(tiny_model).score(images / "mid.jpg")
    assert rows[1] == {"path": str(images / "mid.jpg"), **expected.to_dict(), "error": None}


def test_csv_has_one_column_per_factor(tiny_model, images):
    r = run("score", images / "dark.png", images / "broken.jpg", "--model", tiny_model, "-f", "csv")
    assert r.exit_code == 1
    rows = rows_of(r.stdout, "csv")
    factor_cols = ["factor.exposure", "factor.contrast", "factor.sharpness"]
    assert list(rows[0]) == ["path", "score", "utility", *factor_cols, "error"]
    assert rows[0]["error"] == "" and float(rows[0]["factor.exposure"]) > 0
    assert rows[1]["score"] == "" and "not a recognised image" in rows[1]["error"]


def test_table_is_readable(tiny_model, images):
    r = run("score", images / "dark.png", images / "missing.png", "--model", tiny_model)
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["score", "utility", "exposure", "contrast", "sharpness", "path"]
    assert lines[1].endswith("dark.png") and "missing.png: no such file" in lines[2]
    assert r.exit_code == 1


def test_folders_globs_and_recursion(tiny_model, images):
    flat = rows_of(run("score", images, "--model", tiny_model, "-f", "jsonl").stdout, "jsonl")
    assert [Path(r["path"]).name for r in flat] == ["bright.png", "broken.jpg", "dark.png", "mid.jpg"]
    deep = rows_of(run("score", images, "-r", "--model", tiny_model, "-f", "jsonl").stdout, "jsonl")
    assert "deep.png" in {Path(r["path"]).name for r in deep}
    globbed = rows_of(run("score", str(images / "*.png"), "--model", tiny_model, "-f", "jsonl").stdout, "jsonl")
    assert [Path(r["path"]).name for r in globbed] == ["bright.png", "dark.png"]


def test_every_input_gets_a_row_and_failures_exit_1(tiny_model, images, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "zero.jpg").write_bytes(b"")
    args = [images / "dark.png", tmp_path / "empty", tmp_path / "zero.jpg", str(tmp_path / "*.webp"), "nope.png"]
    r = run("score", *args, "--model", tiny_model, "-f", "json")
    assert r.exit_code == 1
    rows = rows_of(r.stdout, "json")
    assert len(rows) == 5 and rows[0]["error"] is None
    causes = ["folder contains no images", "empty file", "no files match", "no such file"]
    for row, cause in zip(rows[1:], causes):
        assert cause in row["error"] and row["score"] is None and "\n" not in row["error"]
    assert "4 of 5 inputs failed" in r.stderr


def test_rank_best_first_with_top_and_failures_last(tiny_model, images):
    r = run("rank", images, "--model", tiny_model, "-f", "jsonl", "--top", "2")
    rows = rows_of(r.stdout, "jsonl")
    assert [Path(row["path"]).name for row in rows] == ["bright.png", "mid.jpg", "broken.jpg"]
    assert rows[0]["utility"] > rows[1]["utility"] and rows[2]["error"]
    assert r.exit_code == 1
    ok = run("rank", images / "dark.png", images / "bright.png", "--model", tiny_model, "-f", "csv")
    assert ok.exit_code == 0 and [row["path"] for row in rows_of(ok.stdout, "csv")][0].endswith("bright.png")


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "table"])
def test_compare_row(tiny_model, images, fmt):
    r = run("compare", images / "dark.png", images / "bright.png", "--model", tiny_model, "-f", fmt)
    assert r.exit_code == 0
    if fmt == "table":
        assert r.stdout.splitlines()[1].split()[0] == "b"
        return
    row = rows_of(r.stdout, fmt)[0]
    if fmt != "csv":
        assert list(row) == COMPARE_FIELDS and list(row["factors"])[0] == "exposure"
    assert row["preferred"] == "b" and float(row["delta"]) > 0 and 0.5 < float(row["probability"]) < 1


def test_compare_with_a_bad_input_is_a_row_with_error(tiny_model, images):
    r = run("compare", images / "dark.png", images / "broken.jpg", "--model", tiny_model, "-f", "json")
    row = json.loads(r.stdout)[0]
    assert r.exit_code == 1 and row["preferred"] is None and "broken.jpg" in row["error"]


def test_output_is_written_atomically(tiny_model, images, tmp_path):
    out = tmp_path / "scores.json"
    r = run("score", images / "dark.png", "--model", tiny_model, "-f", "json", "-o", out)
    assert r.exit_code == 0 and r.stdout == ""
    assert json.loads(out.read_text())[0]["path"] == str(images / "dark.png")
    assert [p.name for p in tmp_path.iterdir()] == ["scores.json"]  # no temporary left behind
    bad = run("score", images / "dark.png", "--model", tiny_model, "-o", tmp_path / "no" / "dir.json")
    assert bad.exit_code == 2 and "cannot write" in bad.stderr


def test_max_pixels_option(tiny_model, images):
    assert cli.DEFAULT_MAX_PIXELS == preprocess.DEFAULT_MAX_PIXELS
    r = run("score", images / "dark.png", "--model", tiny_model, "--max-pixels", "100", "-f", "jsonl")
    assert r.exit_code == 1 and "max_pixels" in json.loads(r.stdout)["error"]


def test_threads_batch_size_and_progress_do_not_change_results(tiny_model, images):
    base = run("score", images, "--model", tiny_model, "-f", "jsonl").stdout
    other = run("score", images, "--model", tiny_model, "-f", "jsonl", "--threads", "1", "--batch-size", "1",
                "--progress")  # fmt: skip
    assert other.stdout == base and "scoring 4/4" in other.stderr
    quiet = run("score", images, "--model", tiny_model, "-f", "jsonl", "--progress", "--quiet")
    assert quiet.stderr == ""


def test_info(tiny_model):
    r = run("info", "--model", tiny_model, "-f", "json")
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and doc["redaes.factors"] == ["exposure", "contrast", "sharpness"]
    assert len(doc["sha256"]) == 64 and "CPUExecutionProvider" in doc["providers"]
    assert "redaes.license" in run("info", "--model", tiny_model).stdout


@pytest.mark.parametrize(
    "args",
    [
        ["score", "x.jpg", "--format", "xml"],
        ["score", "x.jpg", "--batch-size", "0"],
        ["score", "x.jpg", "--out", "y.csv"],  # no abbreviations: a later option must not change their meaning
        ["score"],
        ["compare", "a.jpg"],
        ["frobnicate"],
        ["score", "x.jpg", "--model", "missing.onnx"],
        ["info", "--model", "missing.onnx"],
    ],
)
def test_usage_errors_exit_2(args):
    r = run(*args)
    assert r.exit_code == 2


def test_model_errors_are_one_line(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"junk")
    r = run("score", "x.jpg", "--model", junk)
    assert r.exit_code == 2 and r.stderr.strip().count("\n") == 0 and "not a loadable ONNX" in r.stderr


def test_console_script_version_is_fast_and_light():
    heavy = ("onnxruntime", "torch", "numpy", "PIL", "typer", "click", "pydantic", "rich")
    code = f"import atexit, sys; atexit.register(lambda: print(sorted(m for m in {heavy} if m in sys.modules))); " \
           "sys.argv = ['redaes-lite', '--version']; from redaes_lite.cli import main; main()"  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["redaes-lite 0.1.0", "[]"]


def test_a_score_run_loads_the_runtime_and_nothing_heavier(tiny_model, images):
    heavy = ("torch", "typer", "click", "pydantic", "rich", "scipy")
    code = f"import atexit, sys; atexit.register(lambda: print(sorted(m for m in {heavy} if m in sys.modules))); " \
           "from redaes_lite.cli import main; main()"  # fmt: skip
    args = ["score", images / "mid.jpg", "--model", tiny_model, "-f", "jsonl"]
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.splitlines()[0])["error"] is None and out.stdout.splitlines()[1] == "[]"


def test_python_dash_m_runs_the_same_command(tiny_model, images):
    args = ["score", str(images / "mid.jpg"), "--model", str(tiny_model), "-f", "jsonl"]
    out = subprocess.run([sys.executable, "-m", "redaes_lite", *args], capture_output=True, text=True, check=True)
    assert out.stdout == run(*args).stdout


def test_eval_is_mounted():
    r = run("--help")
    assert r.exit_code == 0 and "eval" in r.stdout and "score" in r.stdout
    assert run("eval", "--help").exit_code == 0
