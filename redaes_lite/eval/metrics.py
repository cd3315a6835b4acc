"""Agreement between predicted utilities and human labels, in numpy only (the runtime stays light).

Every function takes two 1-D sequences of the same length (``pred`` first, ``label`` second where the
order matters), raises ``ValueError`` on a length mismatch or a non-finite value, and returns ``nan``
where the statistic is undefined (fewer than two items, or a constant input), as ``scipy.stats`` does.

- :func:`srcc` Spearman, :func:`plcc` raw Pearson, :func:`plcc_logistic` Pearson after the standard
  4-parameter logistic fit (VQEG), :func:`krcc` Kendall tau-b with ties;
- :func:`pair_accuracy`: share of label-differing pairs whose prediction orders them the same way;
- :func:`expected_calibration_error` of pairwise probabilities;
- :func:`score_metrics`: the dictionary ``redaes-lite eval scores`` reports.

Pair counts use an O(n log n) merge count of discordant pairs (as ``scipy.stats.kendalltau`` does), so
hundreds of thousands of items are fast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "expected_calibration_error",
    "krcc",
    "logistic_fit",
    "pair_accuracy",
    "plcc",
    "plcc_logistic",
    "score_metrics",
    "srcc",
]

ArrayLike = Sequence[float] | np.ndarray


def _pair(x: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert two inputs to float64 vectors of equal length."""
    a = np.asarray(x, dtype=np.float64).ravel()
    b = np.asarray(y, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"metric inputs differ in length: {a.size} vs {b.size}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("metric inputs must be finite (found nan or inf)")
    return a, b


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 2:
        return math.nan
    da, db = a - a.mean(), b - b.mean()
    denom = math.sqrt(float(da @ da) * float(db @ db))
    if denom == 0.0:
        return math.nan
    # Clip away rounding just beyond +-1.
    return float(min(1.0, max(-1.0, float(da @ db) / denom)))


def _rankdata(a: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties given their average rank (``scipy.stats.rankdata(method="average")``)."""
    order = np.argsort(a, kind="mergesort")
    s = a[order]
    new = np.r_[True, s[1:] != s[:-1]]
    dense = np.cumsum(new) - 1
    bounds = np.r_[np.flatnonzero(new), a.size]
    avg = (bounds[:-1] + bounds[1:] + 1) / 2.0  # mean of 1-based ranks start+1 .. end
    ranks = np.empty(a.size, dtype=np.float64)
    ranks[order] = avg[dense]
    return ranks


def plcc(pred: ArrayLike, label: ArrayLike) -> float:
    """Raw Pearson linear correlation coefficient."""
    return _pearson(*_pair(pred, label))


def srcc(pred: ArrayLike, label: ArrayLike) -> float:
    """Spearman rank correlation coefficient (Pearson of average ranks)."""
    a, b = _pair(pred, label)
    return _pearson(_rankdata(a), _rankdata(b))


# ---------------------------------------------------------------------------------------------- logistic


class LogisticFit(NamedTuple):
    """``f(x) = b2 + (b1 - b2) / (1 + exp(-(x - b3) / b4))`` in the caller's units of x."""

    b1: float
    b2: float
    b3: float
    b4: float

    def __call__(self, x: ArrayLike) -> np.ndarray:
        z = (np.asarray(x, dtype=np.float64) - self.b3) / self.b4
        return self.b2 + (self.b1 - self.b2) * _sigmoid(z)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free


def _residual_jacobian(p: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    b1, b2, b3, b4 = p
    s = _sigmoid((x - b3) / b4)
    r = y - (b2 + (b1 - b2) * s)
    ds = (b1 - b2) * s * (1.0 - s)
    jac = np.stack([s, 1.0 - s, -ds / b4, -ds * (x - b3) / (b4 * b4)], axis=1)
    return r, jac


def logistic_fit(pred: ArrayLike, label: ArrayLike, *, max_iter: int = 200) -> LogisticFit:
    """Least-squares fit of the 4-parameter logistic mapping ``pred`` to ``label``.

    Levenberg-Marquardt on standardised ``pred``, started the way IQA papers (and pyiqa) start it:
    ``b1 = max(label)``, ``b2 = min(label)``, ``b3`` = the mean, slope one standard deviation, with the
    plateaus swapped when the raw correlation is negative. Needs at least two distinct ``pred`` values.
    """
    x, y = _pair(pred, label)
    mu, sd = float(x.mean()), float(x.std()) if x.size else 0.0
    if x.size < 2 or sd == 0.0:
        raise ValueError("logistic fit needs at least two distinct predictions")
    xs = (x - mu) / sd
    hi, lo = float(y.max()), float(y.min())
    if float((xs * (y - y.mean())).sum()) < 0:
        hi, lo = lo, hi
    p = np.array([hi, lo, 0.0, 1.0])
    r, jac = _residual_jacobian(p, xs, y)
    sse, lam = float(r @ r), 1e-3
    for _ in range(max_iter):
        jtj, g = jac.T @ jac, jac.T @ r
        try:
            step = np.linalg.solve(jtj + lam * np.diag(np.diag(jtj) + 1e-12), g)
        except np.linalg.LinAlgError:
            lam *= 10.0
            continue
        cand = p + step
        if abs(cand[3]) < 1e-9 or not np.isfinite(cand).all():
            lam *= 10.0
            continue
        r_new, jac_new = _residual_jacobian(cand, xs, y)
        sse_new = float(r_new @ r_new)
        if sse_new <= sse:
            done = sse - sse_new <= 1e-12 * max(sse, 1e-300) and float(np.abs(step).max()) < 1e-10
            p, r, jac, sse, lam = cand, r_new, jac_new, sse_new, max(lam / 3.0, 1e-12)
            if done or sse == 0.0:
                break
        else:
            lam *= 2.0
            if lam > 1e12:
                break
    b1, b2, b3, b4 = (float(v) for v in p)
    return LogisticFit(b1, b2, mu + sd * b3, sd * b4)


def plcc_logistic(pred: ArrayLike, label: ArrayLike) -> float:
    """Pearson correlation between ``label`` and the 4-parameter logistic fit of ``pred`` to it."""
    x, y = _pair(pred, label)
    if x.size < 2 or x.std() == 0.0 or y.std() == 0.0:
        return math.nan
    # At the least-squares optimum Pearson(fit, y) = sqrt(1 - SSE / SST), and a straight line is the
    # limit of wide logistics, so the optimum is never below |raw|: where the fit stops short of that
    # limit (e.g. evenly spaced, nearly linear data), |raw| is the better estimate of the optimum.
    fitted = _pearson(logistic_fit(x, y)(x), y)
    raw = abs(_pearson(x, y))
    return raw if math.isnan(fitted) else max(fitted, raw)


# ---------------------------------------------------------------------------------------------- pair counts


class _PairCounts(NamedTuple):
    total: int  # n (n - 1) / 2
    ties_x: int  # pairs tied in x (including joint ties)
    ties_y: int  # pairs tied in y (including joint ties)
    ties_xy: int  # pairs tied in both
    discordant: int  # pairs ordered oppositely by x and y (neither tied)

    @property
    def concordant(self) -> int:
        return self.total - self.ties_x - self.ties_y + self.ties_xy - self.discordant


def _tied_pairs(sorted_keys_change: np.ndarray, n: int) -> int:
    """Pairs within runs of equal keys, given the run-start mask of the sorted sequence."""
    counts = np.diff(np.r_[np.flatnonzero(sorted_keys_change), n]).astype(np.int64)
    return int((counts * (counts - 1) // 2).sum())


def _inversions(v: np.ndarray) -> int:
    """Strict inversions (i < j, v[i] > v[j]) of non-negative integer ranks, by bottom-up merge counting.

    Each level merges adjacent runs of width w for the whole array at once: left runs, keyed by
    ``(pair index, value)``, form one sorted array, so every right element's count of larger left
    elements in its own pair is a difference of two ``searchsorted`` calls.
    """
    n = v.size
    m = int(v.max()) + 1 if n else 1
    cur = v.astype(np.int64)
    pos = np.arange(n, dtype=np.int64)
    total, w = 0, 1
    while w < n:
        run = pos // w
        pair = run // 2
        keys = pair * m + cur
        left = (run % 2) == 0
        lkeys = keys[left]
        rpair, rkeys = pair[~left], keys[~left]
        total += int((np.searchsorted(lkeys, (rpair + 1) * m, "left") - np.searchsorted(lkeys, rkeys, "right")).sum())
        cur = np.sort(keys) - pair * m  # each pair occupies the same positions before and after sorting
        w *= 2
    return total


def _pair_counts(x: np.ndarray, y: np.ndarray) -> _PairCounts:
    n = x.size
    order = np.lexsort((y, x))  # by x, then y: pairs tied in x can never count as inversions
    xs, ys = x[order], y[order]
    x_new = np.r_[True, xs[1:] != xs[:-1]]
    xy_new = x_new | np.r_[True, ys[1:] != ys[:-1]]
    y_sorted = np.sort(y)
    y_new = np.r_[True, y_sorted[1:] != y_sorted[:-1]]
    y_rank = np.searchsorted(y_sorted[y_new], ys)  # dense integer ranks of y in x order
    return _PairCounts(
        total=n * (n - 1) // 2,
        ties_x=_tied_pairs(x_new, n),
        ties_y=_tied_pairs(y_new, n),
        ties_xy=_tied_pairs(xy_new, n),
        discordant=_inversions(y_rank),
    )


def krcc(pred: ArrayLike, label: ArrayLike) -> float:
    """Kendall rank correlation, tau-b (ties in either input adjust the denominator)."""
    a, b = _pair(pred, label)
    c = _pair_counts(a, b)
    denom = math.sqrt(float(c.total - c.ties_x) * float(c.total - c.ties_y))
    if denom == 0.0:
        return math.nan
    return float(min(1.0, max(-1.0, (c.concordant - c.discordant) / denom)))


def pair_accuracy(pred: ArrayLike, label: ArrayLike) -> float:
    """Share of pairs with different labels that ``pred`` orders the same way; a tie in ``pred`` counts half."""
    a, b = _pair(pred, label)
    c = _pair_counts(a, b)
    differing = c.total - c.ties_y
    if differing == 0:
        return math.nan
    pred_tied_only = c.ties_x - c.ties_xy
    return (c.concordant + 0.5 * pred_tied_only) / differing


def expected_calibration_error(probs: ArrayLike, outcomes: ArrayLike, *, n_bins: int = 15) -> float:
    """ECE: count-weighted mean of ``|accuracy - confidence|`` over ``n_bins`` equal-width bins of ``probs``.

    ``probs`` are predicted probabilities that the event happens (e.g. "the preferred image is the better
    one") and ``outcomes`` are 1 / 0 (or bool) for whether it did. Bins are ``(k/n, (k+1)/n]``, with 0 in
    the first.
    """
    p, o = _pair(probs, outcomes)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if p.size and (p.min() < 0.0 or p.max() > 1.0):
        raise ValueError(f"probabilities must lie in [0, 1], got {p.min():.4g}..{p.max():.4g}")
    if p.size == 0:
        return math.nan
    idx = np.clip(np.ceil(p * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    # sum over bins of (n_b / N) |mean outcome - mean prob| = sum |sum outcome - sum prob| / N
    gap = np.abs(np.bincount(idx, weights=o, minlength=n_bins) - np.bincount(idx, weights=p, minlength=n_bins))
    return float(gap.sum() / p.size)


def score_metrics(pred: ArrayLike, label: ArrayLike) -> dict[str, Any]:
    """The figures of ``redaes-lite eval scores``: n, srcc, plcc (logistic), plcc_raw, krcc, pair_accuracy."""
    a, b = _pair(pred, label)
    return {
        "n": int(a.size),
        "srcc": srcc(a, b),
        "plcc": plcc_logistic(a, b),
        "plcc_raw": plcc(a, b),
        "krcc": krcc(a, b),
        "pair_accuracy": pair_accuracy(a, b),
    }
