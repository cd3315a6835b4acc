"""Single edits in both directions for every factor, made with Pillow and NumPy alone (not ``distill.edits``:
the check must hold for edits the model never saw implemented), and the share of photos on which the
edited factor's difference points to the better photo (the unedited one).

Shared by ``tests/test_factor_signs.py`` (a few photos, in CI) and ``benchmarks/factor_signs.py``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter


def _arr(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("RGB"), np.float64) / 255.0


def _img(a: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8), "RGB")


def _linear(a: np.ndarray) -> np.ndarray:
    return np.where(a <= 0.04045, a / 12.92, ((a + 0.055) / 1.055) ** 2.4)


def _srgb(a: np.ndarray) -> np.ndarray:
    a = np.clip(a, 0.0, 1.0)
    return np.where(a <= 0.0031308, a * 12.92, 1.055 * a ** (1 / 2.4) - 0.055)


def _exposure(ev: float) -> Callable[[Image.Image], Image.Image]:
    return lambda im: _img(_srgb(_linear(_arr(im)) * 2.0**ev))


def _contrast(k: float) -> Callable[[Image.Image], Image.Image]:
    def edit(im: Image.Image) -> Image.Image:
        a = _arr(im)
        return _img((a - a.mean()) * k + a.mean())

    return edit


def _colour(k: float) -> Callable[[Image.Image], Image.Image]:
    return lambda im: ImageEnhance.Color(im.convert("RGB")).enhance(k)


def _cast(red: float, blue: float) -> Callable[[Image.Image], Image.Image]:
    return lambda im: _img(_srgb(_linear(_arr(im)) * np.array([red, 1.0, blue])))


def _tilt(degrees: float) -> Callable[[Image.Image], Image.Image]:
    def edit(im: Image.Image) -> Image.Image:
        w, h = im.size
        rotated = im.convert("RGB").rotate(degrees, resample=Image.BICUBIC)
        # The largest centred crop of the frame's aspect with no corner left blank.
        t = np.radians(abs(degrees))
        k = 1.0 / (np.cos(t) + np.sin(t) * max(w / h, h / w))
        cw, ch = w * k, h * k
        return rotated.crop((round((w - cw) / 2), round((h - ch) / 2), round((w + cw) / 2), round((h + ch) / 2)))

    return edit


def _vignette(amount: float) -> Callable[[Image.Image], Image.Image]:
    def edit(im: Image.Image) -> Image.Image:
        a = _arr(im)
        h, w = a.shape[:2]
        y, x = np.mgrid[0:h, 0:w]
        r2 = ((x - w / 2) / (w / 2)) ** 2 + ((y - h / 2) / (h / 2)) ** 2
        mask = np.clip(r2 / 2.0, 0, 1)[..., None] ** 1.5
        target = 0.0 if amount > 0 else 1.0
        return _img(a + (target - a) * mask * abs(amount))

    return edit


def _blur(fraction: float) -> Callable[[Image.Image], Image.Image]:
    return lambda im: im.convert("RGB").filter(ImageFilter.GaussianBlur(fraction * min(im.size)))


def _noise(sigma: float) -> Callable[[Image.Image], Image.Image]:
    def edit(im: Image.Image) -> Image.Image:
        a = _arr(im)
        rng = np.random.default_rng(a.shape[0] * 7919 + a.shape[1])
        return _img(a + rng.normal(0.0, sigma, a.shape[:2])[..., None] + rng.normal(0.0, sigma / 3, a.shape))

    return edit


def _jpeg(quality: int) -> Callable[[Image.Image], Image.Image]:
    def edit(im: Image.Image) -> Image.Image:
        buf = io.BytesIO()
        im.convert("RGB").save(buf, "JPEG", quality=quality)
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")

    return edit


def _haze(density: float) -> Callable[[Image.Image], Image.Image]:
    def edit(im: Image.Image) -> Image.Image:
        a = _arr(im)
        t = density * np.linspace(1.0, 0.6, a.shape[0])[:, None, None]
        return _img(a * (1 - t) + 0.85 * t)

    return edit


# (factor, direction, edit): strong single edits that make a well-made photo worse either way.
EDITS: tuple[tuple[str, str, Callable[[Image.Image], Image.Image]], ...] = (
    ("exposure", "darker", _exposure(-2.0)),
    ("exposure", "brighter", _exposure(2.0)),
    ("contrast", "flat", _contrast(0.4)),
    ("contrast", "harsh", _contrast(2.2)),
    ("saturation", "desaturated", _colour(0.15)),
    ("saturation", "oversaturated", _colour(2.8)),
    ("white_balance", "warm", _cast(1.45, 0.6)),
    ("white_balance", "cool", _cast(0.6, 1.45)),
    ("tilt", "clockwise", _tilt(-7.0)),
    ("tilt", "anticlockwise", _tilt(7.0)),
    ("vignetting", "dark corners", _vignette(0.8)),
    ("vignetting", "light corners", _vignette(-0.7)),
    ("sharpness", "blurred", _blur(0.012)),
    ("noise", "grain", _noise(0.08)),
    ("compression", "jpeg q8", _jpeg(8)),
    ("haze", "veil", _haze(0.55)),
)


def well_made(names: Iterable[str], manifest: Path) -> list[str]:
    """The photos of ``names`` that the photos' manifest tags ``well_made``: the ones every edit above makes
    worse. An underexposed bracket frame or a night snapshot is better brightened by 2 EV, and an unretouched
    camera file may be better warmer: there a factor favouring the edit is right, so they are left out."""
    with open(manifest, newline="", encoding="utf-8") as f:
        tags = {row["file"]: set(row["tags"].split(";")) for row in csv.DictReader(f)}
    return [n for n in names if "well_made" in tags.get(n, ())]


def factor_signs(
    scorer, photos: Iterable[Image.Image], edits: Sequence = EDITS
) -> dict[tuple[str, str], dict[str, float]]:
    """Per (factor, direction): ``factor_right`` (share of photos where ``f(edited) - f(photo) < 0`` on the
    edited factor), ``utility_right`` (share where the photo wins) and ``n``. A photo the edit leaves
    unchanged (a saturation edit of a monochrome photo) is not counted for that edit."""
    photos = list(photos)
    pixels = [np.asarray(p.convert("RGB")) for p in photos]  # once, for the unchanged-edit check
    out: dict[tuple[str, str], dict[str, float]] = {}
    for factor, direction, edit in edits:
        factor_ok = utility_ok = n = 0
        for photo, before in zip(photos, pixels):
            edited = edit(photo)
            if edited.size == photo.size and np.array_equal(np.asarray(edited), before):
                continue
            c = scorer.compare(photo, edited)
            factor_ok += c.factors[factor] < 0
            utility_ok += c.preferred == "a"
            n += 1
        out[(factor, direction)] = {
            "factor_right": factor_ok / max(n, 1),
            "utility_right": utility_ok / max(n, 1),
            "n": n,
        }
    return out
