"""Tiny contract-conforming ONNX models for tests (built with ``onnx.helper``; no torch, no training).

The graph follows ``docs/model-format.md``: input ``pixel_values`` float32 ``[N, 3, H, W]`` (N dynamic),
outputs ``utility`` ``[N]`` and ``factors`` ``[N, K]``. Its numbers come from real pixel statistics, so
tests can rely on them:

- ``exposure`` = mean brightness in 0..1 (pixels un-normalised with the spec's mean/std),
- ``contrast`` = mean per-channel standard deviation in 0..1,
- ``sharpness`` = mean absolute horizontal neighbour difference in 0..1,
- ``saturation`` = mean spread between channel means; any other factor name gets a fixed mix;
- ``utility`` = 4 * brightness + 2 * contrast + 1 * sharpness: brighter images score higher, and
  different images differ.

Metadata is written with :mod:`redaes_lite.metadata` only, like ``export`` does.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from redaes_lite.metadata import ModelInfo, embed_props, write_sidecar
from redaes_lite.preprocess import PreprocessSpec

__all__ = ["OPSET", "UTILITY_WEIGHTS", "make_info", "make_tiny_model"]

OPSET = 17
# Features the graph computes, in column order: brightness, contrast, sharpness, saturation.
_FEATURES = ("exposure", "contrast", "sharpness", "saturation")
#: utility = features @ UTILITY_WEIGHTS
UTILITY_WEIGHTS = (4.0, 2.0, 1.0, 0.0)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def make_info(
    *,
    size: tuple[int, int] = (32, 32),
    factors: Sequence[str] = ("exposure", "contrast", "sharpness"),
    resize: str = "letterbox",
    mean: Sequence[float] = _IMAGENET_MEAN,
    std: Sequence[float] = _IMAGENET_STD,
    temperature: float = 1.0,
    calibration: dict[str, Any] | None = None,
    quantization: str = "fp32",
    **overrides: Any,
) -> ModelInfo:
    """A valid :class:`ModelInfo` for a tiny test model; ``overrides`` replace any other field."""
    spec = PreprocessSpec(size=tuple(size), resize=resize, pad=tuple(mean), mean=tuple(mean), std=tuple(std))
    fields: dict[str, Any] = {
        "version": "0.0.0+modelkit",
        "preprocess": spec,
        "factors": tuple(factors),
        "temperature": temperature,
        # Utility spans about 0..6 (brightness dominates), mapped onto 0..10.
        "calibration": calibration
        or {"method": "linear", "utility": [0.0, 3.0, 6.0], "score": [0.0, 5.0, 10.0], "fitted_on": "modelkit"},
        "student": {"backbone": "timm:modelkit-tiny", "pretrained": "none", "params": 0, "input": list(size)},
        "teacher": [{"name": "pixel-statistics", "version": "1", "weight": 1.0}],
        "training_data": [{"name": "none", "license": "n/a", "pairs": 0}],
        "quantization": quantization,
        "license": "test model, no weights (Apache-2.0)",
    }
    fields.update(overrides)
    return ModelInfo(**fields)


def _factor_matrix(factors: Sequence[str]) -> np.ndarray:
    """[4, K]: column k picks the named feature, or a fixed (name-seeded) mix for other names."""
    w = np.zeros((len(_FEATURES), len(factors)), np.float32)
    for k, name in enumerate(factors):
        if name in _FEATURES:
            w[_FEATURES.index(name), k] = 1.0
        else:
            w[:, k] = np.random.default_rng(zlib.crc32(name.encode())).uniform(-1, 1, len(_FEATURES))
    return w


def _graph(spec: PreprocessSpec, factors: Sequence[str]) -> onnx.GraphProto:
    h, w = spec.size
    c = lambda name, arr: numpy_helper.from_array(np.asarray(arr), name)  # noqa: E731
    inits = [
        c("std", np.asarray(spec.std, np.float32).reshape(1, 3, 1, 1)),
        c("mean", np.asarray(spec.mean, np.float32).reshape(1, 3, 1, 1)),
        c("s0", np.array([0], np.int64)),
        c("s1", np.array([1], np.int64)),
        c("e_w", np.array([w], np.int64)),
        c("e_wm1", np.array([w - 1], np.int64)),
        c("axis3", np.array([3], np.int64)),
        c("W_f", _factor_matrix(factors)),
        c("W_u", np.asarray(UTILITY_WEIGHTS, np.float32).reshape(-1, 1)),
        c("shape_n", np.array([-1], np.int64)),
    ]
    n = helper.make_node
    nodes = [
        n("Mul", ["pixel_values", "std"], ["x_s"]),
        n("Add", ["x_s", "mean"], ["x"]),  # back to 0..1 RGB
        n("ReduceMean", ["x"], ["cm"], axes=[2, 3], keepdims=0),  # [N,3] channel means
        n("ReduceMean", ["cm"], ["bright"], axes=[1], keepdims=1),  # [N,1]
        n("Mul", ["x", "x"], ["x2"]),
        n("ReduceMean", ["x2"], ["cm2"], axes=[2, 3], keepdims=0),
        n("Mul", ["cm", "cm"], ["cm_sq"]),
        n("Sub", ["cm2", "cm_sq"], ["var"]),
        n("Relu", ["var"], ["var_pos"]),  # rounding can push a flat image's variance below 0
        n("Sqrt", ["var_pos"], ["csd"]),
        n("ReduceMean", ["csd"], ["contrast"], axes=[1], keepdims=1),
        n("Slice", ["x", "s1", "e_w", "axis3"], ["x_r"]),
        n("Slice", ["x", "s0", "e_wm1", "axis3"], ["x_l"]),
        n("Sub", ["x_r", "x_l"], ["dx"]),
        n("Abs", ["dx"], ["adx"]),
        n("ReduceMean", ["adx"], ["sharp"], axes=[1, 2, 3], keepdims=0),
        n("Unsqueeze", ["sharp", "s1"], ["sharpness"]),
        n("ReduceMax", ["cm"], ["cmax"], axes=[1], keepdims=1),
        n("ReduceMin", ["cm"], ["cmin"], axes=[1], keepdims=1),
        n("Sub", ["cmax", "cmin"], ["sat"]),
        n("Concat", ["bright", "contrast", "sharpness", "sat"], ["feats"], axis=1),  # [N,4]
        n("MatMul", ["feats", "W_f"], ["factors"]),
        n("MatMul", ["feats", "W_u"], ["u2"]),
        n("Reshape", ["u2", "shape_n"], ["utility"]),
    ]
    return helper.make_graph(
        nodes,
        "redaes_modelkit",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["N", 3, h, w])],
        [
            helper.make_tensor_value_info("utility", TensorProto.FLOAT, ["N"]),
            helper.make_tensor_value_info("factors", TensorProto.FLOAT, ["N", len(factors)]),
        ],
        initializer=inits,
    )


def make_tiny_model(
    directory: str | Path,
    *,
    size: tuple[int, int] = (32, 32),
    factors: Sequence[str] = ("exposure", "contrast", "sharpness"),
    resize: str = "letterbox",
    mean: Sequence[float] = _IMAGENET_MEAN,
    std: Sequence[float] = _IMAGENET_STD,
    temperature: float = 1.0,
    calibration: dict[str, Any] | None = None,
    quantization: str = "fp32",
    sidecar: bool = True,
    filename: str = "model.onnx",
    props: dict[str, str | None] | None = None,
    **meta_overrides: Any,
) -> Path:
    """Write ``directory/filename`` (+ ``<stem>.json`` sidecar) and return the ONNX path.

    ``meta_overrides`` replace :class:`ModelInfo` fields (validated). ``props`` then edits the raw
    ``metadata_props`` strings (``None`` deletes a key) to build deliberately broken models; the
    sidecar, when written, always describes the valid info.
    """
    info = make_info(
        size=size,
        factors=factors,
        resize=resize,
        mean=mean,
        std=std,
        temperature=temperature,
        calibration=calibration,
        quantization=quantization,
        **meta_overrides,
    )
    model = helper.make_model(
        _graph(info.preprocess, info.factors),
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="redaes-lite-tests",
        ir_version=8,
    )
    embed_props(model, info)
    if props:
        raw = {p.key: p.value for p in model.metadata_props}
        raw.update(props)
        del model.metadata_props[:]
        for key, value in raw.items():
            if value is not None:
                entry = model.metadata_props.add()
                entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / filename
    onnx.save(model, str(path))
    if sidecar:
        write_sidecar(path, info, opset=OPSET)
    return path
