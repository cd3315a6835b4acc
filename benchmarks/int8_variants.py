"""int8 QDQ variants of one model: agreement with fp32 on the gate photos and on other held-out images,
speed at 1 thread, size; and (``--layers``) what each weighted layer loses when it alone is int8.

    python benchmarks/int8_variants.py --fp16 runs/build-default-v1b/export/fp16/model.onnx \\
        --fp32 runs/build-default-v1b/export/fp32/model.onnx [--float-layers 0,2,3,5] \\
        [--methods minmax,entropy,percentile] [--calibration '{"images": 373, "variants": 2}' ...] \\
        [--layers] [--json OUT]

Each variant is what ``python -m export --int8 qdq --int8-shared`` makes: int8 quantised from the fp16 weights
(``export.int8.expand_fp16``) with an ``Int8Recipe``, calibrated on an ``export.calibration.CalibrationSet``.
Figures per variant:

- ``gate``: Spearman and pairwise-order agreement against the fp32 file on the 200 parity photos (the gate);
- ``tune``: the same on 300 other held-out images (BIQ2021 validation images the gate does not use, and PARA
  validation images), to choose a recipe without choosing it on the gate photos;
- ``ms``: inference at 1 thread, batch 1, timed round-robin with the fp16 file in one process (median of
  rounds, and the median of the per-round ratios, which holds on a busy machine);
- ``mib``: the self-contained int8 file, and the shared one (reading the fp16 weights).

``--layers``: each weighted layer quantised *alone* (the rest float), min/max calibration: how much of the
int8 error each layer causes. Generated files go to ``--cache`` (default /tmp/redaes-int8), never the repo.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
from _output import write_json  # noqa: E402


def _tune_photos(n: int = 300) -> list[Path]:
    """Held-out images that are not gate photos: BIQ2021 validation images past the gate's, PARA validation."""
    from distill.splits import load_split
    from export.photos import _spread, data_roots, parity_photos

    root = data_roots()[0].parent
    gate = {str(p) for p in parity_photos()}
    biq = [root / "biq2021" / "images" / f for f in sorted(load_split("biq2021")["val"])]
    para = [root / "para" / "images" / f for f in sorted(load_split("para")["val"])]
    return _spread([p for p in biq if str(p) not in gate], n // 2) + _spread(para, n - n // 2)


def _agreement(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    from redaes_lite.eval.metrics import pair_accuracy, srcc

    return {"spearman": round(srcc(candidate, reference), 4), "pairwise": round(pair_accuracy(candidate, reference), 4)}


def _session(path: Path, threads: int = 1) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads, opts.log_severity_level = threads, 1, 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _utilities(path: Path, pixels: np.ndarray) -> np.ndarray:
    s = _session(path, threads=0)
    return np.concatenate(
        [s.run(["utility"], {"pixel_values": pixels[i : i + 32]})[0] for i in range(0, len(pixels), 32)]
    )


def _latency(files: dict[str, Path], x: np.ndarray, rounds: int, per_round: int = 10) -> dict[str, dict[str, float]]:
    """Round-robin over the files, each round the fastest of ``per_round`` runs; ratios to the first file."""
    sessions = {k: _session(p) for k, p in files.items()}
    for s in sessions.values():
        for _ in range(3):
            s.run(None, {"pixel_values": x})
    best: dict[str, list[float]] = {k: [] for k in files}
    for _ in range(rounds):
        for k, s in sessions.items():
            times = []
            for _ in range(per_round):
                t0 = time.perf_counter()
                s.run(None, {"pixel_values": x})
                times.append((time.perf_counter() - t0) * 1000)
            best[k].append(min(times))
    base = next(iter(files))
    return {
        k: {
            "ms": round(statistics.median(v), 2),
            "ratio": round(statistics.median(a / b for a, b in zip(v, best[base], strict=True)), 3),
        }
        for k, v in best.items()
    }


def variants(args: argparse.Namespace) -> dict[str, Any]:
    import shutil

    from export.calibration import CalibrationSet
    from export.int8 import Int8Recipe, expand_fp16, share_weights
    from export.metadata import read_info
    from export.photos import parity_photos
    from export.quantize import quantize_int8
    from redaes_lite.preprocess import preprocess

    cache = args.cache
    ship = cache / "ship"
    ship.mkdir(parents=True, exist_ok=True)
    for suffix in (".onnx", ".json"):
        shutil.copyfile(args.fp16.with_suffix(suffix), ship / f"model{suffix}")
    fp16 = ship / "model.onnx"
    expanded = expand_fp16(fp16, cache / "expanded" / "model.onnx")
    spec = read_info(args.fp32).preprocess
    gate_px, tune_px = preprocess(parity_photos(), spec), preprocess(_tune_photos(), spec)
    ref = {"gate": _utilities(args.fp32, gate_px), "tune": _utilities(args.fp32, tune_px)}
    rows: list[dict[str, Any]] = [
        {
            "variant": "fp16 (shipped)",
            **{k: _agreement(ref[k], _utilities(fp16, px)) for k, px in (("gate", gate_px), ("tune", tune_px))},
        }
    ]
    files = {"fp16 (shipped)": fp16}
    for c, cal in enumerate(args.calibration):
        cs = CalibrationSet(**cal)
        images = cs.inputs()
        for method in args.methods:
            for k in args.float_layers:
                name = f"{cs.describe()}; {method}; {k} float layers"
                out = cache / f"c{c}-{method}-f{k}" / "model.onnx"
                t0 = time.perf_counter()
                recipe = Int8Recipe(method=method, float_layers=k)
                quantize_int8(expanded, out, mode="int8-qdq", calibration=images, recipe=recipe)
                took = time.perf_counter() - t0
                row = {"variant": name, "calibration": cal, "recipe": recipe.to_dict(), "quantize_s": round(took, 1)}
                for key, px in (("gate", gate_px), ("tune", tune_px)):
                    row[key] = _agreement(ref[key], _utilities(out, px))
                shared = share_weights(out, fp16, ship / f"c{c}-{method}-f{k}.int8.onnx")
                row["mib"] = round(out.stat().st_size / 2**20, 2)
                row["shared_mib"] = round(shared.stat().st_size / 2**20, 2)
                rows.append(row)
                files[name] = shared
                print(json.dumps(row), flush=True)
    timing = _latency(files, gate_px[:1], args.rounds)
    for row in rows:
        row.update(timing[row["variant"]])
    return {"fp16": str(args.fp16), "fp32": str(args.fp32), "rows": rows}


def layers(args: argparse.Namespace) -> dict[str, Any]:
    """Each weighted layer (with its activation) int8 alone, the rest float: the error that layer brings."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from export.calibration import CalibrationSet
    from export.int8 import expand_fp16, float_layer_nodes
    from export.metadata import read_info
    from export.photos import parity_photos
    from export.quantize import QDQ_ACTIVATIONS, QDQ_OPS, PixelReader, _as_ort_reader, head_nodes
    from redaes_lite.preprocess import preprocess

    cache = args.cache / "layers"
    cache.mkdir(parents=True, exist_ok=True)
    pre = cache / "pre.onnx"
    quant_pre_process(str(expand_fp16(args.fp16, cache / "expanded.onnx")), str(pre), skip_symbolic_shape=True)
    graph = onnx.load(str(pre))
    heads = frozenset(head_nodes(graph))
    weighted = [n for n in graph.graph.node if n.op_type in QDQ_OPS and n.name not in heads]
    spec = read_info(args.fp32).preprocess
    gate_px = preprocess(parity_photos(), spec)
    ref = _utilities(args.fp32, gate_px)
    reader = PixelReader(CalibrationSet(**args.calibration[0]).inputs(), spec)
    rows = []
    for i, node in enumerate(weighted):
        prefix = float_layer_nodes(graph, i + 1, heads=heads)
        alone = prefix[len(float_layer_nodes(graph, i, heads=heads)) :]  # this layer and its activation
        out = cache / "alone.onnx"
        reader.rewind()
        quantize_static(
            str(pre),
            str(out),
            _as_ort_reader(reader),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            op_types_to_quantize=[*QDQ_OPS, *QDQ_ACTIVATIONS],
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_quantize=alone,
            calibration_cache_path=str(cache / "ranges.json"),
        )
        row = {"index": i, "node": node.name, "op": node.op_type, **_agreement(ref, _utilities(out, gate_px))}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return {"fp16": str(args.fp16), "fp32": str(args.fp32), "layers": rows}


def _table(doc: dict[str, Any]) -> str:
    if "layers" in doc:
        lines = ["| # | layer | Spearman | pairwise |", "|---:|---|---:|---:|"]
        lines += [
            f"| {r['index']} | {r['node']} ({r['op']}) | {r['spearman']} | {r['pairwise']} |" for r in doc["layers"]
        ]
        return "\n".join(lines)
    lines = [
        "| variant | gate Spearman | gate pairwise | other held-out pairwise | ms 1 thread | x fp16 | MiB (shared) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in doc["rows"]:
        size = f"{r['mib']} ({r['shared_mib']})" if "mib" in r else ""
        lines.append(
            f"| {r['variant']} | {r['gate']['spearman']} | {r['gate']['pairwise']} | {r['tune']['pairwise']} "
            f"| {r['ms']} | {r['ratio']} | {size} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fp16", type=Path, required=True, help="the fp16-weights model.onnx that ships")
    p.add_argument("--fp32", type=Path, required=True, help="its fp32 file, the gates' reference")
    p.add_argument("--float-layers", default="0,2,3,5", help="comma-separated float_layers values")
    p.add_argument("--methods", default="minmax", help="comma-separated calibration methods")
    p.add_argument(
        "--calibration",
        action="append",
        type=json.loads,
        help='CalibrationSet fields as JSON, e.g. \'{"images": 373, "variants": 2}\' (repeatable)',
    )
    p.add_argument("--layers", action="store_true", help="each layer int8 alone instead of the variants")
    p.add_argument("--rounds", type=int, default=15, help="timing rounds (default %(default)s)")
    p.add_argument("--cache", type=Path, default=Path("/tmp/redaes-int8"))
    p.add_argument("--json", type=Path, help="write the figures here")
    args = p.parse_args()
    args.float_layers = [int(k) for k in args.float_layers.split(",")]
    args.methods = [m.strip() for m in args.methods.split(",")]
    args.calibration = args.calibration or [{"images": 128}]
    doc = layers(args) if args.layers else variants(args)
    from export.report import machine

    doc["machine"] = {**machine(), "loadavg": list(os.getloadavg())}
    print(_table(doc))
    if args.json:
        write_json(args.json, doc)


if __name__ == "__main__":
    main()
