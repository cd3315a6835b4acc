"""Speed of the redaes-lite runtime, its decode floor and peer architectures, on this machine.

    python benchmarks/speed.py --model PATH|FOLDER|default|random-lite0 [--int8-model PATH] [--quick] [--json OUT]

Every configuration runs in a fresh process (``--child``), warms up, then reports the median of its
repeated runs; the parent prints a markdown table and writes all figures (with the raw times) as JSON.

- end to end (``Scorer.score`` of a path, one thread, one core) on the camera-like 12 MP JPEG of
  ``benchmarks/README.md`` and on the shared photos, timed round-robin in one process with
  decode + preprocess alone and with the decode floor (``Image.open`` + ``draft("RGB", (2W, 2H))`` +
  ``load()``), so that ratios to the floor compare like with like on a busy machine;
- inference alone (the ONNX Runtime session) fp32 and int8 x 1 and 2 threads x batch 1 and 32;
- ``redaes-lite score FOLDER`` throughput (all cores, its defaults) on camera-like JPEGs and the shared
  photos, and its peak RSS scoring 1,000 files;
- peers (``benchmarks/peers.py``): random-weight torch eager models, one thread, batch 1, as ratios to our
  end-to-end time.

A model folder (or an embedded model's name) that ships ``model.int8.onnx`` beside ``model.onnx`` gives both
files' inference, and end to end runs the file ``load()`` chooses on this machine (``redaes_lite.precision``:
the table says which and why); the machine line names the CPU and its int8 dot-product features.
``--model random-lite0`` exports a randomly initialised EfficientNet-Lite0 student into the cache
(``peers.py student``), labelled as such everywhere: until a trained model ships it stands in for one of
the same architecture. ``--int8-model`` defaults to an int8-qdq copy made with ``export.quantize``.
Generated files live in ``--cache`` (default ``/tmp/redaes-bench``), never in the repository.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PHOTOS = REPO.parent / "shared" / "data" / "photos"
CLI = "from redaes_lite.cli import main; main()"  # the console script's entry point, run from the checkout
sys.path.insert(0, str(HERE))

from _output import write_json  # noqa: E402
from _speed_table import markdown  # noqa: E402

# ---------------------------------------------------------------------------------------------- children


def _pin_one_core() -> None:
    """One-thread figures use one core: the other one stays free for the machine's other work."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def _timed(fn: Callable[[], Any], *, repeat: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return times


def _draft_decode(path: str, size: list[int]) -> None:
    """The decode floor (``benchmarks/README.md``): ``Image.open`` + ``draft("RGB", (2W, 2H))`` + ``load()``."""
    from PIL import Image

    h, w = size
    with Image.open(path) as im:
        im.draft("RGB", (2 * w, 2 * h))
        im.load()


def child_e2e(model: str, images: list[str], repeat: int) -> dict[str, Any]:
    """Per image, round-robin so that load from other processes hits all three alike: the decode floor,
    decode + preprocess, and ``Scorer.score(path)``. Medians per image, then over images. ``model`` may be a
    folder: then the file ``load()`` chooses runs, and ``chosen`` says which and why."""
    import redaes_lite
    from redaes_lite.preprocess import load_image, to_array

    _pin_one_core()
    scorer = redaes_lite.load(model, threads=1)
    chosen = scorer.choice.to_dict() if scorer.choice else None
    spec = scorer.info.preprocess
    per: dict[str, list[float]] = {"floor_ms": [], "preprocess_ms": [], "e2e_ms": []}
    for path in images:
        cases = {  # default arguments bind this iteration's path
            "floor_ms": lambda p=path: _draft_decode(p, list(spec.size)),
            "preprocess_ms": lambda p=path: to_array(load_image(p, spec), spec),
            "e2e_ms": lambda p=path: scorer.score(p),
        }
        for fn in cases.values():
            fn()  # warm-up: page cache, Pillow plugins, ORT's first run
        times: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(repeat):
            for key, fn in cases.items():
                times[key] += _timed(fn, repeat=1, warmup=0)
        for key, values in per.items():
            values.append(statistics.median(times[key]))
    summary = {k: statistics.median(v) for k, v in per.items()}
    return {"images": len(images), "chosen": chosen, **summary, "per_image": per}


