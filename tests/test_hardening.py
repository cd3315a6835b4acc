"""Hardening: resource bounds, safe folder walks, concurrency, integrity, interrupted and resumed runs."""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import fuzzkit
import numpy as np
import pytest
from clirun import invoke
from modelkit import make_tiny_model
from PIL import Image
from test_preprocess import photo, png_bytes

from redaes_lite import ImageError, ModelError, api, cli, load, preprocess
from redaes_lite._cli_io import expand
from redaes_lite._decode_pool import DecodePool
from redaes_lite.metadata import sidecar_path
from redaes_lite.preprocess import PreprocessSpec, load_image

ROOT = Path(__file__).resolve().parents[1]
SPEC = PreprocessSpec(size=(32, 32))
N_MANY = 120
CLI = "import sys; from redaes_lite.cli import main; sys.argv[0] = 'redaes-lite'; main()"


def run(*args: object):
    return invoke(cli.run, *args)


# -- resource bounds -------------------------------------------------------------------------------
def test_max_bytes_refuses_files_and_bytes_before_reading(tmp_path, monkeypatch):
    data = png_bytes(photo())
    path = tmp_path / "p.png"
    path.write_bytes(data)
    with pytest.raises(ImageError, match=r"over max_bytes") as e:
        load_image(path, max_bytes=len(data) - 1)
    assert str(e.value).startswith(str(path))
    with pytest.raises(ImageError, match=rf"input is {len(data):,} bytes, over max_bytes {len(data) - 1:,} bytes"):
        load_image(data, max_bytes=len(data) - 1)
    assert load_image(data, max_bytes=len(data)).size == load_image(path, max_bytes=None).size == (96, 64)
    # The size comes from fstat: a file over the (default) limit is refused before any read.
    huge = tmp_path / "huge.png"
    with open(huge, "wb") as f:
        f.write(data)
        f.truncate(preprocess.DEFAULT_MAX_BYTES + 1)  # sparse: no disk used
    with monkeypatch.context() as m:
        m.setattr(os, "fdopen", lambda *a, **k: pytest.fail("opened a file over max_bytes for reading"))
        # Both would read 268.4 MB: the message gives the exact counts instead.
        with pytest.raises(ImageError, match=r"file is 268,435,457 bytes, over max_bytes 268,435,456 bytes"):
            load_image(huge)
    assert preprocess.DEFAULT_MAX_BYTES == cli.DEFAULT_MAX_BYTES == 256 * 1024 * 1024
    assert api.DEFAULT_BATCH_SIZE == cli.DEFAULT_BATCH_SIZE  # memory grows with the batch (memory_profile.py)


def test_max_bytes_in_load_and_the_cli(tiny_model, tmp_path):
    path = tmp_path / "p.png"
    path.write_bytes(png_bytes(photo()))
    with pytest.raises(ImageError, match="over max_bytes"):
        load(tiny_model, max_bytes=100).score(path)
    r = run("score", path, "--model", tiny_model, "--max-bytes", "100", "-f", "jsonl")
    assert r.exit_code == 1 and "over max_bytes" in json.loads(r.stdout)["error"]
    assert run("score", path, "--model", tiny_model, "--max-bytes", "0", "-f", "jsonl").exit_code == 0


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_pipes_and_devices_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer forever
    for special in (fifo, Path("/dev/zero")):
        with pytest.raises(ImageError, match="not a regular file"):
            load_image(special)


def test_only_image_formats_are_tried():
    # Pillow would open this as EPS and hand it to Ghostscript; the runtime decodes image formats only.
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n"
    with pytest.raises(ImageError, match="not a recognised image format"):
        load_image(eps)


