"""How an int8 QDQ file is made (:class:`Int8Recipe`), and the graph edits around quantisation.

Measured on the shipped EfficientNet-Lite0 models (``benchmarks/int8_variants.py``, ``int8_layers.py``):
their ReLU6 activations take the fixed range [0, 6] whatever the calibration, so the calibration method
and photos move the figures little; per-tensor weights are far worse than per-channel; and the error is
concentrated at the input end: the stem convolution reads the pixels rounded to 8 bits (as much noise as
the 0.5-step pixel noise under which fp32 itself keeps only ~98% of its pairs) and the first depthwise
convolution mixes no channels, so nothing averages its rounding out. Keeping those first weighted layers
in float (``float_layers``) is what passes the gates, and it costs no time: an int8 stem with 3 input
channels is no faster than a float one.

Two more edits serve the size budget of an embedded model (fp16 file + int8 file <= 8 MiB):

- :func:`expand_fp16`: the fp16-weights file as an fp32 graph with exactly its (rounded) weights, so the
  int8 file quantises the weights that ship;
- :func:`share_weights`: the int8 file rewritten to read those weights from the fp16 file beside it
  (ONNX external data pointing into ``model.onnx``; ONNX Runtime casts and quantises them once when it
  loads the file, the same integers exactly). The int8 file then adds ~0.5 MiB instead of ~3.7 MiB.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ExportError
from .metadata import read_info, stamp

__all__ = [
    "INT8_METHODS",
    "Int8Recipe",
    "expand_fp16",
    "float_layer_nodes",
    "share_weights",
    "shared_data_files",
]

INT8_METHODS = ("minmax", "entropy", "percentile")
_WEIGHTED = ("Conv", "MatMul", "Gemm")
_ACTIVATIONS = ("Clip", "Relu")
_FP16_SUFFIX = "__fp16"  # what fp16_weights names a weight's fp16 copy


@dataclass(frozen=True)
class Int8Recipe:
    """Options of int8 QDQ quantisation; the defaults are the recipe that shipped before issue 24.

    ``method``: how activation ranges are calibrated (``minmax``, ``entropy`` or ``percentile`` at
    ``percentile``). ``float_layers``: how many weighted layers (Conv/MatMul/Gemm in graph order, heads
    not counted) at the input end stay float, with the activation after each. ``per_channel``: one weight
    scale per output channel (per-tensor loses ranking on these models: Spearman 0.82).
    """

    method: str = "minmax"
    float_layers: int = 0
    percentile: float = 99.999
    per_channel: bool = True

    def __post_init__(self) -> None:
        if self.method not in INT8_METHODS:
            raise ExportError(f"int8 method must be one of {', '.join(INT8_METHODS)}, got {self.method!r}")
        if not isinstance(self.float_layers, int) or self.float_layers < 0:
            raise ExportError(f"int8 float_layers must be an int >= 0, got {self.float_layers!r}")
        if not 50 < self.percentile <= 100:
            raise ExportError(f"int8 percentile must be in (50, 100], got {self.percentile}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line, e.g. ``minmax, per-channel, 2 float layers``."""
        method = f"percentile {self.percentile:g}" if self.method == "percentile" else self.method
        weights = "per-channel" if self.per_channel else "per-tensor"
        return f"{method}, {weights}, {self.float_layers} float layers"

    def calibrate_options(self, n_batches: int) -> dict[str, Any]:
        """``quantize_static`` arguments for the method (``calibrate_method`` and calibration extras).

        Histogram methods keep every activation of the batches one collection reads (373 photos at 224 px:
        more than 12 GB), so they read chunks of at most 8 batches (of one image: ORT stacks a chunk's
        batches, which must be one size), each chunk merged into the histograms.
        """
        from onnxruntime.quantization import CalibrationMethod

        stride = max(k for k in range(1, 9) if n_batches % k == 0)  # ORT wants the chunks to divide the batches
        if self.method == "percentile":
            extra = {"CalibPercentile": self.percentile, "CalibStridedMinMax": stride}
            return {"calibrate_method": CalibrationMethod.Percentile, "extra": extra}
        if self.method == "entropy":
            return {"calibrate_method": CalibrationMethod.Entropy, "extra": {"CalibStridedMinMax": stride}}
        # MinMax keeps only each batch's per-tensor min and max, so it needs no memory limit; and ORT's
        # CalibMaxIntermediateOutputs (1.32) drops the batches it should merge: never set it.
        return {"calibrate_method": CalibrationMethod.MinMax, "extra": {}}


