"""End-of-run calibration: the temperature of pairwise probabilities and the utility -> 0..10 display map.

Both are fitted on *validation* data only (sources the student never trained on) and stored in the final
checkpoint; export copies them into ``redaes.temperature``, ``redaes.lapse`` and ``redaes.calibration``
(``DESIGN.md``).

- Temperature ``T`` and lapse: ``P(b better than a) = lapse / 2 + (1 - lapse) * sigmoid((u(b) - u(a)) / T)``,
  fitted jointly by maximum likelihood on validation pairs whose order is known: edit pairs (the oracle's
  sign) and BIQ2021 pairs with ``|dMOS|`` above a margin. Expected calibration error is reported per kind.
- Display score: *quantile matching*. The k-th quantile of the validation utilities is mapped to the k-th
  quantile of the validation MOS rescaled to 0..10, so the display scores of validation images follow the
  human score distribution. Both knot lists are sorted, hence the map is monotone by construction; it
  keeps the spread of scores, where a regression of MOS on utility would shrink it towards the mean.
  The runtime extends the end segments linearly and clamps to [0, 10], so images far below anything in
  validation (black or noise frames) go to 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from redaes_lite.eval.metrics import expected_calibration_error
from redaes_lite.metadata import preference_probability

__all__ = ["display_calibration", "fit_pair_calibration", "pair_calibration"]

# Quantile levels of the knots: dense at the tails, where a display score is read most critically,
# and not at 0 / 1 exactly so one outlier cannot set the slope of an end segment.
_LEVELS = (0.01, 0.03, 0.07, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85, 0.93, 0.97, 0.99)


def display_calibration(
    utility: Sequence[float] | np.ndarray,
    mos: Sequence[float] | np.ndarray,
    *,
    mos_range: tuple[float, float],
    fitted_on: str,
    levels: Sequence[float] = _LEVELS,
) -> dict[str, Any]:
    """Monotone piecewise-linear map utility -> 0..10 in the ``redaes.calibration`` format.

    ``mos`` are human scores in ``mos_range`` (rescaled linearly to 0..10); ``utility`` are the model's
    utilities of validation images (need not be the same images, only the same kind of data).
    """
    u = np.asarray(utility, np.float64).ravel()
    m = np.asarray(mos, np.float64).ravel()
    lo, hi = mos_range
    if u.size < 2 or m.size < 2:
        raise ValueError(f"display calibration needs >= 2 utilities and MOS values, got {u.size} and {m.size}")
    if not (np.isfinite(u).all() and np.isfinite(m).all()):
        raise ValueError("display calibration inputs must be finite")
    if hi <= lo:
        raise ValueError(f"mos_range must be (low, high) with low < high, got {mos_range}")
    q = np.asarray(levels, np.float64)
    u_knots = np.quantile(u, q)
    s_knots = np.clip(10.0 * (np.quantile(m, q) - lo) / (hi - lo), 0.0, 10.0)
    # Utility knots must be strictly ascending: drop repeats (a constant stretch of utilities).
    keep = np.r_[True, np.diff(u_knots) > 1e-9 * max(1.0, float(np.abs(u_knots).max()))]
    u_knots, s_knots = u_knots[keep], s_knots[keep]
    if u_knots.size < 2:
        raise ValueError("display calibration: the utilities are constant; the model separates nothing")
    return {
        "method": "quantile-matching",
        "utility": [round(float(x), 6) for x in u_knots],
        "score": [round(float(x), 4) for x in np.maximum.accumulate(s_knots)],
        "fitted_on": fitted_on,
    }


def fit_pair_calibration(
    deltas: np.ndarray, outcomes: np.ndarray, *, weights: np.ndarray | None = None, max_lapse: float = 0.2
) -> tuple[float, float]:
    """Maximum-likelihood ``(T, lapse)`` for ``P(b > a) = lapse / 2 + (1 - lapse) * sigmoid(delta / T)``.

    Profile likelihood: for each lapse on a grid of steps of 0.005 up to ``max_lapse``, the best ``T`` (at lapse 0
    the exact convex fit of ``distill.losses.fit_temperature``, otherwise a golden-section search on log T);
    the pair with the lowest NLL wins. Without a lapse one large-margin pair that goes the other way pulls T
    up for every pair, leaving mid-range probabilities too timid (measured on the edit validation pairs).
    """
    from distill.losses import fit_temperature, pair_nll

    d, o = np.asarray(deltas, np.float64), np.asarray(outcomes, np.float64)
    t0 = float(fit_temperature(d, o, weights=weights))
    best = (pair_nll(d, o, t0, weights=weights), t0, 0.0)
    g = (math.sqrt(5.0) - 1.0) / 2.0
    for lapse in np.arange(1, int(round(max_lapse / 0.005)) + 1) * 0.005:

        def nll(log_t: float, lapse: float = float(lapse)) -> float:
            return pair_nll(d, o, math.exp(log_t), weights=weights, lapse=lapse)

        # Golden section on log T: the bracket shrinks by g a step (60 steps ~ 1e-11 of it), and one of the two
        # inner points is the last step's, so each step costs one NLL evaluation.
        lo, hi = math.log(1e-3), math.log(1e3)
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
        fa, fb = nll(a), nll(b)
        for _ in range(60):
            if fa < fb:
                hi, b, fb = b, a, fa
                a = hi - g * (hi - lo)
                fa = nll(a)
            else:
                lo, a, fa = a, b, fb
                b = lo + g * (hi - lo)
                fb = nll(b)
        t = math.exp(0.5 * (lo + hi))
        best = min(best, (pair_nll(d, o, t, weights=weights, lapse=lapse), t, float(lapse)))
    return best[1], best[2]


def pair_calibration(
    deltas: np.ndarray, outcomes: np.ndarray, *, temperature: float, lapse: float = 0.0
) -> dict[str, float]:
    """ECE and accuracy of the API's ``probability`` (``preference_probability(|delta|)``) for the preferred image.

    ``deltas`` are predicted ``u(b) - u(a)``; ``outcomes`` 1 where b is truly better, 0 where a is.
    """
    d = np.asarray(deltas, np.float64).ravel()
    o = np.asarray(outcomes, np.float64).ravel()
    if d.size == 0:
        return {"n": 0, "ece": float("nan"), "accuracy": float("nan")}
    prob = preference_probability(np.abs(d), temperature, lapse)
    # A tie prefers "a" (DESIGN.md), so the preferred image is b only when delta > 0.
    correct = np.where(d > 0, o, 1.0 - o)
    return {
        "n": int(d.size),
        "ece": expected_calibration_error(prob, correct),
        "accuracy": float(correct.mean()),
    }