def test_jpeg_scan_bombs_are_refused_before_decoding():
    assert load_image(fuzzkit.jpeg_with_scans(40), SPEC).size == (32, 24)  # many scans, small image: fine
    t0 = time.perf_counter()
    with pytest.raises(ImageError, match=r"JPEG has 50[0-9] scans, over the limit of 500"):
        load_image(fuzzkit.jpeg_with_scans(500), SPEC)
    with pytest.raises(ImageError, match=r"over the limit of 23 for its size"):
        load_image(fuzzkit.jpeg_with_scans(30, width=8000, height=8000), SPEC)  # 64 MP x 36 scans: ~2 s
    assert time.perf_counter() - t0 < 1.0  # refused from a scan count, nothing decoded


def test_extreme_sides_are_refused():
    with pytest.raises(ImageError, match="has a side over 65535 px"):
        load_image(fuzzkit.png(1, 100_000_000))  # 100 MP is under max_pixels, but 10^8 rows take seconds


def test_high_bit_depth_images_are_scaled_in_strips_exactly():
    rng = np.random.default_rng(0)
    ints = rng.integers(-5000, 70000, (1100, 2048)).astype(np.int32)  # 3 strips of rows
    lo, hi = float(ints.min()), float(ints.max())
    expected = np.clip((ints - lo) / (hi - lo) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    out = np.asarray(load_image(Image.fromarray(ints, "I"), SPEC))
    np.testing.assert_array_equal(out[..., 0], expected)
    floats = np.array([[np.nan, 0.0], [np.inf, 1000.0], [-np.inf, 500.0]], np.float32)
    grey = np.asarray(load_image(Image.fromarray(floats, "F"), SPEC))[..., 0]
    assert grey.tolist() == [[0, 0], [255, 255], [0, 128]]  # NaN and -inf at the low end, inf at the top


# -- folder walks ----------------------------------------------------------------------------------
@pytest.fixture
def looped(tmp_path) -> Path:
    """a.png, sub/b.png, and two symlinks in sub back to sub and to the top: glob.glob('**') never ends."""
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "sub" / "b.png")
    (tmp_path / "sub" / "self").symlink_to(".")
    (tmp_path / "sub" / "up").symlink_to("..")
    return tmp_path


def test_recursive_walks_end_on_symlink_loops(looped):
    found = expand([str(looped)], recursive=True)
    assert found == [(str(looped / "a.png"), None), (str(looped / "sub" / "b.png"), None)]
    globbed = expand([str(looped / "**" / "*.png")], recursive=True)
    assert globbed == found
    assert expand([str(looped / "*" / "*.png")], recursive=False) == [(str(looped / "sub" / "b.png"), None)]


def test_unreadable_folders_become_error_rows(looped, monkeypatch):
    real_scandir = os.scandir

    def scandir(path):
        if Path(path).name == "sub":
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    rows = expand([str(looped)], recursive=True)
    assert rows == [
        (str(looped / "a.png"), None),
        (str(looped / "sub"), f"{looped / 'sub'}: cannot list folder (Permission denied)"),
    ]


# -- concurrency -----------------------------------------------------------------------------------
def test_one_scorer_shared_by_8_threads_matches_sequential_use(tiny_model, tmp_path):
    scorer = load(tiny_model)
    inputs: list = []
    for i in range(12):
        im = photo(40 + 3 * i, 30 + 2 * i, seed=i)
        path = tmp_path / f"{i}.png"
        im.save(path)
        inputs += [path, png_bytes(im), np.asarray(im)]
    pairs = list(zip(inputs[::2], inputs[1::2]))

    def work() -> tuple:
        return (
            [scorer.score(x) for x in inputs],
            [scorer.compare(a, b) for a, b in pairs],
            scorer.score_many(inputs, batch_size=5),
            scorer.rank(inputs[:9]),
        )

    sequential = work()
    start = threading.Barrier(8)
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda _: (start.wait(), work())[1], range(8)))
    assert all(result == sequential for result in together)  # bit-identical dataclasses


