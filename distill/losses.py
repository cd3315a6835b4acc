"""Relative losses over groups of images: the student learns only from differences.

Every loss takes GROUPS: ``pred [G, M]`` student utilities of M images per group, ``target [G, M]``
teacher utilities on a common scale (only differences within a row mean anything), optional
``weight [G]`` (non-negative) and ``mask [G, M]`` (False = missing member, e.g. padding). All pairs
``i < j`` of a group are used, with differences taken as ``x_j - x_i``. Each group counts once: its
loss is the mean over its valid pairs, then groups are averaged by ``weight``. A loss returns
``{"loss": scalar, ...diagnostics}``; diagnostics are detached. Adding a constant to a group's
predictions changes nothing, and no loss ever compares an absolute score.

Registered in ``distill.registry.LOSSES``:

- ``relative``: Huber regression of ``u_j - u_i`` onto ``t_j - t_i`` (RED-Aes's edit-induced differences);
- ``ranking``: ordering consistency within the group, a pairwise Thurstone fidelity term (RAPO's fidelity
  reward; UNIQUE's loss) or logistic (Bradley-Terry) term on the teacher's order (or its soft probability);
- ``factor``: ``relative`` on the factor heads, ``pred/target [G, M, K]``, NaN target = unknown;
- ``temperature``: learned ``T`` (log-parameterised) so that ``sigmoid((u_j - u_i) / T)`` is a calibrated
  probability of the teacher's preference; :func:`fit_temperature` refits it on validation at the end;
- ``feature``: feature distillation on a teacher source: the student's pooled features, through a learned
  linear map, point the way the teacher's do (:class:`FeatureLoss`). Not a group loss: it sees one
  image at a time, so it is the one loss that reads more than the utility's differences.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from distill.registry import LOSSES
from redaes_lite.metadata import preference_probability

__all__ = [
    "GroupLoss",
    "RelativeLoss",
    "RankingLoss",
    "FactorLoss",
    "TemperatureLoss",
    "FeatureLoss",
    "fit_temperature",
    "pair_nll",
]

Out = dict[str, torch.Tensor]
# What a loss computes per pair: (per-pair terms reduced like the loss, pairs that count, extra scalars).
Terms = tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, torch.Tensor]]


def _pairs(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None, *, dims: int, what: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pred diffs, target diffs, valid) for all pairs i < j of dim 1; non-finite targets count as missing."""
    if pred.dim() != dims or pred.shape != target.shape:
        want = "[G, M]" if dims == 2 else "[G, M, K]"
        raise ValueError(
            f"{what}: pred and target must both be {want}, got {list(pred.shape)} and {list(target.shape)}"
        )
    g, m = pred.shape[:2]
    if mask is not None and mask.shape != (g, m):
        raise ValueError(f"{what}: mask must be [G, M] = {[g, m]}, got {list(mask.shape)}")
    i, j = torch.triu_indices(m, m, offset=1, device=pred.device)
    known = torch.isfinite(target)
    if mask is not None:
        known = known & mask.bool().view(g, m, *([1] * (dims - 2)))
    valid = known[:, i] & known[:, j]
    safe = torch.where(known, target, torch.zeros_like(target))  # NaN must not reach the gradient
    return pred[:, j] - pred[:, i], (safe[:, j] - safe[:, i]).to(pred.dtype), valid


def _reduce(per_pair: torch.Tensor, valid: torch.Tensor, weight: torch.Tensor | None, what: str) -> torch.Tensor:
    """Mean over each group's valid pairs, then the weighted mean over groups that have any."""
    g = per_pair.shape[0]
    if weight is not None and weight.shape != (g,):
        raise ValueError(f"{what}: weight must be [G] = [{g}], got {list(weight.shape)}")
    vf = valid.to(per_pair.dtype).reshape(g, -1)
    count = vf.sum(1)
    group = (torch.where(valid, per_pair, torch.zeros_like(per_pair)).reshape(g, -1)).sum(1) / count.clamp_min(1)
    w = (weight.to(per_pair.dtype) if weight is not None else torch.ones_like(count)) * (count > 0)
    return (w * group).sum() / w.sum().clamp_min(torch.finfo(per_pair.dtype).tiny)


