"""Controllable photo edits: the RED-20k idea (controlled edits of real photos) reproduced procedurally.

Every edit is an :class:`Edit` registered by name in ``distill.registry.EDITS``: ``fn(img, strength,
rng) -> img`` on RGB PIL images with ``strength`` in [-1, 1] and the factor it moves (docs/model-format.md). Pillow
and NumPy only; deterministic given the ``rng`` (``apply`` derives one per step from its seed); about
1-10 ms per edit on a 512 px image on one core (``benchmarks/bench_edits.py``). Resizing sources to a
working size is the caller's job; spatial sizes scale with the image (see ``_base``).

=================  =============  ========  =====================================================
edit               factor         kind      strength
=================  =============  ========  =====================================================
exposure           exposure       signed    +-4 EV in linear light (+ brighter)
contrast           contrast       signed    + S-curve, - fade toward the mean
saturation         saturation     signed    + up to 2.5x chroma, - to greyscale
vibrance           saturation     signed    saturation weighted toward muted colours
white_balance      white_balance  signed    + warm, - cool cast
tint               white_balance  signed    + magenta, - green cast
defocus_blur       sharpness      degrade   Gaussian blur, radius up to 1.2% of the short side
motion_blur        sharpness      degrade   streak up to 3.5% of the short side, random angle
sharpen            sharpness      improve   unsharp mask; oversharpens when strong
noise              noise          degrade   luminance grain + chroma blotches
denoise            noise          improve   chroma blur + luminance median
jpeg               compression    degrade   quality 95 .. 7
haze               haze           degrade   airlight veil, denser toward the top
vignetting         vignetting     degrade   + dark corners, - washed-out corners
tilt               tilt           degrade   +-10 degrees, cropped
straighten         tilt           improve   undoes the recipe's own tilt (alone: no-op)
crop_cut           composition    degrade   tight crop cutting through the subject
off_balance        composition    degrade   crop pushing the subject into a corner
thirds_recrop      composition    improve   crop putting the subject on a thirds point
auto_levels        exposure       improve   black/white points + bounded mid-tone gamma
shadow_lift        exposure       improve   lifts shadows, keeps highlights
local_contrast     contrast       improve   wide-radius unsharp mask ("clarity")
=================  =============  ========  =====================================================

For ``degrade`` and ``improve`` edits ``|strength|`` is the amount and the sign only picks a mirror
variant (tilt direction, dark or light vignette, which side a crop cuts). Geometric edits return a
native-resolution crop with the input's aspect ratio (see ``geometry``). A recipe is a list of steps
``{"op": name, "strength": s}`` applied in order; :func:`random_recipe` draws the training mix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image

from distill.registry import EDITS

from . import detail, geometry, tone  # noqa: F401 - importing registers the edits
from ._base import KINDS, Edit, check_strength
from .recipes import random_recipe

__all__ = ["KINDS", "Edit", "apply", "parse_recipe", "random_recipe"]


def parse_recipe(recipe: Sequence[Mapping]) -> list[tuple[Edit, float]]:
    """Check a recipe and resolve its steps to ``(Edit, strength)``; unknown names get close matches."""
    steps = []
    for i, step in enumerate(recipe):
        if not isinstance(step, Mapping) or "op" not in step or "strength" not in step:
            raise ValueError(f"recipe step {i}: expected {{'op': name, 'strength': s}}, got {step!r}")
        edit = EDITS.get(step["op"])
        steps.append((edit, check_strength(step["strength"], edit.name)))
    return steps


def apply(img: Image.Image, recipe: Sequence[Mapping], *, seed: int) -> Image.Image:
    """Apply a recipe's steps in order. Step ``i`` draws from ``default_rng([seed, i])``, so the result
    depends only on the image, the recipe and ``seed`` (any int; taken modulo 2**64)."""
    steps = parse_recipe(recipe)
    out = img if img.mode == "RGB" else img.convert("RGB")
    net: dict[str, float] = {}  # op name -> net strength applied so far, for edits that undo it
    for i, (edit, strength) in enumerate(steps):
        rng = np.random.default_rng([int(seed) % 2**64, i])
        if edit.undoes and net.get(edit.undoes):
            undone = net[edit.undoes]
            out = EDITS.get(edit.undoes).fn(out, max(-1.0, min(1.0, -abs(strength) * undone)), rng)
            net[edit.undoes] = undone * (1.0 - abs(strength))
        else:
            out = edit.fn(out, strength, rng)
            net[edit.name] = net.get(edit.name, 0.0) + strength
    return out.copy() if out is img else out