def test_workers_give_the_same_rows_in_the_same_order(tiny_model, tmp_path):
    for i in range(9):
        photo(50 + 7 * i, 40, seed=i).save(tmp_path / f"{i}.{'png' if i % 2 else 'jpg'}")
    (tmp_path / "4.png").write_bytes(b"broken")
    base = run("score", tmp_path, "--model", tiny_model, "-f", "jsonl", "--batch-size", "4")
    for workers in ("1", "3"):
        other = run("score", tmp_path, "--model", tiny_model, "-f", "jsonl", "--batch-size", "4", "--workers", workers)
        assert other.stdout == base.stdout and other.exit_code == base.exit_code == 1
    ranked = run("rank", tmp_path, "--model", tiny_model, "-f", "jsonl", "--workers", "2")
    assert ranked.stdout == run("rank", tmp_path, "--model", tiny_model, "-f", "jsonl").stdout


def test_a_worker_that_dies_fails_only_its_input(tmp_path):
    paths = []
    for i in range(3):
        paths.append(str(tmp_path / f"{i}.png"))
        photo(seed=i).save(paths[-1])
    with DecodePool(1, spec=SPEC, max_pixels=None, max_bytes=None) as pool:
        pool._workers[0].proc.kill()  # as a decoder crash would
        (batch,) = list(pool.batches(paths, 3))
    assert "crashed its worker process" in batch[0].error and batch[0].input == paths[0]
    for got, path in zip(batch[1:], paths[1:]):
        np.testing.assert_array_equal(got, preprocess.to_array(load_image(path, SPEC), SPEC))


# -- integrity -------------------------------------------------------------------------------------
def test_a_tampered_embedded_model_is_refused(tmp_path, monkeypatch):
    from redaes_lite import session

    monkeypatch.setattr(session, "_MODELS_DIR", tmp_path)
    path = make_tiny_model(tmp_path / "default")
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # one byte of the weights or metadata changed after install
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError) as e:
        load()
    msg = str(e.value)
    assert msg.startswith(str(path)) and "does not match model.json" in msg and "\n" not in msg
    assert sidecar_path(path).exists()


_UNPICKLERS = {"pickle", "cPickle", "_pickle", "dill", "joblib", "shelve", "marshal", "multiprocessing", "torch"}


