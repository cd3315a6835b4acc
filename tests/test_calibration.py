"""End-of-run pair calibration: the joint (temperature, lapse) fit and the ECE it is judged by."""

from __future__ import annotations

import numpy as np
import pytest

from distill.calibration import fit_pair_calibration, pair_calibration
from redaes_lite.metadata import preference_probability


def _pairs(t: float, lapse: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    d = rng.normal(0.0, 1.0, n)
    return d, (rng.random(n) < preference_probability(d, t, lapse)).astype(float)


@pytest.mark.parametrize(("t", "lapse"), [(0.3, 0.0), (0.2, 0.06), (0.5, 0.15)])
def test_fit_recovers_temperature_and_lapse(t: float, lapse: float) -> None:
    d, o = _pairs(t, lapse, 40_000, seed=int(100 * t + 1000 * lapse))
    t_fit, lapse_fit = fit_pair_calibration(d, o)
    assert t_fit == pytest.approx(t, rel=0.12)
    assert lapse_fit == pytest.approx(lapse, abs=0.015)


def test_lapse_fixes_what_one_temperature_cannot() -> None:
    """Pairs with 8% label noise: the temperature-only fit is timid in the middle and sure at the ends;
    with the lapse the probabilities the API reports are calibrated."""
    d, o = _pairs(0.15, 0.08, 20_000, seed=3)
    t_only = fit_pair_calibration(d, o, max_lapse=0.0)
    assert t_only[1] == 0.0
    both = fit_pair_calibration(d, o)
    ece_t = pair_calibration(d, o, temperature=t_only[0])["ece"]
    ece_both = pair_calibration(d, o, temperature=both[0], lapse=both[1])["ece"]
    assert ece_both < 0.02 < ece_t


def test_pair_calibration_reports_the_preferred_images_probability() -> None:
    d, o = np.array([2.0, -2.0, 0.5]), np.array([1.0, 0.0, 0.0])
    r = pair_calibration(d, o, temperature=1.0, lapse=0.2)
    assert r["n"] == 3 and r["accuracy"] == pytest.approx(2 / 3)
    assert pair_calibration(np.array([]), np.array([]), temperature=1.0)["n"] == 0


def test_reference_calibration_is_the_pool_percentile_with_each_kind_weighing_the_same() -> None:
    from distill.calibration import reference_calibration
    from redaes_lite.metadata import apply_calibration

    rng = np.random.default_rng(0)
    snaps, photos = rng.normal(0.0, 1.0, 2000), rng.normal(3.0, 0.5, 50)  # few, but a kind of its own
    cal = reference_calibration({"snaps": snaps, "photos": photos})
    assert cal["method"] == "reference-percentile" and np.all(np.diff(cal["utility"]) > 0)
    # Each kind counts half: the median of the pool lies between the kinds, near the snaps' top.
    assert 0.9 < np.interp(5.0, cal["score"], cal["utility"]) < 2.5
    s_photos, s_snaps = apply_calibration(cal, photos), apply_calibration(cal, snaps)
    for s in (s_photos, s_snaps):
        assert np.mean((s == 0) | (s == 10)) <= 0.02  # neither kind piles up at an end
    assert np.mean(s_snaps < 5) > 0.97 and np.mean(s_photos > 5) >= 0.95
    assert apply_calibration(cal, [-50.0])[0] == 0.0  # far below the pool: 0
