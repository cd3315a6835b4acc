"""``python -m distill evaluate``: a checkpoint trained on another copy of the data is validated on this one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.config import dump_config, load_config
from distill.evaluate import main as evaluate_main
from distill.splits import DATA_ROOT
from distill.student import create_student, load_checkpoint, save_checkpoint

pytestmark = pytest.mark.skipif(
    not (DATA_ROOT / "biq2021" / "labels.csv").is_file(), reason=f"shared data not found at {DATA_ROOT}"
)


def _checkpoint(tmp_path: Path) -> Path:
    cfg = load_config(
        "distill/configs/tiny.yaml",
        overrides=[
            "student.backbone=timm:test_efficientnet",
            "student.pretrained=null",
            "student.input_size=[32,32]",
            "val.photos_groups=1",
            "val.group_size=3",
            "val.mos_images=24",
            "data.photos=/elsewhere/photos",
            "data.biq2021=/elsewhere/biq2021",  # where it trained: not here
        ],
    )
    student, _, _ = create_student(cfg.student.backbone, factors=cfg.factors, img_size=32)
    return save_checkpoint(
        tmp_path / "run" / "final.pt",
        student,
        config=dump_config(cfg),
        version="0.1.0",
        temperature=9.0,
        calibration={"kind": "placeholder"},
        metrics={"stages": [{"name": "s"}]},
    )


def test_evaluate_validates_on_the_data_here_and_refits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _checkpoint(tmp_path)
    argv = [str(path), "--refit", str(tmp_path / "refit"), "--version", "0.2.0", "--json", str(tmp_path / "m.json")]
    assert evaluate_main(argv) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].startswith("| checkpoint | mos_srcc |") and "| run |" in table
    (row,) = json.loads((tmp_path / "m.json").read_text())
    assert -1 <= row["mos_srcc"] <= 1 and 0 <= row["edit_acc"] <= 1 and row["edit_pairs"] > 0
    refit = load_checkpoint(tmp_path / "refit" / "run.pt")
    assert refit["version"] == "0.2.0" and refit["temperature"] == row["temperature"] != 9.0
    assert (
        "biq2021 24" in refit["calibration"]["fitted_on"] and refit["calibration"]["method"] == "reference-percentile"
    )
    assert refit["metrics"]["stages"] == [{"name": "s"}] and str(DATA_ROOT) in refit["metrics"]["refit_on"]


def test_a_model_without_human_scores_can_pool_its_training_photos(tmp_path: Path) -> None:
    from distill.config import ValConfig
    from distill.evaluate import evaluate_checkpoint

    path = _checkpoint(tmp_path)
    val = ValConfig(photos_groups=1, group_size=3, mos_images=24, fit_on_mos=False, pool_train_photos=True)
    refit = tmp_path / "refit.pt"
    evaluate_checkpoint(path, refit=refit, val_config=val)  # the build's val section, not the trained one
    fitted_on = load_checkpoint(refit)["calibration"]["fitted_on"]
    n_train = len((Path("distill/splits") / "photos_train.txt").read_text().split())
    assert f"training photos {n_train}" in fitted_on and "edits" in fitted_on and "biq2021" not in fitted_on
