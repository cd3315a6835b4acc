"""Fuzzing the image loading path (short, seeded): any input ends in pixels or a one-line RedaesError, fast.

Inputs: mutated seed files in every format (tests/fuzzkit.py), crafted hostile headers (absurd sizes,
EXIF orientation of every wrong type, palette tricks, JPEG scan bombs) and the regression corpus of
tests/fuzz_corpus (with the outcome each file must keep). ``benchmarks/fuzz.py`` runs the long campaign.
"""

from __future__ import annotations

import json
from pathlib import Path

import fuzzkit
import mutators
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from redaes_lite import load
from redaes_lite.errors import RedaesError
from redaes_lite.results import Score

# Pillow warns about every odd EXIF tag; the outcome is what these tests judge.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

CORPUS = Path(__file__).parent / "fuzz_corpus"
EXPECTED = {k: v for k, v in json.loads((CORPUS / "expected.json").read_text()).items() if not k.startswith("_")}
SEEDS = fuzzkit.seeds()
HOSTILE = fuzzkit.hostile()
HANG_S = 5.0  # the bound the issue sets per image; inputs here take milliseconds
OP = st.tuples(st.integers(0, 63), st.integers(0, 2**30), st.integers(0, 2**30))  # mutators.mutate's (op, a, b)
OPS = st.lists(OP, min_size=1, max_size=6)
FUZZ = settings(
    max_examples=250, derandomize=True, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def _judge(data: bytes | Path) -> tuple[str, str]:
    kind, msg, seconds = fuzzkit.check(data)  # raises on anything but pixels or a RedaesError
    assert seconds < HANG_S
    assert kind == "ok" or (msg and "\n" not in msg and len(msg) < 400)
    return kind, msg


def test_every_seed_format_decodes():
    # The mutations start from valid files: if a seed stopped decoding, the fuzzing would go shallow.
    assert len(SEEDS) >= 35
    assert {name: _judge(data)[0] for name, data in SEEDS.items()} == dict.fromkeys(SEEDS, "ok")


@FUZZ
@given(name=st.sampled_from(sorted(SEEDS)), ops=OPS)
def test_mutated_files_end_in_pixels_or_a_redaes_error(name, ops):
    _judge(mutators.mutate(SEEDS[name], ops))


@FUZZ
@given(name=st.sampled_from(sorted(HOSTILE)), ops=st.lists(OP, max_size=3))
def test_hostile_files_and_their_mutants_end_in_pixels_or_a_redaes_error(name, ops):
    _judge(mutators.mutate(HOSTILE[name], ops))


@settings(max_examples=60, derandomize=True, deadline=None, database=None)
@given(
    width=st.one_of(st.sampled_from([0, 1, 65535, 65536, 2**31 - 1, 2**32 - 1]), st.integers(0, 2**32 - 1)),
    height=st.one_of(st.sampled_from([0, 1, 65535, 65536, 2**31 - 1, 2**32 - 1]), st.integers(0, 2**32 - 1)),
    depth=st.sampled_from([1, 2, 4, 8, 16, 3, 0, 255]),
    colour=st.sampled_from([0, 2, 3, 4, 6, 1, 7]),
)
def test_absurd_png_headers_are_refused_or_decoded_quickly(width, height, depth, colour):
    _judge(fuzzkit.png(width, height, depth=depth, colour=colour))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_keeps_its_outcome(name):
    kind, msg = _judge(CORPUS / name)
    expected = EXPECTED[name]
    assert (kind == "ok") if expected == "ok" else (kind == "error" and expected in msg), msg
    assert kind == "ok" or msg.startswith(str(CORPUS / name))  # the message names the file


def test_corpus_lists_every_file_and_stays_small():
    files = {p.name for p in CORPUS.iterdir() if p.name != "expected.json"}
    assert files == set(EXPECTED)
    assert sum(p.stat().st_size for p in CORPUS.iterdir()) < 1_000_000


def test_corpus_ends_in_a_score_or_a_redaes_error(tiny_model):
    scorer = load(tiny_model)
    outcomes = {}
    for name in sorted(EXPECTED):
        try:
            outcomes[name] = isinstance(scorer.score(CORPUS / name), Score)
        except RedaesError:
            outcomes[name] = False
    assert outcomes == {name: EXPECTED[name] == "ok" for name in EXPECTED}


def test_the_campaign_measures_each_input_and_reports_the_costliest(tmp_path):
    import argparse
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import fuzz

    # A memory budget no input can meet: every input is a "big" finding, and the report names the costliest.
    args = argparse.Namespace(
        seconds=120.0,
        inputs=30,
        seed=0,
        timeout=5.0,
        mem_mb=3000,
        max_ops=6,
        out=str(tmp_path),
        cpu_budget=5.0,
        mem_budget_mb=1.0,
    )
    summary = fuzz.campaign(args)
    assert summary["inputs_tried"] == 30 and summary["outcomes"] == {"big": 30}
    assert summary["budget"] == {"cpu_seconds": 5.0, "peak_rss_mb": 1.0}
    for key, unit in (("slowest", "cpu_seconds"), ("largest", "peak_rss_mb")):
        costs = [entry[unit] for entry in summary[key]]
        assert len(costs) == 5 and costs == sorted(costs, reverse=True) and costs[-1] >= 0
        assert all(Path(entry["file"]).stat().st_size == entry["bytes"] for entry in summary[key])
    assert summary["largest"][0]["peak_rss_mb"] > 20  # a Python process with numpy and Pillow loaded
    assert json.loads((tmp_path / "summary.json").read_text())["slowest"] == summary["slowest"]
