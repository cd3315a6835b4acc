"""``python -m distill label``: label pairs with any teacher into a resumable pair-label cache.

    python -m distill label --teacher PATH_OR_ID|edit-oracle|biq2021-mos|nima[:FILE] --pairs pairs.jsonl --root DIR \\
        --out labels.jsonl [--mode pairwise|pointwise] [--samples K] [--retries N] [--shard i/n] \\
        [--engine transformers|vllm] [--batch-size B] ...
    python -m distill label merge A.jsonl B.jsonl ... --out merged.jsonl

The output is appended one flushed line per finished pair, so an interrupted job (Ctrl-C, SIGTERM,
pre-emption) keeps everything it finished; running the same command again skips every pair whose record
id is already in the file. The id is the teacher's key for the pair (for the MLLM: content hash of both
images + teacher id + prompt version), so moving the images or rerunning elsewhere does not relabel them.
Failed records are kept (and skipped on resume unless ``--retry-failed``). See ``distill/TEACHERS.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import inspect
import json
import os
import signal
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from redaes_lite.errors import RedaesError
from redaes_lite.pairs import PairLabel, append_pairs, write_pairs

from .registry import TEACHERS
from .teachers.base import PairRequest, Teacher

__all__ = [
    "Interrupted",
    "LabelStats",
    "in_shard",
    "label",
    "main",
    "merge",
    "parse_shard",
    "read_cache",
    "read_requests",
]

# Modules whose import registers a teacher in TEACHERS by name.
_REGISTERED_TEACHERS = ("distill.teachers.edit_oracle", "distill.teachers.mos")
# Teachers registered by import path, imported only when asked for (NIMA imports torch and reads 13 MB).
_LAZY_TEACHERS = {"nima": "distill.teachers.nima:NimaTeacher"}
for _name, _target in _LAZY_TEACHERS.items():
    if _name not in TEACHERS:
        TEACHERS.register_lazy(_name, _target)
# Options of the MLLM teacher, split by who takes them; a registered teacher gets those its factory takes by
# name (NIMA: batch_size, device), the others are refused.
_ENGINE_OPTIONS = ("device", "dtype", "seed", "tensor_parallel_size")
_TEACHER_OPTIONS = (
    "mode",
    "prompt",
    "samples",
    "retries",
    "batch_size",
    "max_new_tokens",
    "temperature",
    "top_p",
    "image_max_pixels",
    "name",
)
_MLLM_ONLY = ("engine", *_ENGINE_OPTIONS, *_TEACHER_OPTIONS)


@dataclass
class LabelStats:
    """What one ``label`` run did."""

    ok: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0

    def summary(self, out: Path, state: str) -> str:
        rate = (self.ok + self.failed) / self.seconds if self.seconds > 0 else 0.0
        return (
            f"{out}: {state}: {self.ok} ok, {self.failed} failed, {self.skipped} already labelled; "
            f"{self.seconds:.1f} s ({rate:.2f} pairs/s)"
        )


# -- files -----------------------------------------------------------------------------------------
def read_requests(path: str | os.PathLike) -> Iterator[PairRequest]:
    """Stream the pairs to label: JSON objects with ``a``, ``b``, ``group`` and optional ``recipe``, ``tags``.

    Any other key (``delta``, ``id``, ...) is ignored, so a pair-label file can be relabelled as it is.
    """
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                if not isinstance(d, dict):
                    raise TypeError("not a JSON object")
                missing = [k for k in ("a", "b", "group") if not isinstance(d.get(k), str) or not d[k]]
                if missing:
                    raise ValueError(f"needs non-empty strings {missing}")
                recipe = d.get("recipe")
                if recipe is not None and not (isinstance(recipe, list) and all(isinstance(x, dict) for x in recipe)):
                    raise ValueError("recipe must be a list of objects")
                yield PairRequest(
                    a=d["a"],
                    b=d["b"],
                    group=d["group"],
                    recipe=tuple(recipe) if recipe else None,
                    tags=tuple(d.get("tags") or ()),
                )
            except (ValueError, TypeError) as e:
                raise ValueError(f"{path}:{lineno}: bad pair ({e})") from None


def read_cache(path: Path, *, repair: bool) -> Iterator[PairLabel]:
    """Stream a label cache; a missing file is empty.

    A last line without its newline is what a hard kill (SIGKILL, power loss) mid-write leaves: if it
    parses it is kept (``repair`` adds the newline), else it is dropped with a warning (``repair``
    truncates it away, so that the next appended record starts on a line of its own).
    """
    if not path.exists():
        return
    offset = 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            complete = raw.endswith(b"\n")
            try:
                rec = PairLabel.from_dict(json.loads(raw)) if raw.strip() else None
            except (ValueError, TypeError) as e:
                if complete:
                    raise ValueError(f"{path}:{lineno}: bad pair record ({e})") from None
                print(f"warning: {path}: dropping an unfinished last line", file=sys.stderr)
                if repair:
                    os.truncate(path, offset)
                return
            if not complete and repair:
                with open(path, "ab") as g:
                    g.write(b"\n")
            offset += len(raw)
            if rec is not None:
                yield rec


# -- interruption ----------------------------------------------------------------------------------
class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; raised only between records, never inside a write."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.signame = signal.Signals(signum).name


class _Guard:
    """Turns SIGINT/SIGTERM into :class:`Interrupted` at once, or right after a record's line is written."""

    def __init__(self) -> None:
        self.writing = False
        self.pending: int | None = None

    def handle(self, signum: int, frame: object) -> None:
        if self.writing:
            self.pending = signum
        else:
            raise Interrupted(signum)

    def protect_writes(self, records: Iterator[PairLabel]) -> Iterator[PairLabel]:
        """Pass records to a writer; the writer's work between two ``next`` calls is not interrupted."""
        for rec in records:
            self.writing = True
            yield rec  # the consumer writes and flushes the line before asking for the next record
            self.writing = False
            if self.pending is not None:
                raise Interrupted(self.pending)


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[_Guard]:
    """Install the guard for SIGINT and SIGTERM (main thread only), restoring the old handlers after."""
    guard = _Guard()
    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            old[sig] = signal.signal(sig, guard.handle)
        except ValueError:  # not the main thread: signals stay with whoever owns them
            break
    try:
        yield guard
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


