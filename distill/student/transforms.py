"""Train and eval transforms: thin wrappers around ``redaes_lite.preprocess.to_array``, the one pixel path.

Training adds only aesthetics-neutral augmentation (a small random resized crop that keeps most of the
frame, and a horizontal flip), drawn once and applied identically to every image of a pair or group, so
that the images still differ only by what the teacher judged.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import torch
from PIL import Image

from redaes_lite.preprocess import PreprocessSpec, to_array

__all__ = ["EvalTransform", "TrainTransform", "CropBox"]

# (left, top, right, bottom) as fractions of the image's width and height.
CropBox = tuple[float, float, float, float]


class EvalTransform:
    """``EvalTransform(spec)(img) -> float32 [3, H, W]``: exactly ``to_array(img, spec)``."""

    def __init__(self, spec: PreprocessSpec) -> None:
        self.spec = spec

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return torch.from_numpy(to_array(img, self.spec))

    def __repr__(self) -> str:
        return f"EvalTransform({self.spec.to_json()})"


class TrainTransform:
    """``TrainTransform(spec)(imgs, rng=rng) -> float32 [len(imgs), 3, H, W]``, one augmentation for all.

    ``min_area``: smallest fraction of the frame a crop keeps (composition must survive);
    ``max_aspect``: largest factor by which the crop's aspect ratio may differ from the image's;
    ``flip``: mirror horizontally with probability 0.5. Crops are drawn in relative coordinates, so images
    of different sizes in one group are cut at the same place of the frame.
    """

    def __init__(
        self, spec: PreprocessSpec, *, min_area: float = 0.85, max_aspect: float = 1.1, flip: bool = True
    ) -> None:
        if not 0 < min_area <= 1:
            raise ValueError(f"min_area must be in (0, 1], got {min_area}")
        if max_aspect < 1:
            raise ValueError(f"max_aspect must be >= 1, got {max_aspect}")
        self.spec = spec
        self.min_area = min_area
        self.max_aspect = max_aspect
        self.flip = flip

    def draw(self, rng: random.Random) -> tuple[CropBox, bool]:
        """One random crop box (fractions of the frame) and flip decision."""
        area = rng.uniform(self.min_area, 1.0)
        log_r = math.log(self.max_aspect)
        ratio = math.exp(rng.uniform(-log_r, log_r))
        # w * h = area with w / h = ratio (relative units); clip to the frame, which only grows the area kept.
        w = min(1.0, math.sqrt(area * ratio))
        h = min(1.0, math.sqrt(area / ratio))
        left = rng.uniform(0.0, 1.0 - w)
        top = rng.uniform(0.0, 1.0 - h)
        flipped = self.flip and rng.random() < 0.5
        return (left, top, left + w, top + h), flipped

    def apply(self, img: Image.Image, box: CropBox, flipped: bool) -> torch.Tensor:
        """Crop ``img`` to ``box`` (fractions), mirror if ``flipped``, then the shared pixel path."""
        width, height = img.size
        left, top, right, bottom = box
        pixels = (round(left * width), round(top * height), round(right * width), round(bottom * height))
        # Keep at least one pixel in each direction on tiny images.
        pixels = (pixels[0], pixels[1], max(pixels[2], pixels[0] + 1), max(pixels[3], pixels[1] + 1))
        out = img.crop(pixels)
        if flipped:
            out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return torch.from_numpy(to_array(out, self.spec))

    def __call__(self, imgs: Sequence[Image.Image], *, rng: random.Random) -> torch.Tensor:
        if not imgs:
            raise ValueError("TrainTransform needs at least one image")
        box, flipped = self.draw(rng)
        return torch.stack([self.apply(img, box, flipped) for img in imgs])

    def __repr__(self) -> str:
        options = f"min_area={self.min_area}, max_aspect={self.max_aspect}, flip={self.flip}"
        return f"TrainTransform({self.spec.to_json()}, {options})"
