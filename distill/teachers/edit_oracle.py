"""The edit oracle: a hand-written teacher that scores edit recipes, standing in for RED-20k.

RED-Aes learns from RED-20k, where people judged how much controlled edits changed a photo's
aesthetics. Those judgements are not public, so this oracle replaces them with an explicit model of the
same kind of knowledge. Its assumptions (all of them; the numbers live in the tables below):

1. **The source is the optimum.** A photo tagged ``well_made`` sits at the top of every factor's
   inverted U; any edit that moves a factor away from it loses utility. Manifest tags move the start
   (``TAG_STATES``): an ``underexposed`` photo starts 0.75 exposure units (3 EV) dark, which is the
   median brightening that gives the 77 underexposed photos the mean luminance of the well-made ones
   (0.91 units, rounded down: dark scenes are meant to stay darker). ``overexposed`` starts +0.45
   (measured the same way: 0.48); ``unretouched`` camera renderings start flat and dull. Improving
   edits are then real improvements.
2. **Latent states, in edit-strength units.** Each factor has one or two latent deviations (``STATES``):
   signed where the factor has a direction (exposure, contrast, saturation, temperature, tint,
   sharpness: blur < 0 < oversharpened, tilt), a severity >= 0 for defects (noise, compression, haze,
   vignetting, cut subject, unbalanced frame). Each edit moves states by rules in ``OP_EFFECTS``:
   ``add`` (``x += c s``), ``add_abs`` (``x += c |s|``), ``scale`` (``x *= 1 - c |s|``: a repair
   removes a fraction of a fault), ``lift``/``lower`` (move a deficit/excess toward 0 by ``c |s|``,
   never past it). Chained edits compose through the states: +0.5 then -0.5 exposure cancels, noise
   then denoise leaves 30% of the noise, two blurs add up. The repair coefficients were set from pixel
   statistics where one exists (``shadow_lift`` at 1 brightens underexposed photos like +0.48 exposure,
   ``auto_levels`` like +0.61 and overexposed ones like -0.12).
3. **Inverted U per state.** A state ``x`` costs ``w * rho(x / sigma)`` with the pseudo-Huber
   ``rho(t) = 2 (sqrt(1 + t^2) - 1)``: quadratic near the optimum (a change of a tenth of ``sigma``
   costs 1% of ``w``: small changes matter little), linear far from it (gross faults matter a lot,
   each further step as much as the last). ``sigma`` may differ by side (garish saturation is worse
   than muted). Factors add up: the total penalty ``P`` is their sum.
4. **Bounded utility.** ``U = -M (1 - exp(-P / M))`` with ``M = 8``: several gross faults do not add
   without limit (a ruined photo cannot get much worse). One clear fault (a 1 EV exposure error,
   JPEG quality ~50, a 5-degree tilt) costs about 0.5-1.5 units; strength-1 degradations cost 2-4.
   A pair's ``delta = U(b) - U(a)``; per-factor deltas are the factors' penalty changes times the same
   saturation slope, so they sum to ``delta``.
5. **Blind to content.** The oracle sees the recipe and the tags, never the pixels: the same recipe
   gets the same delta on every well-made photo, although a vignette hurts a snow scene more than a
   portrait. Monochrome sources ignore saturation edits (their pixels do not change).

Properties (tested): antisymmetric (``compare(a, b) == -compare(b, a)``), strictly monotone in the
strength of every degrading edit applied to a well-made photo, and positive for moderate fixes of
tagged faults. Units are the oracle's own; training configs scale them to utility units.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from distill.registry import TEACHERS
from distill.teachers.base import PairRequest
from redaes_lite.pairs import PairLabel, pair_id

__all__ = ["OP_EFFECTS", "SATURATION_M", "STATES", "TAG_GAINS", "TAG_STATES", "EditOracle", "State"]

Recipe = Sequence[Mapping]


@dataclass(frozen=True)
class State:
    """A latent deviation from the optimum: the factor it belongs to, its scales below/above the
    optimum (strength units) and its weight (oracle units)."""

    factor: str
    sigma_neg: float
    sigma_pos: float
    weight: float


STATES: dict[str, State] = {
    "exposure": State("exposure", 0.22, 0.19, 0.8),  # strength 1 = 4 EV; sigma ~ 0.8-0.9 EV
    "contrast": State("contrast", 0.45, 0.4, 0.6),
    "saturation": State("saturation", 0.6, 0.35, 0.6),
    "temperature": State("white_balance", 0.35, 0.35, 0.6),
    "tint": State("white_balance", 0.3, 0.3, 0.6),
    "sharpness": State("sharpness", 0.3, 0.45, 0.8),
    "noise": State("noise", 0.3, 0.3, 0.7),
    "compression": State("compression", 0.45, 0.45, 1.0),
    "haze": State("haze", 0.35, 0.35, 0.7),
    "vignetting": State("vignetting", 0.5, 0.5, 0.6),
    "tilt": State("tilt", 0.2, 0.2, 0.4),  # strength 1 = 10 degrees
    "cut": State("composition", 0.35, 0.35, 0.8),
    "balance": State("composition", 0.4, 0.4, 0.6),
}
#: Edit name -> ordered (state, rule, coefficient) effects; see assumption 2.
OP_EFFECTS: dict[str, tuple[tuple[str, str, float], ...]] = {
    "exposure": (("exposure", "add", 1.0),),
    "contrast": (("contrast", "add", 1.0),),
    "saturation": (("saturation", "add", 1.0),),
    "vibrance": (("saturation", "add", 0.6),),
    "white_balance": (("temperature", "add", 1.0),),
    "tint": (("tint", "add", 1.0),),
    "defocus_blur": (("sharpness", "add_abs", -1.0),),
    "motion_blur": (("sharpness", "add_abs", -1.0),),
    "sharpen": (("sharpness", "add_abs", 0.4),),
    "noise": (("noise", "add_abs", 1.0),),
    "denoise": (("noise", "scale", 0.7), ("sharpness", "add_abs", -0.15)),
    "jpeg": (("compression", "add_abs", 1.0),),
    "haze": (("haze", "add_abs", 1.0),),
    "vignetting": (("vignetting", "add_abs", 1.0),),
    "tilt": (("tilt", "add", 1.0),),
    "straighten": (("tilt", "scale", 1.0),),
    "crop_cut": (("cut", "add_abs", 1.0),),
    "off_balance": (("balance", "add_abs", 1.0),),
    "thirds_recrop": (("balance", "scale", 0.5), ("balance", "add_abs", 0.15)),
    "auto_levels": (
        ("exposure", "lift", 0.6),
        ("exposure", "lower", 0.12),
        ("contrast", "lift", 0.5),
        ("haze", "scale", 0.5),
    ),
    "shadow_lift": (("exposure", "lift", 0.48), ("contrast", "add_abs", -0.25)),
    "local_contrast": (("haze", "scale", 0.4), ("contrast", "add_abs", 0.2), ("sharpness", "add_abs", 0.1)),
}
#: Manifest tag -> starting states of the source photo (assumption 1).
TAG_STATES: dict[str, dict[str, float]] = {
    "underexposed": {"exposure": -0.75},
    "overexposed": {"exposure": 0.45},
    "unretouched": {"contrast": -0.2, "saturation": -0.2},
}
#: Manifest tag -> multipliers on the effects that reach a state (assumption 5).
TAG_GAINS: dict[str, dict[str, float]] = {"monochrome": {"saturation": 0.0}}
#: Utility bound M of assumption 4.
SATURATION_M = 8.0


def _rho(t: float) -> float:
    return 2.0 * (math.sqrt(1.0 + t * t) - 1.0)


def _step(x: float, rule: str, c: float, s: float) -> float:
    a = abs(s)
    if rule == "add":
        return x + c * s
    if rule == "add_abs":
        return x + c * a
    if rule == "scale":
        return x * (1.0 - c * a)
    if rule == "lift":
        return min(0.0, x + c * a) if x < 0 else x
    if rule == "lower":
        return max(0.0, x - c * a) if x > 0 else x
    raise ValueError(f"edit oracle: unknown rule {rule!r}")


@TEACHERS.register("edit-oracle")
class EditOracle:
    """Teacher for edit pairs (``source: "edit"``): see the module docstring for the model."""

    id = "edit-oracle@1"

    def states(self, recipe: Recipe, *, tags: Sequence[str] = ()) -> dict[str, float]:
        """Latent states of a source with these ``tags`` after ``recipe``."""
        x = {name: 0.0 for name in STATES}
        gains = {name: 1.0 for name in STATES}
        for tag in tags:
            for name, v in TAG_STATES.get(tag, {}).items():
                x[name] += v
            for name, g in TAG_GAINS.get(tag, {}).items():
                gains[name] *= g
        for i, step in enumerate(recipe):
            op, s = step.get("op"), float(step.get("strength", math.nan))
            if op not in OP_EFFECTS:
                raise KeyError(f"edit oracle: recipe step {i} has unknown op {op!r}")
            if not -1.0 <= s <= 1.0:
                raise ValueError(f"edit oracle: recipe step {i} ({op}) strength must be in [-1, 1], got {s}")
            for name, rule, c in OP_EFFECTS[op]:
                x[name] = _step(x[name], rule, c * gains[name], s)
        return x

    def penalties(self, recipe: Recipe, *, tags: Sequence[str] = ()) -> dict[str, float]:
        """Per-factor penalty (>= 0) after ``recipe``; factors without a state are absent."""
        out: dict[str, float] = {}
        for name, x in self.states(recipe, tags=tags).items():
            st = STATES[name]
            out[st.factor] = out.get(st.factor, 0.0) + st.weight * _rho(x / (st.sigma_neg if x < 0 else st.sigma_pos))
        return out

    def utility(self, recipe: Recipe, *, tags: Sequence[str] = ()) -> float:
        """Bounded utility ``U`` (<= 0; 0 is the well-made optimum) of the source after ``recipe``."""
        return -SATURATION_M * (1.0 - math.exp(-sum(self.penalties(recipe, tags=tags).values()) / SATURATION_M))

    def compare(
        self, recipe_a: Recipe, recipe_b: Recipe, *, tags: Sequence[str] = ()
    ) -> tuple[float, dict[str, float]]:
        """``(U(b) - U(a), per-factor deltas)`` for two edits ``a`` and ``b`` of one source photo."""
        pa, pb = self.penalties(recipe_a, tags=tags), self.penalties(recipe_b, tags=tags)
        ta, tb = sum(pa.values()), sum(pb.values())
        ea, eb = math.exp(-ta / SATURATION_M), math.exp(-tb / SATURATION_M)
        delta = SATURATION_M * (eb - ea)
        # Saturation slope dU/d(-P) between the two penalties; its limit when they are equal.
        slope = delta / (ta - tb) if abs(ta - tb) > 1e-12 else (ea + eb) / 2
        factors = {f: slope * (pa[f] - pb[f]) for f in pa if abs(pa[f] - pb[f]) > 1e-12}
        return delta, factors

    def judge(self, recipe: Recipe, *, tags: Sequence[str] = ()) -> tuple[float, dict[str, float]]:
        """``(delta, per-factor deltas)`` for ``b = recipe(a)``, ``a`` the untouched source."""
        return self.compare((), recipe, tags=tags)

    def label(self, requests: Iterable[PairRequest]) -> Iterator[PairLabel]:
        """One record per request: ``recipe`` made ``b`` from ``a``; a request without a usable recipe
        gives ``status="failed"``."""
        for req in requests:
            recipe = [dict(step) for step in req.recipe or ()]
            key = pair_id(req.a, req.b, self.id, json.dumps([recipe, sorted(req.tags)], sort_keys=True))
            base = {"id": key, "a": req.a, "b": req.b, "source": "edit", "teacher": self.id, "group": req.group}
            try:
                if not recipe:
                    raise ValueError("edit oracle: request has no recipe")
                delta, factors = self.judge(recipe, tags=req.tags)
            except (KeyError, ValueError, TypeError) as e:
                yield PairLabel(**base, delta=None, status="failed", error=str(e), recipe=recipe or None)
                continue
            yield PairLabel(**base, delta=delta, factors=factors, recipe=recipe)
