"""Photo edits: each moves the image the stated way, is deterministic, and recipes are well formed."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from distill import edits
from distill.registry import EDITS
from redaes_lite.metadata import FACTORS

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"
REQUIRED = (  # the edit vocabulary the oracle and the recipes rely on: none may go missing
    "exposure",
    "contrast",
    "saturation",
    "vibrance",
    "white_balance",
    "tint",
    "defocus_blur",
    "motion_blur",
    "sharpen",
    "noise",
    "jpeg",
    "haze",
    "vignetting",
    "tilt",
    "crop_cut",
    "off_balance",
    "auto_levels",
    "shadow_lift",
    "local_contrast",
    "denoise",
    "straighten",
    "thirds_recrop",
)


def _synthetic(w: int = 240, h: int = 160) -> Image.Image:
    """A colourful stand-in for a photo with texture at every scale (used when the shared photos are
    absent): gradients, a "subject" block and random detail from 2 to 32 px."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(0)
    arr = np.stack([xx / w, yy / h, 1 - xx / w], axis=-1) * 0.6 + 0.2
    arr[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3] = (0.8, 0.3, 0.2)
    for cell in (2, 4, 8, 16, 32):
        grid = rng.normal(0, 0.05, (h // cell + 1, w // cell + 1, 3))
        arr += grid.repeat(cell, axis=0).repeat(cell, axis=1)[:h, :w]
    return Image.fromarray((np.clip(arr, 0, 1) * 255).astype(np.uint8), "RGB")


def _photo(name: str) -> Image.Image:
    path = PHOTOS / name
    if not path.is_file():
        return _synthetic()
    img = Image.open(path).convert("RGB")
    img.thumbnail((256, 256))
    return img


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return _photo("kodak_23.jpg")  # parrots: colourful, sharp, well exposed


@pytest.fixture(scope="module")
def dark_photo() -> Image.Image:
    path = next(iter(sorted(PHOTOS.glob("sice_*_under.jpg"))), None)
    return _photo(path.name) if path else Image.eval(_synthetic(), lambda v: v // 6)


def _f(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.float64) / 255


def _luma(img: Image.Image) -> np.ndarray:
    return _f(img) @ np.array([0.299, 0.587, 0.114])


def _hf(img: Image.Image) -> float:
    """High-frequency energy: mean absolute Laplacian of luminance."""
    y = _luma(img)
    return float(np.abs(4 * y[1:-1, 1:-1] - y[:-2, 1:-1] - y[2:, 1:-1] - y[1:-1, :-2] - y[1:-1, 2:]).mean())


def _chroma(img: Image.Image) -> float:
    a = _f(img)
    return float((a.max(axis=2) - a.min(axis=2)).mean())


def _one(img: Image.Image, op: str, s: float, seed: int = 0) -> Image.Image:
    return edits.apply(img, [{"op": op, "strength": s}], seed=seed)


def test_registry_holds_every_required_edit_with_vocabulary_factor_and_kind() -> None:
    assert set(REQUIRED) <= set(EDITS.names())
    for name in EDITS.names():
        e = EDITS.get(name)
        assert e.name == name and e.factor in FACTORS and e.kind in edits.KINDS
    assert {EDITS.get(n).factor for n in EDITS.names()} == set(FACTORS)  # every factor has an edit


@pytest.mark.parametrize("op", REQUIRED)
def test_edit_is_deterministic_given_seed_and_returns_rgb(photo: Image.Image, op: str) -> None:
    recipe = [{"op": "tilt", "strength": 0.4}, {"op": op, "strength": 0.7}]
    a, b = edits.apply(photo, recipe, seed=3), edits.apply(photo, recipe, seed=3)
    assert a.mode == "RGB" and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("op", ["noise", "motion_blur"])
def test_random_edits_depend_on_seed(photo: Image.Image, op: str) -> None:
    assert _one(photo, op, 0.8, seed=1).tobytes() != _one(photo, op, 0.8, seed=2).tobytes()


@pytest.mark.parametrize("op", [op for op in REQUIRED if op != "jpeg"])  # jpeg at 0 is quality 95, not lossless
def test_strength_zero_is_near_identity(photo: Image.Image, op: str) -> None:
    out = _one(photo, op, 0.0)
    assert out.size == photo.size
    assert np.abs(_f(out) - _f(photo)).mean() < 1 / 255


def test_exposure_moves_mean_luminance(photo: Image.Image) -> None:
    m = _luma(photo).mean()
    assert _luma(_one(photo, "exposure", 0.3)).mean() > m + 0.05
    assert _luma(_one(photo, "exposure", -0.3)).mean() < m - 0.05


def test_contrast_moves_luminance_spread(photo: Image.Image) -> None:
    sd = _luma(photo).std()
    assert _luma(_one(photo, "contrast", 0.6)).std() > sd * 1.1
    assert _luma(_one(photo, "contrast", -0.6)).std() < sd * 0.7


@pytest.mark.parametrize("op", ["saturation", "vibrance"])
def test_saturation_edits_move_chroma(photo: Image.Image, op: str) -> None:
    c = _chroma(photo)
    assert _chroma(_one(photo, op, -0.6)) < c * 0.8
    assert _chroma(_one(photo, op, 0.6)) > c * 1.1
    assert _chroma(_one(photo, "saturation", -1.0)) < 0.01  # greyscale


def test_white_balance_and_tint_cast_colour(photo: Image.Image) -> None:
    def warmth(img: Image.Image) -> float:
        a = _f(img)
        return float((a[..., 0] - a[..., 2]).mean())

    def green(img: Image.Image) -> float:
        a = _f(img)
        return float((a[..., 1] - (a[..., 0] + a[..., 2]) / 2).mean())

    assert warmth(_one(photo, "white_balance", 0.5)) > warmth(photo) + 0.03
    assert warmth(_one(photo, "white_balance", -0.5)) < warmth(photo) - 0.03
    assert green(_one(photo, "tint", -0.5)) > green(photo) + 0.02
    assert green(_one(photo, "tint", 0.5)) < green(photo) - 0.02


@pytest.mark.parametrize("op", ["defocus_blur", "motion_blur"])
def test_blur_removes_high_frequencies_more_with_strength(photo: Image.Image, op: str) -> None:
    hf = [_hf(_one(photo, op, s)) for s in (0.0, 0.3, 0.9)]
    assert hf[0] > hf[1] > hf[2] and hf[2] < 0.6 * hf[0]


@pytest.mark.parametrize("op", ["sharpen", "noise", "local_contrast"])
def test_sharpen_noise_and_clarity_add_high_frequencies(photo: Image.Image, op: str) -> None:
    assert _hf(_one(photo, op, 0.8)) > 1.1 * _hf(photo)


def test_noise_grows_with_strength_and_denoise_removes_it(photo: Image.Image) -> None:
    weak, strong = _one(photo, "noise", 0.2), _one(photo, "noise", 0.8)
    assert _hf(strong) > _hf(weak) > _hf(photo)
    cleaned = _one(strong, "denoise", 1.0)
    assert np.abs(_f(cleaned) - _f(photo)).mean() < np.abs(_f(strong) - _f(photo)).mean()


def test_jpeg_error_and_blockiness_grow_with_strength(photo: Image.Image) -> None:
    def blockiness(img: Image.Image) -> float:
        d = np.abs(np.diff(_luma(img), axis=1))
        return float(d[:, 7::8].mean() / d.mean())  # steps across 8x8 block borders vs everywhere

    err = [np.abs(_f(_one(photo, "jpeg", s)) - _f(photo)).mean() for s in (0.2, 0.6, 1.0)]
    assert err[0] < err[1] < err[2]
    assert blockiness(_one(photo, "jpeg", 1.0)) > blockiness(photo) + 0.1


def test_haze_lifts_blacks_and_flattens(photo: Image.Image) -> None:
    out = _one(photo, "haze", 0.7)
    assert _f(out).min(axis=2).mean() > _f(photo).min(axis=2).mean() + 0.1  # dark channel rises
    assert _luma(out).std() < 0.7 * _luma(photo).std()


def test_vignetting_darkens_or_washes_out_corners(photo: Image.Image) -> None:
    def corner_vs_centre(img: Image.Image) -> float:
        y = _luma(img)
        h, w = y.shape
        corners = np.concatenate([y[: h // 6, : w // 6].ravel(), y[-h // 6 :, -w // 6 :].ravel()])
        return float(corners.mean() - y[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3].mean())

    base = corner_vs_centre(photo)
    assert corner_vs_centre(_one(photo, "vignetting", 0.8)) < base - 0.1
    assert corner_vs_centre(_one(photo, "vignetting", -0.8)) > base + 0.1


def test_auto_levels_and_shadow_lift_brighten_an_underexposed_photo(dark_photo: Image.Image) -> None:
    m = _luma(dark_photo).mean()
    assert _luma(_one(dark_photo, "auto_levels", 1.0)).mean() > m + 0.03
    lifted = _one(dark_photo, "shadow_lift", 1.0)
    assert _luma(lifted).mean() > m + 0.03
    assert (_luma(lifted) >= _luma(dark_photo) - 1 / 255).all()  # a lift never darkens


def _is_native_crop(out: Image.Image, src: Image.Image) -> bool:
    """True if ``out`` is pixel for pixel a window of ``src``."""
    o, s = np.asarray(out), np.asarray(src)
    h, w = o.shape[:2]
    rows = np.lib.stride_tricks.sliding_window_view(s, (1, w, 3))[:, :, 0, 0]  # [H, W-w+1, w, 3]
    for y, x in zip(*np.nonzero((rows == o[0]).all(axis=(2, 3)))):
        if y + h <= s.shape[0] and (s[y : y + h, x : x + w] == o).all():
            return True
    return False


@pytest.mark.parametrize("op", ["crop_cut", "off_balance", "thirds_recrop"])
def test_composition_crops_are_native_windows_keeping_aspect(photo: Image.Image, op: str) -> None:
    sizes = []
    for s in (0.3, -1.0):
        out = _one(photo, op, s)
        assert _is_native_crop(out, photo)
        assert abs(out.width / out.height - photo.width / photo.height) < 0.02
        sizes.append(out.width)
    assert photo.width > sizes[0] > sizes[1]  # stronger: tighter


def test_tilt_rotates_and_crops_and_straighten_undoes_it(photo: Image.Image) -> None:
    tilted = _one(photo, "tilt", 0.5)
    assert tilted.width < photo.width and abs(tilted.width / tilted.height - photo.width / photo.height) < 0.02
    assert not _is_native_crop(tilted, photo)
    assert _one(photo, "tilt", -0.5).tobytes() != tilted.tobytes()  # the sign picks the direction
    fixed = edits.apply(photo, [{"op": "tilt", "strength": 0.5}, {"op": "straighten", "strength": 1.0}], seed=0)

    def centre_err(img: Image.Image) -> float:
        w, h = img.size
        box = ((photo.width - w) // 2, (photo.height - h) // 2)
        return float(np.abs(_f(img) - _f(photo.crop((*box, box[0] + w, box[1] + h)))).mean())

    assert centre_err(fixed) < 0.3 * centre_err(tilted.resize(fixed.size))
    assert _one(photo, "straighten", 1.0).tobytes() == photo.tobytes()  # alone: level sources stay


def test_apply_rejects_bad_recipes(photo: Image.Image) -> None:
    with pytest.raises(KeyError, match="did you mean 'exposure'"):
        edits.apply(photo, [{"op": "exposur", "strength": 0.1}], seed=0)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        edits.apply(photo, [{"op": "noise", "strength": 1.5}], seed=0)
    with pytest.raises(ValueError, match="step 0"):
        edits.apply(photo, [{"name": "noise"}], seed=0)
    assert edits.apply(photo.convert("L"), [], seed=0).mode == "RGB"


@pytest.mark.parametrize("make_rng", [lambda: random.Random(5), lambda: np.random.default_rng(5)])
def test_random_recipe_is_well_formed_and_seeded(make_rng) -> None:
    rng_a, rng_b = make_rng(), make_rng()
    recipes = [edits.random_recipe(rng_a) for _ in range(300)]
    assert recipes == [edits.random_recipe(rng_b) for _ in range(300)]
    for r in recipes:
        assert 1 <= len(r) <= 3 and len({s["op"] for s in r}) == len(r)
        assert all(s["op"] in EDITS and -1 <= s["strength"] <= 1 and s["strength"] != 0 for s in r)
        edits.parse_recipe(r)
    assert {len(r) for r in recipes} == {1, 2, 3}
    assert [len(edits.random_recipe(rng_a, n_ops=2)) for _ in range(5)] == [2] * 5


def test_random_recipe_fixes_faults_the_tags_name() -> None:
    rng = random.Random(0)
    first = [edits.random_recipe(rng, tags=("underexposed", "night"))[0] for _ in range(400)]
    brighten = [
        s for s in first if s["op"] in ("shadow_lift", "auto_levels") or (s["op"] == "exposure" and s["strength"] > 0.2)
    ]
    assert len(brighten) > 0.4 * len(first)
    plain = [edits.random_recipe(rng, tags=("well_made",))[0] for _ in range(400)]
    assert sum(s["op"] in ("shadow_lift", "auto_levels") for s in plain) < 0.05 * len(plain)
