"""Golden outputs of the embedded models: pinned utilities, factors and display scores on a few real photos.

Any drift in decoding (Pillow), preprocessing, the model files or ONNX Runtime shows here, not in users'
rankings. The pins are regenerated only on purpose, when a model ships:

    python tests/test_golden.py --regenerate

Tolerances: ONNX Runtime is deterministic on one machine, and across CPUs (other SIMD paths) fp32 sums differ
by about 1e-5 of a utility, far below the 1e-3 that separates near-equal photos (docs/model-format.md).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import redaes_lite

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
ATOL_UTILITY, ATOL_FACTOR, ATOL_SCORE = 1e-4, 1e-4, 1e-3


def _measure() -> dict:
    out: dict = {"photos": list(NAMES), "models": {}}
    for name in MODELS:
        scorer = redaes_lite.load(name, threads=1)
        rows = []
        for photo in NAMES:
            r = scorer.score(PHOTOS / photo)
            rows.append({"utility": r.utility, "score": r.score, "factors": dict(r.factors)})
        out["models"][name] = {"model": scorer.model_id, "rows": rows}
    return out


@pytest.fixture(scope="module")
def golden() -> dict:
    if not all((PHOTOS / n).is_file() for n in NAMES):
        pytest.skip(f"needs the shared photos at {PHOTOS}")
    return json.loads(GOLDEN.read_text())


@pytest.mark.parametrize("model", MODELS)
def test_embedded_model_outputs_match_their_pins(model: str, golden: dict) -> None:
    pinned = golden["models"][model]
    scorer = redaes_lite.load(model, threads=1)
    assert scorer.model_id == pinned["model"], "the embedded model changed: regenerate the pins when it ships"
    for photo, want in zip(golden["photos"], pinned["rows"]):
        got = scorer.score(PHOTOS / photo)
        assert abs(got.utility - want["utility"]) <= ATOL_UTILITY, (photo, got.utility, want["utility"])
        assert abs(got.score - want["score"]) <= ATOL_SCORE, (photo, got.score, want["score"])
        assert got.factors.keys() == want["factors"].keys()
        diff = np.abs(np.array([got.factors[k] - v for k, v in want["factors"].items()]))
        assert diff.max() <= ATOL_FACTOR, (photo, dict(zip(want["factors"], diff.round(6))))


if __name__ == "__main__":
    if sys.argv[1:] != ["--regenerate"]:
        raise SystemExit(__doc__)
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(_measure(), indent=1) + "\n")
    print(f"wrote {GOLDEN}")
