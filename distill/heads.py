"""``python -m distill heads CKPT --out OUT.pt``: refit the factor head in closed form for explanations.

Why: after ImageNet training, the pooled features of a CNN barely see colour, contrast or vignetting (the
pretraining augmentations taught it not to), so the factor heads of a trained student name "exposure"
for most colour edits (saturation and white balance edits are almost never named right). Early layers still
see them. This stage rebuilds the student with ``factor_taps`` (per-channel mean and std of
early feature levels, and with ``centre`` their mean over the central half of the frame minus the whole's,
joined to the pooled features at the factor head) and fits that head on frozen
features, where training it end to end would need a GPU:

1. Edit groups of the *training* photos (``seeded_edit_groups``: the validation recipe mix, other seed;
   the permissive model's config keeps it on permissive photos), features of every member; with
   ``biq_sources``, also groups of BIQ2021 training images (more scenes: only which factor an edit moved is
   used, and that does not depend on the source).
2. Ridge regression of the oracle's per-factor deltas on feature differences (source -> edit),
   standardised features, ``ridge`` times the mean eigenvalue as penalty: the least-squares head.
3. One gain per factor, by coordinate ascent on the training single-edit pairs, so that the largest
   factor difference names the edited factor as often as possible: the least-squares fit shrinks the
   factors it is less sure of towards zero, which an argmax then never picks.
4. A refinement for the explanation itself (``refine_steps``, 0 skips it): from the head of 2-3, L-BFGS on
   the cross-entropy of ``softmax(sharpness * |factor difference|)`` against the edited factor, anchored to
   the start by ``anchor`` times the mean squared change of the standardised weights, plus ``sign_weight``
   times a logistic term asking the edited factor's difference to have the oracle's sign (the cross-entropy
   only sees its size, and the least-squares start learns one direction where the other dominates the data).
   Least squares fits every factor's *size*; the explanation only needs the edited one to be the largest, and
   the anchor keeps what the least-squares head got right. MODEL_CARD.md has the figures of each step.
5. Bias set so that the mean factor values of the training sources stay where the old head had them.

Trunk and utility head are copied unchanged: utility, temperature and calibration do not move. Run
``python -m distill evaluate OUT.pt --refit DIR`` afterwards for the validation figures, then export.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from redaes_lite._atomic import atomic_open
from redaes_lite.metadata import sha256_file

__all__ = ["DEFAULT_TAPS", "RefitOptions", "fit_gains", "main", "refine_for_explanations", "refit_factor_head", "ridge"]

#: EfficientNet-Lite's stride-4 and stride-8 levels (24 + 40 channels): early enough to still see colour and
#: contrast, which the pooled features have learnt to ignore.
DEFAULT_TAPS = (1, 2)
_GAIN_GRID = np.exp(np.linspace(-3.0, 3.0, 25))


def ridge(x: np.ndarray, y: np.ndarray, strength: float) -> np.ndarray:
    """``W [K, D]`` minimising ``|x W^T - y|^2 + strength * mean_eig(x^T x) * |W|^2`` (no intercept)."""
    gram = x.T @ x
    penalty = strength * np.trace(gram) / len(gram)
    return np.linalg.solve(gram + penalty * np.eye(len(gram)), x.T @ y).T


def _hits(pred: np.ndarray, edited: np.ndarray) -> float:
    return float((np.abs(pred).argmax(-1) == edited).mean())


def fit_gains(pred: np.ndarray, edited: np.ndarray, *, sweeps: int = 2) -> np.ndarray:
    """Per-factor gains ``[K]`` maximising how often ``argmax |pred * gain|`` equals ``edited``."""
    gains = np.ones(pred.shape[1])
    for _ in range(sweeps):
        for k in range(len(gains)):
            scores = []
            for g in _GAIN_GRID:
                trial = gains.copy()
                trial[k] = g
                scores.append(_hits(pred * trial, edited))
            gains[k] = _GAIN_GRID[int(np.argmax(scores))]
    return gains


def refine_for_explanations(
    x: np.ndarray,
    edited: np.ndarray,
    w: np.ndarray,
    *,
    sharpness: float = 3.0,
    anchor: float = 3000.0,
    steps: int = 200,
    signs: np.ndarray | None = None,
    sign_weight: float = 1.0,
) -> np.ndarray:
    """``W [K, D]`` from ``w`` by L-BFGS on ``CE(softmax(sharpness * |x W^T|), edited) + anchor * mean((W - w)^2)``
    ``+ sign_weight * mean(softplus(-sharpness * signs * (x W^T)[edited]))``.

    ``x`` are standardised feature differences of single-edit pairs, ``edited`` the edited factor's index,
    ``signs`` (+-1) the sign of the oracle's delta on that factor. The cross-entropy only asks the edited
    factor to move most, in either direction; the sign term asks it to move toward the better photo, which
    the least-squares start gets wrong where one direction of an edit dominates the data (oversaturation
    costs more than desaturation, so a linear head learnt "less colour is better"). The objective is not
    convex (``|.|``): the anchor keeps the result near the start. The result is scaled to the start's
    root-mean-square factor difference on ``x``.
    """
    xt, y = torch.from_numpy(np.asarray(x, np.float64)), torch.from_numpy(np.asarray(edited, np.int64))
    sg = None if signs is None else torch.from_numpy(np.asarray(signs, np.float64))
    w0 = torch.from_numpy(np.ascontiguousarray(w, np.float64))  # L-BFGS flattens with view(): needs contiguous
    v = w0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([v], max_iter=steps, line_search_fn="strong_wolfe", tolerance_grad=1e-9)
    rms0 = (xt @ w0.T).square().mean().sqrt()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        pred = xt @ v.T
        loss = torch.nn.functional.cross_entropy(sharpness * pred.abs(), y) + anchor * (v - w0).square().mean()
        if sg is not None and sign_weight:
            # In the start's units, so that scaling the whole head up cannot buy the sign term down.
            edited_pred = pred.gather(1, y[:, None])[:, 0] * (rms0 / pred.square().mean().sqrt().clamp_min(1e-12))
            loss = loss + sign_weight * torch.nn.functional.softplus(-sharpness * sg * edited_pred).mean()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    # The cross-entropy rewards ever larger margins; one common scale changes no argmax and no sign, so the
    # head is scaled back to the start's spread of factor differences: factor values keep their units.
    v = v.detach()
    return (v * (xt @ w0.T).square().mean().sqrt() / (xt @ v.T).square().mean().sqrt()).numpy()


@torch.no_grad()
def _features(
    student: Any, ctx: Any, cfg: Any, rows: list[dict[str, Any]], *, groups: int, seed: int, label: str, progress: bool
) -> dict[str, np.ndarray]:
    """Factor-head inputs of every member of the edit groups of ``rows``, with targets and edited factors."""
    from distill.student import EvalTransform
    from distill.validation import seeded_edit_groups

    tf = EvalTransform(student.spec)
    feats, ftarget, target, single = [], [], [], []
    for n, (group, edited) in enumerate(seeded_edit_groups(ctx, rows, cfg.val, groups=groups, seed=seed), 1):
        pooled, taps = student.features(torch.stack([tf(im) for im in group.images]))
        feats.append(torch.cat([pooled, taps], 1).numpy().astype(np.float64))
        ftarget.append(group.factor_target)
        target.append(group.target)
        single.append([e or "" for e in edited])
        if progress:
            sys.stderr.write(f"\r{label} features {n}/{len(rows) * groups}")
    if progress:
        sys.stderr.write("\n")
    return {"x": np.stack(feats), "ft": np.stack(ftarget), "t": np.stack(target), "single": np.asarray(single)}


def _cached_features(cache_dir: Path | None, key: dict[str, Any] | None, compute: Any) -> dict[str, np.ndarray]:
    """``compute()``, or its earlier result from ``cache_dir`` when made from the same ``key``.

    The key holds everything the features depend on (checkpoint bytes, taps, data, edit seed and groups, the
    images, the code that edits and judges them), so a refit with another ridge or refinement reuses them
    instead of editing every photo again.
    """
    if cache_dir is None:
        return compute()
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"{key['source']}-{digest}.npz"
    if path.is_file():
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    d = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, binary=True) as f:
        np.savez(f, **d)
    return d


def _edit_code_hash() -> str:
    """sha256 of the modules that make and judge edit groups: cached features go stale when they change."""
    from distill import edits, images, validation
    from distill.sources import context, edit
    from distill.teachers import edit_oracle

    files = sorted(Path(edits.__file__).parent.glob("*.py")) + [
        Path(str(m.__file__)) for m in (images, context, edit, validation, edit_oracle)
    ]
    h = hashlib.sha256()
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()


def _biq_rows(ctx: Any, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` BIQ2021 training images (all of them if fewer) as edit sources, no tags: only the factor an edit
    moved is used here, which does not depend on how well made the source was."""
    from distill.sources import stable_key

    items = ctx.biq["train"]
    rng = np.random.default_rng([seed, stable_key("biq2021-heads")])
    pick = np.sort(rng.choice(len(items), min(n, len(items)), replace=False))
    return [{"file": items[i][0], "tags": "", "dataset": "biq2021"} for i in pick]


