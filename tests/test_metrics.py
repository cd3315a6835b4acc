"""redaes_lite.eval.metrics against scipy.stats (scipy is a dev dependency only)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize, stats

from redaes_lite.eval import metrics as m


def _samples(seed: int, n: int, *, ties: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    label = rng.normal(size=n)
    pred = 0.6 * label + rng.normal(scale=0.8, size=n)
    if ties:  # coarse labels (like MOS bins) and coarse predictions
        label, pred = np.round(label * 2) / 2, np.round(pred * 3) / 3
    return pred, label


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ties", [False, True])
def test_correlations_match_scipy(seed: int, ties: bool) -> None:
    pred, label = _samples(seed, 50 + 37 * seed, ties=ties)
    assert m.srcc(pred, label) == pytest.approx(stats.spearmanr(pred, label)[0], abs=1e-12)
    assert m.plcc(pred, label) == pytest.approx(stats.pearsonr(pred, label)[0], abs=1e-12)
    assert m.krcc(pred, label) == pytest.approx(stats.kendalltau(pred, label, variant="b")[0], abs=1e-12)


def _pair_accuracy_bruteforce(pred: np.ndarray, label: np.ndarray) -> float:
    dp = np.sign(pred[:, None] - pred[None, :])
    dl = np.sign(label[:, None] - label[None, :])
    mask = np.triu(dl != 0, 1)
    score = np.where(dp == dl, 1.0, np.where(dp == 0, 0.5, 0.0))
    return float(score[mask].mean())


@pytest.mark.parametrize("seed", range(4))
def test_pair_accuracy_matches_bruteforce_with_ties(seed: int) -> None:
    pred, label = _samples(seed, 120, ties=True)
    assert m.pair_accuracy(pred, label) == pytest.approx(_pair_accuracy_bruteforce(pred, label), abs=1e-12)


def test_pair_accuracy_extremes() -> None:
    label = np.arange(10.0)
    assert m.pair_accuracy(label * 3, label) == 1.0
    assert m.pair_accuracy(-label, label) == 0.0
    assert m.pair_accuracy(np.zeros(10), label) == 0.5  # a constant predictor is a coin toss


def _logistic(x, b1, b2, b3, b4):  # the textbook form, |b4| as in pyiqa
    return b2 + (b1 - b2) / (1 + np.exp(-(x - b3) / np.abs(b4)))


@pytest.mark.parametrize("seed", range(5))
def test_plcc_logistic_matches_scipy_curve_fit(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=300) * 2 + 1
    y = _logistic(x, 8.0, 2.0, 1.5, 0.7) + rng.normal(scale=0.6, size=x.size)
    p0 = [y.max(), y.min(), x.mean(), x.std()]
    popt, _ = optimize.curve_fit(_logistic, x, y, p0=p0, maxfev=20000)
    want = stats.pearsonr(_logistic(x, *popt), y)[0]
    assert m.plcc_logistic(x, y) == pytest.approx(want, abs=1e-6)
    # The fit recovers the curve: residuals as small as scipy's.
    fit = m.logistic_fit(x, y)
    assert np.sum((fit(x) - y) ** 2) <= np.sum((_logistic(x, *popt) - y) ** 2) * (1 + 1e-6)


def test_plcc_logistic_handles_decreasing_and_linear_relations() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    y = -3 * x + rng.normal(scale=0.5, size=x.size)
    # Decreasing relation: the fitted logistic decreases too, so its correlation with y is positive.
    assert m.plcc_logistic(x, y) >= abs(m.plcc(x, y)) - 1e-9
    assert m.plcc_logistic(x, 2 * x + 1) == pytest.approx(1.0, abs=1e-6)


def test_undefined_cases_give_nan_and_bad_input_raises() -> None:
    assert math.isnan(m.srcc([1.0], [2.0]))
    assert math.isnan(m.plcc([1, 1, 1], [1, 2, 3]))
    assert math.isnan(m.plcc_logistic([1, 1, 1], [1, 2, 3]))
    assert math.isnan(m.krcc([1, 2, 3], [5, 5, 5]))
    assert math.isnan(m.pair_accuracy([1, 2, 3], [5, 5, 5]))
    with pytest.raises(ValueError, match="length"):
        m.srcc([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="finite"):
        m.krcc([1, float("nan")], [1, 2])


def test_expected_calibration_error() -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(0.5, 1.0, size=200_000)
    calibrated = rng.uniform(size=p.size) < p
    assert m.expected_calibration_error(p, calibrated) < 0.01
    # Always saying 0.9 for a coin toss is off by 0.4.
    assert m.expected_calibration_error(np.full(1000, 0.9), np.arange(1000) % 2) == pytest.approx(0.4)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        m.expected_calibration_error([1.2], [1])


def test_score_metrics_keys_on_a_large_input() -> None:
    # 50k items: an O(n^2) pair count would not finish in a test run; the merge count takes well under a second.
    pred, label = _samples(7, 50_000, ties=True)
    out = m.score_metrics(pred, label)
    assert list(out) == ["n", "srcc", "plcc", "plcc_raw", "krcc", "pair_accuracy"]
    assert out["n"] == pred.size
    assert out["krcc"] == pytest.approx(stats.kendalltau(pred, label)[0], abs=1e-9)
    assert out["pair_accuracy"] == pytest.approx((1 + out["krcc"]) / 2, abs=0.05)