# -- sharding --------------------------------------------------------------------------------------
def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` with ``0 <= i < n`` (0-based) -> ``(i, n)``."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like i/n, e.g. 0/4, got {text!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"--shard {text}: need 0 <= i < n (shards are numbered from 0)")
    return i, n


def _shard_arg(text: str) -> tuple[int, int]:
    try:
        return parse_shard(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def in_shard(req: PairRequest, shard: tuple[int, int]) -> bool:
    """Whether ``req`` belongs to shard ``i`` of ``n``: a hash of its image references, the same on every machine."""
    i, n = shard
    digest = hashlib.sha256(f"{req.a}\x1f{req.b}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % n == i


# -- labelling -------------------------------------------------------------------------------------
def label(
    teacher: Teacher,
    requests: Iterable[PairRequest],
    out: str | os.PathLike,
    *,
    retry_failed: bool = False,
    progress_every: float = 30.0,
) -> LabelStats:
    """Label the requests not yet in ``out``, appending each record as it is finished.

    A pair is done when ``out`` holds a record with the teacher's key for it (``teacher.key(req)``; for a
    teacher without ``key``, a record of the same teacher for the same ``a`` and ``b``). Raises
    :class:`Interrupted` on SIGINT/SIGTERM after the line being written is complete.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = _done_keys(read_cache(out, repair=True), teacher.id, retry_failed=retry_failed)
    stats = LabelStats()
    start = last_report = time.monotonic()
    key = getattr(teacher, "key", None)

    def todo() -> Iterator[PairRequest]:
        for req in requests:
            if (key(req) if key else (teacher.id, req.a, req.b)) in done:
                stats.skipped += 1
            else:
                yield req

    def counted(records: Iterator[PairLabel]) -> Iterator[PairLabel]:
        nonlocal last_report
        for rec in records:
            yield rec
            stats.ok += rec.ok
            stats.failed += not rec.ok
            now = time.monotonic()
            if now - last_report >= progress_every:
                stats.seconds, last_report = now - start, now
                print(stats.summary(out, "labelling"), file=sys.stderr, flush=True)

    try:
        with deferred_interrupts() as guard:
            append_pairs(out, guard.protect_writes(counted(teacher.label(todo()))))
    finally:
        stats.seconds = time.monotonic() - start
    return stats


def _done_keys(records: Iterable[PairLabel], teacher_id: str, *, retry_failed: bool) -> set:
    done: set = set()
    for rec in records:
        if rec.ok or not retry_failed:
            done.add(rec.id)
            if rec.teacher == teacher_id:
                done.add((rec.teacher, rec.a, rec.b))
    return done


# -- merging ---------------------------------------------------------------------------------------
def merge(inputs: Sequence[str | os.PathLike], out: str | os.PathLike) -> tuple[int, int]:
    """Merge label caches into ``out`` (atomically): one record per id, an ``ok`` one over a failed one.

    Among records of equal status the first seen wins; order is that of first appearance. Returns
    ``(records written, duplicates dropped)``.
    """
    best: dict[str, PairLabel] = {}
    seen = 0
    for path in inputs:
        for rec in read_cache(Path(path), repair=False):
            seen += 1
            old = best.get(rec.id)
            if old is None or (rec.ok and not old.ok):
                best[rec.id] = rec
    n = write_pairs(out, best.values())
    return n, seen - n


# -- command line ----------------------------------------------------------------------------------
def _label_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m distill label",
        description="Label image pairs with a teacher into a resumable pair-label JSONL cache "
        "(`python -m distill label merge --help` merges caches).",
    )
    p.add_argument(
        "--teacher",
        required=True,
        help="MLLM folder or hub id, or a registered teacher name (edit-oracle, biq2021-mos, nima, nima:FILE.hdf5)",
    )
    p.add_argument("--pairs", required=True, type=Path, help="JSONL of pairs: a, b, group (+ recipe, tags)")
    p.add_argument("--root", type=Path, default=Path("."), help="folder the pairs' image paths are relative to")
    p.add_argument("--out", required=True, type=Path, help="label cache: appended to, resumed from")
    p.add_argument("--shard", type=_shard_arg, help="i/n: label only shard i (0-based) of n")
    p.add_argument("--retry-failed", action="store_true", help="relabel pairs whose record failed")
    g = p.add_argument_group("MLLM teacher")
    g.add_argument("--mode", choices=("pairwise", "pointwise"), help="default pairwise (the RED-Aes way)")
    g.add_argument("--prompt", help="prompt template name (distill/teachers/prompts.py); default per mode")
    g.add_argument("--samples", type=int, help="answers per pair, averaged (default 1)")
    g.add_argument("--retries", type=int, help="fresh samples per malformed answer before failing (default 2)")
    g.add_argument("--engine", choices=("transformers", "vllm"), help="default transformers")
    g.add_argument("--batch-size", type=int, help="pairs per round (default 8; 256 with vllm; nima: 32)")
    g.add_argument("--device", help="transformers and nima: cuda, cuda:1, cpu (default cuda if available)")
    g.add_argument("--dtype", choices=("bfloat16", "float16", "float32"), help="default bf16 on GPU, fp32 on CPU")
    g.add_argument("--max-new-tokens", type=int, help="default 512")
    g.add_argument("--temperature", type=float, help="default 0.7; 0 decodes greedily")
    g.add_argument("--top-p", type=float, help="default 0.9")
    g.add_argument("--seed", type=int, help="default 0")
    g.add_argument("--image-max-pixels", type=int, help="shrink images to this many pixels (default 262144)")
    g.add_argument("--name", help="teacher name in the id (default: the checkpoint folder's name)")
    g.add_argument("--tensor-parallel-size", type=int, help="vllm: GPUs per model (default 1)")
    return p


def _merge_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m distill label merge",
        description="Merge label caches: one record per id, ok records preferred over failed ones.",
    )
    p.add_argument("inputs", nargs="+", type=Path, help="label JSONL files (e.g. one per shard)")
    p.add_argument("--out", required=True, type=Path, help="merged file, written atomically")
    return p


def build_teacher(args: argparse.Namespace) -> Teacher:
    """A registered teacher by name, else an MLLM teacher loaded from a folder or hub id.

    A registered teacher is built with ``root=`` if it takes one, and with those of the MLLM options
    (``--batch-size``, ``--device``, ...) its factory takes by name; the others are refused. ``NAME:FILE``
    (e.g. ``nima:weights.hdf5``) gives ``path=FILE`` to a registered teacher that takes a ``path``.
    """
    for module in _REGISTERED_TEACHERS:
        importlib.import_module(module)  # importing a teacher module registers it
    name, sep, file = args.teacher.partition(":")
    registered = args.teacher in TEACHERS or (sep and name in TEACHERS and not Path(args.teacher).exists())
    if registered:
        name = args.teacher if args.teacher in TEACHERS else name
        factory = TEACHERS.get(name)
        params = inspect.signature(factory).parameters
        given = [k for k in _MLLM_ONLY if getattr(args, k) is not None]
        refused = [f"--{k.replace('_', '-')}" for k in given if k not in params]
        if refused:
            raise ValueError(f"{' '.join(refused)} only apply to an MLLM teacher, not {name!r}")
        kwargs = {k: getattr(args, k) for k in given}
        if "root" in params:
            kwargs["root"] = args.root
        if name != args.teacher:
            if "path" not in params or not file:
                raise ValueError(f"--teacher {args.teacher}: teacher {name!r} takes no file (NAME:FILE)")
            kwargs["path"] = file
        return factory(**kwargs)
    if not Path(args.teacher).exists() and "/" not in args.teacher:
        TEACHERS.get(args.teacher)  # neither a folder nor org/name: raises with close matches
    from .teachers.mllm import MLLMTeacher

    return MLLMTeacher.from_pretrained(
        args.teacher,
        engine=args.engine or "transformers",
        engine_options={k: getattr(args, k) for k in _ENGINE_OPTIONS},
        root=args.root,
        **{k: getattr(args, k) for k in _TEACHER_OPTIONS},
    )


def _run_label(argv: Sequence[str]) -> int:
    args = _label_parser().parse_args(argv)
    shard = args.shard or (0, 1)
    try:
        # One validating pass before any model loads: a bad line fails now, not hours into the job.
        total = mine = 0
        for req in read_requests(args.pairs):
            total += 1
            mine += in_shard(req, shard)
        teacher = build_teacher(args)
        where = f" (shard {shard[0]}/{shard[1]}: {mine})" if args.shard else ""
        print(f"{args.pairs}: {total} pairs{where}; teacher {teacher.id}; out {args.out}", file=sys.stderr, flush=True)
        requests = (r for r in read_requests(args.pairs) if in_shard(r, shard))
        stats = label(teacher, requests, args.out, retry_failed=args.retry_failed)
    except KeyboardInterrupt as e:  # Interrupted while labelling, or Ctrl-C while the model loads
        signum = e.signum if isinstance(e, Interrupted) else signal.SIGINT
        print(f"{args.out}: interrupted; finished records are kept, rerun to resume", file=sys.stderr)
        return 128 + signum
    print(stats.summary(args.out, "done"), file=sys.stderr)
    return 0


def _run_merge(argv: Sequence[str]) -> int:
    args = _merge_parser().parse_args(argv)
    n, dropped = merge(args.inputs, args.out)
    print(f"{args.out}: {n} records ({dropped} duplicates dropped)", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m distill label``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["merge"]:
            return _run_merge(argv[1:])
        return _run_label(argv)
    except (RedaesError, ValueError, KeyError, OSError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
