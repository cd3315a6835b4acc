"""The user-facing API: :class:`Scorer` (compare / score / score_many / rank) and module-level shortcuts.

Semantics (``docs/model-format.md``, section 5): ``delta = u(b) - u(a)``; ``preferred = "b"`` if
``delta > 0`` else ``"a"``; ``probability = lapse / 2 + (1 - lapse) * sigmoid(|delta| / T)``; factors
``f(b) - f(a)`` ordered by absolute size; ``rank`` is best first by utility, ties in input order, failures last.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ._cost import DecodeBudget
from .errors import RedaesError
from .metadata import ModelInfo
from .precision import Choice
from .preprocess import DEFAULT_MAX_BYTES, DEFAULT_MAX_DECODE_BYTES, DEFAULT_MAX_PIXELS, ImageInput, _load, to_array
from .results import Comparison, Failure, Ranked, Score
from .session import ModelSession, open_model

__all__ = ["DEFAULT_BATCH_SIZE", "Scorer", "compare", "load", "rank", "score"]

#: Images per inference batch. Per-image speed is flat from 8 up on CPU, but activation memory is not:
#: scoring 1,000 files with a Lite0 student peaked at 204 MB RSS with 8, 280 MB with 16 (memory_profile.py).
DEFAULT_BATCH_SIZE = 8

_ON_ERROR = ("raise", "record")
# Decoding threads for score_many: JPEG decode and resize release the GIL; more than 4 rarely pays.
_DECODE_THREADS = max(1, min(4, os.cpu_count() or 1))


class Scorer:
    """A loaded model. Build it with :func:`redaes_lite.load`; methods are safe to call from threads.

    ``max_decode_bytes`` bounds the memory of one decode (estimated from the header; larger images are
    refused) and the total of the decodes in flight at once, across :meth:`score_many`'s threads and
    callers' threads alike: a decode waits until its estimate fits.
    """

    def __init__(
        self,
        session: ModelSession,
        *,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        max_bytes: int | None = DEFAULT_MAX_BYTES,
        max_decode_bytes: int | None = DEFAULT_MAX_DECODE_BYTES,
        choice: Choice | None = None,
    ) -> None:
        limits = (("max_pixels", max_pixels), ("max_bytes", max_bytes), ("max_decode_bytes", max_decode_bytes))
        for name, value in limits:
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{name} must be a positive int or None, got {value!r}")
        self._session = session
        self._choice = choice
        self.max_pixels = max_pixels
        self.max_bytes = max_bytes
        self._max_decode_bytes = max_decode_bytes
        self._budget = DecodeBudget(max_decode_bytes) if max_decode_bytes is not None else None

    @property
    def max_decode_bytes(self) -> int | None:
        """Memory one decode may need, and all decodes in flight together (read-only: the budget is shared)."""
        return self._max_decode_bytes

    @property
    def info(self) -> ModelInfo:
        """The model's parsed ``redaes.*`` metadata."""
        return self._session.info

    @property
    def path(self) -> Path:
        return self._session.path

    @property
    def model_id(self) -> str:
        """Which model this is, as the CLI's ``model`` field names it: ``name@version`` for an embedded model
        (``"default@0.5.0"``), ``"sha256:<12 hex>@<redaes.version>"`` for a model file."""
        return self._session.model_id

    @property
    def providers(self) -> tuple[str, ...]:
        return self._session.providers

    @property
    def choice(self) -> Choice | None:
        """Which file of the model runs (fp or int8) and why (:mod:`redaes_lite.precision`); None for a
        Scorer built on a session directly."""
        return self._choice

    @property
    def verified(self) -> bool:
        """Whether the model file matched the sha256 of a ``model.json`` beside it (embedded models always
        do). False for a file without one: nothing then says that its weights are the ones published."""
        return self._session.verified

    def __repr__(self) -> str:
        return f"Scorer({str(self.path)!r}, version={self.info.version!r}, providers={list(self.providers)})"

    # -- internals ---------------------------------------------------------------------------------
    def _pixels(self, x: ImageInput) -> np.ndarray:
        """Decode and preprocess one input; its estimated bytes are held from the header to the pixels."""
        spec = self.info.preprocess
        limits = {"max_pixels": self.max_pixels, "max_bytes": self.max_bytes, "max_decode_bytes": self.max_decode_bytes}
        if self._budget is None:
            return to_array(_load(x, spec, **limits), spec)
        with self._budget.hold() as reserve:
            return to_array(_load(x, spec, reserve=reserve, **limits), spec)

    def _score(self, utility: np.float32, factors: np.ndarray) -> Score:
        names = self.info.factors
        return Score(
            score=float(self.info.calibrate(utility)),
            utility=float(utility),
            factors={n: float(v) for n, v in zip(names, factors)},
        )

    def _decode(self, i: int, x: ImageInput, on_error: str) -> np.ndarray | Failure:
        """Pixels of one input, or its Failure when errors are recorded."""
        try:
            return self._pixels(x)
        except RedaesError as e:
            if on_error == "raise":
                raise
            return Failure(input=x, index=i, error=str(e))

    # -- public API --------------------------------------------------------------------------------
    def score(self, x: ImageInput) -> Score:
        """Score one image (path, bytes, PIL image or HxWx3 uint8 array); raises ``ImageError``."""
        utility, factors = self._session.run(self._pixels(x)[None])
        return self._score(utility[0], factors[0])

    def compare(self, a: ImageInput, b: ImageInput) -> Comparison:
        """Is ``b`` better than ``a``, by how much, and why? Raises ``ImageError`` for either input."""
        pa, pb = self._pixels(a), self._pixels(b)
        # Run the two in a canonical order so compare(a, b) and compare(b, a) see identical batches:
        # antisymmetry then holds bit for bit, whatever the execution provider does per batch row.
        swap = pb.tobytes() < pa.tobytes()
        utility, factors = self._session.run(np.stack([pb, pa] if swap else [pa, pb]))
        (ia, ib) = (1, 0) if swap else (0, 1)
        delta = float(utility[ib]) - float(utility[ia])
        fdelta = {n: float(fb) - float(fa) for n, fa, fb in zip(self.info.factors, factors[ia], factors[ib])}
        return Comparison(
            preferred="b" if delta > 0 else "a",
            probability=float(self.info.preference(abs(delta))),
            delta=delta,
            factors=dict(sorted(fdelta.items(), key=lambda kv: -abs(kv[1]))),  # stable: model order on ties
        )

    def iter_scores(
        self, xs: Iterable[ImageInput], *, batch_size: int = DEFAULT_BATCH_SIZE, on_error: str = "raise"
    ) -> Iterator[Score | Failure]:
        """Like :meth:`score_many` but yields results in input order as batches finish.

        Images are decoded by a few threads (Pillow releases the GIL), up to two batches ahead of the one
        running through the model; decoding is pure and batches keep input order, so the threads never
        change a result. Closing the iterator early drops the decodes not yet started.
        """
        if on_error not in _ON_ERROR:
            raise ValueError(f"on_error must be one of {_ON_ERROR}, got {on_error!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        yield from self.score_preprocessed(self._decode_batches(xs, batch_size, on_error))

    def _decode_batches(
        self, xs: Iterable[ImageInput], batch_size: int, on_error: str
    ) -> Iterator[list[np.ndarray | Failure]]:
        """Decoded batches in input order. Two batches are in flight ahead of the one handed out: with one,
        the decoding threads idled at the end of each batch until its slowest image was done."""
        batches = _chunks(enumerate(xs), batch_size)
        workers = min(batch_size, _DECODE_THREADS)
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="redaes-decode")
        pending: deque[list[Future]] = deque()

        def submit() -> None:
            chunk = next(batches, None)
            if chunk:
                pending.append([pool.submit(self._decode, i, x, on_error) for i, x in chunk])

        try:
            submit()
            submit()
            while pending:
                decoded = [f.result() for f in pending.popleft()]  # in input order: the first bad input raises
                submit()
                yield decoded
        finally:
            pool.shutdown(cancel_futures=True)  # an early stop or error: drop the queued decodes

    def score_preprocessed(self, batches: Iterable[Sequence[np.ndarray | Failure]]) -> Iterator[Score | Failure]:
        """Score batches of pixels already preprocessed for this model (float32 ``[3, H, W]`` each, from
        :func:`redaes_lite.preprocess.to_array` with :attr:`info`'s spec), in order; a :class:`Failure` in a
        batch passes through in its place. For decoding elsewhere (other processes, a pipeline's own
        workers): the results are exactly those of :meth:`iter_scores` on the same images."""
        for decoded in batches:
            yield from self._run_batch(decoded)

    def _run_batch(self, decoded: Sequence[np.ndarray | Failure]) -> Iterator[Score | Failure]:
        ok = [d for d in decoded if not isinstance(d, Failure)]
        if ok:
            utility, factors = self._session.run(np.stack(ok))
        j = 0
        for d in decoded:
            if isinstance(d, Failure):
                yield d
            else:
                yield self._score(utility[j], factors[j])
                j += 1

    def score_many(
        self, xs: Iterable[ImageInput], *, batch_size: int = DEFAULT_BATCH_SIZE, on_error: str = "raise"
    ) -> list[Score | Failure]:
        """Score many images in batches, in input order. ``on_error="record"`` puts a
        :class:`Failure` in place of each unreadable input instead of raising."""
        return list(self.iter_scores(xs, batch_size=batch_size, on_error=on_error))

    def rank(
        self,
        xs: Iterable[ImageInput],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        on_error: str = "raise",
        top: int | None = None,
    ) -> list[Ranked | Failure]:
        """Rank images best first by utility (ties keep input order); failures (``on_error="record"``)
        come last in input order. ``top`` keeps only the ``top`` best results (failures are kept)."""
        _check_top(top)
        items = list(xs)
        results = self.score_many(items, batch_size=batch_size, on_error=on_error)
        return [
            Ranked(input=items[i], index=i, score=results[i]) if isinstance(results[i], Score) else results[i]
            for i in ranking(results, top=top)
        ]


