"""Fixed validation sets, the figures the trainer logs, and the end-of-run fits stored in ``final.pt``.

Validation data never trains: edit groups are made from the *validation* photos (unseen source scenes)
and the BIQ2021 images are the validation split's (``distill.splits``). Both sets are drawn once from
``val.seed``, so every validation of every run sees the same pairs.

Figures (``metrics.jsonl``, ``kind: "val"``):

- ``edit_acc``: share of (source, edit) pairs whose utility difference has the oracle's sign (a tie
  counts half); ``edit_acc.<factor>`` on single-edit pairs by the edited factor;
- ``edit_srcc``: Spearman between utility and oracle target inside each edit group, averaged;
- ``explain_acc``: on single-edit pairs, how often the largest factor difference names the edited factor;
  ``factor_sign_acc``: how often the edited factor's difference has the sign of the oracle's (points to the
  better photo);
- ``mos_srcc`` / ``mos_plcc``: utility vs MOS on BIQ2021 validation images (``mos_plcc`` after the
  standard 4-parameter logistic);
- ``<name>_srcc`` / ``<name>_plcc`` for each further human-score data set in ``val.human_sets`` (``para``) on
  its validation split, and ``human_srcc``: the mean SRCC over every human-score data set measured (each
  data set counts once, whatever its size: the selection criterion of the default model);
- ``unusable_acc``: share of (unusable frame, validation photo or BIQ2021 image) pairs the photo wins; the
  frames (``distill.edits.unusable``: one per validation photo, kinds in turn, and a black, a white and a
  noise frame) are never trained on;
- at the end also ``temperature``, ECE of ``sigmoid(|delta| / T)`` on edit and MOS pairs, and
  ``unusable_score_max``: the highest 0..10 display score of an unusable frame.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from distill.calibration import fit_pair_calibration, pair_calibration, reference_calibration
from distill.registry import EDITS
from distill.sources import DataContext, Group, edit_group, source_key, stable_key
from distill.splits import tags_of
from redaes_lite.eval.metrics import plcc_logistic, srcc
from redaes_lite.metadata import apply_calibration
from redaes_lite.preprocess import load_image

__all__ = ["ValSets", "evaluate", "finalize", "seeded_edit_groups"]


@dataclass
class ValSets:
    """The fixed edit groups and BIQ2021 images; their pixels are made once and kept as float16."""

    groups: list[Group]
    single_factor: list[list[str | None]]  # per group and member: the edited factor of a single edit
    mos_paths: list[Path]
    mos: np.ndarray
    human: dict[str, tuple[list[Path], np.ndarray]] = field(default_factory=dict)  # further data sets
    unusable: list[Image.Image] = field(default_factory=list)
    pool_paths: list[Path] = field(default_factory=list)  # further photos of the display map's pool only
    _edit_pixels: torch.Tensor | None = None
    _mos_pixels: torch.Tensor | None = None
    _human_pixels: dict[str, torch.Tensor] = field(default_factory=dict)
    _unusable_pixels: torch.Tensor | None = None

    @classmethod
    def build(cls, ctx: DataContext, cfg: Any) -> ValSets:
        v = cfg.val
        made = list(seeded_edit_groups(ctx, ctx.photos["val"], v, groups=v.photos_groups, seed=v.seed))
        groups, single = [g for g, _ in made], [s for _, s in made]
        items = _capped(ctx.biq["val"], v.mos_images, seed=v.seed, key="biq2021-val")
        paths = [ctx.scored_path("biq2021", name) for name, _, _ in items]
        human = {}
        for name in v.human_sets:
            rows = _capped(ctx.scored(name)["val"], v.human_images, seed=v.seed, key=f"{name}-val")
            human[name] = ([ctx.scored_path(name, f) for f, _, _ in rows], np.asarray([m for _, m, _ in rows]))
        mos = np.asarray([m for _, m, _ in items], np.float64)
        pool = [ctx.photos_root / r["file"] for r in ctx.photos["train"]] if v.pool_train_photos else []
        return cls(groups, single, paths, mos, human, unusable_frames(ctx, seed=v.seed), pool)

    def edit_pixels(self, eval_tf: Any) -> torch.Tensor:
        if self._edit_pixels is None:
            self._edit_pixels = torch.stack([eval_tf(im).half() for g in self.groups for im in g.images])
        return self._edit_pixels

    def human_pixels(self, name: str, eval_tf: Any) -> torch.Tensor:
        if name not in self._human_pixels:
            self._human_pixels[name] = _inference_pixels(self.human[name][0], eval_tf)
        return self._human_pixels[name]

    def unusable_pixels(self, eval_tf: Any) -> torch.Tensor:
        if self._unusable_pixels is None:
            self._unusable_pixels = torch.stack([eval_tf(im).half() for im in self.unusable])
        return self._unusable_pixels

    def mos_pixels(self, eval_tf: Any) -> torch.Tensor:
        if self._mos_pixels is None:
            self._mos_pixels = _inference_pixels(self.mos_paths, eval_tf)
        return self._mos_pixels


def unusable_frames(ctx: DataContext, *, seed: int) -> list[Image.Image]:
    """One unusable frame per validation photo (kinds in turn), then a black, a white and a noise frame."""
    from distill.edits.unusable import UNUSABLE_KINDS, unusable_frame

    frames = []
    for i, row in enumerate(ctx.photos["val"]):
        rng = np.random.default_rng([seed, stable_key(source_key(row)), stable_key("unusable")])
        frames.append(unusable_frame(ctx.photo(row), rng, kind=UNUSABLE_KINDS[i % len(UNUSABLE_KINDS)]))
    rng = np.random.default_rng([seed, stable_key("unusable")])
    for arr in (np.zeros((240, 320, 3)), np.full((240, 320, 3), 255), rng.integers(0, 256, (240, 320, 3))):
        frames.append(Image.fromarray(arr.astype(np.uint8), "RGB"))
    return frames


def _inference_pixels(paths: Sequence[Path], eval_tf: Any) -> torch.Tensor:
    """The inference path: decode with the spec's JPEG draft, then the spec's resize (float16)."""
    return torch.stack([eval_tf(load_image(p, eval_tf.spec)).half() for p in paths])


def _capped(items: list[Any], cap: int | None, *, seed: int, key: str) -> list[Any]:
    """At most ``cap`` of ``items``, a fixed random subset in their original order."""
    if cap is None or cap >= len(items):
        return items
    pick = np.random.default_rng([seed, stable_key(key)]).choice(len(items), cap, replace=False)
    return [items[i] for i in np.sort(pick)]


def seeded_edit_groups(
    ctx: DataContext, rows: Sequence[dict[str, Any]], v: Any, *, groups: int, seed: int
) -> Iterator[tuple[Group, list[str | None]]]:
    """``groups`` edit groups per photo of ``rows``, each made from ``(seed, photo, k)`` alone, shaped by
    the validation config ``v`` (group size, share of single edits); with each member's single edited
    factor (None: the source or a chain of edits)."""
    from distill import edits
    from distill.teachers.edit_oracle import EditOracle

    oracle = EditOracle()
    n_single = round(v.single_fraction * (v.group_size - 1))
    for row in rows:
        for k in range(groups):
            rng = np.random.default_rng([seed, stable_key(source_key(row)), k])
            tags = tags_of(row)
            recipes = [
                edits.random_recipe(rng, n_ops=1 if i < n_single else None, tags=tags) for i in range(v.group_size - 1)
            ]
            group = edit_group(ctx, row, recipes, oracle, rng, factors=ctx.factors)
            yield group, [None] + [EDITS.get(r[0]["op"]).factor if len(r) == 1 else None for r in recipes]


@torch.no_grad()
def predict(
    model: torch.nn.Module, pixels: torch.Tensor, *, device: torch.device, batch_size: int, channels_last: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Utilities ``[N]`` and factors ``[N, K]`` in eval mode."""
    was_training = model.training
    model.eval()
    us, fs = [], []
    for i in range(0, len(pixels), batch_size):
        x = pixels[i : i + batch_size].to(device).float()
        u, f = model(x.contiguous(memory_format=torch.channels_last) if channels_last else x)
        us.append(u.float().cpu())
        fs.append(f.float().cpu())
    model.train(was_training)
    return torch.cat(us).numpy().astype(np.float64), torch.cat(fs).numpy().astype(np.float64)


