"""Decoding in worker processes (the CLI's ``--workers N``): paths in, preprocessed pixels out, in order.

No pickle on this channel (the runtime never unpickles anything): a worker reads one JSON line per
request (the path) and answers with a JSON header line, followed for an image by its raw float32 pixels.
Request ``k`` goes to worker ``k % N``; each worker answers in order, so reading worker ``k % N`` gives
result ``k`` and the output order is the input order whatever the timing. A reader thread per worker
drains its answers, so neither side can block the other on a full pipe.

A worker that dies (a decoder crash) fails only the input it was decoding: it is restarted and the
requests it had not answered are sent again. Workers run in their own session, so a Ctrl-C in the
terminal reaches only the CLI, which then stops them by closing their input.

Memory in flight is bounded across all workers, as threads are in-process: once a worker has read an
image's header it asks for its estimated bytes (a ``{"reserve": n}`` line), and decodes when the parent
grants them (a ``{"grant": n}`` line on its input) from one :class:`~redaes_lite._cost.DecodeBudget` of
``max_decode_bytes``; they are released when its answer arrives (or it dies).

A worker shows its decoder warnings as the CLI does (one line per file on the shared stderr; none with
``quiet``).

    python -m redaes_lite._decode_pool SPEC_JSON MAX_PIXELS MAX_BYTES MAX_DECODE_BYTES QUIET   # a worker (0: no limit)
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from ._cli_io import decoder_warnings
from ._cost import DecodeBudget, trim
from .errors import RedaesError
from .preprocess import PreprocessSpec, _load, to_array
from .results import Failure

__all__ = ["DecodePool"]

_DIED = object()  # a reader's sentinel: the worker's output ended


def _stderr_fd() -> int | None:
    """The descriptor of ``sys.stderr``, else None (inherit descriptor 2)."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return None


class _Worker:
    """One worker process and the thread that reads its answers into a queue (and grants its reservations)."""

    def __init__(self, argv: list[str], env: dict[str, str], budget: DecodeBudget | None, quiet: bool) -> None:
        # The worker's stderr is ours as Python writes it (the CLI may have put descriptor 2 on /dev/null for
        # what C libraries print); nowhere when quiet: its errors come back as answers.
        err = subprocess.DEVNULL if quiet else _stderr_fd()
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env, start_new_session=True
        )
        self.answers: queue.Queue[Any] = queue.Queue()
        self.pending: deque[tuple[int, str]] = deque()  # (index, path) sent and not yet taken
        self._budget = budget
        self._write_lock = threading.Lock()  # requests (main thread) and grants (reader) share the pipe
        self.reader = threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True)
        self.reader.start()

    def _read(self, out: IO[bytes]) -> None:
        held = 0
        try:
            while header := out.readline():
                doc = json.loads(header)
                if "reserve" in doc:
                    held = self._budget.acquire(int(doc["reserve"])) if self._budget is not None else 0
                    self._write({"grant": held})
                    continue
                if self._budget is not None and held:
                    self._budget.release(held)  # the worker is done with that image
                    held = 0
                if "error" in doc:
                    self.answers.put(RedaesError(doc["error"]))
                    continue
                shape = tuple(doc["shape"])
                nbytes = 4 * int(np.prod(shape))
                payload = out.read(nbytes)
                if len(payload) != nbytes:
                    break
                self.answers.put(np.frombuffer(payload, np.float32).reshape(shape))
        except (OSError, ValueError, TypeError, KeyError):
            pass  # a broken pipe or a garbled answer: treated as a dead worker
        finally:
            if self._budget is not None and held:
                self._budget.release(held)
        self.answers.put(_DIED)

    def _write(self, doc: object) -> None:
        try:
            assert self.proc.stdin is not None
            with self._write_lock:
                self.proc.stdin.write(json.dumps(doc).encode() + b"\n")
                self.proc.stdin.flush()
        except (OSError, ValueError):
            pass  # the worker died (or was closed); its reader reports it and the request is sent again

    def send(self, index: int, path: str) -> None:
        self.pending.append((index, path))
        self._write(path)

    def close(self) -> None:
        try:
            assert self.proc.stdin is not None
            with self._write_lock:
                self.proc.stdin.close()  # the worker ends at end of input
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.reader.join()
        assert self.proc.stdout is not None
        self.proc.stdout.close()


