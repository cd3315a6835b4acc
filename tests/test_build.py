"""distill build: one command from config to the files to embed; a stopped build continues where it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.build import BuildError, build, flags
from distill.splits import DATA_ROOT

needs_data = pytest.mark.skipif(not (DATA_ROOT / "photos" / "manifest.csv").is_file(), reason="shared data missing")

TINY = [
    "student.backbone=timm:test_efficientnet",
    "student.pretrained=null",
    "student.input_size=[32,32]",
    "steps=2",
    "num_workers=0",
    "threads=1",
    "checkpoint_every=1",
    "val.every=100",
    "val.photos_groups=1",
    "val.group_size=3",
    "val.mos_images=24",
    "val.human_images=24",
    "sources.edit.groups=2",
    "sources.biq.groups=1",
    "sources.para.groups=1",
    "build.heads={photos: 4, groups: 1, refine_steps: 0, biq_sources: 0}",
    "build.export={int8: none, fp16: true, torch_photos: 4, repeats: 1}",
]


def test_flags_spell_plain_data_as_command_line_options() -> None:
    assert flags({"biq_sources": 2550, "fp16": True, "ort": False, "cache": None}) == [
        "--biq-sources",
        "2550",
        "--fp16",
    ]


@pytest.mark.slow
@needs_data
def test_build_runs_every_stage_and_continues_a_stopped_build(tmp_path: Path) -> None:
    out = tmp_path / "build"
    config = "distill/configs/default-v1.yaml"
    assert build(config, out, overrides=TINY, until="train", log=lambda _: None) is None
    state = json.loads((out / "build.json").read_text())
    assert state["done"] == ["train"] and len(state["config_sha256"]) == 64
    mtime = (out / "train" / "final.pt").stat().st_mtime
    ship = build(config, out, overrides=TINY, log=lambda _: None)  # the same command goes on
    assert (out / "train" / "final.pt").stat().st_mtime == mtime  # training was not redone
    assert ship == out / "model" / "default"
    assert {p.name for p in ship.iterdir()} == {"model.onnx", "model.json", "NOTICE"}
    meta = json.loads((ship / "model.json").read_text())["metadata"]
    assert meta["redaes.version"] == "1.0.0" and meta["redaes.quantization"] == "fp16"
    assert meta["redaes.metrics"]["build"]["config_sha256"] == state["config_sha256"]
    assert "para.train" in meta["redaes.metrics"]["build"]["data_hashes"] and "para_srcc" in meta["redaes.metrics"]
    assert json.loads((out / "build.json").read_text())["done"] == ["train", "heads", "refit", "export"]
    with pytest.raises(BuildError, match="another config"):
        build(config, out, overrides=[*TINY, "seed=1"], log=lambda _: None)


def test_export_stage_ships_the_int8_file_beside_model_onnx_and_never_a_stale_one(tmp_path: Path, monkeypatch) -> None:
    from types import SimpleNamespace

    import distill.build as stages
    import export.__main__

    made: list[str] = []

    def fake_export(argv: list[str]) -> int:
        folder = Path(argv[argv.index("--out") + 1]) / "fp16"
        folder.mkdir(parents=True, exist_ok=True)
        for name in made:
            (folder / name).write_text(name)
        for name in {"model.int8.onnx", "model.int8.json"} - set(made):
            (folder / name).unlink(missing_ok=True)
        return 0

    monkeypatch.setattr(export.__main__, "main", fake_export)
    cfg = SimpleNamespace(build=SimpleNamespace(export={"fp16": True}, file="fp16", model="default", notice=None))
    made[:] = ["model.onnx", "model.json", "model.int8.onnx", "model.int8.json"]
    ship = stages._export(cfg, tmp_path / "model.pt", tmp_path / "build")
    assert sorted(p.name for p in ship.iterdir()) == sorted(made)
    made[:] = ["model.onnx", "model.json"]  # exported again without int8: the old int8 file goes
    ship = stages._export(cfg, tmp_path / "model.pt", tmp_path / "build")
    assert sorted(p.name for p in ship.iterdir()) == ["model.json", "model.onnx"]