def _agree(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """1 where the signs agree, 0.5 for a predicted tie, 0 otherwise."""
    return np.where(pred == 0, 0.5, (np.sign(pred) == np.sign(true)).astype(np.float64))


def edit_metrics(
    u: np.ndarray, f: np.ndarray, val: ValSets, *, factors: Sequence[str], min_delta: float
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Pair accuracy (overall, per factor), within-group Spearman and factor explanations."""
    m = len(val.groups[0].images)
    u, f = u.reshape(-1, m), f.reshape(-1, m, f.shape[-1])
    target = np.stack([g.target for g in val.groups])
    d_pred, d_true = u[:, 1:] - u[:, :1], target[:, 1:]
    scored = np.abs(d_true) > min_delta
    agree = _agree(d_pred, d_true)
    out = {
        "edit_acc": float(agree[scored].mean()) if scored.any() else math.nan,
        "edit_acc_all": float(agree[d_true != 0].mean()) if (d_true != 0).any() else math.nan,
        "edit_pairs": int(scored.sum()),
    }
    rhos = [srcc(u[g], target[g]) for g in range(len(u))]
    rhos = [r for r in rhos if not math.isnan(r)]
    out["edit_srcc"] = float(np.mean(rhos)) if rhos else math.nan
    single = np.asarray([s[1:] for s in val.single_factor], dtype=object)
    f_signed = f[:, 1:] - f[:, :1]  # [G, M-1, K]
    f_delta = np.abs(f_signed)
    ft_signed = np.stack([g.factor_target[1:] - g.factor_target[:1] for g in val.groups])
    hits, signs = [], []
    for name in sorted({s for s in single.ravel() if s is not None}):
        sel = (single == name) & scored  # an imperceptible edit has nothing to order or explain
        if not sel.any():
            continue
        out[f"edit_acc.{name}"] = float(agree[sel].mean())
        if name in factors:
            hit = (f_delta[sel].argmax(-1) == list(factors).index(name)).astype(np.float64)
            out[f"explain_acc.{name}"] = float(hit.mean())
            hits.append(hit)
            k = list(factors).index(name)
            right = _agree(f_signed[sel][:, k], ft_signed[sel][:, k])
            out[f"factor_sign_acc.{name}"] = float(right.mean())
            signs.append(right)
    out["explain_acc"] = float(np.concatenate(hits).mean()) if hits else math.nan
    out["factor_sign_acc"] = float(np.concatenate(signs).mean()) if signs else math.nan
    raw = {
        "edit_utility": u,  # [G, M]: column 0 is each group's unedited photo
        "edit_dpred": d_pred[scored],
        "edit_outcome": (d_true[scored] > 0).astype(np.float64),
    }
    return out, raw


def mos_pairs(u: np.ndarray, mos: np.ndarray, *, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """All validation pairs with ``|dMOS| > margin``: predicted ``u(b) - u(a)`` and 1 where b is better."""
    i, j = np.triu_indices(len(u), k=1)
    keep = np.abs(mos[j] - mos[i]) > margin
    i, j = i[keep], j[keep]
    return u[j] - u[i], (mos[j] > mos[i]).astype(np.float64)


def evaluate(
    model: torch.nn.Module, eval_tf: Any, val: ValSets, cfg: Any, *, device: torch.device
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Validation figures, and the raw predictions the end-of-run fits use."""
    bs = cfg.val.batch_size
    u, f = predict(model, val.edit_pixels(eval_tf), device=device, batch_size=bs, channels_last=cfg.channels_last)
    metrics, raw = edit_metrics(u, f, val, factors=cfg.factors, min_delta=cfg.val.min_delta)
    if len(val.mos_paths) >= 2:
        mu, _ = predict(model, val.mos_pixels(eval_tf), device=device, batch_size=bs, channels_last=cfg.channels_last)
        metrics["mos_srcc"] = srcc(mu, val.mos)
        metrics["mos_plcc"] = plcc_logistic(mu, val.mos)
        raw["mos_utility"] = mu
    for name, (_, scores) in val.human.items():
        hu, _ = predict(
            model, val.human_pixels(name, eval_tf), device=device, batch_size=bs, channels_last=cfg.channels_last
        )
        metrics[f"{name}_srcc"] = srcc(hu, scores)
        raw[f"{name}_utility"] = hu
        metrics[f"{name}_plcc"] = plcc_logistic(hu, scores)
    if val.unusable:
        nu, _ = predict(
            model, val.unusable_pixels(eval_tf), device=device, batch_size=bs, channels_last=cfg.channels_last
        )
        photos = np.concatenate([raw["edit_utility"][:, 0], raw.get("mos_utility", np.empty(0))])
        if photos.size:
            metrics["unusable_acc"] = float(_agree(photos[None, :] - nu[:, None], np.ones(1)).mean())
        raw["unusable_utility"] = nu
    per_set = [metrics[k] for k in ("mos_srcc", *(f"{n}_srcc" for n in val.human)) if k in metrics]
    if per_set:
        metrics["human_srcc"] = float(np.mean(per_set))
    return {k: round(v, 5) if isinstance(v, float) else v for k, v in metrics.items()}, raw


def finalize(
    model: torch.nn.Module,
    eval_tf: Any,
    val: ValSets,
    cfg: Any,
    *,
    device: torch.device,
    evaluated: tuple[dict[str, Any], dict[str, np.ndarray]] | None = None,
) -> dict[str, Any]:
    """Temperature and lapse (edit + MOS validation pairs) and the display calibration: the percentile of a
    reference pool of validation images, and of the training photos with ``val.pool_train_photos``
    (``distill.calibration.reference_calibration``).

    ``evaluated``: :func:`evaluate`'s result for the current weights, when the caller has it already.
    """
    metrics, raw = evaluated or evaluate(model, eval_tf, val, cfg, device=device)
    metrics = dict(metrics)
    edit = (raw["edit_dpred"], raw["edit_outcome"])
    mos = mos_pairs(raw["mos_utility"], val.mos, margin=cfg.val.mos_pair_margin) if "mos_utility" in raw else None
    use_mos = cfg.val.fit_on_mos and mos is not None
    fit_on = [edit, mos] if use_mos else [edit]
    # Each kind weighs the same in the fit: there are far more MOS pairs than edit pairs.
    weights = np.concatenate([np.full(len(d), 1.0 / len(d)) for d, _ in fit_on])
    temperature, lapse = fit_pair_calibration(
        np.concatenate([d for d, _ in fit_on]), np.concatenate([o for _, o in fit_on]), weights=weights
    )
    metrics["temperature"], metrics["lapse"] = temperature, lapse
    for kind, pairs in (("edit", edit), ("mos", mos)):
        if pairs is not None:  # MOS pairs are measured even when not fitted on
            report = pair_calibration(*pairs, temperature=temperature, lapse=lapse)
            metrics[f"ece_{kind}"], metrics[f"pairs_{kind}"] = report["ece"], report["n"]
    edit_u = raw["edit_utility"]
    if use_mos:
        pool = {"biq2021": raw["mos_utility"], **{n: raw[f"{n}_utility"] for n in val.human}, "photos": edit_u[:, 0]}
    else:
        # No human-scored data (the permissive model): the validation photos and their edits.
        pool = {"photos": edit_u[:, 0], "edits": edit_u[:, 1:].ravel()}
    what = "validation images"
    if val.pool_paths:
        pixels = _inference_pixels(val.pool_paths, eval_tf)
        pool["training photos"] = predict(
            model, pixels, device=device, batch_size=cfg.val.batch_size, channels_last=cfg.channels_last
        )[0]
        what = "images: validation, and the training photos"
    calibration = reference_calibration(pool, what=what)
    if "unusable_utility" in raw:
        metrics["unusable_score_max"] = round(float(apply_calibration(calibration, raw["unusable_utility"]).max()), 4)
    return {"temperature": temperature, "lapse": lapse, "calibration": calibration, "metrics": metrics}