class DecodePool:
    """``workers`` processes that run :func:`load_image` + :func:`to_array` on paths."""

    def __init__(
        self,
        workers: int,
        *,
        spec: PreprocessSpec,
        max_pixels: int | None,
        max_bytes: int | None,
        max_decode_bytes: int | None = None,
        quiet: bool = False,
    ) -> None:
        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive int, got {workers!r}")
        self._argv = [
            sys.executable,
            "-m",
            __name__,
            spec.to_json(),
            str(max_pixels or 0),
            str(max_bytes or 0),
            str(max_decode_bytes or 0),
            str(int(quiet)),
        ]
        self._budget = DecodeBudget(max_decode_bytes) if max_decode_bytes else None
        # The package must be importable in the child even when it runs from a checkout, not an install.
        root = str(Path(__file__).resolve().parents[1])
        self._env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        self._quiet = quiet
        self._workers = [_Worker(self._argv, self._env, self._budget, quiet) for _ in range(workers)]

    def __enter__(self) -> DecodePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for w in self._workers:
            w.close()

    def _take(self, slot: int) -> np.ndarray | Failure:
        """The next answer of worker ``slot``; a dead worker fails its current input and is replaced."""
        worker = self._workers[slot]
        answer = worker.answers.get()
        index, path = worker.pending.popleft()
        if answer is _DIED:
            code = worker.proc.wait()
            worker.close()
            fresh = _Worker(self._argv, self._env, self._budget, self._quiet)
            for i, p in worker.pending:
                fresh.send(i, p)
            self._workers[slot] = fresh
            return Failure(input=path, index=index, error=f"{path}: decoding crashed its worker process (exit {code})")
        if isinstance(answer, RedaesError):
            return Failure(input=path, index=index, error=str(answer))
        return answer

    def batches(self, paths: Sequence[str], batch_size: int) -> Iterator[list[np.ndarray | Failure]]:
        """Decoded batches of ``paths`` in order (failures recorded); up to two batches are in flight, so the
        workers decode the next batch while the caller runs the model on this one."""
        n = len(self._workers)
        sent = 0
        for start in range(0, len(paths), batch_size):
            while sent < min(len(paths), start + 2 * batch_size):
                self._workers[sent % n].send(sent, paths[sent])
                sent += 1
            yield [self._take(k % n) for k in range(start, min(len(paths), start + batch_size))]


def _serve(spec: PreprocessSpec, max_pixels: int | None, max_bytes: int | None, max_decode_bytes: int | None) -> None:
    out = sys.stdout.buffer
    lines = iter(sys.stdin.buffer)
    queued: deque[str] = deque()  # requests read while waiting for a grant

    reserved = [0]

    def reserve(nbytes: int) -> None:
        reserved[0] = nbytes
        out.write(json.dumps({"reserve": nbytes}).encode() + b"\n")
        out.flush()
        for line in lines:
            doc = json.loads(line)
            if isinstance(doc, dict):
                return  # the grant
            queued.append(doc)
        raise SystemExit(0)  # input closed while waiting: the run is over

    limits = {"max_pixels": max_pixels, "max_bytes": max_bytes, "max_decode_bytes": max_decode_bytes}
    while True:
        if queued:
            path = queued.popleft()
        else:
            line = next(lines, None)
            if line is None:
                return
            path = json.loads(line)
        try:
            pixels = to_array(_load(path, spec, reserve=reserve if max_decode_bytes else None, **limits), spec)
        except RedaesError as e:
            out.write(json.dumps({"error": str(e)}).encode() + b"\n")
        else:
            out.write(json.dumps({"shape": list(pixels.shape)}).encode() + b"\n")
            out.write(np.ascontiguousarray(pixels, np.float32).tobytes())
        out.flush()
        trim(reserved[0])
        reserved[0] = 0


if __name__ == "__main__":
    with decoder_warnings(quiet=sys.argv[5:6] == ["1"]):
        _serve(PreprocessSpec.from_json(sys.argv[1]), *(int(a) or None for a in sys.argv[2:5]))
