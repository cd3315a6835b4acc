"""Training configuration: dataclasses read from YAML, overridden by ``--set key.sub=value`` flags.

A run is fully described by one :class:`TrainConfig`; the resolved config (file + overrides) is written
beside the checkpoint as ``config.yaml`` and stored inside it, so every run can be repeated exactly
(STYLE rule 11). Unknown keys fail with the nearest known spelling instead of being ignored.

Sources and losses are dicts keyed by name so that one flag can reach any of them::

    --set sources.edit.weight=0.5 --set losses.ranking.weight=2 --set stages.1.steps=300
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from distill.human_sets import HUMAN_SETS
from distill.splits import DATA_ROOT
from redaes_lite.errors import RedaesError
from redaes_lite.metadata import FACTORS

__all__ = [
    "ConfigError",
    "DataConfig",
    "LossConfig",
    "OptimConfig",
    "SourceConfig",
    "StageConfig",
    "StudentConfig",
    "TrainConfig",
    "ValConfig",
    "apply_overrides",
    "config_from_dict",
    "dump_config",
    "load_config",
]

#: The source kinds a config may name, checked when it loads (before any data is read); each is registered
#: in ``distill.registry.SOURCES`` by its module under ``distill/sources/`` (a test keeps the two in step).
SOURCE_KINDS = ("edit", "mos", "labels", "cross")


class ConfigError(RedaesError):
    """A training configuration is malformed (unknown key, wrong type, impossible value)."""


@dataclass
class StudentConfig:
    """The network being trained; ``backbone`` is ``timm:<name>``, ``open_clip:<model>:<tag>`` or
    ``nima:mobilenet_v1``."""

    backbone: str = "timm:tf_efficientnet_lite0"
    pretrained: str | None = None
    input_size: list[int] = field(default_factory=lambda: [224, 224])
    resize: str = "letterbox"
    # Nearest keeps the pixel-level detail (sharpness, noise) an antialiased downscale blurs away: NIMA was
    # trained on nearest-sampled inputs and ranks BIQ2021 far worse through a bilinear one.
    interpolation: str = "bilinear"
    overrides: dict[str, Any] = field(default_factory=dict)  # extra create_student keywords (e.g. drop_rate)
    # Keep the pretrained BatchNorm statistics (norm layers in eval mode while training): groups of edits of
    # a few photos make unrepresentative batch statistics, and training then matches inference.
    freeze_bn_stats: bool = False


@dataclass
class DataConfig:
    """Where the shared data lives and how images are cached and pre-shrunk."""

    # ``../shared/data`` beside the repository (or ``$REDAES_DATA``), wherever the clone lives.
    photos: str = str(DATA_ROOT / "photos")
    biq2021: str = str(DATA_ROOT / "biq2021")
    para: str = str(DATA_ROOT / "para")  # read only when a source or val.human_sets uses it
    # Sources are decoded once, shrunk so their long side is this multiple of the model input's long
    # side, and kept in an LRU cache: edits run on small images and workers never re-decode.
    working_scale: float = 1.5
    cache_size: int = 1024
    # Only photos whose manifest licence allows commercial use (train and validation): the permissive model.
    permissive_only: bool = False


@dataclass
class UnusableConfig:
    """Unusable frames (``distill.edits.unusable``) swapped into a source's groups, targeted below every photo.

    ``fraction``: share of the groups that get ``per_group`` of them (in place of their last members);
    ``target``: their target in the source's units before ``scale``; None (``mos`` sources only): below the
    data set's score range by a quarter of that range.
    """

    fraction: float = 0.5
    per_group: int = 1
    target: float | None = None


@dataclass
class SourceConfig:
    """One training stream of groups.

    ``kind`` (a source registered in ``distill.registry.SOURCES``, one of :data:`SOURCE_KINDS`): ``edit`` (edit
    oracle over photos), ``mos`` (BIQ2021 MOS), ``labels`` (pair-label JSONL) or ``cross`` (unlabelled
    cross-content groups; needs ``teacher``). ``scale`` maps the teacher's units to utility units; ``weight``
    weighs this source's losses; ``losses`` scales named losses for this source only (e.g. ``{relative: 0}`` on
    MOS groups). ``teacher`` relabels the groups on the fly (teacher in the loop,
    ``distill.sources.teacher_loop``): a trained checkpoint, whose utilities (and factor outputs) replace the
    source's own targets, or ``nima`` (idealo's NIMA MobileNet/AVA release in ``<shared>/weights``, sha256
    checked; Apache-2.0, so a ``permissive_only`` model may learn from it) or ``nima:PATH`` (another Keras HDF5
    file), whose mean score (1..10) times ``scale`` becomes the target, with no factor targets.
    """

    kind: str = "edit"
    weight: float = 1.0
    scale: float = 1.0
    group_size: int = 4
    groups: int = 8  # groups per batch
    losses: dict[str, float] = field(default_factory=dict)
    teacher: str | None = None
    teacher_factors: bool = True  # also distil the teacher's factor outputs (when names match)
    labels: str | None = None  # kind=labels: the JSONL file
    root: str | None = None  # kind=labels: image root (defaults to the JSONL's folder)
    n_ops: int | None = None  # kind=edit: edits per recipe (None: the edit module's default mix)
    # kind=mos: the human-score data set (``distill.human_sets.HUMAN_SETS``: biq2021, para); pairs never
    # cross data sets. kind=cross: ``photos`` (training photos only) or a data set drawn beside them
    dataset: str = "biq2021"
    within_fraction: float = 0.5  # kind=mos: share of groups drawn within one subset / session
    crop_fraction: float = 0.0  # kind=cross: share of members that are random crops (25-80% of the frame)
    unusable: UnusableConfig | None = None  # kind=edit/mos: teach that a non-photo is worse than any photo


@dataclass
class LossConfig:
    """A loss from ``distill.losses.LOSSES`` with its weight and keyword options."""

    weight: float = 1.0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    """AdamW with linear warm-up then cosine decay to ``lr * min_lr_ratio``."""

    lr: float = 1e-3
    backbone_lr: float | None = None  # pretrained trunks often want a smaller rate than the new heads
    weight_decay: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    warmup_steps: int = 50
    min_lr_ratio: float = 0.02
    grad_clip: float | None = 5.0


@dataclass
class ValConfig:
    """Fixed validation sets (seeded once) and how often to use them."""

    every: int = 200
    photos_groups: int = 2  # edit groups per validation source photo
    group_size: int = 6  # source + single- and multi-edit members
    single_fraction: float = 0.7  # share of members made by one edit (per-factor accuracy, explanations)
    mos_images: int | None = None  # cap on BIQ2021 validation images (None: all)
    mos_pair_margin: float = 0.05  # |dMOS| above which a validation MOS pair counts (temperature, ECE)
    # Further human-score data sets measured on their validation split (``<name>_srcc``, ``<name>_plcc``).
    human_sets: list[str] = field(default_factory=list)
    human_images: int | None = None  # cap on each of their validation images (None: all)
    # Edit pairs whose |oracle delta| is at most this have no perceptible order (the oracle's changes of
    # a few hundredths of a unit) and are not scored by edit_acc; edit_acc_all scores every pair.
    min_delta: float = 0.1
    # Fit temperature and display calibration on BIQ2021 validation MOS too (False: edit pairs only and
    # an even spread of validation utilities, for models that must not derive anything from human scores).
    fit_on_mos: bool = True
    # The display map's reference pool also holds the training photos (as one more kind): for a model without
    # human-scored data, the validation photos alone are too few to reach the top of what users will score.
    pool_train_photos: bool = False
    best_metric: str = "edit_acc"
    best_mode: str = "max"
    batch_size: int = 64
    seed: int = 1234


@dataclass
class StageConfig:
    """A curriculum stage: runs ``steps`` steps with its sources/losses replacing or updating the base ones.

    ``sources``/``losses`` entries update the base entry of the same name (a new name adds one);
    ``only`` restricts the active sources to the listed names.
    """

    name: str = "stage"
    steps: int = 100
    only: list[str] | None = None
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    losses: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class BuildConfig:
    """What ``python -m distill build`` does after training (``distill.build``): options of the later stages
    as plain data, spelled like their command-line flags (``biq_sources: 2550`` is ``--biq-sources 2550``)."""

    heads: dict[str, Any] | None = None  # python -m distill heads options; None: keep the trained factor head
    export: dict[str, Any] = field(default_factory=lambda: {"fp16": True})  # python -m export options
    file: str = "fp16"  # the exported file to ship: fp32 | fp16 | int8
    model: str = "default"  # its name under redaes_lite/models/
    notice: str | None = None  # NOTICE file shipped beside it (path relative to the repository)


@dataclass
class TrainConfig:
    """A whole training run."""

    name: str = "run"
    version: str = "0.1.0"  # model version, exported as redaes.version
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    steps: int = 1000  # ignored when stages are given (their steps add up)
    num_workers: int = 1
    out: str = "runs/run"
    checkpoint_every: int = 100
    log_every: int = 10
    threads: int | None = None  # torch intra-op threads (None: torch's default)
    # NHWC tensors for the convolutions: 1.5x faster Lite0 training steps on this CPU, same results up to
    # float rounding; it changes nothing in checkpoints.
    channels_last: bool = True
    factors: list[str] = field(default_factory=lambda: list(FACTORS))  # the whole vocabulary, in its order
    student: StudentConfig = field(default_factory=StudentConfig)
    data: DataConfig = field(default_factory=DataConfig)
    sources: dict[str, SourceConfig] = field(default_factory=lambda: {"edit": SourceConfig()})
    losses: dict[str, LossConfig] = field(
        default_factory=lambda: {"relative": LossConfig(), "ranking": LossConfig(), "factor": LossConfig(0.5)}
    )
    optim: OptimConfig = field(default_factory=OptimConfig)
    val: ValConfig = field(default_factory=ValConfig)
    stages: list[StageConfig] = field(default_factory=list)
    license: str | None = None  # terms of the weights; None: derived from the training data
    build: BuildConfig = field(default_factory=BuildConfig)

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages) if self.stages else self.steps

    def stage_at(self, step: int) -> tuple[int, StageConfig | None]:
        """Index and config of the stage that runs ``step`` (0-based); ``(0, None)`` without stages."""
        start = 0
        for i, stage in enumerate(self.stages):
            if step < start + stage.steps:
                return i, stage
            start += stage.steps
        return (len(self.stages) - 1, self.stages[-1]) if self.stages else (0, None)

    def stage_config(self, stage: StageConfig | None) -> tuple[dict[str, SourceConfig], dict[str, LossConfig]]:
        """The sources and losses in force during ``stage`` (base entries updated by the stage's)."""
        if stage is None:
            return dict(self.sources), dict(self.losses)
        sources = {**{k: _to_dict(v) for k, v in self.sources.items()}}
        for name, upd in stage.sources.items():
            sources[name] = {**sources.get(name, {}), **upd}
        if stage.only is not None:
            sources = {k: v for k, v in sources.items() if k in stage.only}
        losses = {**{k: _to_dict(v) for k, v in self.losses.items()}}
        for name, upd in stage.losses.items():
            losses[name] = {**losses.get(name, {}), **upd}
        where = f"stage {stage.name!r}"
        return (
            {k: _build(SourceConfig, v, f"{where}.sources.{k}") for k, v in sources.items()},
            {k: _build(LossConfig, v, f"{where}.losses.{k}") for k, v in losses.items()},
        )


def _validate(cfg: TrainConfig) -> None:
    if cfg.total_steps < 1:
        raise ConfigError(f"config {cfg.name!r}: needs at least one training step")
    if cfg.num_workers < 0:
        raise ConfigError(f"config {cfg.name!r}: num_workers must be >= 0")
    if len(cfg.student.input_size) != 2:
        raise ConfigError(f"config {cfg.name!r}: student.input_size must be [H, W]")
    if cfg.val.best_mode not in ("max", "min"):
        raise ConfigError(f"config {cfg.name!r}: val.best_mode must be 'max' or 'min'")
    if len(set(cfg.factors)) != len(cfg.factors):
        raise ConfigError(f"config {cfg.name!r}: factors must be unique")
    for stage in cfg.stages:
        cfg.stage_config(stage)  # builds (and so checks) every stage's sources and losses
        for name in stage.only or ():
            if name not in cfg.sources and name not in stage.sources:
                raise ConfigError(f"config {cfg.name!r}: stage {stage.name!r} names unknown source {name!r}")
    for stage in [None, *cfg.stages]:
        sources, _ = cfg.stage_config(stage)
        for name, src in sources.items():
            _validate_source(name, src)
            if src.kind == "cross" and src.dataset != "photos" and cfg.data.permissive_only:
                raise ConfigError(
                    f"source {name!r}: cross groups of a permissive_only model draw from the photos only "
                    f"(dataset: photos), not {src.dataset}"
                )
            if src.kind == "mos" and cfg.data.permissive_only:
                raise ConfigError(
                    f"source {name!r}: human scores ({src.dataset}) are research-use data; a permissive_only "
                    "model may not train on them"
                )
    for name in cfg.val.human_sets:
        if name not in HUMAN_SETS or name == "biq2021":
            raise ConfigError(f"config {cfg.name!r}: val.human_sets: unknown data set {name!r}")


def _validate_source(name: str, src: SourceConfig) -> None:
    if src.kind not in SOURCE_KINDS:
        raise ConfigError(f"source {name!r}: kind must be one of {SOURCE_KINDS}, got {src.kind!r}")
    if src.group_size < 2 or src.groups < 1:
        raise ConfigError(f"source {name!r}: needs group_size >= 2 and groups >= 1")
    if src.kind == "labels" and src.group_size != 2:
        raise ConfigError(f"source {name!r}: labelled pairs form groups of 2 (group_size: 2)")
    if src.kind == "labels" and not src.labels:
        raise ConfigError(f"source {name!r}: kind 'labels' needs labels: path/to/labels.jsonl")
    if src.kind == "cross" and src.dataset not in ("photos", *HUMAN_SETS):
        raise ConfigError(
            f"source {name!r}: cross groups draw from photos or {', '.join(HUMAN_SETS)}, not {src.dataset!r}"
        )
    if src.kind == "mos" and src.dataset not in HUMAN_SETS:
        raise ConfigError(f"source {name!r}: unknown dataset {src.dataset!r}; known: {', '.join(HUMAN_SETS)}")
    if src.teacher is not None and str(src.teacher).strip() == "nima:":
        raise ConfigError(f"source {name!r}: teacher 'nima:' names no file (nima, nima:PATH or a checkpoint path)")
    if src.unusable is not None:
        u = src.unusable
        if src.kind not in ("edit", "mos") or src.teacher:
            raise ConfigError(f"source {name!r}: unusable frames need an edit or mos source with its own targets")
        if not 0.0 < u.fraction <= 1.0 or not 1 <= u.per_group < src.group_size:
            raise ConfigError(f"source {name!r}: unusable needs 0 < fraction <= 1 and 1 <= per_group < group_size")
        if u.target is None and src.kind != "mos":
            raise ConfigError(f"source {name!r}: unusable.target is needed outside mos sources")
    if src.kind == "cross" and not src.teacher:
        raise ConfigError(
            f"source {name!r}: kind 'cross' has no labels of its own and needs a teacher (a checkpoint or nima)"
        )


# --- dict <-> dataclass ---------------------------------------------------------------------------


def _to_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: _to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_dict(v) for v in obj]
    return obj


