"""Reduced-precision copies of an fp32 model file: int8 (dynamic or static QDQ) and fp16 weights.

Both int8 modes call ``onnxruntime.quantization`` directly (``optimum`` adds nothing for a plain ONNX file).
Which one suits a graph is measured, not assumed (``pipeline.choose_int8``): dynamic int8 turns a CNN's
convolutions into ``ConvInteger``, which ONNX Runtime runs many times slower than fp32, while static QDQ with
per-channel weights keeps them fast. QDQ is restricted to ``Conv``/``MatMul``/``Gemm`` (quantising
LayerNorm/Softmax/GELU destroyed a ViT's ranking) plus the range-only activations ``Clip``/``Relu``: listing
them lets the quantiser give a convolution's output the activation's range (ReLU6: [0, 6]) instead of the raw
min/max, and remove them, so that the 256 levels cover only values the activation keeps: that is what keeps
the int8 file's ranking close to fp32's (``python -m export.benchmark`` measures it). The utility and factor
heads stay fp32 (:func:`head_nodes`). Calibration pixels come through
:func:`redaes_lite.preprocess.preprocess` with the model's own spec, like every other pixel. How QDQ
calibrates and which layers it keeps float is an :class:`~export.int8.Int8Recipe` (keeping the first layers
float is what passes the gates on the shipped models).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from redaes_lite.preprocess import ImageInput, PreprocessSpec, preprocess

from .errors import ExportError
from .int8 import Int8Recipe, float_layer_nodes
from .metadata import read_info, stamp, with_quantization
from .onnx import INPUT

__all__ = ["INT8_MODES", "QDQ_ACTIVATIONS", "QDQ_OPS", "PixelReader", "fp16_weights", "head_nodes", "quantize_int8"]

INT8_MODES = ("int8-dynamic", "int8-qdq")
QDQ_OPS = ("Conv", "MatMul", "Gemm")
# Activations that only clamp a range: quantised together with the op before them, then removed.
QDQ_ACTIVATIONS = ("Clip", "Relu")
# Ops that only select or reshape values between a head and a graph output.
_SELECTORS = frozenset({"Gather", "Slice", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Split"})
# Tensors smaller than this (biases, scalars) stay fp32: they cost nothing and fp16 buys nothing there.
_FP16_MIN_ELEMENTS = 64


def _reader_base() -> type:
    from onnxruntime.quantization import CalibrationDataReader

    return CalibrationDataReader


class PixelReader:
    """Calibration batches ``{pixel_values: float32 [n, 3, H, W]}``, decoded lazily through ``preprocess``.

    Duck-types ``onnxruntime.quantization.CalibrationDataReader`` (``get_next`` returns ``None`` when done);
    :func:`quantize_int8` wraps it in the real base class so that importing this module needs no onnxruntime.
    """

    def __init__(self, images: Sequence[ImageInput], spec: PreprocessSpec, *, batch_size: int = 8) -> None:
        if not images:
            raise ExportError("int8-qdq needs calibration images (none given)")
        # A lazy sequence (export.calibration.Variants) stays lazy: its edited copies are made per batch.
        self.images = images if isinstance(images, Sequence) else list(images)
        self.spec, self.batch_size = spec, batch_size
        self._next, self._end = 0, len(self.images)

    def __len__(self) -> int:
        """In batches: the unit of :meth:`set_range` (ORT's strided calibration reads chunks of batches)."""
        return -(-len(self.images) // self.batch_size)

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= self._end:
            return None
        batch = self.images[self._next : min(self._next + self.batch_size, self._end)]
        self._next += len(batch)
        return {INPUT: preprocess(batch, self.spec)}

    def rewind(self) -> None:
        self._next, self._end = 0, len(self.images)

    def set_range(self, start_index: int, end_index: int) -> None:
        """Read batches ``start_index`` to ``end_index`` (exclusive) next."""
        self._next = start_index * self.batch_size
        self._end = min(end_index * self.batch_size, len(self.images))


def _as_ort_reader(reader: PixelReader) -> Any:
    class Reader(_reader_base()):  # type: ignore[misc]
        def __len__(self) -> int:
            return len(reader)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return reader.get_next()

        def rewind(self) -> None:
            reader.rewind()

        def set_range(self, start_index: int, end_index: int) -> None:
            reader.set_range(start_index, end_index)

    return Reader()


def head_nodes(model: Any) -> list[str]:
    """Names of the Conv/MatMul/Gemm nodes whose results reach a graph output through selectors only.

    These are the utility and factor heads: they stay fp32, because quantising their output would round
    every utility to one of 256 levels, and the heads are a negligible share of the weights and time.
    """
    producer = {out: node for node in model.graph.node for out in node.output}
    heads: set[str] = set()
    pending, seen = [o.name for o in model.graph.output], set()
    while pending:
        node = producer.get(pending.pop())
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if node.op_type in QDQ_OPS and node.name:
            heads.add(node.name)
        elif node.op_type in _SELECTORS:
            pending.extend(node.input)
    return sorted(heads)


def quantize_int8(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    mode: str,
    calibration: Sequence[ImageInput] = (),
    batch_size: int = 8,
    recipe: Int8Recipe | None = None,
) -> Path:
    """Quantise the fp32 model ``src`` to ``out`` (``mode`` ``int8-dynamic`` or ``int8-qdq``); returns ``out``.

    ``int8-qdq`` calibrates activation ranges on ``calibration`` images, which must not be the photos the
    parity gate later checks, as ``recipe`` says (default :class:`~export.int8.Int8Recipe`: min/max,
    per-channel weights, every layer quantised). The heads (:func:`head_nodes`) and the recipe's float
    layers stay fp32. The metadata is copied with ``redaes.quantization`` = ``mode``.
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if mode not in INT8_MODES:
        raise ExportError(f"unknown int8 mode {mode!r}; choose one of {', '.join(INT8_MODES)}")
    recipe = recipe or Int8Recipe()
    info = read_info(src)
    # Histogram methods merge their batches into one array per chunk, which needs batches of one size.
    per_batch = batch_size if recipe.method == "minmax" else 1
    reader = PixelReader(calibration, info.preprocess, batch_size=per_batch) if mode == "int8-qdq" else None
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="redaes-quant-") as tmp:
        # Shape inference + graph optimisation first, as onnxruntime recommends before quantising.
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        graph = onnx.load(str(pre))
        heads = head_nodes(graph)
        keep = heads + float_layer_nodes(graph, recipe.float_layers, heads=frozenset(heads))
        common = {"nodes_to_exclude": keep, "weight_type": QuantType.QInt8}
        if reader is None:
            quantize_dynamic(pre, out, op_types_to_quantize=list(QDQ_OPS), **common)
        else:
            calibrate = recipe.calibrate_options(len(reader))
            quantize_static(
                pre,
                out,
                _as_ort_reader(reader),
                quant_format=QuantFormat.QDQ,
                per_channel=recipe.per_channel,
                op_types_to_quantize=[*QDQ_OPS, *QDQ_ACTIVATIONS],
                activation_type=QuantType.QUInt8,
                calibrate_method=calibrate["calibrate_method"],
                extra_options=calibrate["extra"],
                **common,
            )
    stamp(out, with_quantization(info, mode))
    return out


def fp16_weights(src: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Store ``src``'s float weights as fp16, each followed by a ``Cast`` to fp32; returns ``out``.

    The model still computes in fp32 (ONNX Runtime folds the casts when it loads the file), so only the
    weights are rounded: half the size of fp32 at fp32 speed, for a model that must fit a size budget.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    info = read_info(src)
    model = onnx.load(str(src))
    graph = model.graph
    kept, casts = [], []
    for init in graph.initializer:
        arr = numpy_helper.to_array(init) if init.data_type == TensorProto.FLOAT else None
        if arr is None or arr.size < _FP16_MIN_ELEMENTS or np.abs(arr).max() > np.finfo(np.float16).max:
            kept.append(init)
            continue
        half = numpy_helper.from_array(arr.astype(np.float16), f"{init.name}__fp16")
        kept.append(half)
        casts.append(
            helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT, name=f"{init.name}__cast")
        )
    if not casts:
        raise ExportError(f"{src}: no float weights to store as fp16")
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = [*casts, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    stamp(out, with_quantization(info, "fp16"))
    return out
