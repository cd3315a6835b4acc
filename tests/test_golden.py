"""Golden outputs of the embedded models: pinned utilities, factors and display scores on a few real photos.

Any drift in decoding (Pillow), preprocessing, the model files or ONNX Runtime shows here, not in users'
rankings. The pins are regenerated only on purpose, when a model ships:

    python tests/test_golden.py --regenerate

Each model is pinned per file: its fp file (``model.onnx``) and, where one ships, its int8 file
(``model.int8.onnx``), each loaded by name with ``precision=`` forcing it.

Tolerances: ONNX Runtime is deterministic on one machine, and across CPUs (other SIMD paths) fp32 sums differ
by about 1e-5 of a utility, far below the 1e-3 that separates near-equal photos (docs/model-format.md). int8
kernels of other CPU families may round a requantisation the other way, which moves a utility by up to a few
thousandths: its pins are held to 1e-2, still far below what a change of decoding or resizing moves.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import redaes_lite
from redaes_lite.precision import INT8_FILE

REPO = Path(__file__).resolve().parents[1]
PHOTOS = REPO.parent / "shared" / "data" / "photos"
GOLDEN = Path(__file__).with_name("golden") / "embedded.json"
# A scan, a small web-size photo, an exposure bracket, a camera photo, a stock photo.
NAMES = (
    "kodak_01.jpg",
    "bsds_118035.jpg",
    "sice_0615_well.jpg",
    "ccby_dirk_hohndel_hermit_crab.jpg",
    "pexels_tennis_player_341003.jpg",
)
MODELS = ("default", "permissive")
MODELS_DIR = REPO / "redaes_lite" / "models"
# (utility, factor, display score) tolerances per file kind.
ATOL = {"fp": (1e-4, 1e-4, 1e-3), "int8": (1e-2, 1e-2, 5e-2)}


def _files() -> list[tuple[str, str]]:
    """(model, precision) of every file that ships."""
    out = [(name, "fp") for name in MODELS]
    out += [(name, "int8") for name in MODELS if (MODELS_DIR / name / INT8_FILE).is_file()]
    return out


def _key(model: str, precision: str) -> str:
    return model if precision == "fp" else f"{model}+{precision}"


def _measure() -> dict:
    out: dict = {"photos": list(NAMES), "models": {}}
    for name, precision in _files():
        scorer = redaes_lite.load(name, threads=1, precision=precision)
        rows = []
        for photo in NAMES:
            r = scorer.score(PHOTOS / photo)
            rows.append({"utility": r.utility, "score": r.score, "factors": dict(r.factors)})
        out["models"][_key(name, precision)] = {"model": scorer.model_id, "rows": rows}
    return out


@pytest.fixture(scope="module")
def golden() -> dict:
    if not all((PHOTOS / n).is_file() for n in NAMES):
        pytest.skip(f"needs the shared photos at {PHOTOS}")
    return json.loads(GOLDEN.read_text())


def test_every_shipped_file_is_pinned(golden: dict) -> None:
    assert sorted(golden["models"]) == sorted(_key(*f) for f in _files()), "regenerate the pins when a file ships"


@pytest.mark.parametrize(("model", "precision"), _files())
def test_embedded_model_outputs_match_their_pins(model: str, precision: str, golden: dict) -> None:
    pinned = golden["models"][_key(model, precision)]
    atol_utility, atol_factor, atol_score = ATOL[precision]
    scorer = redaes_lite.load(model, threads=1, precision=precision)
    assert scorer.model_id == pinned["model"], "the embedded model changed: regenerate the pins when it ships"
    for photo, want in zip(golden["photos"], pinned["rows"]):
        got = scorer.score(PHOTOS / photo)
        assert abs(got.utility - want["utility"]) <= atol_utility, (photo, got.utility, want["utility"])
        assert abs(got.score - want["score"]) <= atol_score, (photo, got.score, want["score"])
        assert got.factors.keys() == want["factors"].keys()
        diff = np.abs(np.array([got.factors[k] - v for k, v in want["factors"].items()]))
        assert diff.max() <= atol_factor, (photo, dict(zip(want["factors"], diff.round(6))))


if __name__ == "__main__":
    if sys.argv[1:] != ["--regenerate"]:
        raise SystemExit(__doc__)
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(_measure(), indent=1) + "\n")
    print(f"wrote {GOLDEN}")
