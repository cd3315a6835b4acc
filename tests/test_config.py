"""TrainConfig: YAML + --set overrides, typo hints, curriculum stages, round trip through the checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from distill.config import ConfigError, TrainConfig, config_from_dict, dump_config, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "distill" / "configs"


def write(tmp_path: Path, tree: dict) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def test_yaml_then_overrides(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {"steps": 10, "student": {"input_size": [96, 96]}, "sources": {"edit": {"kind": "edit", "group_size": 3}}},
    )
    cfg = load_config(
        path, overrides=["steps=20", "sources.edit.weight=0.5", "optim.lr=3e-4", "student.pretrained=null"]
    )
    assert cfg.steps == 20 and cfg.total_steps == 20
    assert cfg.student.input_size == [96, 96]
    assert cfg.sources["edit"].group_size == 3 and cfg.sources["edit"].weight == 0.5
    assert cfg.optim.lr == pytest.approx(3e-4)
    assert cfg.student.pretrained is None


def test_override_updates_an_entry_instead_of_replacing_the_mapping() -> None:
    cfg = load_config(overrides=["losses.ranking.weight=2"])
    assert set(cfg.losses) == set(TrainConfig().losses)  # the other default losses are still there
    assert cfg.losses["ranking"].weight == 2.0


def test_yaml_mapping_replaces_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, {"sources": {"mos": {"kind": "mos"}}}))
    assert list(cfg.sources) == ["mos"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["stpes=3"], "did you mean 'steps'"),
        (["sources.edit.wieght=1"], "did you mean 'weight'"),
        (["steps=many"], "expected int"),
        (["sources.edit.kind=photos"], "kind must be one of"),
        (["sources.x.kind=cross"], "needs a teacher"),
        (["sources.p.kind=labels", "sources.p.group_size=2"], "needs labels"),
        (["val.best_mode=up"], "best_mode"),
        (["steps"], "key.sub=value"),
    ],
)
def test_bad_configs_fail_with_one_line_naming_the_key(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_config(overrides=overrides)
    assert "\n" not in str(info.value)


def test_unreadable_yaml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1,\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")


def test_stages_sum_steps_and_update_sources() -> None:
    cfg = load_config(
        overrides=[
            "sources.mos.kind=mos",
            "stages=[{name: edits, steps: 5, only: [edit]}, {name: both, steps: 7, sources: {mos: {weight: 3}}}]",
        ]
    )
    assert cfg.total_steps == 12
    assert cfg.stage_at(0)[0] == 0 and cfg.stage_at(4)[0] == 0 and cfg.stage_at(5)[0] == 1
    first, _ = cfg.stage_config(cfg.stages[0])
    second, _ = cfg.stage_config(cfg.stages[1])
    assert list(first) == ["edit"]
    assert second["mos"].weight == 3.0 and second["mos"].kind == "mos" and "edit" in second


def test_stage_naming_an_unknown_source_fails() -> None:
    with pytest.raises(ConfigError, match="unknown source 'mso'"):
        load_config(overrides=["stages=[{name: a, steps: 1, only: [mso]}]"])


def test_dump_round_trip(tmp_path: Path) -> None:
    cfg = load_config(overrides=["stages=[{name: a, steps: 3}]", "sources.edit.losses={relative: 0}"])
    tree = dump_config(cfg, tmp_path / "config.yaml")
    assert config_from_dict(tree) == cfg
    assert load_config(tmp_path / "config.yaml") == cfg


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_shipped_configs_load(name: str) -> None:
    assert load_config(CONFIGS / name).total_steps > 0


def test_cli_help_and_bad_config_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from distill.__main__ import main

    with pytest.raises(SystemExit) as info:
        main(["train", "--help"])
    assert info.value.code == 0 and "--resume" in capsys.readouterr().out
    assert main(["train", str(write(tmp_path, {"stpes": 3}))]) == 2
    assert "did you mean 'steps'" in capsys.readouterr().err


def test_human_score_sources_name_a_known_data_set_and_stay_out_of_permissive_models() -> None:
    para = {"kind": "mos", "dataset": "para", "scale": 2.0}
    assert config_from_dict({"sources": {"para": para}}).sources["para"].dataset == "para"
    with pytest.raises(ConfigError, match="unknown dataset 'ava'"):
        config_from_dict({"sources": {"x": {**para, "dataset": "ava"}}})
    with pytest.raises(ConfigError, match="permissive_only model may not train"):
        config_from_dict({"sources": {"para": para}, "data": {"permissive_only": True}})
    with pytest.raises(ConfigError, match="val.human_sets"):
        config_from_dict({"val": {"human_sets": ["nope"]}})