def _crop_rows(rows: Sequence[dict[str, Any]], n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` random crops of each row as edit sources: 45-75% of the frame, aspect within +-20% of the photo's,
    anywhere in it. Another framing of a scene is the nearest thing to another scene that the same licence
    allows: the permissive model has few photos, and more sources make its explanations generalise better."""
    from distill.sources import stable_key

    out = []
    for row in rows:
        rng = np.random.default_rng([seed, stable_key(row["file"]), stable_key("heads-crops")])
        for _ in range(n):
            area, aspect = rng.uniform(0.45, 0.75), np.exp(rng.uniform(-0.2, 0.2))
            w, h = min(1.0, np.sqrt(area * aspect)), min(1.0, np.sqrt(area / aspect))
            left, top = rng.uniform(0.0, 1.0 - w), rng.uniform(0.0, 1.0 - h)
            out.append({**row, "crop": (float(left), float(top), float(left + w), float(top + h))})
    return out


def _taps(text: str) -> tuple[int, ...]:
    return tuple(int(t) for t in text.split(",") if t.strip())


def _option(default: Any, help: str, *, parse: Any = None) -> Any:
    """A :class:`RefitOptions` field: its default, and the help and parser of its command-line flag."""
    return field(default=default, metadata={"help": help, "parse": parse or type(default)})


@dataclass(frozen=True)
class RefitOptions:
    """How :func:`refit_factor_head` refits; the one place of the defaults. Each field is the flag of its name
    (``biq_sources``: ``--biq-sources``; a field that is on by default, ``--no-centre``) with the same default."""

    taps: tuple[int, ...] = _option(
        DEFAULT_TAPS,
        "feature_info levels of the timm trunk, comma-separated (default: "
        + ",".join(map(str, DEFAULT_TAPS))
        + ": stride 4 and 8 on EfficientNet)",
        parse=_taps,
    )
    centre: bool = _option(True, "leave out each level's centre-minus-mean statistics (factor_tap_centre)")
    groups: int = _option(6, "edit groups per training photo (default: %(default)s)")
    ridge: float = _option(1.0, "penalty, times the mean eigenvalue (default: %(default)s)")
    refine_steps: int = _option(200, "L-BFGS steps of the explanation refinement, 0: none (default: %(default)s)")
    anchor: float = _option(3000.0, "weight keeping the refinement near the least-squares head (default: %(default)s)")
    sign_weight: float = _option(
        10.0,
        "weight of the refinement's term asking the edited factor to favour the better photo (default: %(default)s)",
    )
    seed: int = _option(4321, "edit seed (default: %(default)s)")
    photos: int | None = _option(None, "only the first N training photos (default: all)", parse=int)
    biq_sources: int = _option(0, "also edit N BIQ2021 training images (research-use data; default: %(default)s)")
    biq_groups: int = _option(1, "edit groups per BIQ2021 image (default: %(default)s)")
    photo_crops: int = _option(
        0, "also edit N random crops (45-75%% of the frame) of each training photo (default: %(default)s)"
    )
    crop_groups: int = _option(3, "edit groups per crop (default: %(default)s)")
    data: Path | None = _option(None, "data root with photos/ and biq2021/ (default: shared)", parse=Path)
    cache: Path | None = _option(None, "keep the features in this folder for later refits", parse=Path)


def _tapped_student(checkpoint: str | Path, ckpt: dict[str, Any], opt: RefitOptions) -> tuple[Any, Any]:
    """The trained student, and the same with ``opt``'s factor taps: its weights but a factor head to fit."""
    from distill.student import load_student, rebuild_student

    taps = list(opt.taps)
    old = load_student(ckpt).eval()
    if old.factor_taps and (list(old.factor_taps), old.factor_tap_centre) != (taps, opt.centre):
        raise ValueError(
            f"{checkpoint}: already tapped at {list(old.factor_taps)}, centre {old.factor_tap_centre}; refit with those"
        )
    config = old.backbone_config()
    config["overrides"] = {**config["overrides"], "factor_taps": taps, "factor_tap_centre": opt.centre}
    new = rebuild_student(config).eval()
    missing, unexpected = new.load_state_dict(
        {k: v for k, v in old.state_dict().items() if not k.startswith("factor_head.")}, strict=False
    )
    if unexpected or sorted(missing) != ["factor_head.bias", "factor_head.weight"]:
        raise RuntimeError(f"{checkpoint}: tapped student does not match ({missing=}, {unexpected=})")
    return old, new


def _edit_sources(ctx: Any, opt: RefitOptions) -> list[tuple[str, list[dict[str, Any]], int]]:
    """``(name, rows, groups per row)`` of every kind of edit source the options ask for, the photos first."""
    rows = ctx.photos["train"][: opt.photos]
    sources = [("photos", rows, opt.groups)]
    if opt.biq_sources:
        sources.append(("biq2021", _biq_rows(ctx, opt.biq_sources, opt.seed), opt.biq_groups))
    if opt.photo_crops:
        sources.append(("crops", _crop_rows(rows, opt.photo_crops, opt.seed), opt.crop_groups))
    return sources


def _all_features(
    student: Any, ctx: Any, cfg: Any, checkpoint: str | Path, opt: RefitOptions, *, progress: bool
) -> dict[str, np.ndarray]:
    """:func:`_features` of every edit source, joined (each from ``opt.cache`` where it holds them)."""
    from distill.sources import source_key

    common = None
    if opt.cache is not None:  # what every source's features depend on; hashed once, and only for a cache
        common = {
            "checkpoint": sha256_file(checkpoint),
            "code": _edit_code_hash(),
            "taps": list(opt.taps),
            "centre": opt.centre,
            "seed": opt.seed,
            "data": [str(Path(cfg.data.photos).resolve()), str(Path(cfg.data.biq2021).resolve())],
            "working_scale": cfg.data.working_scale,
        }
    parts = []
    for name, rows, n_groups in _edit_sources(ctx, opt):
        files = [source_key(r) for r in rows]
        key = None if common is None else {**common, "source": name, "groups": n_groups, "files": files}
        parts.append(
            _cached_features(
                opt.cache,
                key,
                lambda r=rows, g=n_groups, n=name: _features(
                    student, ctx, cfg, r, groups=g, seed=opt.seed, label=n, progress=progress
                ),
            )
        )
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _fit_head(
    d: dict[str, np.ndarray], factors: list[str], opt: RefitOptions, *, min_delta: float
) -> tuple[np.ndarray, np.ndarray, dict[str, float], int]:
    """Steps 2-4 of the module's recipe on the features ``d``: the head's weight ``[K, D]`` (on raw features),
    the per-factor gains, the training explanation figures of each step and the number of pairs."""
    x = (d["x"][:, 1:] - d["x"][:, :1]).reshape(-1, d["x"].shape[-1])
    y = (d["ft"][:, 1:] - d["ft"][:, :1]).reshape(-1, len(factors))
    single, delta = d["single"][:, 1:].ravel(), (d["t"][:, 1:] - d["t"][:, :1]).ravel()
    # Imperceptible edits have nothing to explain (the validation's own rule).
    keep = np.isin(single, factors) & (np.abs(delta) > min_delta)
    edited = np.asarray([factors.index(s) for s in single[keep]])
    signs = np.sign(y[keep][np.arange(len(edited)), edited])

    scale = x.std(0) + 1e-8
    z = x / scale
    w = ridge(z, y, opt.ridge)
    pred = z[keep] @ w.T
    gains = fit_gains(pred, edited)
    w = w * gains[:, None]
    hits = {"least_squares": _hits(pred, edited), "with_gains": _hits(pred * gains, edited)}
    if opt.refine_steps:
        w = refine_for_explanations(
            z[keep], edited, w, anchor=opt.anchor, steps=opt.refine_steps, signs=signs, sign_weight=opt.sign_weight
        )
        hits["refined"] = _hits(z[keep] @ w.T, edited)
    edited_pred = (z[keep] @ w.T)[np.arange(len(edited)), edited]
    hits["signs_right"] = float((np.sign(edited_pred) == signs).mean())
    return w / scale, gains, hits, len(x)


@torch.no_grad()
def _set_head(old: Any, new: Any, weight: np.ndarray, sources: np.ndarray) -> None:
    """``new``'s factor head: ``weight``, and the bias that keeps the mean factor values of the unedited
    ``sources`` (their features ``[N, D]``) where ``old``'s head had them (step 5)."""
    old_level = old.factor_head(torch.from_numpy(sources[:, : old.factor_head.in_features]).float()).mean(0)
    new.factor_head.weight.copy_(torch.from_numpy(weight))
    new.factor_head.bias.copy_(old_level - torch.from_numpy(weight @ sources.mean(0)).float())


def refit_factor_head(
    checkpoint: str | Path, out: str | Path, options: RefitOptions | None = None, *, progress: bool = False
) -> dict[str, Any]:
    """Write ``checkpoint`` with a tapped, refitted factor head to ``out``; returns the fit's summary.

    ``options.photos``: use only the first N training photos (quick runs); default all. ``biq_sources``: also
    edit N BIQ2021 training images (``biq_groups`` groups each): more scenes for a head that overfits its photos,
    but research-use data, refused for a permissive-only model. ``photo_crops``: also edit N random crops of each
    training photo (``crop_groups`` groups each). ``cache``: keep the features there for the next refit.
    """
    from distill.evaluate import run_config
    from distill.sources import DataContext
    from distill.student import DERIVED_KEYS, load_checkpoint, save_checkpoint

    opt = options or RefitOptions()
    ckpt = load_checkpoint(checkpoint)
    cfg = run_config(ckpt, opt.data)
    if opt.biq_sources and cfg.data.permissive_only:
        raise ValueError(f"{checkpoint}: a permissive-only model; BIQ2021 images (research use) cannot train it")
    old, new = _tapped_student(checkpoint, ckpt, opt)
    ctx = DataContext.from_config(cfg, new.spec)
    d = _all_features(new, ctx, cfg, checkpoint, opt, progress=progress)
    factors = list(new.factor_names)
    weight, gains, hits, pairs = _fit_head(d, factors, opt, min_delta=cfg.val.min_delta)
    _set_head(old, new, weight, d["x"][:, 0])
    summary = {
        "taps": list(opt.taps),
        "centre": opt.centre,
        "groups_per_photo": opt.groups,
        "photos": len(ctx.photos["train"][: opt.photos]),
        "biq2021_sources": opt.biq_sources,
        "biq2021_groups": opt.biq_groups if opt.biq_sources else 0,
        "photo_crops": opt.photo_crops,
        "crop_groups": opt.crop_groups if opt.photo_crops else 0,
        "pairs": pairs,
        "ridge": opt.ridge,
        "refine_steps": opt.refine_steps,
        "anchor": opt.anchor,
        "sign_weight": opt.sign_weight,
        "seed": opt.seed,
        "gains": dict(zip(factors, gains.round(4).tolist())),
        "train_explain_acc": hits,
    }
    kept = {k: v for k, v in ckpt.items() if k not in DERIVED_KEYS}
    save_checkpoint(out, new, **{**kept, "factor_head_refit": summary})
    return summary


def _add_options(p: argparse.ArgumentParser) -> None:
    """One flag per :class:`RefitOptions` field, its default the field's."""
    for f in fields(RefitOptions):
        help_, flag = f.metadata["help"], "--" + f.name.replace("_", "-")
        if f.default is True:
            p.add_argument(f"--no-{f.name.replace('_', '-')}", dest=f.name, action="store_false", help=help_)
        else:
            p.add_argument(flag, type=f.metadata["parse"], default=f.default, help=help_)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m distill heads", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path, help="a trained student (final.pt or a refitted checkpoint)")
    p.add_argument("--out", type=Path, required=True, help="the checkpoint to write")
    _add_options(p)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from redaes_lite.errors import RedaesError

    options = RefitOptions(**{f.name: getattr(args, f.name) for f in fields(RefitOptions)})
    try:
        summary = refit_factor_head(args.checkpoint, args.out, options, progress=sys.stderr.isatty())
    except (RedaesError, OSError, ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0