def child_infer(model: str, threads: int, batch: int, repeat: int) -> dict[str, Any]:
    import numpy as np

    from redaes_lite.session import open_session

    if threads == 1:
        _pin_one_core()
    session = open_session(model, threads=threads)
    x = np.random.default_rng(0).standard_normal((batch, 3, *session.info.preprocess.size)).astype(np.float32)
    times = _timed(lambda: session.run(x), repeat=repeat, warmup=2)
    med = statistics.median(times)
    return {"median_ms": med, "per_image_ms": med / batch, "times_ms": times}


def child_int8(src: str, out: str, calibration: list[str]) -> dict[str, Any]:
    from export.quantize import quantize_int8

    return {"path": str(quantize_int8(src, out, mode="int8-qdq", calibration=calibration))}


def child_cli(args: list[str]) -> dict[str, Any]:
    """``run_cli`` from a small process: a child's peak RSS counts the memory of the process it was forked
    from, so forking the CLI from the parent (which made the 12 MP JPEG and loaded the model) inflated it."""
    return run_cli(args)


CHILDREN: dict[str, Callable[..., dict[str, Any]]] = {
    "e2e": child_e2e,
    "cli": child_cli,
    "infer": child_infer,
    "int8": child_int8,
}


# ---------------------------------------------------------------------------------------------- parent


def _env(*, one_thread: bool) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    if one_thread:
        env["OMP_NUM_THREADS"] = "1"  # numpy/BLAS too
    return env


def _result(proc: subprocess.CompletedProcess, what: str) -> dict[str, Any]:
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"{what} failed (exit {proc.returncode}): " + " | ".join(tail))
    return json.loads(lines[-1][len("RESULT ") :])


def _run_python(args: list[str], what: str, *, one_thread: bool) -> dict[str, Any]:
    """Run ``python ARGS`` in a fresh process and return its ``RESULT`` line."""
    proc = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, check=False, env=_env(one_thread=one_thread)
    )
    return _result(proc, what)


def spawn(kind: str, *, one_thread: bool = True, **params: Any) -> dict[str, Any]:
    """Run one configuration in a fresh process."""
    return _run_python(
        [str(Path(__file__).resolve()), "--child", kind, json.dumps(params)], f"{kind} {params}", one_thread=one_thread
    )


def peer(name: str, repeat: int) -> dict[str, Any]:
    return _run_python([str(HERE / "peers.py"), "time", name, "--repeat", str(repeat)], f"peer {name}", one_thread=True)


def run_cli(args: list[str]) -> dict[str, float]:
    """Wall time and peak RSS of one ``redaes-lite`` run (``wait4`` gives this child's own rusage)."""
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: a full pipe would block the child
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", CLI, *args], env=_env(one_thread=False), stdout=subprocess.DEVNULL, stderr=err
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"redaes-lite {' '.join(args)} failed: {err.read().decode().strip()[-300:]}")
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024}  # ru_maxrss is in KiB on Linux


def _linked_folder(folder: Path, sources: list[Path], n: int) -> Path:
    """``n`` links cycling over ``sources``: many distinct files without copying bytes."""
    if folder.is_dir() and len(list(folder.iterdir())) == n:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        src = sources[i % len(sources)]
        link = folder / f"{i:05d}{src.suffix.lower()}"
        link.unlink(missing_ok=True)
        link.symlink_to(src)
    return folder


def _photos() -> list[Path]:
    with open(PHOTOS / "manifest.csv", newline="") as f:
        return [PHOTOS / row["file"] for row in csv.DictReader(f)]


