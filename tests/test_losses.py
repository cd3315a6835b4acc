"""Relative losses: gradient signs, zero for a perfect student, masking, shift invariance, temperature fit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from distill.losses import FactorLoss, RankingLoss, RelativeLoss, TemperatureLoss, fit_temperature, pair_nll
from distill.registry import LOSSES

# Every group loss, built so that its gradient reaches the student's predictions.
GROUP_LOSSES = {
    "relative": lambda: RelativeLoss(),
    "ranking-fidelity": lambda: RankingLoss(kind="fidelity"),
    "ranking-logistic": lambda: RankingLoss(kind="logistic"),
    "ranking-soft": lambda: RankingLoss(soft=True),
    "temperature": lambda: TemperatureLoss(detach_pred=False),
}


def test_losses_are_registered_by_name() -> None:
    assert {"relative", "ranking", "factor", "temperature"} <= set(LOSSES.names())
    assert LOSSES.get("relative") is RelativeLoss


@pytest.mark.parametrize("name", sorted(GROUP_LOSSES))
def test_gradient_pushes_the_better_image_up(name: str) -> None:
    # Teacher: image 1 better than image 0; the student has them equal.
    pred = torch.zeros(1, 2, requires_grad=True)
    out = GROUP_LOSSES[name]()(pred, torch.tensor([[0.0, 1.0]]))
    out["loss"].backward()
    assert pred.grad[0, 1] < 0 < pred.grad[0, 0]  # descent raises u_1, lowers u_0


OVERSHOOT_LOSSES = {
    "relative": lambda: RelativeLoss(),
    "ranking-fidelity-soft": lambda: RankingLoss(soft=True),
    "ranking-logistic-soft": lambda: RankingLoss(kind="logistic", soft=True),
    "temperature-soft": lambda: TemperatureLoss(soft=True, detach_pred=False),
}


@pytest.mark.parametrize("name", sorted(OVERSHOOT_LOSSES))
def test_gradient_pulls_back_an_overshoot(name: str) -> None:
    # Right order but a far too large gap: terms that match the teacher's difference shrink it.
    pred = torch.tensor([[0.0, 5.0]], requires_grad=True)
    OVERSHOOT_LOSSES[name]()(pred, torch.tensor([[0.0, 1.0]]))["loss"].backward()
    assert pred.grad[0, 1] > 0 > pred.grad[0, 0]


def test_ranking_orders_a_wrongly_ordered_group() -> None:
    pred = torch.tensor([[2.0, 1.0, 0.0]], requires_grad=True)
    out = RankingLoss()(pred, torch.tensor([[0.0, 1.0, 2.0]]))
    out["loss"].backward()
    assert out["accuracy"] == 0
    assert pred.grad[0, 0] > 0 > pred.grad[0, 2]


def test_perfect_student_scores_zero() -> None:
    target = torch.randn(4, 5, dtype=torch.float64)
    assert RelativeLoss()(target, target)["loss"] == 0
    assert abs(RankingLoss(soft=True)(target, target)["loss"]) < 1e-3
    assert abs(RankingLoss(kind="logistic", soft=True)(target, target)["loss"]) < 1e-9
    calibrated = TemperatureLoss(init=0.5, soft=True, teacher_temperature=0.5)
    assert abs(calibrated(target, target)["loss"]) < 1e-6
    factors = torch.randn(4, 5, 3, dtype=torch.float64)
    factors[0, 1, 2] = float("nan")
    assert FactorLoss()(torch.nan_to_num(factors), factors)["loss"] == 0


def test_hard_ranking_loss_vanishes_for_a_confident_right_order() -> None:
    target = torch.tensor([[0.0, 1.0, 2.0]])
    assert RankingLoss()(100 * target, target)["loss"] < 1e-4
    assert RankingLoss(kind="logistic")(100 * target, target)["loss"] < 1e-4


@pytest.mark.parametrize("name", sorted(GROUP_LOSSES))
def test_adding_a_constant_to_a_group_changes_nothing(name: str) -> None:
    gen = torch.Generator().manual_seed(0)
    pred, target = torch.randn(3, 4, generator=gen), torch.randn(3, 4, generator=gen)
    shift = torch.tensor([[10.0], [-3.0], [0.5]])
    loss = GROUP_LOSSES[name]()
    base, shifted = loss(pred, target), loss(pred + shift, target - shift)
    assert torch.allclose(base["loss"], shifted["loss"], atol=1e-5)


@pytest.mark.parametrize("name", sorted(GROUP_LOSSES))
def test_masked_members_count_for_nothing(name: str) -> None:
    gen = torch.Generator().manual_seed(1)
    pred = torch.randn(2, 4, generator=gen, requires_grad=True)
    target = torch.randn(2, 4, generator=gen)
    mask = torch.tensor([[True, True, False, True], [True, True, True, True]])
    loss = GROUP_LOSSES[name]()
    out = loss(pred, target, mask=mask)
    out["loss"].backward()
    assert pred.grad[0, 2] == 0
    # Same as the group without that member, whatever garbage it holds.
    garbage = target.clone()
    garbage[0, 2] = float("nan")
    again = loss(pred.detach(), garbage, mask=mask)["loss"]
    keep = [0, 1, 3]
    alone = loss(pred.detach()[:1, keep], target[:1, keep])["loss"]
    rest = loss(pred.detach()[1:], target[1:])["loss"]
    assert torch.allclose(again, out["loss"]) and torch.allclose(out["loss"], (alone + rest) / 2, atol=1e-6)


def test_group_weights_and_empty_groups() -> None:
    pred, target = torch.zeros(2, 2), torch.tensor([[0.0, 1.0], [0.0, 3.0]])
    loss = RelativeLoss(delta=10.0)
    assert loss(pred, target, weight=torch.tensor([1.0, 0.0]))["loss"] == pytest.approx(0.5)
    assert loss(pred, target, weight=torch.tensor([0.0, 1.0]))["loss"] == pytest.approx(4.5)
    nothing = torch.zeros(2, 2, dtype=torch.bool)
    empty = RelativeLoss()(pred.requires_grad_(), target, mask=nothing)
    assert empty["loss"] == 0 and empty["pairs"] == 0
    empty["loss"].backward()  # still part of the graph: a batch without pairs must not crash the trainer


def test_ranking_skips_ties_within_the_margin() -> None:
    pred = torch.tensor([[1.0, 0.0, 0.0]], requires_grad=True)
    out = RankingLoss(tie_margin=0.1)(pred, torch.tensor([[0.0, 0.05, 1.0]]))
    assert out["pairs"] == 2  # (0, 1) is a tie: skipped
    out["loss"].backward()
    # Image 1 now only meets image 2 (better): pushed down, where the tie with image 0 would lift it.
    assert pred.grad[0, 1] > 0


def test_factor_loss_ignores_unknown_factors() -> None:
    pred = torch.zeros(1, 2, 2, requires_grad=True)
    target = torch.tensor([[[0.0, float("nan")], [1.0, 5.0]]])
    out = FactorLoss()(pred, target)
    out["loss"].backward()
    assert out["pairs"] == 1
    assert pred.grad[0, 1, 0] < 0 and pred.grad[0, :, 1].abs().sum() == 0


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match="pred and target"):
        RelativeLoss()(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="weight"):
        RelativeLoss()(torch.zeros(2, 3), torch.zeros(2, 3), weight=torch.ones(3))
    with pytest.raises(ValueError, match="mask"):
        RelativeLoss()(torch.zeros(2, 3), torch.zeros(2, 3), mask=torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\[G, M, K\]"):
        FactorLoss()(torch.zeros(2, 3), torch.zeros(2, 3))


def test_temperature_learns_towards_calibration() -> None:
    # Overconfident student (gap 5) on a soft label of 0.6: the NLL falls as T grows.
    loss = TemperatureLoss(soft=True, teacher_temperature=1 / math.log(1.5))
    loss(torch.tensor([[0.0, 5.0]]), torch.tensor([[0.0, 1.0]]))["loss"].backward()
    assert loss.log_t.grad < 0
    assert loss.temperature == pytest.approx(1.0)
    loss.set_temperature(2.5)
    assert loss.temperature == pytest.approx(2.5)


def _synthetic(t_true: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    d = rng.normal(0.0, 2.0, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-d / t_true))).astype(float)
    return d, y


@pytest.mark.parametrize("t_true", [0.3, 1.0, 4.0])
def test_fit_temperature_recovers_a_known_temperature(t_true: float) -> None:
    d, y = _synthetic(t_true, 40_000, seed=int(t_true * 10))
    t = fit_temperature(d, y)
    assert t == pytest.approx(t_true, rel=0.08)
    # It is the NLL minimum.
    assert pair_nll(d, y, t) <= min(pair_nll(d, y, t * 0.9), pair_nll(d, y, t * 1.1))


def test_fit_temperature_accepts_tensors_soft_outcomes_and_hits_bounds() -> None:
    d = torch.linspace(-3, 3, 61)
    soft = torch.sigmoid(d / 1.7)
    assert fit_temperature(d, soft) == pytest.approx(1.7, rel=1e-4)
    assert fit_temperature([-1.0, 1.0], [0.0, 1.0], bounds=(0.01, 100.0)) == 0.01  # separable
    assert fit_temperature([-1.0, 1.0], [1.0, 0.0], bounds=(0.01, 100.0)) == 100.0  # reversed


@pytest.mark.parametrize(
    "deltas, outcomes, match",
    [
        ([1.0, 2.0], [1.0], "lengths"),
        ([0.0, 0.0], [1.0, 0.0], "zero"),
        ([1.0], [2.0], r"\[0, 1\]"),
        ([np.nan], [1.0], "finite"),
    ],
)
def test_fit_temperature_rejects_bad_input(deltas: list, outcomes: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fit_temperature(deltas, outcomes)