def _unpickling(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [n for n in names if n.split(".")[0] in _UNPICKLERS]
        elif isinstance(node, ast.Call):
            allow = {k.arg: k.value for k in node.keywords}.get("allow_pickle")
            if allow is not None and not (isinstance(allow, ast.Constant) and allow.value is False):
                found.append("allow_pickle")
            if (
                isinstance(node.func, ast.Attribute)
                and node.func.attr in ("read_pickle", "loads")
                and ast.unparse(node.func.value) in ("pickle", "pd", "pandas")
            ):
                found.append(ast.unparse(node.func))
    return found


def test_the_runtime_never_unpickles():
    sources = sorted((ROOT / "redaes_lite").rglob("*.py"))
    assert len(sources) > 10
    hits = {str(p.relative_to(ROOT)): h for p in sources if (h := _unpickling(ast.parse(p.read_text())))}
    assert hits == {}
    assert _unpickling(ast.parse("import pickle\nnp.load(f, allow_pickle=True)")) == ["pickle", "allow_pickle"]


def test_training_checkpoints_load_with_weights_only():
    calls = []
    for path in sorted([*(ROOT / "distill").rglob("*.py"), *(ROOT / "export").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                weights_only = {k.arg: ast.unparse(k.value) for k in node.keywords}.get("weights_only")
                calls.append((str(path.relative_to(ROOT)), weights_only))
    assert calls and all(w == "True" for _, w in calls), calls


# -- interrupted and resumed runs (a real process and a real signal) -------------------------------
@pytest.fixture(scope="module")
def many(tmp_path_factory) -> Path:
    """120 links to one 800x600 noise PNG (~10 ms to decode): a run long enough to interrupt."""
    d = tmp_path_factory.mktemp("many")
    noise = np.random.default_rng(0).integers(0, 256, (600, 800, 3), np.uint8)
    Image.fromarray(noise).save(d / "source.bin", format="PNG")
    (d / "in").mkdir()
    for i in range(N_MANY):
        os.link(d / "source.bin", d / "in" / f"{i:03d}.png")
    return d


def _start(*args: object) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CLI, *map(str, args)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _signal_once_started(proc: subprocess.Popen, folder: Path, sig: int) -> tuple[int, str]:
    """Send ``sig`` when the output's temporary file has rows; returns (exit status, stderr)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if any(p.stat().st_size > 0 for p in folder.glob(".*.tmp")):
            break
        time.sleep(0.01)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def test_sigint_writes_what_was_done_and_resume_finishes(tiny_model, many, tmp_path):
    out = tmp_path / "scores.jsonl"
    args = ("score", many / "in", "--model", tiny_model, "-f", "jsonl", "-o", out, "--batch-size", "2")
    code, err = _signal_once_started(_start(*args), tmp_path, signal.SIGINT)
    assert code == 130 and "interrupted" in err and "--resume" in err
    first = out.read_text().splitlines()
    paths = [str(many / "in" / f"{i:03d}.png") for i in range(N_MANY)]
    scorer = load(tiny_model)
    expected = {"path": "", **scorer.score(many / "source.bin").to_dict(), "model": scorer.model_id, "error": None}
    assert 0 < len(first) < N_MANY
    assert [json.loads(line) for line in first] == [{**expected, "path": p} for p in paths[: len(first)]]
    assert [p.name for p in tmp_path.iterdir()] == ["scores.jsonl"]  # committed, no temporary left
    proc = _start(*args, "--resume")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and f"resuming: {len(first)} of {N_MANY} inputs already scored" in err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == [{**expected, "path": p} for p in paths]


def test_interrupted_csv_and_json_are_complete_files(tiny_model, many, tmp_path):
    for fmt in ("csv", "json"):
        out = tmp_path / f"scores.{fmt}"
        code, _ = _signal_once_started(
            _start("score", many / "in", "--model", tiny_model, "-f", fmt, "-o", out, "--batch-size", "2"),
            tmp_path,
            signal.SIGTERM,
        )
        assert code == 143
        text = out.read_text()
        rows = json.loads(text) if fmt == "json" else text.splitlines()[1:]
        assert 0 < len(rows) < N_MANY and (fmt == "json" or text.startswith("path,score,utility,"))


def test_a_killed_run_leaves_the_previous_output_untouched(tiny_model, many, tmp_path):
    out = tmp_path / "scores.csv"
    out.write_text("previous,complete\n")
    proc = _start("score", many / "in", "--model", tiny_model, "-f", "csv", "-o", out)
    code, _ = _signal_once_started(proc, tmp_path, signal.SIGKILL)  # no handler, no cleanup
    assert code == -signal.SIGKILL and out.read_text() == "previous,complete\n"


def test_a_reader_that_goes_away_stops_the_run_quietly(tiny_model, many):
    proc = _start("score", many / "in", "--model", tiny_model, "-f", "jsonl", "--batch-size", "2")
    first = proc.stdout.readline()  # `redaes-lite score DIR | head -1`
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141, err
    assert json.loads(first)["error"] is None and "Traceback" not in err and "Exception" not in err


def test_resume_needs_jsonl_output(tiny_model, tmp_path):
    r = run("score", tmp_path, "--model", tiny_model, "--resume", "-f", "csv", "-o", tmp_path / "x.csv")
    assert r.exit_code == 2 and "--resume needs --format jsonl" in r.stderr
    assert re.search(r"--resume", run("score", "--help").stdout)


def test_atomic_output_gets_the_permissions_of_a_plain_write(tmp_path):
    from redaes_lite._atomic import atomic_open

    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic = tmp_path / "atomic.txt"
    with atomic_open(atomic) as f:
        f.write("x")
    assert atomic.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777
    atomic.chmod(0o640)
    with atomic_open(atomic) as f:  # rewriting keeps the file's own mode
        f.write("y")
    assert atomic.stat().st_mode & 0o777 == 0o640
