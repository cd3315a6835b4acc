"""Fuzzing campaign for the image loading path (the long run; CI runs tests/test_fuzz.py instead).

    nice -n 10 python benchmarks/fuzz.py --seconds 300 --out /tmp/redaes-fuzz     # or: make fuzz

Inputs are the seeds and hostile files of ``tests/fuzzkit.py`` and byte-level mutations of them (bit
flips, boundary values in size/count/offset fields, deleted, repeated and inserted blocks, truncation,
splices; PNG CRCs repaired half of the time). An input whose outcome is new (a new error message kind)
joins the pool, so the campaign drifts towards the less trodden parts of the decoders.

Each input runs in a worker process under a memory limit (``RLIMIT_AS``) and a watchdog: it must end in
pixels or a ``RedaesError`` within ``--timeout`` seconds. Crashes (other exceptions, dead workers), hangs
and out-of-memory inputs are saved under ``--out`` with a summary (``summary.json``) for the report.

Each input's cost is measured too: the worker's CPU time (user + system, all threads) and its peak
resident memory while on that input (Linux resets the peak per input: ``/proc/self/clear_refs``). An input
over ``--cpu-budget`` seconds or ``--mem-budget-mb`` is a finding (``slow``, ``big``); the summary lists
the 5 slowest and the 5 largest inputs, saved under ``--out``/costly for a look.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import re
import resource
import sys
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import fuzzkit  # noqa: E402
import mutators  # noqa: E402


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _reset_peak() -> bool:
    """Start a new peak-RSS window (Linux >= 4.0); False where the peak cannot be reset."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _peak_mb() -> float:
    """The peak resident memory since :func:`_reset_peak` (VmHWM), else the process's lifetime peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _worker(conn: Any, mem_mb: int) -> None:
    """Run inputs from ``conn`` through the oracle; reply ``(kind, message, seconds, cpu_s, peak_mb)``."""
    resource.setrlimit(resource.RLIMIT_AS, (mem_mb << 20, mem_mb << 20))
    warnings.simplefilter("ignore")  # Pillow warns about every odd tag; outcomes are what we count
    while True:
        data = conn.recv_bytes()
        _reset_peak()
        cpu = _cpu()
        try:
            kind, msg, secs = fuzzkit.check(data)
            if "too large to decode in memory" in msg:
                kind = "oom"
        except Exception:  # noqa: BLE001 - any escape from the oracle is the finding we look for
            kind, msg, secs = "crash", traceback.format_exc(limit=6), 0.0
        conn.send((kind, msg, secs, _cpu() - cpu, _peak_mb()))


class Runner:
    """One worker process at a time; restarted after a hang or a death."""

    def __init__(self, mem_mb: int, timeout: float) -> None:
        self.mem_mb, self.timeout = mem_mb, timeout
        self.ctx = mp.get_context("fork")
        self._start()

    def _start(self) -> None:
        self.conn, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_worker, args=(child, self.mem_mb), daemon=True)
        self.proc.start()

    def run(self, data: bytes) -> tuple[str, str, float, float, float]:
        t0 = time.perf_counter()
        try:
            self.conn.send_bytes(data)
            if self.conn.poll(self.timeout):
                return self.conn.recv()
            kind, msg = "hang", f"no answer within {self.timeout} s"
        except (EOFError, OSError):
            kind, msg = "died", ""
        self.proc.kill()
        self.proc.join()
        msg = msg or f"worker died (exit code {self.proc.exitcode})"
        self._start()
        return kind, msg, time.perf_counter() - t0, 0.0, 0.0

    def close(self) -> None:
        self.proc.kill()
        self.proc.join()


def signature(kind: str, msg: str) -> str:
    """An outcome's kind: the message without its input name and numbers."""
    msg = re.sub(r"^<\d+ bytes>: ", "", msg.splitlines()[-1] if kind == "crash" else msg)
    msg = re.sub(r"b'.*?'|b\".*?\"", "…", msg)  # quoted header bytes vary endlessly
    return f"{kind}: {re.sub(r'[0-9]+', 'N', msg)[:120]}"


