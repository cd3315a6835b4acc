"""``eval`` and the model's training data: the shipped split lists, the warning and the held-out figures."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from clirun import invoke
from modelkit import make_info, make_tiny_model
from PIL import Image

from redaes_lite.eval import training
from redaes_lite.eval.cli import run

ROOT = Path(__file__).resolve().parents[1]
BIQ_TRAIN = "BIQ2021 train split (2550 images)"


def _entry(name: str) -> dict:
    return {"name": name, "license": "research use", "pairs": 1}


def _names(split: str, part: str) -> list[str]:
    return (ROOT / "distill" / "splits" / f"{split}_{part}.txt").read_text().split("\n")[:-1]


def test_the_shipped_lists_are_distills_split():
    committed = sorted(p.name for p in (ROOT / "distill" / "splits").glob("*.txt"))
    assert committed and sorted(p.name for p in training.SPLIT_DIR.glob("*.txt")) == committed
    for (
        name
    ) in committed:  # regenerate distill/splits, then copy them: `cp distill/splits/*.txt redaes_lite/eval/splits/`
        assert (training.SPLIT_DIR / name).read_bytes() == (ROOT / "distill" / "splits" / name).read_bytes(), name
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "eval/splits/*.txt" in package_data["redaes_lite"]  # a pip install has them


def test_training_images_follow_the_training_data_names():
    biq_train, biq_val = set(_names("biq2021", "train")), set(_names("biq2021", "val"))
    assert len(biq_train) == 2550 and len(biq_val) == 450
    found = training.training_images(make_info(training_data=[_entry(BIQ_TRAIN)]))
    assert found.names == biq_train and list(found.sources) == [BIQ_TRAIN] and "x/ss01 (1).jpg" in found
    assert found.sources_of(["a/ss01 (1).jpg", "b.jpg"]) == [BIQ_TRAIN] and found.sources_of(["b.jpg"]) == []
    # A data set named without "train split" is taken as used whole: nothing of it is held out.
    whole = training.training_images(make_info(training_data=[_entry("BIQ2021 (all 3000 images)")]))
    assert whole.names == biq_train | biq_val
    photos = training.training_images(make_info(training_data=[_entry("redaes photos, train split (373 photos)")]))
    assert photos.names == set(_names("photos", "train"))
    assert not training.training_images(make_info())  # modelkit's "none"
    assert training.validation_images() >= biq_val | set(_names("para", "val"))


def test_the_embedded_default_model_trained_on_biq2021_train():
    from redaes_lite import load
    from redaes_lite.errors import ModelError

    try:
        info = load("default").info
    except ModelError:
        pytest.skip("the default model is not shipped in this checkout")
    found = training.training_images(info)
    if any("BIQ2021" in e["name"] for e in info.training_data):
        assert set(_names("biq2021", "train")) <= found.names and not found.names & set(_names("biq2021", "val"))


def test_data_sets_without_a_list_are_matched_by_name():
    info = make_info(training_data=[_entry("KonIQ-10k train split"), _entry(BIQ_TRAIN), _entry("available photos")])
    assert training.named_without_list(info, ["koniq10k", "KonIQ-10k", "koniq"]) == ["KonIQ-10k train split"]
    assert training.named_without_list(info, ["ava", "AVA"]) == []  # words, not letters: "available" is not AVA
    assert training.named_without_list(info, ["biq2021"]) == []  # BIQ2021 is checked image by image


@pytest.fixture()
def biq(tmp_path: Path) -> dict:
    """8 images with BIQ2021 names, 4 from the train list and 4 from the validation list, of rising
    brightness (the tiny model's utility); the labels agree with it on the validation images only."""
    root = tmp_path / "biq"
    root.mkdir()
    train, val = _names("biq2021", "train")[:4], _names("biq2021", "val")[:4]
    rows = []
    for i, name in enumerate(train + val):
        v = 40 + 25 * i
        Image.new("RGB", (40, 32), (v, v, v)).save(root / name, quality=95)
        rows.append(f'"{name}",{(8 - i) if name in train else i}')
    labels = root / "labels.csv"
    labels.write_text("image,mos\n" + "\n".join(rows) + "\n")
    model = make_tiny_model(tmp_path / "model", training_data=[_entry("redaes photos, train split"), _entry(BIQ_TRAIN)])
    return {"root": root, "labels": labels, "model": model, "train": train, "val": val}


def test_scores_warn_and_report_the_held_out_figure(biq):
    r = invoke(run, "scores", biq["labels"], "--root", biq["root"], "--model", biq["model"], "-f", "json")
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["n"] == 8 and report["srcc"] < 0.5  # all eight: the train images pull it down here
    assert report["training_overlap"] == {"images": 4, "of": 8, "training_data": [BIQ_TRAIN]}  # not the photos
    held = report["held_out"]
    assert held["n"] == 4 and held["srcc"] == pytest.approx(1.0) and held["in_validation_split"] == 4
    assert set(held) == {"n", "srcc", "plcc", "plcc_raw", "krcc", "pair_accuracy", "in_validation_split"}
    assert r.stderr.count("\n") == 1 and "warning: 4 of the 8 labelled images trained this model" in r.stderr
    assert BIQ_TRAIN in r.stderr and "held out: 4 images, srcc 1.0000" in r.stderr
    table = invoke(run, "scores", biq["labels"], "--root", biq["root"], "--model", biq["model"])
    assert "trained on         4 of 8 labelled images" in table.stdout and "held_out           n=4" in table.stdout
    quiet = invoke(run, "scores", biq["labels"], "--root", biq["root"], "--model", biq["model"], "-q")
    assert quiet.stderr == "" and "held_out" in quiet.stdout


def test_no_warning_when_no_labelled_image_trained_the_model(biq, tiny_model):
    r = invoke(run, "scores", biq["labels"], "--root", biq["root"], "--model", tiny_model, "-f", "json")
    report = json.loads(r.stdout)
    assert r.exit_code == 0 and "training_overlap" not in report and "held_out" not in report and r.stderr == ""
    assert report["model"]["id"].startswith("sha256:")
    val_only = biq["root"] / "val.csv"
    val_only.write_text("image,mos\n" + "".join(f'"{n}",{i}\n' for i, n in enumerate(biq["val"])))
    r = invoke(run, "scores", val_only, "--root", biq["root"], "--model", biq["model"], "-f", "json")
    assert "training_overlap" not in json.loads(r.stdout) and r.stderr == ""


def test_pairs_held_out_are_the_pairs_without_a_training_image(biq):
    train, val = biq["train"], biq["val"]
    pairs = biq["root"] / "pairs.csv"
    # Brighter (later) images score higher: val pairs agree with the model, pairs with a train image do not.
    pairs.write_text(
        "preferred,other\n"
        + "".join(f'"{b}","{a}"\n' for a, b in [(val[0], val[1]), (val[2], val[3])])
        + "".join(f'"{a}","{b}"\n' for a, b in [(train[0], train[1]), (train[2], val[0])])
    )
    r = invoke(run, "pairs", pairs, "--root", biq["root"], "--model", biq["model"], "-f", "json")
    report = json.loads(r.stdout)
    assert report["n"] == 4 and report["accuracy"] == pytest.approx(0.5)
    assert report["training_overlap"]["images"] == 3 and report["training_overlap"]["of"] == 7
    assert report["held_out"]["n"] == 2 and report["held_out"]["accuracy"] == 1.0
    assert "held out: 2 pairs, accuracy 1.0000" in r.stderr


def test_dataset_named_in_the_training_data_warns(tmp_path):
    root = tmp_path / "koniq"
    (root / "1024x768").mkdir(parents=True)
    lines = ['"image_name","MOS","set"']
    for i, v in enumerate((40, 120, 200)):
        Image.new("RGB", (40, 32), (v, v, v)).save(root / "1024x768" / f"{v}.jpg")
        lines.append(f'"{v}.jpg",{i},"test"')
    (root / "koniq10k_distributions_sets.csv").write_text("\n".join(lines) + "\n")
    model = make_tiny_model(tmp_path / "model", training_data=[_entry("KonIQ-10k train split")])
    r = invoke(run, "dataset", "koniq10k", "--root", root, "--model", model, "-f", "json")
    assert r.exit_code == 0 and json.loads(r.stdout)["named_in_training_data"] == ["KonIQ-10k train split"]
    assert "training data names this data set (KonIQ-10k train split)" in r.stderr


def test_the_runtime_reads_the_lists_without_distill():
    code = (
        "import sys; from redaes_lite.eval import training; from modelkit import make_info; "
        f"info = make_info(training_data=[{_entry(BIQ_TRAIN)!r}]); assert len(training.training_images(info).names) "
        "== 2550; sys.exit(int(any(m == 'distill' or m.startswith('distill.') for m in sys.modules)))"
    )
    env_path = str(Path(__file__).parent)
    result = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {env_path!r}); " + code],
        cwd="/",
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
