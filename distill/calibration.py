"""End-of-run calibration: the temperature of pairwise probabilities and the utility -> 0..10 display map.

Both are fitted on *validation* data only (sources the student never trained on) and stored in the final
checkpoint; export copies them into ``redaes.temperature``, ``redaes.lapse`` and ``redaes.calibration``
(``docs/model-format.md``).

- Temperature ``T`` and lapse: ``P(b better than a) = lapse / 2 + (1 - lapse) * sigmoid((u(b) - u(a)) / T)``,
  fitted jointly by maximum likelihood on validation pairs whose order is known: edit pairs (the oracle's
  sign) and BIQ2021 pairs with ``|dMOS|`` above a margin. Expected calibration error is reported per kind.
- Display score (:func:`reference_calibration`): a *percentile of a reference pool*. The pool joins
  validation images of several kinds, each kind weighing the same whatever its size (the default model:
  BIQ2021 phone and camera snaps, PARA web photos, the full-size validation photos): the utility at the
  pool's q-th weighted quantile maps to ``10 q``. A 9 means "better than 90% of the pool". Fitted on one
  kind (BIQ2021 alone), the map put a quarter of well-made full-size photos at exactly 10; a pool that
  spans the kinds keeps every kind off the ends. The runtime extends the end segments linearly and clamps
  to [0, 10], so images far below anything in the pool (black or noise frames) go to 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from redaes_lite.eval.metrics import expected_calibration_error
from redaes_lite.metadata import preference_probability

__all__ = ["fit_pair_calibration", "pair_calibration", "reference_calibration", "weighted_quantile"]

# Pool quantiles of the reference calibration's knots: close to the ends, so that the end segments (which
# the runtime extends) are set by the pool's tails, not by a few outliers.
_POOL_LEVELS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995)


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: Sequence[float] | np.ndarray) -> np.ndarray:
    """Quantiles of ``values`` under ``weights`` (the midpoint rule: each value sits at the centre of its weight)."""
    order = np.argsort(values, kind="stable")
    v, w = np.asarray(values, np.float64)[order], np.asarray(weights, np.float64)[order]
    cdf = (np.cumsum(w) - 0.5 * w) / w.sum()
    return np.interp(np.asarray(q, np.float64), cdf, v)


def reference_calibration(
    pool: dict[str, np.ndarray], *, levels: Sequence[float] = _POOL_LEVELS, what: str = "validation images"
) -> dict[str, Any]:
    """Utility -> 0..10 in the ``redaes.calibration`` format: the percentile of a reference pool.

    ``pool`` maps a kind of image to the utilities of its images; each kind weighs the same. ``what`` names
    the images in ``fitted_on``.
    """
    kinds = {k: np.asarray(u, np.float64).ravel() for k, u in pool.items() if len(u)}
    if not kinds or sum(len(u) for u in kinds.values()) < 2:
        raise ValueError("reference calibration needs >= 2 utilities")
    u = np.concatenate(list(kinds.values()))
    if not np.isfinite(u).all():
        raise ValueError("reference calibration inputs must be finite")
    w = np.concatenate([np.full(len(v), 1.0 / len(v)) for v in kinds.values()])
    q = np.asarray(levels, np.float64)
    u_knots = weighted_quantile(u, w, q)
    keep = np.r_[True, np.diff(u_knots) > 1e-9 * max(1.0, float(np.abs(u_knots).max()))]
    if keep.sum() < 2:
        raise ValueError("reference calibration: the utilities are constant; the model separates nothing")
    sizes = ", ".join(f"{k} {len(v)}" for k, v in kinds.items())
    return {
        "method": "reference-percentile",
        "utility": [round(float(x), 6) for x in u_knots[keep]],
        "score": [round(float(x), 4) for x in 10.0 * q[keep]],
        "fitted_on": f"percentile of a reference pool, each kind weighing the same ({sizes} {what})",
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
    # A tie prefers "a" (docs/model-format.md), so the preferred image is b only when delta > 0.
    correct = np.where(d > 0, o, 1.0 - o)
    return {
        "n": int(d.size),
        "ece": expected_calibration_error(prob, correct),
        "accuracy": float(correct.mean()),
    }
