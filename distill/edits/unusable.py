"""Unusable frames: what a camera roll holds besides photos (a lens cap, a pocket shot, a blown-out
flash, sensor noise, a frame lost to motion), made from a real image so sizes and aspect ratios match.

Human-scored sets hold bad photos, not non-photos, so a student trained on them alone puts a black frame
among the worst photos rather than below every photo. A source with ``unusable:`` (``distill.config``)
swaps such frames into its groups with a target below its data set's whole score range.

=============  ================================================================
kind           frame
=============  ================================================================
solid          one flat colour (half of them black or white)
solid_noise    a flat colour under Gaussian sensor noise (sigma 2..24)
noise          per-pixel uniform noise, colour or grey
crushed        the image at 1..4% of its brightness (lens cap, pocket)
blown          the image times 12..40, clipped (flash or sun into the lens)
smeared        the image blurred by a fifth of its long side (lost to motion or focus)
=============  ================================================================
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

__all__ = ["TEACHER_ID", "UNUSABLE_KINDS", "unusable_frame"]

# The rule "an unusable frame is worse than any photo", as checkpoints and ``redaes.teacher`` name it.
TEACHER_ID = "unusable-frames@1"
UNUSABLE_KINDS = ("solid", "solid_noise", "noise", "crushed", "blown", "smeared")


def _colour(rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.5:
        return np.full(3, 0.0 if rng.random() < 0.5 else 255.0)
    return rng.uniform(0, 255, 3)


def unusable_frame(image: Image.Image, rng: np.random.Generator, *, kind: str | None = None) -> Image.Image:
    """An unusable RGB frame of ``image``'s size (``kind`` from :data:`UNUSABLE_KINDS`; random if None)."""
    kind = kind or UNUSABLE_KINDS[int(rng.integers(len(UNUSABLE_KINDS)))]
    w, h = image.size
    if kind == "solid":
        arr = np.broadcast_to(_colour(rng), (h, w, 3))
    elif kind == "solid_noise":
        arr = _colour(rng) + rng.normal(0.0, rng.uniform(2, 24), (h, w, 1 if rng.random() < 0.5 else 3))
    elif kind == "noise":
        arr = rng.uniform(0, 256, (h, w, 3 if rng.random() < 0.7 else 1)) * np.ones(3)
    elif kind in ("crushed", "blown"):
        rgb = np.asarray(image.convert("RGB"), np.float32)
        arr = rgb * (rng.uniform(0.01, 0.04) if kind == "crushed" else rng.uniform(12, 40))
    elif kind == "smeared":
        radius = max(w, h) / 5
        return image.convert("RGB").filter(ImageFilter.GaussianBlur(radius)).filter(ImageFilter.BoxBlur(radius))
    else:
        raise ValueError(f"unknown unusable-frame kind {kind!r}; known: {', '.join(UNUSABLE_KINDS)}")
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")