def _camera_jpeg(cache: Path) -> Path:
    """The camera-like JPEG (``benchmarks/README.md``), shared with ``preprocess_speed.py`` (same maker and cache)."""
    sys.path.insert(0, str(HERE))
    from preprocess_speed import make_camera_jpeg

    out = cache / "camera_12mp.jpg"
    if not out.exists():
        make_camera_jpeg(min(PHOTOS.glob("*.jpg")), out)
    return out


def _model_info(model: Path) -> dict[str, Any]:
    """The model's identity from its own metadata; random-init students say so in ``redaes.version``."""
    import redaes_lite

    info = redaes_lite.load(model).info
    random_init = "random-init" in info.version
    label = (
        f"RANDOM-INIT (untrained) {info.student.get('backbone', '?')} - speed only"
        if random_init
        else f"{model.name} {info.version}"
    )
    return {
        "path": str(model),
        "label": label,
        "random_init": random_init,
        "version": info.version,
        "student": info.student,
        "quantization": info.quantization,
        "size": list(info.preprocess.size),
        "bytes": model.stat().st_size,
    }


def _machine() -> dict[str, Any]:
    import numpy
    import onnxruntime
    import PIL

    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    from redaes_lite.precision import cpu_int8

    flags = next(
        (ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith(("flags", "Features"))), ""
    )
    shown = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimd", "asimddp", "i8mm")
    int8 = cpu_int8()
    return {
        "cpu": cpu,
        "cpu_features": [f for f in shown if f in flags.split(":", 1)[-1].split()],
        "cpu_int8_dot_product": {"supported": int8.supported, "detail": int8.detail},
        "cores": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "pillow": PIL.__version__,
        "numpy": numpy.__version__,
        "nice": os.nice(0),
        "loadavg_start": os.getloadavg(),
    }


