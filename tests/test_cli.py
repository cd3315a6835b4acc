"""CLI: rows, formats, inputs (files, folders, globs), atomic --output and exit codes 0/1/2."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from clirun import invoke
from modelkit import make_tiny_model
from PIL import Image
from test_preprocess import photo

from redaes_lite import cli, load, preprocess

SCORE_FIELDS = ["path", "score", "utility", "factors", "model", "error"]
COMPARE_FIELDS = ["a", "b", "preferred", "probability", "delta", "factors", "model", "error"]


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
    scorer = load(tiny_model)
    expected = scorer.score(images / "mid.jpg")
    assert rows[1] == {"path": str(images / "mid.jpg"), **expected.to_dict(), "model": scorer.model_id, "error": None}


def test_csv_has_one_column_per_factor(tiny_model, images):
    r = run("score", images / "dark.png", images / "broken.jpg", "--model", tiny_model, "-f", "csv")
    assert r.exit_code == 1
    rows = rows_of(r.stdout, "csv")
    factor_cols = ["factor.exposure", "factor.contrast", "factor.sharpness"]
    assert list(rows[0]) == ["path", "score", "utility", *factor_cols, "model", "error"]
    assert rows[0]["error"] == "" and float(rows[0]["factor.exposure"]) > 0
    assert rows[1]["score"] == "" and "not a recognised image" in rows[1]["error"]


def test_table_is_readable(tiny_model, images, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    r = run("score", images / "dark.png", images / "missing.png", "--model", tiny_model)
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["path", "score", "utility", "exposure", "contrast", "sharpness", "model"]
    assert lines[1].startswith(str(images / "dark.png")) and "missing.png: no such file" in lines[2]
    model = load(tiny_model).model_id
    assert lines[1].endswith(f"  {model}") and f"  {model}  error: " in lines[2]
    # The path column is as wide as the longest path: the score column lines up under its head.
    start = len(str(images / "missing.png")) + 2
    assert lines[0][start : start + 5] == "score" and lines[2][start : start + 5].strip() == "-"
    assert float(lines[1][start : start + 5]) >= 0
    assert r.exit_code == 1


def test_table_factor_columns_fit_the_terminal(tiny_model, images, monkeypatch):
    monkeypatch.chdir(images)
    monkeypatch.setenv("COLUMNS", "75")  # path, score, utility and model take 61: room for one factor
    r = run("score", "dark.png", "--model", tiny_model)
    lines = r.stdout.splitlines()
    assert max(map(len, lines)) <= 75
    assert lines[0].split() == ["path", "score", "utility", "exposure", "model"]
    assert "2 of 3 factor columns left out to fit 75 columns" in r.stderr
    monkeypatch.setenv("COLUMNS", "300")
    wide = run("score", "dark.png", "--model", tiny_model)
    assert "sharpness" in wide.stdout.splitlines()[0] and wide.stderr == ""


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
    assert r.exit_code == 1 and "1 of 4 inputs failed" in r.stderr  # the inputs, not the rows kept
    ok = run("rank", images / "dark.png", images / "bright.png", "--model", tiny_model, "-f", "csv")
    assert ok.exit_code == 0 and [row["path"] for row in rows_of(ok.stdout, "csv")][0].endswith("bright.png")


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "table"])
def test_compare_row(tiny_model, images, fmt):
    r = run("compare", images / "dark.png", images / "bright.png", "--model", tiny_model, "-f", fmt)
    assert r.exit_code == 0
    if fmt == "table":
        head, line = r.stdout.splitlines()
        assert head.split()[:3] == ["a", "b", "preferred"] and line.split()[2] == "b"
        assert line.split()[-1] == load(tiny_model).model_id
        return
    row = rows_of(r.stdout, fmt)[0]
    if fmt != "csv":
        assert list(row) == COMPARE_FIELDS and list(row["factors"])[0] == "exposure"
    assert row["preferred"] == "b" and float(row["delta"]) > 0 and 0.5 < float(row["probability"]) < 1


def test_top_must_be_at_least_1(tiny_model, images):
    r = run("rank", images, "--model", tiny_model, "--top", "0")
    assert r.exit_code == 2 and r.stdout == "" and "--top" in r.stderr


def test_model_id_names_the_model(tiny_model, tmp_path):
    from redaes_lite.metadata import sha256_file

    scorer = load(tiny_model)
    assert scorer.model_id == f"sha256:{sha256_file(tiny_model)[:12]}@0.0.0+modelkit"
    copy = tmp_path / "copy.onnx"
    copy.write_bytes(tiny_model.read_bytes())
    assert load(copy).model_id == scorer.model_id  # the same bytes: the same results, the same id
    other = make_tiny_model(tmp_path / "other", version="0.0.1")
    assert load(other).model_id.endswith("@0.0.1") and load(other).model_id != scorer.model_id


def test_model_id_of_an_embedded_model():
    from redaes_lite.session import EMBEDDED, resolve_model

    for name in EMBEDDED:
        try:
            path, _ = resolve_model(name)
        except Exception:  # noqa: BLE001 - not shipped in this checkout
            continue
        version = load(name).info.version
        assert load(name, precision="fp").model_id == load(path).model_id == f"{name}@{version}"
        auto = load(name)  # the file that runs by default names itself: +int8 where it is the int8 one
        assert auto.model_id == f"{name}@{version}" + ("+int8" if auto.choice.precision == "int8" else "")


@pytest.mark.parametrize("command", ["score", "rank", "compare"])
@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "table"])
def test_every_row_names_its_model(tiny_model, images, command, fmt, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    inputs = [images / "dark.png", images / "broken.jpg"]
    r = run(command, *inputs, "--model", tiny_model, "-f", fmt)
    model = load(tiny_model).model_id
    if fmt == "table":
        lines = r.stdout.splitlines()
        assert lines[0].split()[-1] == "model" and all(f"  {model}" in line for line in lines[1:])
        return
    rows = rows_of(r.stdout, fmt)
    assert len(rows) == (1 if command == "compare" else 2) and all(row["model"] == model for row in rows)


def _partial(tiny_model, images, out, *names):
    r = run("score", *(images / n for n in names), "--model", tiny_model, "-f", "jsonl", "-o", out)
    assert r.exit_code in (0, 1), r.stderr


def test_resume_continues_a_file_of_the_same_model(tiny_model, images, tmp_path):
    out = tmp_path / "scores.jsonl"
    _partial(tiny_model, images, out, "dark.png")
    r = run(
        "score", images / "dark.png", images / "mid.jpg", "--model", tiny_model, "-f", "jsonl", "-o", out, "--resume"
    )
    assert r.exit_code == 0 and "resuming: 1 of 2 inputs already scored" in r.stderr
    assert [Path(row["path"]).name for row in rows_of(out.read_text(), "jsonl")] == ["dark.png", "mid.jpg"]


def test_resume_refuses_a_file_of_another_model(tiny_model, images, tmp_path):
    out = tmp_path / "scores.jsonl"
    _partial(tiny_model, images, out, "dark.png", "broken.jpg")
    before = out.read_bytes()
    other = make_tiny_model(tmp_path / "other", version="9.9.9")
    r = run("score", images, "--model", other, "-f", "jsonl", "-o", out, "--resume")
    assert r.exit_code == 2 and out.read_bytes() == before
    assert r.stderr.count("\n") == 1 and str(out) in r.stderr
    assert f"made by {load(tiny_model).model_id}, not {load(other).model_id}" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "scores.jsonl"]  # no temporary left


def test_resume_refuses_rows_that_name_no_model(tiny_model, images, tmp_path):
    out = tmp_path / "old.jsonl"
    out.write_text(
        json.dumps({"path": str(images / "dark.png"), "score": 1.0, "utility": 0.5, "factors": {}, "error": None})
        + "\n"
    )
    before = out.read_bytes()
    r = run("score", images, "--model", tiny_model, "-f", "jsonl", "-o", out, "--resume")
    assert r.exit_code == 2 and out.read_bytes() == before
    assert r.stderr.count("\n") == 1 and str(out) in r.stderr and "1 row names no model" in r.stderr
    assert "or name no model" in " ".join(run("score", "--help").stdout.split())  # the rule is in the help


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


def test_max_pixels_option(tiny_model, images, tmp_path):
    assert cli.DEFAULT_MAX_PIXELS == preprocess.DEFAULT_MAX_PIXELS
    r = run("score", images / "dark.png", "--model", tiny_model, "--max-pixels", "100", "-f", "jsonl")
    assert r.exit_code == 1 and json.loads(r.stdout)["error"].endswith("40x30 = 1,200 px exceeds max_pixels 100 px")
    Image.new("RGB", (500, 400)).save(tmp_path / "big.png")
    big = run("score", tmp_path / "big.png", "--model", tiny_model, "--max-pixels", "1000", "-f", "jsonl")
    assert json.loads(big.stdout)["error"].endswith("500x400 = 0.2 MP exceeds max_pixels 1,000 px")  # not "0.0 MP"


def test_threads_batch_size_and_progress_do_not_change_results(tiny_model, images):
    base = run("score", images, "--model", tiny_model, "-f", "jsonl").stdout
    other = run(
        "score", images, "--model", tiny_model, "-f", "jsonl", "--threads", "1", "--batch-size", "1", "--progress"
    )
    assert other.stdout == base and "scoring 4/4" in other.stderr
    quiet = run("score", images, "--model", tiny_model, "-f", "jsonl", "--progress", "--quiet")
    assert quiet.stderr == ""


def test_info(tiny_model):
    r = run("info", "--model", tiny_model, "-f", "json")
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and doc["redaes.factors"] == ["exposure", "contrast", "sharpness"]
    assert len(doc["sha256"]) == 64 and "CPUExecutionProvider" in doc["providers"]
    assert doc["model"] == load(tiny_model).model_id
    assert "redaes.license" in run("info", "--model", tiny_model).stdout


def test_info_table_is_readable(tmp_path):
    metrics = {
        "mos_srcc": 0.799543,
        "edit_acc.noise": 0.94872,
        "refit_on": "/work/shared/data/photos, /x/biq2021",
        "stages": [{"stage": "edits", "step": 200, **{f"m{i}": 0.5 for i in range(60)}}],
        "none": [],
    }
    model = make_tiny_model(tmp_path, metrics=metrics)
    text = run("info", "--model", model).stdout
    lines = text.splitlines()
    assert lines[0].split() == ["model", load(model).model_id]
    assert max(map(len, lines)) < 200 and len(text) < 4000  # no 3 KB line of JSON
    assert "redaes.metrics" in lines and "  mos_srcc                     0.799543" in lines
    assert "  refit_on                     photos, biq2021" in lines  # the build machine's paths, shortened
    assert "  stages                       (1 entries; see --format json)" in lines
    assert "  none                         (none)" in lines
    assert "redaes.teacher" in lines and "  - name=pixel-statistics  version=1  weight=1" in lines
    assert any(line.startswith("redaes.factors ") and line.endswith("exposure, contrast, sharpness") for line in lines)
    assert json.loads(run("info", "--model", model, "-f", "json").stdout)["redaes.metrics"] == metrics  # as stored


def test_info_wraps_long_values_to_a_terminal_and_keeps_one_line_in_a_pipe():
    from redaes_lite.cli import _info_table

    licence = "Apache-2.0 (trained on permissively licensed photos only; taught by " + "a network " * 20 + ")"
    doc = {"redaes.license": licence, "redaes.teacher": [{"name": "nima", "note": "long words " * 12}]}
    wrapped = list("\n".join(_info_table(doc, 80)).splitlines())
    assert max(map(len, wrapped)) <= 80 and len(wrapped) > 3
    assert wrapped[1].startswith(" " * 31) and wrapped[0].startswith("redaes.license" + " " * 17 + "Apache-2.0")
    assert " ".join(wrapped[:2]).split()[1:] == licence.split()[: len(" ".join(wrapped[:2]).split()) - 1]
    piped = list(_info_table(doc))
    assert piped[0] == f"{'redaes.license':<30} {licence}"  # for grep: one value, one line


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
    code = (
        f"import atexit, sys; atexit.register(lambda: print(sorted(m for m in {heavy} if m in sys.modules))); "
        "sys.argv = ['redaes-lite', '--version']; from redaes_lite.cli import main; main()"
    )
    auto = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert auto.splitlines()[-1] == "[]"  # choosing fp or int8 reads CPU features, not onnxruntime
    env = {**os.environ, "REDAES_PRECISION": "fp"}  # no "+int8": the names below are the fp files'
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    models = [
        f"{p.parent.name}@{json.loads(p.read_text())['metadata']['redaes.version']}"
        for p in sorted((Path(cli.__file__).parent / "models").glob("*/model.json"))
    ]
    shown = f"models: {', '.join(models)}" if models else "no embedded models"
    assert out.splitlines() == [f"redaes-lite 0.1.0 ({shown})", "[]"]
    if {"default", "permissive"} <= {m.split("@")[0] for m in models}:
        assert "default@" in shown and shown.index("default@") < shown.index("permissive@")


@pytest.mark.parametrize("precision", ["auto", "fp"])
def test_version_names_the_models_as_rows_do(precision, monkeypatch):
    monkeypatch.setenv("REDAES_PRECISION", precision)
    version = run("--version").stdout
    for name in ("default", "permissive"):
        try:
            model = load(name).model_id
        except Exception:  # noqa: BLE001 - not shipped in this checkout
            continue
        assert f"{model}," in version or f"{model})" in version


def test_a_score_run_loads_the_runtime_and_nothing_heavier(tiny_model, images):
    heavy = ("torch", "typer", "click", "pydantic", "rich", "scipy")
    code = (
        f"import atexit, sys; atexit.register(lambda: print(sorted(m for m in {heavy} if m in sys.modules))); "
        "from redaes_lite.cli import main; main()"
    )
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