def campaign(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    pool = {**fuzzkit.seeds(), **fuzzkit.hostile()}
    names = list(pool)
    good = [n for n in names if fuzzkit.check(pool[n])[0] == "ok"]
    runner = Runner(args.mem_mb, args.timeout)
    out = Path(args.out)
    (out / "findings").mkdir(parents=True, exist_ok=True)
    outcomes: Counter[str] = Counter()
    signatures: Counter[str] = Counter()
    costly: dict[str, list[tuple[float, str, bytes]]] = {"slowest": [], "largest": []}  # (cost, input, data)
    findings: list[dict[str, Any]] = []
    max_rss = 0.0
    tried = 0
    deadline = time.monotonic() + args.seconds
    try:
        while time.monotonic() < deadline and (args.inputs is None or tried < args.inputs):
            # The plain pool first (every seed and hostile file once), then mutations of it.
            # Mutate decodable inputs more often than broken ones: that is where the decoders' depths are.
            name = names[tried] if tried < len(names) else rng.choice(good if good and rng.random() < 0.7 else names)
            ops = mutators.random_ops(rng, max_ops=args.max_ops) if tried >= len(names) else []
            data = mutators.mutate(pool[name], ops) if ops else pool[name]
            kind, msg, secs, cpu, rss = runner.run(data)
            if kind in ("ok", "error") and (cpu > args.cpu_budget or rss > args.mem_budget_mb):
                kind, msg = ("slow" if cpu > args.cpu_budget else "big"), f"{cpu:.2f} CPU-s, {rss:.0f} MB peak: {msg}"
            tried += 1
            outcomes[kind] += 1
            sig = signature(kind, msg)
            if sig not in signatures and kind in ("ok", "error") and len(pool) < 2000:
                pool[f"{name}~{tried}"] = data  # a new behaviour: explore around it
                names.append(f"{name}~{tried}")
            if kind == "ok" and ops and len(good) < 2000 and rng.random() < 0.05:
                pool[f"{name}~{tried}"] = data  # a mutant that still decodes
                good.append(f"{name}~{tried}")
            signatures[sig] += 1
            max_rss = max(max_rss, rss)
            for key, cost in (("slowest", cpu), ("largest", rss)):
                if len(costly[key]) < 5 or cost > costly[key][-1][0]:
                    costly[key] = sorted([*costly[key], (cost, f"{name} {ops}", data)], key=lambda c: -c[0])[:5]
            if kind not in ("ok", "error"):
                path = out / "findings" / f"{kind}-{tried:07d}.bin"
                path.write_bytes(data)
                findings.append({"kind": kind, "file": str(path), "from": name, "ops": ops, "message": msg[-600:]})
                print(f"[{tried}] {kind} from {name}: {msg.splitlines()[-1] if msg else ''}", flush=True)
            if tried % 2000 == 0:
                print(f"[{tried}] {dict(outcomes)} pool={len(pool)}", flush=True)
    finally:
        runner.close()
    (out / "costly").mkdir(exist_ok=True)
    report = {}
    for key, unit in (("slowest", "cpu_seconds"), ("largest", "peak_rss_mb")):
        report[key] = []
        for rank, (cost, input_name, data) in enumerate(costly[key]):
            path = out / "costly" / f"{key}-{rank}.bin"
            path.write_bytes(data)
            report[key].append({unit: round(cost, 3), "input": input_name, "bytes": len(data), "file": str(path)})
    summary = {
        "inputs_tried": tried,
        "seconds": args.seconds,
        "seed": args.seed,
        "outcomes": dict(outcomes),
        "distinct_outcomes": len(signatures),
        "pool_size": len(pool),
        "budget": {"cpu_seconds": args.cpu_budget, "peak_rss_mb": args.mem_budget_mb},
        "worker_max_rss_mb": round(max_rss, 1),
        **report,
        "findings": findings,
        "outcome_kinds": dict(signatures.most_common()),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="how long to run")
    parser.add_argument("--inputs", type=int, default=None, help="stop after this many inputs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds an input may take (a hang past it)")
    parser.add_argument("--mem-mb", type=int, default=3000, help="address-space limit of the worker")
    parser.add_argument("--max-ops", type=int, default=6, help="mutations per input, at most")
    parser.add_argument("--cpu-budget", type=float, default=5.0, help="CPU seconds an input may cost (issue 21)")
    parser.add_argument("--mem-budget-mb", type=float, default=1024.0, help="peak RSS an input may reach, MB")
    parser.add_argument("--out", default="/tmp/redaes-fuzz", help="folder for findings and summary.json")
    summary = campaign(parser.parse_args())
    brief = {k: v for k, v in summary.items() if k not in ("outcome_kinds", "findings")}
    print(json.dumps({**brief, "findings": len(summary["findings"])}, indent=2))


if __name__ == "__main__":
    main()
