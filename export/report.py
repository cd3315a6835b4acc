"""``export_report.json`` + ``export_report.md``: sizes, latencies and parity figures of one export.

Latency is the median wall time of ``session.run`` on one batch of the model's input size, for each
(threads, batch) pair asked for (by default 1 and 2 threads, batch 1 and 32), on the machine the export
runs on; the report names that machine. Figures are for comparing the files of one export, not a
benchmark of phones.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from redaes_lite._atomic import atomic_open
from redaes_lite.metadata import read_sidecar, sha256_file, sidecar_path

from .metadata import read_info
from .onnx import INPUT

__all__ = [
    "REPORT_JSON",
    "REPORT_MD",
    "describe_file",
    "latency_ms",
    "machine",
    "measure_latencies",
    "to_markdown",
    "write_report",
]

REPORT_JSON = "export_report.json"
REPORT_MD = "export_report.md"


def latency_ms(path: str | os.PathLike, *, threads: int, batch: int, repeats: int = 10, warmup: int = 2) -> float:
    """Median milliseconds of one ``run`` on a batch of ``batch`` images, with ``threads`` intra-op threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    h, w = read_info(path).preprocess.size
    pixels = np.random.default_rng(0).standard_normal((batch, 3, h, w), dtype=np.float32)
    times = []
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        session.run(None, {INPUT: pixels})
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000.0)


def measure_latencies(
    path: str | os.PathLike, *, threads: Sequence[int] = (1, 2), batches: Sequence[int] = (1, 32), repeats: int = 10
) -> dict[str, float]:
    """``{"threads1_batch1": ms, ...}`` for every (threads, batch) pair."""
    return {
        f"threads{t}_batch{b}": round(latency_ms(path, threads=t, batch=b, repeats=repeats), 3)
        for t in threads
        for b in batches
    }


def describe_file(path: str | os.PathLike, *, root: str | os.PathLike) -> dict[str, Any]:
    """Size, sha256, opset and quantization of one exported file, its path relative to ``root``."""
    path = Path(path)
    side = sidecar_path(path)
    return {
        "path": str(path.relative_to(root)),
        "bytes": path.stat().st_size,
        "mib": round(path.stat().st_size / 2**20, 3),
        "sha256": sha256_file(path),
        "opset": read_sidecar(side).opset if side.is_file() else None,
        "quantization": read_info(path).quantization,
    }


def machine() -> dict[str, Any]:
    """Where and with what the files were made and measured; ``cpu_int8``: whether the int8 gates ran on
    int8 dot-product kernels (what ``redaes_lite.precision`` requires before it runs an int8 file)."""
    import dataclasses

    import onnx
    import onnxruntime
    import torch

    from redaes_lite.precision import cpu_int8

    return {
        "cpu_int8": dataclasses.asdict(cpu_int8()),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def to_markdown(report: Mapping[str, Any]) -> str:
    """A human-readable summary of a report (the JSON stays the record)."""
    lines = [f"# Export report: {report.get('status', '?')}", "", f"checkpoint: `{report.get('checkpoint')}`", ""]
    if report.get("error"):
        lines += [f"**error:** {report['error']}", ""]
    files = report.get("files", {})
    if files:
        lat_keys = sorted({k for v in report.get("latency_ms", {}).values() for k in v})
        lines += [
            "| file | quantization | MiB | " + " | ".join(f"{k} ms" for k in lat_keys) + " |",
            "|---|---|---|" + "---|" * len(lat_keys),
        ]
        for name, f in files.items():
            lat = report.get("latency_ms", {}).get(name, {})
            cells = [f"`{f['path']}`", f["quantization"], _fmt(f["mib"]), *(_fmt(lat.get(k, "")) for k in lat_keys)]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    stable = report.get("fp32_stability")
    if stable:
        figs = ", ".join(f"{k} {_fmt(v)}" for k, v in stable.items())
        lines += [f"fp32 against itself under invisible input changes (context, not a gate): {figs}", ""]
    choice = report.get("int8_choice")
    if choice:
        lines += [f"int8: **{choice.get('mode')}** — {choice.get('reason')}", ""]
        if choice.get("recipe"):
            recipe = ", ".join(f"{k} {v}" for k, v in choice["recipe"].items())
            cal = report.get("images", {}).get("calibration_from", "")
            lines += [f"recipe: {recipe}; quantised from {choice.get('quantised_from')}; calibration: {cal}", ""]
        for mode, c in choice.get("candidates", {}).items():
            figs = ", ".join(f"{k} {_fmt(v)}" for k, v in c.get("figures", {}).items())
            ms = f", {_fmt(c['threads1_batch1_ms'])} ms" if "threads1_batch1_ms" in c else ""
            lines.append(f"- {mode}: {'passed' if c.get('passed') else 'failed'}{ms}; {figs}")
        lines.append("")
    gates = report.get("gates", [])
    if gates:
        lines += ["| gate | candidate | photos | figures | passed |", "|---|---|---|---|---|"]
        for g in gates:
            figs = ", ".join(f"{k} {_fmt(v)}" for k, v in g["figures"].items())
            lines.append(f"| {g['name']} | `{g['candidate']}` | {g['n_images']} | {figs} | {g['passed']} |")
        lines.append("")
    return "\n".join(lines)


def write_report(report: Mapping[str, Any], out_dir: str | os.PathLike) -> Path:
    """Write ``export_report.json`` and ``export_report.md`` into ``out_dir``; returns the JSON path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / REPORT_JSON
    with atomic_open(path) as f:
        f.write(json.dumps(report, indent=2, default=str) + "\n")
    with atomic_open(out_dir / REPORT_MD) as f:
        f.write(to_markdown(report) + "\n")
    return path