def load(
    model: str | os.PathLike | None = None,
    *,
    threads: int | None = None,
    providers: Sequence[str] | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
    max_decode_bytes: int | None = DEFAULT_MAX_DECODE_BYTES,
    precision: str | None = None,
) -> Scorer:
    """Load a model and return a :class:`Scorer`.

    ``model``: ``None`` or ``"default"`` (the embedded default model), ``"permissive"``, or a path to
    an ``.onnx``/``.ort`` file (or a directory holding ``model.onnx``). ``threads``: ONNX Runtime
    intra-op threads (default: ``OMP_NUM_THREADS`` or all cores). ``providers``: ONNX Runtime
    execution providers (default CPU). ``max_pixels``: images larger than this (from the header) are
    refused before decoding; ``max_bytes``: files and bytes larger than this are refused before they
    are read; ``max_decode_bytes``: images whose decode would need more memory than this (estimated from
    the header) are refused before decoding, and the decodes in flight at once share this much. ``None``
    disables a check. ``precision``: which file of a model folder runs, ``"auto"`` (int8 where it ships
    and the CPU has an int8 dot product), ``"fp"`` or ``"int8"``; default ``REDAES_PRECISION`` or
    ``"auto"`` (:mod:`redaes_lite.precision`); :attr:`Scorer.choice` says which file runs and why.
    """
    session, choice = open_model(model, threads=threads, providers=providers, precision=precision)
    return Scorer(session, max_pixels=max_pixels, max_bytes=max_bytes, max_decode_bytes=max_decode_bytes, choice=choice)