def float_layer_nodes(model: Any, n: int, *, heads: frozenset[str] = frozenset()) -> list[str]:
    """Names of the first ``n`` weighted nodes (not ``heads``) in graph order, each with the Clip/Relu
    that reads its output: left out of quantisation together, they compute in float.

    A prefix, not any subset: ONNX Runtime (>= 1.20, ``WeightBiasQuantization``) gives a float Conv that
    reads a DequantizeLinear output and feeds a QuantizeLinear per-tensor int8 weights of its own, which
    loses more than quantising it properly; a float layer whose input is float is left alone.
    """
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    weighted = [node for node in model.graph.node if node.op_type in _WEIGHTED and node.name not in heads]
    if n > len(weighted):
        raise ExportError(f"int8 float_layers = {n}, but the graph has only {len(weighted)} weighted layers")
    names: list[str] = []
    for node in weighted[:n]:
        if not node.name:
            raise ExportError(f"a {node.op_type} node without a name cannot be kept float")
        names.append(node.name)
        names += [c.name for c in consumers.get(node.output[0], []) if c.op_type in _ACTIVATIONS and c.name]
    return names


def expand_fp16(src: str | os.PathLike, out: str | os.PathLike) -> Path:
    """The fp16-weights file ``src`` (:func:`export.quantize.fp16_weights`) as an fp32 graph whose weights
    are its fp16 values exactly (each ``Cast`` of an fp16 initializer folded); metadata copied. Returns ``out``."""
    import onnx
    from onnx import TensorProto, numpy_helper

    info = read_info(src)
    model = onnx.load(str(src))
    graph = model.graph
    halves = {i.name: i for i in graph.initializer if i.data_type == TensorProto.FLOAT16}
    nodes, folded = [], []
    for node in graph.node:
        if node.op_type == "Cast" and len(node.input) == 1 and node.input[0] in halves:
            arr = numpy_helper.to_array(halves[node.input[0]]).astype(np.float32)
            folded.append(numpy_helper.from_array(arr, node.output[0]))
        else:
            nodes.append(node)
    if not folded:
        raise ExportError(f"{src}: no fp16 weights to expand (not an fp16-weights file)")
    _replace(graph, [i for i in graph.initializer if i.name not in halves] + folded, nodes)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    stamp(out, info)
    return out


def _replace(graph: Any, initializers: list[Any], nodes: list[Any]) -> None:
    """Set ``graph``'s initializers and nodes (protobuf repeated fields: cleared, then extended)."""
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    del graph.node[:]
    graph.node.extend(nodes)


def _external(proto: Any, location: str, offset: int) -> Any:
    """A copy of the tensor ``proto`` (its data at ``offset`` of ``location``) that ONNX reads from there."""
    from onnx import TensorProto

    t = TensorProto()
    t.name, t.data_type = proto.name, proto.data_type
    t.dims.extend(proto.dims)
    t.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(len(proto.raw_data)))):
        entry = t.external_data.add()
        entry.key, entry.value = key, value
    return t


def _weight_sources(weights: Path) -> tuple[dict[str, Any], bytes]:
    import onnx
    from onnx import TensorProto

    blob = weights.read_bytes()
    model = onnx.load_from_string(blob)
    halves = {
        i.name[: -len(_FP16_SUFFIX)]: i
        for i in model.graph.initializer
        if i.data_type == TensorProto.FLOAT16 and i.name.endswith(_FP16_SUFFIX) and i.raw_data
    }
    if not halves:
        raise ExportError(f"{weights}: no fp16 weights to share (not an fp16-weights file)")
    return halves, blob


