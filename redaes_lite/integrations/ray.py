"""Score a Ray Data ``Dataset`` of photos on a cluster: :func:`score_dataset` (``pip install "redaes-lite[ray]"``).

    >>> import ray
    >>> from redaes_lite.integrations.ray import score_dataset
    >>> ds = ray.data.read_binary_files("s3://bucket/photos/", include_paths=True)  # doctest: +SKIP
    >>> scored = score_dataset(ds, column="bytes").drop_columns(["bytes"])          # doctest: +SKIP
    >>> scored.write_parquet("s3://bucket/scores/")                                 # doctest: +SKIP

Each actor of the pool loads the model once and scores its batches with :meth:`Scorer.score_many
<redaes_lite.api.Scorer.score_many>` (``on_error="record"``): the same decoding, preprocessing and results as
``score_many`` and the CLI, and an input that cannot be scored becomes a row with its ``error`` set, never a
failed job. Ray is imported when :func:`score_dataset` is called, not when this module is.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._cli_io import printable  # errors name non-UTF-8 files as the CLI's rows do (\xHH)
from ..preprocess import DEFAULT_MAX_BYTES, DEFAULT_MAX_DECODE_BYTES, DEFAULT_MAX_PIXELS

if TYPE_CHECKING:
    import pyarrow
    from ray.data import Dataset

    from ..api import Scorer
    from ..results import Failure, Score

__all__ = ["DEFAULT_ROWS_PER_BATCH", "output_columns", "score_dataset"]

#: Rows handed to an actor per call (Ray's ``map_batches(batch_size=...)``). Within a call, ``score_many``
#: decodes in threads ahead of inference; between calls that pipeline drains, so a call should hold several
#: inference batches. 32 photos as bytes are ~100 MB at 3 MB each, under Ray's 128 MiB target block size.
DEFAULT_ROWS_PER_BATCH = 32

_RESULT_COLUMNS = ("score", "utility")
_TRAILING_COLUMNS = ("model", "error")


def output_columns(factors: Sequence[str]) -> list[str]:
    """The columns :func:`score_dataset` adds, in order: ``score, utility, factor.<name>..., model, error``."""
    return [*_RESULT_COLUMNS, *(f"factor.{n}" for n in factors), *_TRAILING_COLUMNS]


class _ScoreBatches:
    """The callable class of the actor pool: one :class:`~redaes_lite.api.Scorer` per actor, loaded in
    ``__init__``; each call scores one Arrow batch and returns it with the result columns."""

    def __init__(
        self, *, column: str, model: str, threads: int | None, inference_batch_size: int, limits: dict[str, int | None]
    ) -> None:
        from ..api import load

        self._column = column
        self._batch_size = inference_batch_size
        self._scorer: Scorer = load(model, threads=threads, **limits)
        self._factors = self._scorer.info.factors
        self._model_id = self._scorer.model_id

    def _results(self, values: list[Any]) -> list[Score | Failure]:
        from ..results import Failure

        try:
            return self._scorer.score_many(values, batch_size=self._batch_size, on_error="record")
        except Exception:  # noqa: BLE001 - not a RedaesError: score one by one, record the input that raised
            from ..preprocess import describe_input

            results: list[Score | Failure] = []
            for i, x in enumerate(values):
                try:
                    results += self._scorer.score_many([x], batch_size=1, on_error="record")
                except Exception as e:  # noqa: BLE001 - one bad input must not fail the job
                    results.append(Failure(input=x, index=i, error=f"{describe_input(x)}: {type(e).__name__}: {e}"))
            return results

    def __call__(self, batch: pyarrow.Table) -> pyarrow.Table:
        import pyarrow as pa

        from ..results import Failure

        if self._column not in batch.column_names:
            raise ValueError(f"score_dataset: no column {self._column!r} (columns: {', '.join(batch.column_names)})")
        values = batch.column(self._column).to_pylist()  # str (a path), bytes, or None
        todo = [i for i, v in enumerate(values) if v is not None]
        found = self._results([values[i] for i in todo]) if todo else []
        results: list[Score | Failure | None] = [None] * len(values)
        for i, r in zip(todo, found):
            results[i] = r
        scores = [r if r is not None and not isinstance(r, Failure) else None for r in results]
        columns: dict[str, pa.Array] = {
            "score": pa.array([s.score if s else None for s in scores], pa.float64()),
            "utility": pa.array([s.utility if s else None for s in scores], pa.float64()),
        }
        for n in self._factors:
            columns[f"factor.{n}"] = pa.array([s.factors[n] if s else None for s in scores], pa.float64())
        columns["model"] = pa.array([self._model_id] * len(values), pa.string())
        null = f"no input (the {self._column!r} value is null)"
        errors = [null if r is None else printable(r.error) if isinstance(r, Failure) else None for r in results]
        columns["error"] = pa.array(errors, pa.string())
        kept = [c for c in batch.column_names if c not in columns]  # a re-scored dataset: its old results go
        out = batch.select(kept)
        for name, array in columns.items():
            out = out.append_column(name, array)
        return out


def _pool(ray: Any, actors: int | tuple[int, int] | None, num_cpus: float) -> Any:
    """The actor pool: ``actors`` fixed, ``(min, max)`` autoscaling, or ``None``: from one up to as many as
    the cluster's CPUs hold now."""
    from ray.data import ActorPoolStrategy

    if actors is None:
        if not ray.is_initialized():
            ray.init()  # what Ray Data does on first use; a RAY_ADDRESS in the environment is honoured
        most = max(1, int(float(ray.cluster_resources().get("CPU", 1)) // num_cpus))
        # Autoscaling from one actor: a pool that holds every CPU from the start (fixed, or initial_size=most)
        # leaves none for the tasks that read the input (read_binary_files), and the job waits forever.
        return ActorPoolStrategy(min_size=1, max_size=most)
    if isinstance(actors, tuple):
        if len(actors) != 2 or not all(_positive_int(a) for a in actors) or actors[0] > actors[1]:
            raise ValueError(f"actors must be a positive int or a (min, max) pair of them, got {actors!r}")
        return ActorPoolStrategy(min_size=actors[0], max_size=actors[1])
    if not _positive_int(actors):
        raise ValueError(f"actors must be a positive int or a (min, max) pair of them, got {actors!r}")
    return ActorPoolStrategy(size=actors)


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def score_dataset(
    ds: Dataset,
    *,
    column: str = "path",
    model: str | os.PathLike[str] = "default",
    actors: int | tuple[int, int] | None = None,
    rows_per_batch: int = DEFAULT_ROWS_PER_BATCH,
    threads: int = 1,
    num_cpus: float | None = None,
    inference_batch_size: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
    max_decode_bytes: int | None = DEFAULT_MAX_DECODE_BYTES,
) -> Dataset:
    """Score every row of ``ds`` on its cluster; returns a lazy ``Dataset`` (nothing runs until it is consumed).

    ``column`` holds the images: paths (``str``, readable at that path on every node: absolute paths on a
    shared file system) or encoded bytes (``ray.data.read_binary_files(..., include_paths=True)`` gives
    ``bytes`` and ``path`` columns, from local disk or object storage). The result has every column of ``ds``
    and then ``score`` (0..10), ``utility``, ``factor.<name>`` per factor of the model, ``model``
    (``name@version``, as the CLI's rows name it) and ``error`` (null when scored). An input that cannot be
    scored (unreadable, not an image, over a limit, null) gets nulls and its ``error``, as
    ``score_many(..., on_error="record")`` gives it; the job goes on. Columns of ``ds`` with those names are
    replaced. Rows come out in Ray's execution order, not necessarily ``ds``'s: keep an id column (a path)
    to join on, or set ``DataContext.get_current().execution_options.preserve_order = True``.

    The knobs: ``actors``, the size of the actor pool (each actor loads the model once): an int (a fixed
    pool), a ``(min, max)`` pair to autoscale, or ``None``: ``(1, cluster CPUs // num_cpus)``, the CPUs read
    from the cluster (Ray is started or joined here if it is not yet, as Ray Data does when a dataset first
    runs). A fixed pool that takes every CPU starves the tasks that read ``ds`` (``read_binary_files``) and
    the job stalls; a dataset built from items has no such tasks. ``rows_per_batch``: rows per call to an
    actor; ``threads``: ONNX Runtime threads per actor; ``num_cpus``: CPUs Ray reserves per actor (default
    ``threads``); ``inference_batch_size``: images per model run inside a call (default
    :data:`~redaes_lite.api.DEFAULT_BATCH_SIZE`). ``model`` and the limits are those of
    :func:`redaes_lite.load`; the model is loaded here first, so an unusable one raises
    :class:`~redaes_lite.ModelError` before the job starts (a file must then exist at that path on every node
    too; ``"default"`` and ``"permissive"`` ship in the wheel).

    Raises ``ImportError`` (with the install command) when Ray Data is not installed, ``ValueError`` for a
    bad knob, :class:`~redaes_lite.ModelError` for an unusable model.
    """
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data is the [data] extra of ray
    except ImportError as e:
        raise ImportError(f'score_dataset needs Ray Data: pip install "redaes-lite[ray]" ({e})') from None
    from ..api import DEFAULT_BATCH_SIZE, load

    if not isinstance(column, str) or not column:
        raise ValueError(f"column must be a column name, got {column!r}")
    if not _positive_int(rows_per_batch):
        raise ValueError(f"rows_per_batch must be a positive int, got {rows_per_batch!r}")
    if not _positive_int(threads):
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    inference_batch_size = DEFAULT_BATCH_SIZE if inference_batch_size is None else inference_batch_size
    if not _positive_int(inference_batch_size):
        raise ValueError(f"inference_batch_size must be a positive int, got {inference_batch_size!r}")
    num_cpus = float(threads) if num_cpus is None else num_cpus
    if isinstance(num_cpus, bool) or not isinstance(num_cpus, (int, float)) or not num_cpus > 0:
        raise ValueError(f"num_cpus must be a positive number, got {num_cpus!r}")
    model = os.fspath(model)
    limits = {"max_pixels": max_pixels, "max_bytes": max_bytes, "max_decode_bytes": max_decode_bytes}
    load(model, threads=1, **limits)  # fail here, not in every actor: a bad model or limit raises now
    schema = ds.schema(fetch_if_missing=False)
    if schema is not None and column not in schema.names:
        raise ValueError(f"score_dataset: no column {column!r} (columns: {', '.join(schema.names)})")
    settings = {
        "column": column,
        "model": model,
        "threads": threads,
        "inference_batch_size": inference_batch_size,
        "limits": limits,
    }
    return ds.map_batches(
        _ScoreBatches,
        fn_constructor_kwargs=settings,
        batch_size=rows_per_batch,
        batch_format="pyarrow",
        compute=_pool(ray, actors, float(num_cpus)),
        num_cpus=num_cpus,
    )