def _build_value(tp: Any, value: Any, where: str) -> Any:
    """Convert ``value`` to the annotated type ``tp`` (dataclasses, dict/list of them, scalars)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _build_value(inner[0], value, where)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config {where}: expected a mapping, got {value!r}")
        return {str(k): _build_value(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config {where}: expected a list, got {value!r}")
        return [_build_value(args[0], v, f"{where}.{i}") for i, v in enumerate(value)]
    if tp is float and isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            return float(value)  # YAML 1.1 reads "3e-4" (no dot) as a string
        except ValueError:
            raise ConfigError(f"config {where}: expected float, got {value!r}") from None
    if tp in (int, float, str, bool) and not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"config {where}: expected {tp.__name__}, got {value!r}")
    return value


def _build(cls: type, data: Any, where: str) -> Any:
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"config {where}: expected a mapping for {cls.__name__}, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            hint = difflib.get_close_matches(str(key), names, n=1)
            extra = f"; did you mean {hint[0]!r}?" if hint else f"; known: {', '.join(names)}"
            raise ConfigError(f"config{' ' + where if where else ''}: unknown key {key!r}{extra}")
        kwargs[key] = _build_value(hints[key], value, f"{where}.{key}" if where else key)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"config {where or cls.__name__}: {e}") from None


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """``a.b.0.c = value`` in a nested dict/list tree, creating dicts on the way."""
    keys = dotted.split(".")
    node: Any = tree
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise ConfigError(f"--set {dotted}: {key!r} is not an index of a list of {len(node)}")
            if last:
                node[int(key)] = value
            else:
                node = node[int(key)]
        elif isinstance(node, dict):
            if last:
                node[key] = value
            else:
                if node.get(key) is None:
                    node[key] = {}
                node = node[key]
        else:
            raise ConfigError(f"--set {dotted}: {'.'.join(keys[:i])} is a value, not a section")


def apply_overrides(tree: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings (values parsed as YAML: ``3``, ``1e-3``, ``[96, 96]``, ``null``)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key.sub=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        _set_path(tree, key.strip(), value)
    return tree


def load_config(
    path: str | os.PathLike | None = None,
    *,
    overrides: list[str] | tuple[str, ...] = (),
) -> TrainConfig:
    """Read a YAML config (or start from the defaults), apply overrides and validate."""
    tree: dict[str, Any] = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"{path}: cannot read config ({e.strerror or e})") from None
        try:
            tree = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"{path}: a config must be a YAML mapping")
    # Overrides apply to the resolved config, so ``--set losses.ranking.weight=2`` updates the ranking
    # entry in force (default or from the file) instead of replacing the whole ``losses`` mapping.
    resolved = _to_dict(_build(TrainConfig, tree, ""))
    return _build(TrainConfig, apply_overrides(resolved, overrides), "")


def config_from_dict(tree: dict[str, Any]) -> TrainConfig:
    """Rebuild a config from the plain dict stored in a checkpoint."""
    return _build(TrainConfig, tree, "")


def dump_config(cfg: TrainConfig, path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The resolved config as a plain dict; written as YAML to ``path`` when given."""
    tree = _to_dict(cfg)
    if path is not None:
        Path(path).write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    return tree
