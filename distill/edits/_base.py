"""The :class:`Edit` entry and the small pixel helpers every edit module shares.

Conventions (see :mod:`distill.edits` for the full contract):

- an edit is ``fn(img, strength, rng) -> img`` on RGB PIL images, ``strength`` in [-1, 1], ``rng`` a
  NumPy ``Generator`` (the only source of randomness, so edits are deterministic given a seed);
- ``kind="signed"``: the sign picks the direction along an axis through the well-made optimum
  (brighter/darker, warmer/cooler); ``"degrade"`` and ``"improve"``: ``|strength|`` is the amount and
  the sign only picks a mirror-image variant where one exists (tilt direction, dark or light vignette);
- spatial scales (blur radii, motion length, noise grain) are fractions of the image's shorter side,
  so an edit looks the same at any working size.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from distill.registry import EDITS
from redaes_lite.metadata import FACTORS

__all__ = [
    "KINDS",
    "Edit",
    "EditFn",
    "check_strength",
    "luma",
    "register",
    "short_side",
    "srgb_lut",
    "to_float",
    "to_image",
]

EditFn = Callable[[Image.Image, float, np.random.Generator], Image.Image]
KINDS = ("degrade", "improve", "signed")
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # Rec.601 weights, as Pillow's convert("L")


@dataclass(frozen=True)
class Edit:
    """A named, parameterised photo edit and the factor it moves (vocabulary: docs/model-format.md).

    ``stage`` orders edits inside a random recipe the way a camera and editor would apply them
    (geometry, tone and colour, detail, atmosphere, sensor noise, compression last). ``undoes`` names
    an edit this one reverses: when that edit ran earlier in the same recipe, :func:`apply` runs it
    again with ``-|s|`` times its net strength instead of calling ``fn`` (exact repairs, e.g. straighten
    after tilt).
    """

    name: str
    factor: str
    fn: EditFn
    kind: str
    stage: int = 50
    undoes: str | None = None

    def __post_init__(self) -> None:
        if self.factor not in FACTORS:
            raise ValueError(f"edit {self.name!r}: factor {self.factor!r} is not in the vocabulary {FACTORS}")
        if self.kind not in KINDS:
            raise ValueError(f"edit {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")

    def __call__(self, img: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
        return self.fn(img, check_strength(strength, self.name), rng)


def register(name: str, *, factor: str, kind: str, stage: int, undoes: str | None = None) -> Callable[[EditFn], EditFn]:
    """Decorator: wrap ``fn`` in an :class:`Edit` and add it to ``distill.registry.EDITS``."""

    def deco(fn: EditFn) -> EditFn:
        EDITS.add(name, Edit(name, factor, fn, kind, stage, undoes))
        return fn

    return deco


def check_strength(strength: float, name: str) -> float:
    s = float(strength)
    if not -1.0 <= s <= 1.0:
        raise ValueError(f"edit {name!r}: strength must be in [-1, 1], got {strength!r}")
    return s


def to_float(img: Image.Image) -> np.ndarray:
    """RGB image -> float32 array [H, W, 3] in 0..1."""
    return np.asarray(img, dtype=np.float32) * np.float32(1 / 255)


def to_image(arr: np.ndarray) -> Image.Image:
    """Float array in 0..1 (clipped) -> RGB image, rounded to 8 bits."""
    out = np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(out, "RGB")


def luma(arr: np.ndarray) -> np.ndarray:
    """Rec.601 luma [H, W] of a float RGB array."""
    return arr @ _LUMA


def short_side(img: Image.Image) -> int:
    return min(img.size)


@functools.lru_cache(maxsize=1)
def _srgb_curves() -> tuple[np.ndarray, np.ndarray]:
    """(x, linear(x)) for the 256 8-bit sRGB codes: edits that model light work in linear light."""
    x = np.arange(256, dtype=np.float64) / 255
    lin = np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    return x, lin


def _to_srgb(lin: np.ndarray) -> np.ndarray:
    lin = np.clip(lin, 0.0, 1.0)
    return np.where(lin <= 0.0031308, lin * 12.92, 1.055 * lin ** (1 / 2.4) - 0.055)


def srgb_lut(img: Image.Image, gains: tuple[float, float, float]) -> Image.Image:
    """Multiply each channel by a gain in *linear light* (clipping at white), as a camera's exposure or
    white balance would, via one 768-entry lookup table (a few ms at 512 px)."""
    _, lin = _srgb_curves()
    lut = np.concatenate([_to_srgb(lin * g) for g in gains])
    return img.point(np.round(lut * 255).astype(np.uint8).tolist())
