"""Detail and atmosphere edits: defocus and motion blur, sharpening, noise, denoising, JPEG, haze and
vignetting. Spatial sizes are fractions of the shorter image side (see :mod:`distill.edits._base`).
"""

from __future__ import annotations

import functools
import io

import numpy as np
from PIL import Image, ImageFilter

from ._base import register, short_side, to_float, to_image

__all__: list[str] = []


@register("defocus_blur", factor="sharpness", kind="degrade", stage=30)
def defocus_blur(img: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
    """Gaussian blur, radius ``1.2% * |s|`` of the short side (about 6 px at 512 px)."""
    radius = 0.012 * abs(strength) * short_side(img)
    return img.filter(ImageFilter.GaussianBlur(radius)) if radius > 0.05 else img.copy()


@register("motion_blur", factor="sharpness", kind="degrade", stage=30)
def motion_blur(img: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
    """Camera shake: a straight streak of ``3.5% * |s|`` of the short side at a random angle, averaged
    over at most 16 taps (integer offsets, so it runs on uint16 sums)."""
    length = 0.035 * abs(strength) * short_side(img)
    angle = rng.uniform(0.0, np.pi)
    if length < 1.0:
        return img.copy()
    taps = int(min(16, np.ceil(length) + 1))
    t = np.linspace(-length / 2, length / 2, taps)
    dx, dy = np.round(t * np.cos(angle)).astype(int), np.round(t * np.sin(angle)).astype(int)
    pad = int(max(np.abs(dx).max(), np.abs(dy).max()))
    arr = np.pad(np.asarray(img), ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    h, w = img.height, img.width
    acc = np.zeros((h, w, 3), dtype=np.uint16)
    for x, y in zip(dx, dy):
        acc += arr[pad + y : pad + y + h, pad + x : pad + x + w]
    return Image.fromarray(((acc + taps // 2) // taps).astype(np.uint8), "RGB")


@register("sharpen", factor="sharpness", kind="improve", stage=30)
def sharpen(img: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
    """Unsharp mask, radius 0.4% of the short side (>= 1 px), 250% at ``|s| = 1``: restores a little
    lost crispness; strong amounts give halos and crunchy texture (oversharpening)."""
    radius = max(1.0, 0.004 * short_side(img))
    return img.filter(ImageFilter.UnsharpMask(radius=radius, percent=round(250 * abs(strength)), threshold=1))


@register("noise", factor="noise", kind="degrade", stage=50)
def noise(img: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
    """Sensor-like noise: luminance grain with sigma ``(0.05 + 0.07 sqrt(L)) |s|`` (stronger in bright
    areas, as shot noise is) plus blotchy chroma noise (sigma ``0.04 |s|`` on a half-resolution grid)."""
    a = abs(strength)
    w, h = img.size
    sigma = (0.05 + 0.07 * np.sqrt(np.arange(256, dtype=np.float32) / 255)) * np.float32(a)  # by luma code
    grain = rng.standard_normal((h, w), dtype=np.float32) * sigma[np.asarray(img.convert("L"))]
    chroma = rng.standard_normal(((h + 1) // 2, (w + 1) // 2, 3), dtype=np.float32) * np.float32(0.04 * a)
    chroma = chroma.repeat(2, axis=0).repeat(2, axis=1)[:h, :w]
    chroma += grain[..., None]
    return to_image(to_float(img) + chroma)


@register("denoise", factor="noise", kind="improve", stage=55)
def denoise(img: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
    """Chroma blur (radius 0.6% of the short side) plus an edge-aware luminance smoothing (a Gaussian
    blend that backs off where the pixel differs from its blur by more than noise does), blended in by
    ``|s|``: removes grain and colour blotches at the price of some fine texture."""
    a = abs(strength)
    if a == 0:  # the YCbCr round trip alone moves colours by a level or two
        return img.copy()
    y, cb, cr = img.convert("YCbCr").split()
    radius = max(1.0, 0.006 * short_side(img))
    cb, cr = (Image.blend(c, c.filter(ImageFilter.GaussianBlur(radius)), a) for c in (cb, cr))
    yf = np.asarray(y, dtype=np.float32)
    diff = np.asarray(y.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32) - yf
    keep_edges = np.exp(-np.abs(diff) * np.float32(1 / 40))  # ~1 within grain, ~0 across real edges
    y = Image.fromarray(np.clip(yf + a * keep_edges * diff + 0.5, 0, 255).astype(np.uint8), "L")
    return Image.merge("YCbCr", (y, cb, cr)).convert("RGB")


@register("jpeg", factor="compression", kind="degrade", stage=60)
def jpeg(img: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
    """Re-encode as baseline JPEG, quality ``95 - 88 |s|`` (95 .. 7), 4:2:0 chroma subsampling."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=round(95 - 88 * abs(strength)), subsampling=2)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


@register("haze", factor="haze", kind="degrade", stage=40)
def haze(img: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
    """Atmospheric veil ``x t + A (1 - t)``: transmission ``t`` falls to ``1 - 0.75 |s|`` at the top
    of the frame (distant parts are hazier), airlight ``A`` a bright, slightly blue grey."""
    a = abs(strength)
    arr = to_float(img)
    h = arr.shape[0]
    depth = np.linspace(1.0, 0.6, h, dtype=np.float32)[:, None, None]  # top of frame is farther away
    t = 1.0 - 0.75 * a * depth
    air = np.array([0.86, 0.89, 0.93], dtype=np.float32) * np.float32(rng.uniform(0.92, 1.0))
    return to_image(arr * t + air * (1.0 - t))


@functools.lru_cache(maxsize=16)
def _radius(w: int, h: int) -> np.ndarray:
    """Normalised distance from the frame centre, 1 at the corners, shaped [H, W, 1]."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - (w - 1) / 2) / (w / 2)) ** 2 + ((yy - (h - 1) / 2) / (h / 2)) ** 2
    return (np.sqrt(r2 / 2) ** 2.5)[..., None]


@register("vignetting", factor="vignetting", kind="degrade", stage=45)
def vignetting(img: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
    """Radial fall-off ``1 - 0.8 |s| r^2.5`` (corners 80% darker at 1); a negative strength gives the
    mirror defect, corners washed out toward white."""
    arr = to_float(img)
    fall = np.float32(0.8 * abs(strength)) * _radius(img.width, img.height)
    return to_image(arr * (1.0 - fall) if strength >= 0 else arr + (1.0 - arr) * fall)
