#!/usr/bin/env python3
"""Score a folder or a bucket of photos on a Ray cluster and write the scores as Parquet.

    python examples/score_with_ray.py ~/Pictures/ --out scores/                 # a local Ray cluster, all cores
    python examples/score_with_ray.py ~/Pictures/ --out scores/ --num-cpus 2    # ... on 2 of them
    python examples/score_with_ray.py s3://bucket/photos/ --out s3://bucket/scores/ --address auto

A folder is listed here and its paths are scored where they lie (on a real cluster, every node must see them
at that path: a shared file system); a URI (``s3://``, ``gs://``, ``abfs://``, ``local://`` for the head
node's disk, ...) is read by Ray's ``read_binary_files`` and its bytes travel to the actors. The Parquet files
under OUT_DIR hold one row per photo: ``path, score, utility, factor.<name>..., model, error``. Needs
``pip install "redaes-lite[ray]"`` (plus ``s3fs``/``gcsfs`` or pyarrow's own file systems for buckets).

Exit status: 0 every photo scored; 1 some photos could not be scored (their rows carry the error; the first
are listed on stderr); 2 usage error (no photos, OUT_DIR not empty, unusable model, no cluster at ADDRESS,
Ray not installed); 3 no photo could be scored; 4 the Ray job failed (a node lost, OUT_DIR not
writable); 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import time
from pathlib import Path

import redaes_lite
from redaes_lite import RedaesError

# Suffixes Pillow reads (plus HEIC with the heif extra); other files are skipped. Lower case; both cases match.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".heic", ".heif", ".avif")
SHOWN_ERRORS = 10


def is_uri(source: str) -> bool:
    return "://" in source


def folder_files(folder: Path, *, recursive: bool) -> list[str]:
    """Absolute paths of the images in ``folder`` (sorted, so runs are comparable)."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(str(p.resolve()) for p in found if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def check_out(out: str) -> str | None:
    """Why OUT_DIR cannot be written, or None. Scores never mix with an earlier run's files."""
    if is_uri(out):
        return None  # object storage: Ray's writer reports what goes wrong
    path = Path(out)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        return f"{out}: exists and is not an empty folder; choose a new --out"
    return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    doc = (__doc__ or "").split("\n\n")
    parser = argparse.ArgumentParser(description=doc[0], epilog=doc[-1], allow_abbrev=False)
    add = parser.add_argument
    add("source", metavar="DIR_OR_URI", help="a folder of photos, or a URI Ray's readers can list")
    add("--out", required=True, metavar="OUT_DIR", help="folder or URI for the Parquet files (new or empty)")
    add(
        "--address",
        help="Ray cluster to run on ('auto': the one `ray start` runs here); "
        "default: start a local cluster for this run",
    )
    add("--num-cpus", type=int, metavar="N", help="CPUs of the local cluster [default: all]")
    add("--model", default="default", help="'default', 'permissive' or a model file on every node")
    add(
        "--actors",
        type=int,
        metavar="N",
        help="at most N actors (autoscaling), each with one loaded model [default: cluster CPUs / threads]",
    )
    add("--threads", type=int, default=1, metavar="N", help="ONNX Runtime threads per actor [default: 1]")
    add("--rows-per-batch", type=int, metavar="N", help="photos per call to an actor [default: 32]")
    add("--recursive", "-r", action="store_true", help="descend into subfolders of a folder (URIs always are)")
    add("--quiet", "-q", action="store_true", help="no progress or summary on stderr")
    args = parser.parse_args(argv)
    for name in ("num_cpus", "actors", "threads", "rows_per_batch"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if args.num_cpus is not None and args.address is not None:
        parser.error("--num-cpus sizes a local cluster; a cluster at --address has its own CPUs")
    return args


def error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def reachable(address: str, timeout: float = 5.0) -> bool:
    """Whether a ``host:port`` address answers (Ray itself retries an unreachable one for minutes);
    other spellings (``auto``, ``ray://...``) are left to Ray."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return True
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
        return True
    except OSError:
        return False


def start_ray(args: argparse.Namespace) -> None:
    import ray

    quiet = {"logging_level": logging.ERROR, "log_to_driver": False, "configure_logging": True}
    if args.address is None:
        # "local": a new cluster even when another runs here (RAY_ADDRESS is ignored too).
        ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, **quiet)
    else:
        ray.init(address=args.address, **quiet)
    from ray.data import DataContext

    logging.getLogger("ray.data").setLevel(logging.ERROR)  # no "Starting execution ..." lines
    DataContext.get_current().enable_progress_bars = not args.quiet and sys.stderr.isatty()


def read(args: argparse.Namespace) -> tuple[object, str]:
    """The dataset to score and the column holding the photos."""
    import ray

    if is_uri(args.source):
        suffixes = [s.lstrip(".") for s in IMAGE_SUFFIXES]
        ds = ray.data.read_binary_files(
            args.source, include_paths=True, file_extensions=suffixes + [s.upper() for s in suffixes]
        )
        return ds, "bytes"
    files = folder_files(Path(args.source), recursive=args.recursive)
    if not files:
        raise LookupError(f"{args.source}: no photos found ({', '.join(IMAGE_SUFFIXES)})")
    return ray.data.from_items([{"path": f} for f in files]), "path"


def summarise(out: str) -> tuple[int, list[tuple[str, str]]]:
    """Rows written and the (path, error) of the failed ones, read back from the Parquet files."""
    import pyarrow.compute as pc
    import pyarrow.dataset as pds

    table = pds.dataset(out, format="parquet").to_table(columns=["path", "error"])
    failed = table.filter(pc.is_valid(table["error"]))
    return table.num_rows, list(zip(failed["path"].to_pylist(), failed["error"].to_pylist()))


def run(args: argparse.Namespace) -> int:
    try:
        import ray  # noqa: F401

        from redaes_lite.integrations.ray import output_columns, score_dataset
    except ImportError as e:
        error(f'this example needs Ray Data: pip install "redaes-lite[ray]" ({e})')
        return 2
    if not is_uri(args.source) and not Path(args.source).is_dir():
        error(f"{args.source}: no such folder (give a folder of photos or a URI such as s3://bucket/photos/)")
        return 2
    if (why := check_out(args.out)) is not None:
        error(why)
        return 2
    try:
        scorer = redaes_lite.load(args.model, threads=1)  # a bad model is a usage error, before any cluster
    except RedaesError as e:
        error(str(e))
        return 2
    if args.address is not None and not reachable(args.address):
        error(f"no Ray cluster answers at {args.address} (start one with `ray start --head`, or omit --address)")
        return 2
    try:
        start_ray(args)
    except (ConnectionError, RuntimeError, ValueError) as e:
        error(f"cannot start or reach a Ray cluster at {args.address or 'local'}: {str(e).splitlines()[0]}")
        return 2
    try:
        ds, column = read(args)
    except LookupError as e:
        error(str(e))
        return 2
    # Autoscaling up to --actors: a fixed pool on every CPU would leave none for Ray's read tasks.
    actors = None if args.actors is None else (1, args.actors)
    knobs = {"actors": actors, "threads": args.threads}
    if args.rows_per_batch is not None:
        knobs["rows_per_batch"] = args.rows_per_batch
    start = time.perf_counter()
    scored = score_dataset(ds, column=column, model=args.model, **knobs)
    scored.select_columns(["path", *output_columns(scorer.info.factors)]).write_parquet(args.out)
    seconds = time.perf_counter() - start
    rows, failed = summarise(args.out)
    for path, why in failed[:SHOWN_ERRORS]:
        error(why if why.startswith(path) else f"{path}: {why}")
    if len(failed) > SHOWN_ERRORS:
        error(f"... and {len(failed) - SHOWN_ERRORS} more (the error column of the Parquet files)")
    if not args.quiet:
        rate = rows / seconds if seconds > 0 else float("inf")
        print(
            f"{rows - len(failed)} of {rows} photos scored with {scorer.model_id} into {args.out} "
            f"in {seconds:.1f} s ({rate:.1f} photos/s)",
            file=sys.stderr,
        )
    if rows and len(failed) == rows:
        return 3
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        error("interrupted")
        return 130
    except Exception as e:  # noqa: BLE001 - a failed job (a node lost, no write access): one line, no traceback
        first = str(e).strip().splitlines()
        error(f"the Ray job failed: {type(e).__name__}: {first[0] if first else ''}")
        return 4
    finally:
        if "ray" in sys.modules:
            import ray

            if ray.is_initialized():
                ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
