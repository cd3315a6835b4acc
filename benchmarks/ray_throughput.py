"""Ray Data against the CLI: images/s of ``score_dataset`` on a local Ray cluster and of
``redaes-lite score --workers 2`` on the same files, back to back, and the memory of each actor.

    python benchmarks/ray_throughput.py [--files 200] [--num-cpus 2] [--repeat 3] [--model default]
                                        [--rows-per-batch 32] [--bytes] [--json OUT]

The files are ``--files`` links to the camera-like 12 MP JPEG (``benchmarks/README.md``; made once into the
cache by ``preprocess_speed.make_camera_jpeg``). Each repeat runs the arms back to back, so load from other
processes hits them alike, and the ratios are taken within a repeat:

- ``cli``: ``redaes-lite score DIR --workers 2 --format jsonl --output FILE --quiet`` in a fresh process
  (start, model load and writing included); peak RSS from ``wait4`` (the main process; its decode workers
  are separate processes).
- ``ray``: ``score_dataset(ray.data.from_items(paths)).write_parquet(DIR)`` on a local cluster of
  ``--num-cpus`` CPUs, started once before the repeats (its start is reported on its own): actor start,
  model load and writing included; the default pool (autoscaling from one actor). ``ray-fixed``: the same
  with ``actors=--num-cpus`` (a fixed pool, which a dataset built from items allows). Per-actor memory:
  peak RSS (``VmHWM``) of each actor process, sampled from ``/proc`` every 0.2 s (shared pages of Ray's
  object store that an actor touched count in it); Ray's own processes (raylet, GCS, idle workers) are
  summed apart.
- ``ray-bytes`` (``--bytes``): the same, the files read by ``ray.data.read_binary_files`` and scored from
  their bytes, as from object storage.

Every arm also runs on ``--small`` files right after (its start-up: process or actors, model load, writing);
"after start-up" is ``(files - small) / (wall - wall_small)``. One warm-up run of each arm on the small
files comes first and is not counted.

Prints a table, writes JSON atomically (default ``/tmp/redaes-bench/ray-throughput.json``). Linux only
(``/proc``, ``wait4``).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
PHOTOS = REPO.parent / "shared" / "data" / "photos"
CLI = "from redaes_lite.cli import main; main()"  # the console script's entry point, run from the checkout
ACTOR_TITLE = "MapBatches(_ScoreBatches)"  # in the process title Ray gives each actor of score_dataset
sys.path.insert(0, str(REPO))

from _output import write_json  # noqa: E402


def camera_files(cache: Path, n: int) -> Path:
    """A folder of ``n`` links to the camera-like JPEG (made once, as ``speed.py`` makes it)."""
    sys.path.insert(0, str(HERE))
    from preprocess_speed import make_camera_jpeg

    jpeg = cache / "camera_12mp.jpg"
    if not jpeg.exists():
        make_camera_jpeg(min(PHOTOS.glob("*.jpg")), jpeg)
    folder = cache / f"ray-camera-{n}"
    if not (folder.is_dir() and len(list(folder.iterdir())) == n):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for i in range(n):
            (folder / f"{i:05d}.jpg").symlink_to(jpeg)
    return folder


def run_cli(folder: Path, model: str, workers: int) -> dict[str, float]:
    """Wall time and peak RSS of one ``redaes-lite score`` run."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    with tempfile.TemporaryDirectory(prefix="redaes-ray-cli-") as tmp, tempfile.TemporaryFile() as err:
        args = [
            str(folder),
            "--workers",
            str(workers),
            "--model",
            model,
            "--format",
            "jsonl",
            "--output",
            str(Path(tmp) / "out.jsonl"),
            "--quiet",
        ]
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", CLI, "score", *args], env=env, stdout=subprocess.DEVNULL, stderr=err
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            raise RuntimeError(f"redaes-lite score failed: {err.read().decode().strip()[-300:]}")
        rows = sum(1 for _ in open(Path(tmp) / "out.jsonl"))
    return {"wall_s": wall, "rows": rows, "peak_rss_mb": usage.ru_maxrss / 1024}