def _prepare_models(args: argparse.Namespace, photos: list[Path]) -> tuple[Path, Path | None, str | None]:
    """(fp32 model, int8 model or None, why int8 is missing)."""
    from redaes_lite.precision import INT8_FILE
    from redaes_lite.session import resolve_model

    if args.model == "random-lite0":
        model = args.cache / "random-lite0" / "model.onnx"
        if not model.exists():
            _run_python([str(HERE / "peers.py"), "student", str(model)], "student export", one_thread=False)
    else:
        model = resolve_model(args.model)[0]  # a folder or a name: its model.onnx
    if args.int8_model:
        return model, Path(args.int8_model).resolve(), None
    if (model.parent / INT8_FILE).is_file():
        return model, model.parent / INT8_FILE, None
    int8 = args.cache / f"int8-{hashlib.sha256(model.read_bytes()).hexdigest()[:12]}" / "model.onnx"
    if not int8.exists():
        # Calibration photos: the second half of the sorted set (the first photos are the timed sample's start).
        calibration = [str(p) for p in photos[len(photos) // 2 :: 8]]
        try:
            spawn("int8", one_thread=False, src=str(model), out=str(int8), calibration=calibration)
        except RuntimeError as e:
            return model, None, f"no int8 model ({e}); pass --int8-model"
    return model, int8, None


def measure(args: argparse.Namespace) -> dict[str, Any]:
    q = args.quick
    photos = _photos()
    camera = _camera_jpeg(args.cache)
    model, int8, int8_missing = _prepare_models(args, photos)
    sample = photos[:: max(1, len(photos) // (12 if q else 60))]
    doc: dict[str, Any] = {
        "quick": q,
        "machine": _machine(),
        "model": _model_info(model),
        "int8_model": str(int8) if int8 else int8_missing,
        "camera_jpeg": {
            "path": str(camera),
            "bytes": camera.stat().st_size,
            "sha256": hashlib.sha256(camera.read_bytes()).hexdigest(),
        },
    }
    say = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))

    say("end to end and decode floor ...")
    # A folder or a name: the file load() chooses on this machine (fp or int8) runs end to end.
    e2e_model = args.model if not Path(args.model).is_file() and args.model != "random-lite0" else str(model)
    doc["e2e_camera"] = spawn("e2e", model=e2e_model, images=[str(camera)], repeat=10 if q else 30)
    doc["e2e_photos"] = spawn("e2e", model=e2e_model, images=[str(p) for p in sample], repeat=3 if q else 5)
    doc["e2e_photos"]["megapixels_median"] = statistics.median(_megapixels(sample))
    say("inference ...")
    doc["inference"] = []
    for label, path in ((f"fp ({doc['model']['quantization']})", model), ("int8", int8)):
        for threads in (1, 2):
            for batch in (1, 32):
                row = {"precision": label, "threads": threads, "batch": batch}
                if path is None:
                    doc["inference"].append({**row, "error": int8_missing})
                    continue
                reps = (5 if batch == 1 else 3) if q else (30 if batch == 1 else 8)
                doc["inference"].append(
                    {
                        **row,
                        **spawn(
                            "infer", one_thread=threads == 1, model=str(path), threads=threads, batch=batch, repeat=reps
                        ),
                    }
                )
    say("folder throughput and memory ...")
    doc["cli"] = _cli_figures(args, model, camera, photos)
    if not args.skip_peers:
        say("peers ...")
        doc["peers"] = [peer(name, 3 if q else 7) for name in _peer_names()]
    doc["machine"]["loadavg_end"] = os.getloadavg()
    return doc


def _megapixels(paths: list[Path]) -> list[float]:
    from PIL import Image

    out = []
    for p in paths:
        with Image.open(p) as im:
            out.append(im.width * im.height / 1e6)
    return out


def _peer_names() -> list[str]:
    sys.path.insert(0, str(HERE))
    from peers import PEERS

    return list(PEERS)


def _cli_figures(args: argparse.Namespace, model: Path, camera: Path, photos: list[Path]) -> dict[str, Any]:
    n_camera = 200  # --quick too (6 s): on fewer files the 0.3 s startup, not the throughput, sets the figure
    out = str(args.cache / "cli-out.jsonl")
    common = ["--model", str(model), "--format", "jsonl", "--output", out, "--quiet"]
    cam_dir = _linked_folder(args.cache / f"camera-x{n_camera}", [camera], n_camera)
    rss_dir = _linked_folder(args.cache / "photos-x1000", photos, 1000)
    rss_small = _linked_folder(args.cache / "photos-x100", photos, 100)
    startup = spawn("cli", one_thread=False, args=["score", str(photos[0]), *common])
    figures = {"startup_one_file": startup}
    for key, folder, n in (
        ("camera_folder", cam_dir, n_camera),
        ("photos_folder", PHOTOS, len(photos)),
        ("rss_100", rss_small, 100),
        ("rss_1000", rss_dir, 1000),
    ):
        r = spawn("cli", one_thread=False, args=["score", str(folder), *common])
        after = n / (r["wall_s"] - startup["wall_s"])
        r.update(files=n, images_per_s=n / r["wall_s"], images_per_s_after_startup=after)
        figures[key] = r
    return figures


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print("RESULT " + json.dumps(CHILDREN[sys.argv[2]](**json.loads(sys.argv[3]))), flush=True)
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model .onnx, or 'random-lite0' (random-init student)")
    parser.add_argument("--int8-model", help="int8 model [default: int8-qdq copy of --model via export.quantize]")
    parser.add_argument("--quick", action="store_true", help="few repeats (under a minute without peers)")
    parser.add_argument("--skip-peers", action="store_true", help="leave out the torch peer models")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "redaes-bench")
    parser.add_argument("--json", type=Path, help="write all figures here [default: CACHE/speed.json]")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    doc = measure(args)
    table = markdown(doc)
    print(table)
    json_path = args.json or args.cache / "speed.json"
    write_json(json_path, doc)
    if args.markdown:
        from redaes_lite._atomic import atomic_open

        with atomic_open(args.markdown) as f:
            f.write(table)


if __name__ == "__main__":
    main()
