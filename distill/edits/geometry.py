"""Geometric edits: tilt and straighten, and crops that spoil or improve composition.

Size policy: every geometric edit returns a *crop of the input at its native resolution* with the
input's aspect ratio (to within a pixel); nothing is scaled up, so a crop adds no softness of its own
and the model's resize (letterbox or squash) frames both images of a pair alike. Tilted frames are
cropped to the largest centred rectangle free of the rotation's empty corners.

Composition edits place a window relative to the photo's *subject*, estimated as the centroid of a
spectral-residual saliency map (Hou & Zhang 2007) of a 64x64 thumbnail: cheap and rough, not a
subject detector (checked by eye on contact sheets); on scenes without a clear subject the crops are
simply off-centre.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from ._base import register

__all__ = ["TILT_DEGREES", "subject_centre"]

#: Rotation at tilt strength 1, in degrees (a badly held camera; 1-2 degrees already shows on horizons).
TILT_DEGREES = 10.0


def _rotate_crop(img: Image.Image, degrees: float) -> Image.Image:
    """Rotate counter-clockwise by ``degrees`` about the centre and keep the largest centred rectangle
    of the same aspect ratio that holds no empty corner. One affine resampling straight into the crop
    (the same mapping as ``Image.rotate``), so no pixel outside the kept window is computed."""
    if abs(degrees) < 1e-3:
        return img.copy()
    w, h = img.size
    th = math.radians(abs(degrees))
    k = min(w / (w * math.cos(th) + h * math.sin(th)), h / (w * math.sin(th) + h * math.cos(th)))
    cw, ch = max(1, int(w * k)), max(1, int(h * k))
    left, top = (w - cw) // 2, (h - ch) // 2
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    # Output pixel (u, v) samples the input at R^-1 ((u + left, v + top) - centre) + centre.
    x0, y0 = left - w / 2, top - h / 2
    matrix = (c, -s, c * x0 - s * y0 + w / 2, s, c, s * x0 + c * y0 + h / 2)
    return img.transform((cw, ch), Image.Transform.AFFINE, matrix, Image.Resampling.BICUBIC)


@register("tilt", factor="tilt", kind="degrade", stage=10)
def tilt(img: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
    """Rotate by ``TILT_DEGREES * s`` (+: counter-clockwise) and crop away the empty corners."""
    return _rotate_crop(img, TILT_DEGREES * strength)


@register("straighten", factor="tilt", kind="improve", stage=10, undoes="tilt")
def straighten(img: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
    """Level the horizon: inside a recipe, :func:`distill.edits.apply` turns this step into the inverse
    rotation of ``|s|`` of the recipe's net tilt (and a second crop). Alone it returns the photo as is:
    our sources are level, and estimating a single photo's tilt from its gradient orientations is too unreliable
    to act on (it misses most small tilts and finds tilts in level photos)."""
    return img.copy()


def subject_centre(img: Image.Image) -> tuple[float, float]:
    """(x, y) of the saliency centroid in 0..1 frame coordinates (spectral residual, 64x64)."""
    g = np.asarray(img.convert("L").resize((64, 64), Image.Resampling.BILINEAR), dtype=np.float64)
    f = np.fft.fft2(g)
    log_amp = np.log(np.abs(f) + 1e-9)
    padded = np.pad(log_amp, 1, mode="wrap")
    local = sum(padded[i : i + 64, j : j + 64] for i in range(3) for j in range(3)) / 9
    sal = np.abs(np.fft.ifft2(np.exp(log_amp - local + 1j * np.angle(f)))) ** 2
    sal = np.where(sal >= np.quantile(sal, 0.9), sal, 0.0)  # the salient 10% only
    if sal.sum() <= 0:
        return 0.5, 0.5
    ys, xs = np.mgrid[0:64, 0:64]
    return float((sal * xs).sum() / sal.sum() + 0.5) / 64, float((sal * ys).sum() / sal.sum() + 0.5) / 64


def _place(img: Image.Image, zoom: float, target: tuple[float, float], subject: tuple[float, float]) -> Image.Image:
    """Crop a ``zoom``-sized window placed so the ``subject`` (frame coordinates, 0..1) lands at
    ``target`` (window coordinates), as close as the frame allows."""
    w, h = img.size
    cw, ch = max(1, round(zoom * w)), max(1, round(zoom * h))
    sx, sy = subject
    left = round(min(max(sx * w - target[0] * cw, 0), w - cw))
    top = round(min(max(sy * h - target[1] * ch, 0), h - ch))
    return img.crop((left, top, left + cw, top + ch))


@register("crop_cut", factor="composition", kind="degrade", stage=10)
def crop_cut(img: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
    """Tight crop (window ``1 - 0.5 |s|`` of each side) whose edge runs through the subject: a random
    axis, the side by the sign (+: the subject's left/top part is cut off)."""
    edge = 0.0 if strength >= 0 else 1.0
    target = (edge, 0.5) if rng.random() < 0.5 else (0.5, edge)
    return _place(img, 1.0 - 0.5 * abs(strength), target, subject_centre(img))


@register("off_balance", factor="composition", kind="degrade", stage=10)
def off_balance(img: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
    """Crop (window ``1 - 0.4 |s|``) that pushes the subject toward a corner, 12% from the side edges
    (+: left, -: right; top or bottom at random), leaving the frame's weight empty."""
    tx = 0.12 if strength >= 0 else 0.88
    ty = 0.2 if rng.random() < 0.5 else 0.8
    return _place(img, 1.0 - 0.4 * abs(strength), (tx, ty), subject_centre(img))


@register("thirds_recrop", factor="composition", kind="improve", stage=10)
def thirds_recrop(img: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
    """Re-crop (window ``1 - 0.25 |s|``) putting the subject on the nearest rule-of-thirds point (a
    random one of the two when the subject is centred on an axis)."""
    subject = subject_centre(img)
    target = (_nearest_third(subject[0], rng), _nearest_third(subject[1], rng))
    return _place(img, 1.0 - 0.25 * abs(strength), target, subject)


def _nearest_third(c: float, rng: np.random.Generator) -> float:
    if abs(c - 0.5) <= 0.02:
        return (1 / 3, 2 / 3)[int(rng.integers(2))]
    return 1 / 3 if c < 0.5 else 2 / 3
