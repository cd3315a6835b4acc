"""Tone and colour edits: exposure, contrast, saturation, vibrance, white balance, tint, and the tonal
improvements (auto levels, shadow lift, local contrast).

Global tone curves are 256-entry lookup tables applied by Pillow (about 1 ms at 512 px); only edits that
depend on each pixel's own colour (vibrance, shadow lift) touch NumPy arrays.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from ._base import register, short_side, srgb_lut, to_float, to_image

__all__ = ["EXPOSURE_EV"]

#: Exposure change at strength 1, in EV (stops). The underexposed photos in ``photos`` lie about 2-5 EV under.
EXPOSURE_EV = 4.0
_WB_STOPS = 0.55  # red/blue gain at white_balance strength 1, in stops (a strong tungsten/shade cast)
_TINT_STOPS = 0.4  # green gain at tint strength 1, in stops


def _curve(img: Image.Image, y: np.ndarray) -> Image.Image:
    """Apply one tone curve ``y`` (256 values in 0..1) to all three channels."""
    lut = np.round(np.clip(y, 0, 1) * 255).astype(np.uint8).tolist()
    return img.point(lut * 3)


def _sigmoid(t: np.ndarray | float) -> np.ndarray | float:
    return 1.0 / (1.0 + np.exp(-t))


def _mean_luma(img: Image.Image) -> float:
    hist = np.asarray(img.convert("L").histogram(), dtype=np.float64)
    return float(hist @ np.arange(256) / hist.sum() / 255)


@register("exposure", factor="exposure", kind="signed", stage=20)
def exposure(img: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
    """``EXPOSURE_EV * strength`` stops in linear light: + brighter (highlights clip), - darker."""
    g = 2.0 ** (EXPOSURE_EV * strength)
    return srgb_lut(img, (g, g, g))


@register("contrast", factor="contrast", kind="signed", stage=20)
def contrast(img: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
    """+: logistic S-curve about mid-grey (mid-tone slope up to 2.5); -: fade toward the image's mean
    luminance (the tonal range shrinks to 30% at -1), which keeps the overall exposure."""
    x = np.arange(256, dtype=np.float64) / 255
    if strength >= 0:
        k = 10.0 * strength
        if k < 1e-3:
            return img.copy()
        y = (_sigmoid(k * (x - 0.5)) - _sigmoid(-k / 2)) / (_sigmoid(k / 2) - _sigmoid(-k / 2))
    else:
        m = _mean_luma(img)
        y = m + (x - m) * (1.0 - 0.7 * abs(strength))
    return _curve(img, y)


@register("saturation", factor="saturation", kind="signed", stage=25)
def saturation(img: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
    """Chroma scaled by ``1 + 1.5 s`` (+: up to 2.5x, garish) or ``1 + s`` (-: greyscale at -1)."""
    f = 1.0 + (1.5 if strength > 0 else 1.0) * strength
    return ImageEnhance.Color(img).enhance(f)


@register("vibrance", factor="saturation", kind="signed", stage=25)
def vibrance(img: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
    """Saturation weighted toward muted colours (weight ``1 - chroma``): + enriches dull colours first,
    - mutes them first; already vivid colours change least."""
    a = np.asarray(img)
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    chroma = np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)
    gain = 1.0 + (1.5 if strength > 0 else 1.0) * strength * (1.0 - np.arange(256, dtype=np.float32) / 255)
    y = np.asarray(img.convert("L"), dtype=np.float32)[..., None] * np.float32(1 / 255)
    return to_image(y + (to_float(img) - y) * gain.astype(np.float32)[chroma][..., None])


def _balanced_gains(r: float, g: float, b: float) -> tuple[float, float, float]:
    """Scale channel gains so a grey's luminance (Rec.709, linear) is unchanged."""
    k = 0.2126 * r + 0.7152 * g + 0.0722 * b
    return r / k, g / k, b / k


@register("white_balance", factor="white_balance", kind="signed", stage=25)
def white_balance(img: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
    """Colour temperature cast in linear light: + warm (amber), - cool (blue)."""
    t = 2.0 ** (_WB_STOPS * strength)
    return srgb_lut(img, _balanced_gains(t, 1.0, 1.0 / t))


@register("tint", factor="white_balance", kind="signed", stage=25)
def tint(img: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
    """Green-magenta colour cast in linear light: + magenta, - green (fluorescent light)."""
    return srgb_lut(img, _balanced_gains(1.0, 2.0 ** (-_TINT_STOPS * strength), 1.0))


@register("auto_levels", factor="exposure", kind="improve", stage=20)
def auto_levels(img: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
    """Auto tone: black/white points to the 0.5/99.5 luminance percentiles, then a mid-tone gamma
    (bounded to 0.75..1.33) toward a median of 0.42; blended with the original by ``|s|``."""
    hist = np.asarray(img.convert("L").histogram(), dtype=np.float64)
    cdf = np.cumsum(hist) / hist.sum()
    lo, hi, med = (float(np.searchsorted(cdf, q)) / 255 for q in (0.005, 0.995, 0.5))
    x = np.arange(256, dtype=np.float64) / 255
    if hi - lo < 4 / 255:  # a flat image has no range to stretch
        return img.copy()
    y = np.clip((x - lo) / (hi - lo), 0, 1)
    m = np.clip((med - lo) / (hi - lo), 0.02, 0.98)
    gamma = float(np.clip(np.log(0.42) / np.log(m), 0.75, 1.33))
    return _curve(img, x + abs(strength) * (y**gamma - x))


@register("shadow_lift", factor="exposure", kind="improve", stage=20)
def shadow_lift(img: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
    """Shadows slider: luminance ``L + 2.5 a L (1 - L)^4`` (``a = |s|``; at 1 a 0.1 shadow becomes 0.26,
    mid-grey 0.58, highlights stay), applied as a per-pixel gain so hues are kept."""
    a = abs(strength)
    x = np.arange(256, dtype=np.float32) / 255
    gain = 1.0 + 2.5 * a * (1.0 - x) ** 4  # (L + 2.5 a L (1-L)^4) / L
    code = np.asarray(img.convert("L"))
    return to_image(to_float(img) * gain[code][..., None])


@register("local_contrast", factor="contrast", kind="improve", stage=35)
def local_contrast(img: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
    """Clarity: unsharp mask with a wide radius (3% of the short side), up to 80% at ``|s| = 1``."""
    radius = 0.03 * short_side(img)
    return img.filter(ImageFilter.UnsharpMask(radius=radius, percent=round(80 * abs(strength)), threshold=0))