def share_weights(src: str | os.PathLike, weights: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Rewrite the int8 file ``src`` (quantised from ``expand_fp16(weights)``) so that every weight it
    shares with the fp16 file ``weights`` is read from there; ``out`` must be in ``weights``'s folder.

    An int8 weight becomes ``Cast(fp16 weight) -> QuantizeLinear`` with its own scale and zero point,
    which ONNX Runtime folds into the same int8 constant when it loads the file; a float weight (a head,
    a float layer) becomes ``Cast(fp16 weight)``, as in the fp16 file. Scales, zero points and int32
    biases stay inside ``out``. Returns ``out``.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    src, weights, out = Path(src), Path(weights), Path(out)
    if out.resolve().parent != weights.resolve().parent:
        raise ExportError(f"{out}: a file sharing weights must sit beside {weights.name} (ONNX reads them from there)")
    halves, blob = _weight_sources(weights)
    model = onnx.load(str(src))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}

    def fp16_of(base: str, ref: Any) -> tuple[Any, np.ndarray] | None:
        """The external-data copy of ``base``'s fp16 weight, and its values as fp32."""
        half = halves.get(base)
        if half is None or list(half.dims) != list(ref.dims):
            return None
        offset = blob.find(half.raw_data)  # the bytes at that offset are the tensor's, whichever copy it is
        if offset < 0:
            return None
        return _external(half, weights.name, offset), numpy_helper.to_array(half).astype(np.float32)

    drop: set[str] = set()
    shared: list[Any] = []
    nodes: list[Any] = []
    for node in graph.node:
        q = inits.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
        if q is not None and q.data_type == TensorProto.INT8 and q.name.endswith("_quantized"):
            found = fp16_of(q.name[: -len("_quantized")], q)
            if found is not None:
                half, values = found
                _check_requantised(values, node, inits, numpy_helper.to_array(q))
                drop.add(q.name)
                shared.append(half)
                axis = {a.name: a.i for a in node.attribute if a.name == "axis"}
                nodes.append(helper.make_node("Cast", [half.name], [half.name + "_f32"], to=TensorProto.FLOAT))
                q_in = [half.name + "_f32", *node.input[1:3]]
                nodes.append(helper.make_node("QuantizeLinear", q_in, [q.name], name=q.name + "_q", **axis))
        nodes.append(node)
    for name, init in inits.items():
        if init.data_type == TensorProto.FLOAT and name not in drop:
            found = fp16_of(name, init)
            if found is not None and np.array_equal(found[1], numpy_helper.to_array(init)):
                half = found[0]
                drop.add(name)
                shared.append(half)
                nodes.insert(0, helper.make_node("Cast", [half.name], [name], to=TensorProto.FLOAT))
    if not shared:
        raise ExportError(f"{src}: shares no weights with {weights} (was it quantised from expand_fp16 of it?)")
    _replace(graph, [i for i in graph.initializer if i.name not in drop] + shared, nodes)
    onnx.save(model, str(out))
    onnx.checker.check_model(str(out))  # by path: it resolves the external data beside the file
    stamp(out, read_info(src), external_data={weights.name: _sha256(weights)})
    return out


def _check_requantised(weight: np.ndarray, dq: Any, inits: dict[str, Any], expected: np.ndarray) -> None:
    """The int8 weight that ``QuantizeLinear`` will make from the fp16 weight must be the quantiser's."""
    from onnx import numpy_helper

    scale = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float32)
    zero = numpy_helper.to_array(inits[dq.input[2]]).astype(np.int32) if len(dq.input) > 2 else np.int32(0)
    axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
    shape = [1] * weight.ndim
    if scale.ndim:
        shape[axis] = -1
    got = np.clip(np.rint(weight / scale.reshape(shape)) + zero.reshape(shape), -128, 127).astype(np.int8)
    if not np.array_equal(got, expected):
        where = int(np.count_nonzero(got != expected))
        raise ExportError(f"{dq.input[0]}: re-quantising the fp16 weight differs in {where} values")


def _sha256(path: Path) -> str:
    from redaes_lite.metadata import sha256_file

    return sha256_file(path)


def shared_data_files(path: str | os.PathLike) -> list[str]:
    """The files an ONNX model reads external data from (``[]`` for a self-contained file)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    found = {
        e.value
        for t in model.graph.initializer
        if t.data_location == onnx.TensorProto.EXTERNAL
        for e in t.external_data
        if e.key == "location"
    }
    return sorted(found)
