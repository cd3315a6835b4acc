"""The training distribution of edit recipes (1-3 steps).

Most recipes degrade a well-made photo: one to three edits drawn by ``DEGRADE_WEIGHTS``, strengths
uniform in amount over [0.08, 1] so that slight, clear and gross changes all occur, applied in camera
order (``Edit.stage``). Three kinds of improvement are mixed in:

- *fixes of the source*: when the photo's manifest tags name a fault (``TAG_FIXES``, e.g. brightening
  an ``underexposed`` photo), the first step corrects it with probability ``FIX_PROB``;
- *repairs*: with probability ``REPAIR_PROB`` a multi-step recipe ends by undoing one of its own
  degradations (``REPAIRS``, e.g. noise then denoise), so a group ranks a repaired image in between;
- improvement edits on well-made photos (small weights in ``DEGRADE_WEIGHTS``), which the oracle scores
  as slight losses: the photo was already right.

``rng`` may be a ``random.Random`` or a NumPy ``Generator``; only ``rng.random()`` is used.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from distill.registry import EDITS

__all__ = ["DEGRADE_WEIGHTS", "N_OPS_WEIGHTS", "REPAIRS", "TAG_FIXES", "random_recipe"]

Rng = random.Random | np.random.Generator

#: Relative frequency of each edit as a step of a degrading recipe.
DEGRADE_WEIGHTS: dict[str, float] = {
    "exposure": 1.2,
    "contrast": 1.0,
    "saturation": 0.8,
    "vibrance": 0.3,
    "white_balance": 0.8,
    "tint": 0.5,
    "defocus_blur": 1.0,
    "motion_blur": 0.6,
    "sharpen": 0.3,
    "noise": 1.0,
    "jpeg": 1.0,
    "haze": 0.7,
    "vignetting": 0.6,
    "tilt": 0.7,
    "crop_cut": 0.6,
    "off_balance": 0.5,
    "auto_levels": 0.1,
    "shadow_lift": 0.1,
    "local_contrast": 0.2,
    "denoise": 0.15,
    "thirds_recrop": 0.15,
}
#: Manifest tag -> (edit, sign, weight) steps that correct that fault.
TAG_FIXES: dict[str, tuple[tuple[str, float, float], ...]] = {
    "underexposed": (("exposure", 1.0, 3.0), ("shadow_lift", 1.0, 1.0), ("auto_levels", 1.0, 1.0)),
    "overexposed": (("exposure", -1.0, 3.0), ("auto_levels", 1.0, 1.0)),
    "unretouched": (("auto_levels", 1.0, 1.0), ("local_contrast", 1.0, 0.5), ("vibrance", 1.0, 0.5)),
}
#: Degrading edit -> the edit that repairs it (sign of the repair's strength is +).
REPAIRS: dict[str, str] = {
    "noise": "denoise",
    "defocus_blur": "sharpen",
    "motion_blur": "sharpen",
    "tilt": "straighten",
    "haze": "local_contrast",
}
N_OPS_WEIGHTS = {1: 0.55, 2: 0.3, 3: 0.15}
FIX_PROB = 0.6
REPAIR_PROB = 0.15
_MIN_AMOUNT = 0.08


def _choice(rng: Rng, weights: dict) -> object:
    """Weighted choice of a key, drawing one ``rng.random()``."""
    r = float(rng.random()) * sum(weights.values())
    for key, w in weights.items():
        r -= w
        if r < 0:
            return key
    return key


def _amount(rng: Rng, lo: float = _MIN_AMOUNT) -> float:
    return round(lo + (1.0 - lo) * float(rng.random()), 3)


def _degrade_step(rng: Rng, used: set[str]) -> dict:
    name = str(_choice(rng, {k: w for k, w in DEGRADE_WEIGHTS.items() if k not in used}))
    sign = 1.0 if EDITS.get(name).kind == "improve" or rng.random() < 0.5 else -1.0
    return {"op": name, "strength": sign * _amount(rng)}


def random_recipe(rng: Rng, *, n_ops: int | None = None, tags: Sequence[str] = ()) -> list[dict]:
    """Draw a recipe of ``n_ops`` steps (default: 1, 2 or 3 by ``N_OPS_WEIGHTS``) for a source photo
    with these manifest ``tags``; see the module docstring for the mix."""
    n = int(_choice(rng, N_OPS_WEIGHTS)) if n_ops is None else n_ops  # type: ignore[call-overload]
    if not 1 <= n <= 3:
        raise ValueError(f"n_ops must be 1, 2 or 3, got {n_ops}")
    fixes = {(op, sign): w for tag in tags for op, sign, w in TAG_FIXES.get(tag, ())}
    steps: list[dict] = []
    if fixes and rng.random() < FIX_PROB:
        op, sign = _choice(rng, fixes)  # type: ignore[misc]
        steps.append({"op": op, "strength": sign * _amount(rng, 0.25)})
    repair = n >= 2 and rng.random() < REPAIR_PROB
    while len(steps) < n - int(repair):
        steps.append(_degrade_step(rng, {s["op"] for s in steps}))
    steps.sort(key=lambda s: EDITS.get(s["op"]).stage)  # stable: a source fix stays before its peers
    if repair:
        used = {s["op"] for s in steps}
        fixable = [REPAIRS[op] for op in used if op in REPAIRS and REPAIRS[op] not in used]
        if fixable:  # the repair comes last, after everything it has to work through
            steps.append({"op": min(fixable), "strength": _amount(rng, 0.3)})
        else:
            steps.append(_degrade_step(rng, used))
            steps.sort(key=lambda s: EDITS.get(s["op"]).stage)
    return steps