def _agreement(dp: torch.Tensor, dt: torch.Tensor, valid: torch.Tensor) -> dict[str, torch.Tensor]:
    """Pair count and the fraction of non-tied pairs whose order the student gets right."""
    ordered = valid & (dt != 0)
    right = (torch.sign(dp) == torch.sign(dt)) & ordered
    n = ordered.sum()
    acc = torch.where(n > 0, right.sum().to(dp.dtype) / n.clamp_min(1), dp.new_tensor(float("nan")))
    return {"pairs": valid.sum().detach().to(dp.dtype), "accuracy": acc.detach()}


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -(torch.special.xlogy(p, p) + torch.special.xlogy(1 - p, 1 - p))


class GroupLoss(nn.Module):
    """Base of the group losses: pairs are formed here, :meth:`terms` scores them.

    ``terms(dp, dt, valid)`` returns per-pair tensors (``"loss"`` plus diagnostics, each reduced like the
    loss), the pairs that count, and extra scalars. ``forward`` is the same for every loss.
    """

    name = "group"
    dims = 2

    def terms(self, dp: torch.Tensor, dt: torch.Tensor, valid: torch.Tensor) -> Terms:
        raise NotImplementedError

    def forward(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> Out:
        dp, dt, valid = _pairs(pred, target, mask, dims=self.dims, what=f"{self.name} loss")
        per_pair, valid, extra = self.terms(dp, dt, valid)
        out = {k: _reduce(v, valid, weight, self.name) for k, v in per_pair.items()}
        diagnostics = {k: v.detach() for k, v in out.items() if k != "loss"}
        return {"loss": out["loss"], **diagnostics, **extra, **_agreement(dp, dt, valid)}


class RelativeLoss(GroupLoss):
    """Huber regression of ``u_j - u_i`` onto ``t_j - t_i``; ``delta``: where quadratic turns linear."""

    name = "relative"

    def __init__(self, *, delta: float = 1.0) -> None:
        super().__init__()
        if delta <= 0:
            raise ValueError(f"{self.name} loss: delta must be > 0, got {delta}")
        self.delta = delta

    def terms(self, dp: torch.Tensor, dt: torch.Tensor, valid: torch.Tensor) -> Terms:
        huber = F.huber_loss(dp, dt, reduction="none", delta=self.delta)
        return {"loss": huber, "mae": (dp - dt).abs()}, valid, {}


class FactorLoss(RelativeLoss):
    """``relative`` on the factor heads: ``pred/target [G, M, K]``, NaN target = factor unknown there."""

    name = "factor"
    dims = 3


class RankingLoss(GroupLoss):
    """Agreement of the student's order with the teacher's over all pairs of each group.

    ``kind``: ``"fidelity"`` (Thurstone: ``q = Phi((u_j - u_i) / (sqrt(2) * scale))``, loss
    ``1 - sqrt(p q) - sqrt((1 - p)(1 - q))``) or ``"logistic"`` (``q = sigmoid((u_j - u_i) / scale)``,
    cross-entropy minus the label's entropy, i.e. KL). ``p`` is the teacher's preference: ``1[t_j > t_i]``,
    or with ``soft=True`` the same model applied to ``t_j - t_i`` (then a student equal to the teacher scores
    exactly zero). Pairs with ``|t_j - t_i| <= tie_margin`` carry no order and are skipped.
    """

    name = "ranking"
    _eps = 1e-8

    def __init__(
        self, *, kind: str = "fidelity", scale: float = 1.0, tie_margin: float = 0.0, soft: bool = False
    ) -> None:
        super().__init__()
        if kind not in ("fidelity", "logistic"):
            raise ValueError(f"ranking loss: kind must be 'fidelity' or 'logistic', got {kind!r}")
        if scale <= 0 or tie_margin < 0:
            raise ValueError(f"ranking loss: need scale > 0 and tie_margin >= 0, got {scale}, {tie_margin}")
        self.kind, self.scale, self.tie_margin, self.soft = kind, scale, tie_margin, soft

    def _prob(self, d: torch.Tensor) -> torch.Tensor:
        if self.kind == "fidelity":
            return 0.5 * (1 + torch.erf(d / (2 * self.scale)))  # Phi(d / (sqrt(2) scale))
        return torch.sigmoid(d / self.scale)

    def terms(self, dp: torch.Tensor, dt: torch.Tensor, valid: torch.Tensor) -> Terms:
        p = self._prob(dt) if self.soft else (dt > 0).to(dp.dtype)
        if self.kind == "fidelity":
            q = self._prob(dp)
            loss = 1 - torch.sqrt(p * q + self._eps) - torch.sqrt((1 - p) * (1 - q) + self._eps)
        else:
            loss = F.binary_cross_entropy_with_logits(dp / self.scale, p, reduction="none") - _entropy(p)
        return {"loss": loss}, valid & (dt.abs() > self.tie_margin), {}


class TemperatureLoss(GroupLoss):
    """Bradley-Terry NLL of the teacher's preference under ``sigmoid((u_j - u_i) / T)``, ``T`` learned.

    ``T = exp(log_t)`` stays positive; include this module's parameters in the optimiser. The label
    is ``1[t_j > t_i]`` (0.5 on ties) or, with ``soft=True``, ``sigmoid((t_j - t_i) / teacher_temperature)``.
    ``detach_pred=True`` (default) makes the term calibrate ``T`` only, leaving the utility scale to the
    other losses; False also trains the student on it. The reported ``loss`` is the NLL minus the
    label's entropy (same gradient, zero when calibrated on soft labels); ``nll`` is the plain NLL.
    """

    name = "temperature"

    def __init__(
        self, *, init: float = 1.0, soft: bool = False, teacher_temperature: float = 1.0, detach_pred: bool = True
    ) -> None:
        super().__init__()
        if init <= 0 or teacher_temperature <= 0:
            raise ValueError(
                f"temperature loss: init and teacher_temperature must be > 0, got {init}, {teacher_temperature}"
            )
        self.log_t = nn.Parameter(torch.tensor(math.log(init)))
        self.soft, self.teacher_temperature, self.detach_pred = soft, teacher_temperature, detach_pred

    @property
    def temperature(self) -> float:
        return float(self.log_t.detach().exp())

    def set_temperature(self, value: float) -> None:
        """Set ``T`` (e.g. to :func:`fit_temperature`'s result on validation)."""
        if not value > 0:
            raise ValueError(f"temperature must be > 0, got {value}")
        with torch.no_grad():
            self.log_t.fill_(math.log(value))

    def terms(self, dp: torch.Tensor, dt: torch.Tensor, valid: torch.Tensor) -> Terms:
        if self.detach_pred:
            dp = dp.detach()
        p = torch.sigmoid(dt / self.teacher_temperature) if self.soft else (torch.sign(dt) + 1) / 2
        nll = F.binary_cross_entropy_with_logits(dp / self.log_t.exp(), p, reduction="none")
        return {"loss": nll - _entropy(p), "nll": nll}, valid, {"temperature": self.log_t.detach().exp()}


class FeatureLoss(nn.Module):
    """``1 - cos`` between the student's pooled features mapped by a learned linear ``proj`` and the teacher's
    pooled features (``teacher_features`` of a teacher-in-the-loop batch, NIMA's 1024-d), both centred on
    the batch mean first: what is learned is how the images *differ* in the teacher's feature space, not
    the direction every image shares.

    A scalar score difference gives one number per pair; a 1024-d feature gives the student far more of the
    teacher's judgement per image, which matters where the images are few (the permissive model's
    commercial-use photos). ``teacher_width`` is the teacher's feature width; the student's is bound by
    :meth:`bind` before the optimiser is built. The map is a training-only parameter: export never sees it.
    ``forward(student [N, D], teacher [N, D_t], weight [N] | None)``.
    """

    name = "feature"
    dims = 0  # neither the utility [G, M] nor the factors [G, M, K]: the trainer passes features

    def __init__(self, *, teacher_width: int = 1024) -> None:
        super().__init__()
        if teacher_width < 1:
            raise ValueError(f"feature loss: teacher_width must be >= 1, got {teacher_width}")
        self.teacher_width = int(teacher_width)
        self.proj: nn.Linear | None = None

    def bind(self, student_width: int) -> None:
        """Create the map from the student's pooled width (once; a resumed run loads its weights after)."""
        if self.proj is None:
            self.proj = nn.Linear(int(student_width), self.teacher_width, bias=False)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, weight: torch.Tensor | None = None) -> Out:
        if self.proj is None:
            raise RuntimeError("feature loss: bind(student_width) was never called")
        if teacher.dim() != 2 or teacher.shape[1] != self.teacher_width or teacher.shape[0] != student.shape[0]:
            raise ValueError(
                f"feature loss: teacher features must be [{student.shape[0]}, {self.teacher_width}], "
                f"got {list(teacher.shape)} (set the loss's teacher_width to the teacher's feature width)"
            )
        s = self.proj(student)
        s = s - s.mean(0, keepdim=True)
        t = (teacher - teacher.mean(0, keepdim=True)).to(s.dtype)
        per_image = 1 - F.cosine_similarity(s, t, dim=1, eps=1e-6)
        w = torch.ones_like(per_image) if weight is None else weight.to(per_image.dtype)
        loss = (w * per_image).sum() / w.sum().clamp_min(torch.finfo(per_image.dtype).tiny)
        return {"loss": loss, "cosine": (1 - per_image).mean().detach()}


