"""In ``compare()``, the edited factor must point toward the better photo: single strong edits in both
directions for every factor (``tests/signkit.py``, Pillow and NumPy, not the training edits) on well-made
validation photos neither model trained on, for both embedded models.

Thresholds hold on these 12 photos with a margin (``benchmarks/factor_signs.py`` measures 60): every edit
right on most photos, all edits on average nearly always. It catches a factor head that learnt a sign
backwards (a desaturated copy making ``saturation`` favour the grey photo), which the utility alone would hide.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from signkit import factor_signs, well_made

import redaes_lite

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"
SPLIT = Path(__file__).resolve().parents[1] / "distill" / "splits" / "photos_val.txt"
N_PHOTOS = 12


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    if not SHARED.is_dir():
        pytest.skip(f"needs the shared photos at {SHARED}")
    names = well_made([n.strip() for n in SPLIT.read_text().splitlines() if n.strip()], SHARED / "manifest.csv")
    names = names[:N_PHOTOS]
    out = []
    for name in names:
        im = Image.open(SHARED / name).convert("RGB")
        im.thumbnail((448, 448))
        out.append(im)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("model", ["default", "permissive"])
def test_edited_factor_favours_the_better_photo(model: str, photos: list[Image.Image]) -> None:
    rows = factor_signs(redaes_lite.load(model, threads=1), photos)
    wrong = {f"{f}/{d}": round(r["factor_right"], 2) for (f, d), r in rows.items() if r["factor_right"] < 0.6}
    assert not wrong, f"{model}: edited factor favours the edit on most photos: {wrong}"
    mean = sum(r["factor_right"] for r in rows.values()) / len(rows)
    assert mean >= 0.85, f"{model}: factor signs right on {mean:.3f} of single edits"
