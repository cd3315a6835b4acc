"""Issue 21, item 3: a model whose metadata is hostile (absurdly nested JSON, NaN or out-of-range
preprocessing) is a one-line ModelError at load, and exit 2 in the CLI."""

from __future__ import annotations

import json

import pytest
from clirun import invoke
from modelkit import make_tiny_model

from redaes_lite import ModelError, cli, load


@pytest.mark.parametrize(
    "props, message",
    [
        ({"redaes.metrics": "[" * 100_000 + "]" * 100_000}, "bad redaes.metrics: nested deeper than 16 levels"),
        ({"redaes.metrics": json.dumps({"a": json.loads("[" * 40 + "]" * 40)})}, "bad redaes.metrics: nested deeper"),
        ({"redaes.preprocess": '{"size": [32, 32], "pad": [NaN, 0.5, 0.5]}'}, "pad must be 3 numbers in [0, 1]"),
        ({"redaes.preprocess": '{"size": [32, 32], "pad": [1.5, 0.5, 0.5]}'}, "pad must be 3 numbers in [0, 1]"),
        ({"redaes.preprocess": '{"size": [32, 32], "mean": [0.5, Infinity, 0.5]}'}, "mean must be 3 numbers in [0, 1]"),
        ({"redaes.preprocess": '{"size": [32, 32], "std": [1e-30, 0.2, 0.2]}'}, "std must be 3 numbers in [0.001, 1]"),
        ({"redaes.preprocess": '{"size": [32, 32], "std": [NaN, 0.2, 0.2]}'}, "std must be 3 numbers in [0.001, 1]"),
    ],
)
def test_hostile_model_metadata_is_a_one_line_model_error(tmp_path, props, message):
    path = make_tiny_model(tmp_path, props=props, sidecar=False)
    with pytest.raises(ModelError) as e:
        load(path)
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value) and "\n" not in str(e.value)
    r = invoke(cli.run, "score", tmp_path, "--model", path)
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and message in r.stderr


def test_a_sidecar_nested_absurdly_deep_is_a_model_error(tmp_path):
    path = make_tiny_model(tmp_path)
    doc = json.loads((tmp_path / "model.json").read_text())
    (tmp_path / "model.json").write_text(json.dumps(doc)[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(ModelError, match="cannot read sidecar"):
        load(path)