def _as_1d(x: Any, what: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"fit_temperature: {what} must be 1-D, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"fit_temperature: {what} has non-finite values")
    return arr


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow for large |x|


def pair_nll(deltas: Any, outcomes: Any, temperature: float, *, weights: Any = None, lapse: float = 0.0) -> float:
    """Mean Bradley-Terry NLL of ``outcomes`` (P(b better), in [0, 1]) given ``deltas = u_b - u_a`` and ``T``;
    with a ``lapse``, of ``lapse / 2 + (1 - lapse) * sigmoid(delta / T)`` (the runtime's probability)."""
    d, y = _as_1d(deltas, "deltas"), _as_1d(outcomes, "outcomes")
    w = np.ones_like(d) if weights is None else _as_1d(weights, "weights")
    if lapse > 0:  # p stays within [lapse / 2, 1 - lapse / 2]: the logs are finite
        p = preference_probability(d, temperature, lapse)
        nll = -(y * np.log(p) + (1 - y) * np.log1p(-p))
    else:
        z = d / temperature
        # -log sigmoid(z) = logaddexp(0, -z), stable on both tails.
        nll = y * np.logaddexp(0.0, -z) + (1 - y) * np.logaddexp(0.0, z)
    return float(np.sum(w * nll) / np.sum(w))


def fit_temperature(
    deltas: Any, outcomes: Any, *, weights: Any = None, bounds: tuple[float, float] = (1e-3, 1e3)
) -> float:
    """The ``T`` minimising :func:`pair_nll` on (``deltas``, ``outcomes``), within ``bounds``.

    The NLL is convex in ``beta = 1 / T`` (a logistic regression through the origin), so its derivative
    is increasing in beta and a bisection on ``log beta`` finds the optimum. Data a perfect ordering
    separates give the lower bound; data with no or reversed signal give the upper bound.
    """
    d, y = _as_1d(deltas, "deltas"), _as_1d(outcomes, "outcomes")
    w = np.ones_like(d) if weights is None else _as_1d(weights, "weights")
    if not (len(d) == len(y) == len(w)) or len(d) == 0:
        raise ValueError(f"fit_temperature: need equal, non-zero lengths, got {len(d)}, {len(y)}, {len(w)}")
    if np.any((y < 0) | (y > 1)) or np.any(w < 0):
        raise ValueError("fit_temperature: outcomes must be in [0, 1] and weights >= 0")
    if not np.any(w * d != 0):
        raise ValueError("fit_temperature: all deltas are zero; the temperature is undetermined")
    t_lo, t_hi = bounds
    if not 0 < t_lo < t_hi:
        raise ValueError(f"fit_temperature: bounds must satisfy 0 < low < high, got {bounds}")

    def slope(log_beta: float) -> float:
        return float(np.sum(w * d * (_sigmoid(math.exp(log_beta) * d) - y)))

    lo, hi = -math.log(t_hi), -math.log(t_lo)
    if slope(lo) >= 0:
        return t_hi
    if slope(hi) <= 0:
        return t_lo
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if slope(mid) < 0 else (lo, mid)
    return math.exp(-0.5 * (lo + hi))


for _loss in (RelativeLoss, RankingLoss, FactorLoss, TemperatureLoss, FeatureLoss):
    LOSSES.add(_loss.name, _loss)