def ranking(results: Sequence[Score | Failure], *, top: int | None = None) -> list[int]:
    """Indices of ``results`` best first by utility (ties in input order), then failures in input order;
    ``top`` keeps only that many scored entries. The one ranking rule, shared by ``rank`` and the CLI."""
    _check_top(top)
    scored = sorted((i for i, r in enumerate(results) if isinstance(r, Score)), key=lambda i: (-results[i].utility, i))
    failed = [i for i, r in enumerate(results) if not isinstance(r, Score)]
    return [*scored[:top], *failed] if top is not None else [*scored, *failed]


def _check_top(top: int | None) -> None:
    if top is not None and (not isinstance(top, int) or isinstance(top, bool) or top < 0):
        raise ValueError(f"top must be a non-negative int or None, got {top!r}")


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# -- module-level shortcuts on the default model --------------------------------------------------
def _default() -> Scorer:
    return load()


def compare(a: ImageInput, b: ImageInput) -> Comparison:
    """:meth:`Scorer.compare` with the embedded default model."""
    return _default().compare(a, b)


def score(x: ImageInput) -> Score:
    """:meth:`Scorer.score` with the embedded default model."""
    return _default().score(x)


def rank(
    xs: Iterable[ImageInput], *, batch_size: int = DEFAULT_BATCH_SIZE, on_error: str = "raise", top: int | None = None
) -> list[Ranked | Failure]:
    """:meth:`Scorer.rank` with the embedded default model."""
    return _default().rank(xs, batch_size=batch_size, on_error=on_error, top=top)
