"""Memory profile of ``redaes-lite score`` over many files: is resident memory flat, and how high?

    nice -n 10 python benchmarks/memory_profile.py --files 10000 --model random-lite0 --batch-size 16
    python benchmarks/memory_profile.py --files 1000 --model random-lite0 --batch-size 1 8 16 --mem-pattern on off

Generates ``--files`` small JPEGs (320x240, copies of 64 distinct photo-like images) under ``--dir``
(default ``/tmp/redaes-mem``), runs the CLI on the folder (``-f jsonl -o FILE``) and samples the CLI's
resident set (``/proc/PID/status`` VmRSS) every ``--every`` seconds; the peak is the kernel's ``ru_maxrss``.
Flat means: RSS after the first quarter of the run grows by no more than a few MB to the end.

``--model``: an ONNX file, ``random-lite0`` (a randomly initialised EfficientNet-Lite0 student exported with
torch.onnx by ``benchmarks/peers.py student``; needs the ``distill`` extra) or ``tiny`` (tests/modelkit).
``--mem-pattern on`` runs the CLI with ONNX Runtime's memory pattern switched back on (the runtime's
default before this benchmark), to compare.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).parent
# The CLI, optionally with ORT's memory pattern re-enabled (the variant this benchmark compares against).
_CLI = """import sys
if sys.argv[1] == "on":
    import redaes_lite.session as s
    make = s._session_options
    def patched(threads):
        opts = make(threads)
        opts.enable_mem_pattern = True
        return opts
    s._session_options = patched
del sys.argv[1]
from redaes_lite.cli import main
main()
"""


def make_files(folder: Path, n: int) -> Path:
    """``n`` JPEG files (copies of 64 distinct 320x240 images), made once and reused."""
    if folder.is_dir() and len(os.listdir(folder)) == n:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:240, 0:320]
    blobs = []
    for k in range(64):
        base = np.stack([x * (k % 7 + 1) / 7, y * (k % 5 + 1) / 5, (x + y) * (k % 3 + 1) / 6], -1) % 256
        img = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=85)
        blobs.append(buf.getvalue())
    for i in range(n):
        (folder / f"{i:05d}.jpg").write_bytes(blobs[i % 64])
    return folder


def resolve_model(name: str, cache: Path) -> Path:
    if name == "tiny":
        sys.path.insert(0, str(ROOT / "tests"))
        from modelkit import make_tiny_model

        return make_tiny_model(cache / "tiny")
    if name == "random-lite0":
        path = cache / "random-lite0" / "model.onnx"
        if not path.exists():
            subprocess.run([sys.executable, str(HERE / "peers.py"), "student", str(path)], check=True, cwd=ROOT)
        return path
    return Path(name).resolve()


def _rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def profile(folder: Path, model: Path, *, batch: int, mem_pattern: str, workers: int, every: float) -> dict[str, Any]:
    """One CLI run: wall time, peak RSS (``ru_maxrss``) and the sampled RSS curve."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "scores.jsonl"
        args = [
            sys.executable,
            "-c",
            _CLI,
            mem_pattern,
            "score",
            str(folder),
            "-m",
            str(model),
            "-f",
            "jsonl",
            "-o",
            str(out),
            "--batch-size",
            str(batch),
            "--workers",
            str(workers),
            "--no-progress",
        ]
        with open(Path(tmp) / "stderr", "w+b") as err:  # a file, not a pipe: a full pipe would block the CLI
            t0 = time.perf_counter()
            proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
            samples: list[float] = []
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)  # reaps it, with its own rusage, when done
                if pid:
                    break
                rss = _rss_mb(proc.pid)
                samples += [rss] if rss is not None else []
                time.sleep(every)
            wall = time.perf_counter() - t0
            code = os.waitstatus_to_exitcode(status)
            proc.returncode = code
            err.seek(0)
            rows = sum(1 for _ in open(out)) if out.exists() else 0
            if code != 0 or rows != len(os.listdir(folder)):
                raise RuntimeError(f"CLI failed ({code}, {rows} rows): {err.read().decode()[-400:]}")
    rss = samples or [0.0]
    q = max(1, len(rss) // 4)
    peak = usage.ru_maxrss / 1024  # KiB on Linux
    return {
        "batch_size": batch,
        "mem_pattern": mem_pattern,
        "workers": workers,
        "files": rows,
        "wall_s": round(wall, 1),
        "files_per_s": round(rows / wall, 1),
        "peak_rss_mb": round(peak, 1),
        "rss_at_25_50_75_100_pct_mb": [round(rss[min(len(rss) - 1, i * len(rss) // 4)], 1) for i in (1, 2, 3)]
        + [round(rss[-1], 1)],
        "growth_after_first_quarter_mb": round(max(rss[q:]) - rss[q], 1) if len(rss) > q else 0.0,
        "samples": len(rss),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--model", default="random-lite0", help="ONNX file, 'random-lite0' or 'tiny'")
    parser.add_argument("--batch-size", type=int, nargs="+", default=[16])
    parser.add_argument("--mem-pattern", nargs="+", default=["off"], choices=["on", "off"])
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--every", type=float, default=0.2, help="RSS sampling interval (s)")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/redaes-mem"))
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    folder = make_files(args.dir / f"files-{args.files}", args.files)
    model = resolve_model(args.model, args.dir)
    results = []
    for pattern in args.mem_pattern:
        for batch in args.batch_size:
            results.append(
                profile(folder, model, batch=batch, mem_pattern=pattern, workers=args.workers, every=args.every)
            )
            print(json.dumps(results[-1]), flush=True)
    doc = {"model": str(model), "model_kind": args.model, "cpus": os.cpu_count(), "results": results}
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