def _status_kb(pid: str, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


class ProcSampler:
    """Peak RSS of each score_dataset actor, and the largest sum of Ray's other processes, from ``/proc``."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.actors: dict[str, int] = {}  # pid -> VmHWM in KiB
        self.ray_system_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> None:
        system = 0
        for pid in filter(str.isdigit, os.listdir("/proc")):
            if int(pid) == os.getpid():
                continue
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if ACTOR_TITLE in cmd:
                self.actors[pid] = max(self.actors.get(pid, 0), _status_kb(pid, "VmHWM"))
            elif cmd.startswith("ray::") or "/ray/" in cmd or "raylet" in cmd or "gcs_server" in cmd:
                system += _status_kb(pid, "VmRSS")
        self.ray_system_kb = max(self.ray_system_kb, system)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> ProcSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def run_ray(make_ds: Callable[[], Any], column: str, model: str, knobs: dict[str, Any]) -> dict[str, Any]:
    """Wall time of one score_dataset run written to Parquet, and the peak RSS of each of its actors."""
    import pyarrow.parquet as pq

    from redaes_lite.integrations.ray import score_dataset

    with tempfile.TemporaryDirectory(prefix="redaes-ray-out-") as tmp, ProcSampler() as sampler:
        t0 = time.perf_counter()
        scored = score_dataset(make_ds(), column=column, model=model, **knobs)
        if column != "path":
            scored = scored.drop_columns([column])
        scored.write_parquet(tmp)
        wall = time.perf_counter() - t0
        table = pq.read_table(tmp, columns=["error"])
    peaks = sorted((kb / 1024 for kb in sampler.actors.values()), reverse=True)
    return {
        "wall_s": wall,
        "rows": table.num_rows,
        "errors": table.num_rows - table["error"].null_count,
        "actors": len(peaks),
        "actor_peak_rss_mb": peaks,
        "ray_system_rss_mb": sampler.ray_system_kb / 1024,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--files", type=int, default=200, help="links to the 12 MP camera JPEG [default: 200]")
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray cluster [default: 2]")
    parser.add_argument("--workers", type=int, default=2, help="the CLI's --workers [default: 2]")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the arms back to back [default: 3]")
    parser.add_argument("--model", default="default", help="'default', 'permissive' or a model file")
    parser.add_argument("--rows-per-batch", type=int, help="score_dataset's rows_per_batch [default: its own]")
    parser.add_argument("--actors", type=int, help="the ray-fixed arm's pool [default: --num-cpus]")
    parser.add_argument("--small", type=int, default=2, help="files of the start-up runs [default: 2]")
    parser.add_argument("--bytes", action="store_true", help="also score the files' bytes (read_binary_files)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/redaes-bench"))
    parser.add_argument("--json", type=Path, help="write all figures here [default: CACHE/ray-throughput.json]")
    args = parser.parse_args()

    import ray

    import redaes_lite

    folder = camera_files(args.cache, args.files)
    paths = sorted(str(p) for p in folder.iterdir())
    model_id = redaes_lite.load(args.model).model_id
    knobs: dict[str, Any] = {}
    if args.rows_per_batch:
        knobs["rows_per_batch"] = args.rows_per_batch
    t0 = time.perf_counter()
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    cluster_start_s = time.perf_counter() - t0
    ray.data.DataContext.get_current().enable_progress_bars = False

    def items(files: list[str]) -> Callable[[], Any]:
        return lambda: ray.data.from_items([{"path": p} for p in files])

    def arms(files: list[str], where: Path) -> dict[str, Callable[[], dict[str, Any]]]:
        fixed = {**knobs, "actors": args.actors or args.num_cpus}
        chosen = {
            "cli": lambda: run_cli(where, args.model, args.workers),
            "ray": lambda: run_ray(items(files), "path", args.model, knobs),
            "ray-fixed": lambda: run_ray(items(files), "path", args.model, fixed),
        }
        if args.bytes:
            read = lambda: ray.data.read_binary_files(str(where), include_paths=True)  # noqa: E731
            chosen["ray-bytes"] = lambda: run_ray(read, "bytes", args.model, knobs)
        return chosen

    small_folder = camera_files(args.cache, args.small)
    small_paths = sorted(str(p) for p in small_folder.iterdir())
    full, small = arms(paths, folder), arms(small_paths, small_folder)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in full}
    print(
        f"{args.files} x 12 MP camera JPEG, model {model_id}, local Ray cluster of {args.num_cpus} CPUs "
        f"(started in {cluster_start_s:.1f} s), CLI --workers {args.workers}; load average "
        f"{os.getloadavg()[0]:.2f} before",
        file=sys.stderr,
    )
    try:
        for arm in small.values():
            arm()  # warm-up, not counted: page cache, Ray's first execution, imports in its workers
        for r in range(args.repeat):
            for name in full:
                res = full[name]()
                res["small"] = small[name]()  # start-up: the same arm on --small files
                res["images_per_s"] = args.files / res["wall_s"]
                extra = res["wall_s"] - res["small"]["wall_s"]
                res["after_startup_images_per_s"] = (args.files - args.small) / extra if extra > 0 else None
                runs[name].append(res)
                print(
                    f"round {r + 1} {name}: {res['wall_s']:.2f} s, {res['images_per_s']:.2f} images/s; "
                    f"{args.small} files: {res['small']['wall_s']:.2f} s",
                    file=sys.stderr,
                )
    finally:
        ray.shutdown()

    def ratios(name: str, key: str) -> list[float]:
        return [a[key] / c[key] for a, c in zip(runs[name], runs["cli"]) if a[key] and c[key]]

    print("\n| arm | images/s | vs cli | after start-up: images/s | vs cli | start-up s | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---|")
    summary: dict[str, Any] = {}
    for name, rs in runs.items():
        ips = statistics.median(r["images_per_s"] for r in rs)
        after = statistics.median(r["after_startup_images_per_s"] or 0.0 for r in rs)
        startup = statistics.median(r["small"]["wall_s"] for r in rs)
        if name == "cli":
            mem = f"main process {max(r['peak_rss_mb'] for r in rs):.0f}"
            ratio = ratio_after = None
        else:
            peaks = [m for r in rs for m in r["actor_peak_rss_mb"]]
            mem = (
                (
                    f"per actor {max(peaks):.0f} (max of {len(peaks)} actors), Ray's own processes "
                    f"{max(r['ray_system_rss_mb'] for r in rs):.0f}"
                )
                if peaks
                else "-"
            )
            ratio = statistics.median(ratios(name, "images_per_s"))
            ratio_after = statistics.median(ratios(name, "after_startup_images_per_s") or [0.0])
        summary[name] = {
            "images_per_s_median": ips,
            "ratio_to_cli_median": ratio,
            "after_startup_images_per_s": after,
            "after_startup_ratio_to_cli_median": ratio_after,
            "startup_s_median": startup,
            "actors_seen": [r.get("actors") for r in rs],
        }

        def shown(x: float | None, key: str, name: str = name) -> str:
            return "-" if x is None else f"{x:.2f} ({', '.join(f'{v:.2f}' for v in ratios(name, key))})"

        print(
            f"| {name} | {ips:.2f} | {shown(ratio, 'images_per_s')} | {after:.2f} | "
            f"{shown(ratio_after, 'after_startup_images_per_s')} | {startup:.2f} | {mem} |"
        )
    report = {
        "files": args.files,
        "camera_jpeg": str(args.cache / "camera_12mp.jpg"),
        "model": model_id,
        "num_cpus": args.num_cpus,
        "cli_workers": args.workers,
        "knobs": knobs,
        "small": args.small,
        "repeat": args.repeat,
        "cluster_start_s": cluster_start_s,
        "ray_version": ray.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_after": os.getloadavg(),
        "summary": summary,
        "runs": runs,
    }
    json_path = args.json or args.cache / "ray-throughput.json"
    print()
    write_json(json_path, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
