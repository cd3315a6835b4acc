"""Issue 21, items 3-6: odd file names, unusable stdouts, Ctrl-C, unverified model files, spreadsheet-safe
CSV, terminal-safe tables, special -o targets, temporaries of killed runs, quiet decoder warnings and the
extensions folder walks find."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import fuzzkit
import numpy as np
import pytest
from clirun import invoke
from modelkit import make_tiny_model
from PIL import Image

from redaes_lite import Failure, cli, load
from redaes_lite._atomic import atomic_open, stale_temporaries
from redaes_lite._cli_io import expand, image_extensions, write_rows
from redaes_lite._decode_pool import DecodePool
from redaes_lite.preprocess import PreprocessSpec

ROOT = Path(__file__).resolve().parents[1]
CLI = "import sys; from redaes_lite.cli import main; sys.argv[0] = 'redaes-lite'; main()"
posix_names = pytest.mark.skipif(sys.platform in ("darwin", "win32"), reason="needs byte file names (Linux)")


def run(*args: object):
    return invoke(cli.run, *args)


def _cli(*args: object, **kw) -> subprocess.CompletedProcess:
    """The CLI in a fresh process (stdout and stderr captured unless given)."""
    kw = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **kw}
    return subprocess.run([sys.executable, "-c", CLI, *map(str, args)], cwd=ROOT, text=True, timeout=120, **kw)


def _image(path: Path | str | bytes, seed: int = 0) -> None:
    im = Image.fromarray(np.random.default_rng(seed).integers(0, 256, (24, 32, 3), np.uint8))
    with open(path, "wb") as f:
        im.save(f, format="PNG")


def _jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


# -- item 3: file names, unreachable paths, NUL bytes ---------------------------------------------------
@posix_names
def test_file_names_that_are_not_utf8_get_their_rows_escaped(tiny_model, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    _image(os.fsencode(folder) + b"/caf\xe9.png")  # a Latin-1 name, as old cameras and zip files write
    _image(folder / "ok.png")
    r = run("score", folder, "--model", tiny_model, "-f", "jsonl", "-q")
    assert r.exit_code == 0, r.output
    assert [row["path"] for row in _jsonl(r.stdout)] == [f"{folder}/caf\\xe9.png", f"{folder}/ok.png"]
    assert all(row["error"] is None for row in _jsonl(r.stdout))
    missing = run("score", os.fsdecode(os.fsencode(folder) + b"/gone\xff.png"), "--model", tiny_model, "-f", "csv")
    assert missing.exit_code == 1 and "gone\\xff.png: no such file" in missing.stdout
    # -o with such a name, and --resume matching the escaped paths (nothing scored twice or duplicated)
    out = Path(os.fsdecode(os.fsencode(tmp_path) + b"/r\xe9sultats.jsonl"))
    for _ in range(2):
        r = run("score", folder, "--model", tiny_model, "-f", "jsonl", "-o", out, "--resume")
        assert r.exit_code == 0, r.output
    assert [row["path"] for row in _jsonl(out.read_text())] == [f"{folder}/caf\\xe9.png", f"{folder}/ok.png"]
    assert "resuming: 2 of 2 inputs already scored" in r.stderr
    # stdout with a strict ASCII encoding: the rows are written, escaped, the run goes on
    _image(folder / "é.png")
    env = {**os.environ, "PYTHONIOENCODING": "ascii:strict"}
    for fmt in ("csv", "jsonl", "table"):
        p = _cli("score", folder, "--model", tiny_model, "-f", fmt, "-q", env=env)
        assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
        if fmt == "jsonl":  # JSON's own escapes: é is \u00e9, the backslash of \xe9 doubled
            assert "caf\\\\xe9.png" in p.stdout and "\\u00e9.png" in p.stdout
        else:
            assert "caf\\xe9.png" in p.stdout and "/\\xe9.png" in p.stdout
    p = _cli("score", folder / "é.png", "--model", tiny_model, "-f", "jsonl", env=env)
    assert json.loads(p.stdout)["path"] == f"{folder}/é.png"  # JSON's own escape: read back as written


def test_a_path_inside_a_folder_we_cannot_enter_is_an_error_row(tiny_model, tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    _image(locked / "a.png")
    _image(tmp_path / "b.png")
    # As a user without the folder's x bit sees it (root passes every permission check, so simulate that).
    real_stat, real_open = os.stat, os.open

    def denied(path: object) -> bool:
        return str(path).startswith(str(locked) + os.sep)

    def fake_stat(path, *a, **k):
        if denied(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_stat(path, *a, **k)

    def fake_open(path, *a, **k):
        if denied(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr(os, "stat", fake_stat)
    monkeypatch.setattr(os, "open", fake_open)
    r = run("score", locked / "a.png", locked / "sub", tmp_path / "b.png", "--model", tiny_model, "-f", "jsonl")
    rows = _jsonl(r.stdout)
    assert r.exit_code == 1 and "Traceback" not in r.stderr and len(rows) == 3
    assert [row["error"] for row in rows] == [
        f"{locked / 'a.png'}: permission denied",
        f"{locked / 'sub'}: permission denied",
        None,
    ]


def test_a_nul_byte_in_a_path_is_a_failure(tiny_model, tmp_path):
    _image(tmp_path / "a.png")
    paths = [str(tmp_path / "a.png"), str(tmp_path / "b\0.png")]
    results = load(tiny_model).score_many(paths, on_error="record")
    assert isinstance(results[1], Failure) and results[1].error == f"{tmp_path}/b\\x00.png: path contains a NUL byte"
    with DecodePool(1, spec=PreprocessSpec(size=(32, 32)), max_pixels=None, max_bytes=None) as pool:
        batch = next(pool.batches(paths, 2))
    assert isinstance(batch[0], np.ndarray) and batch[1].error.endswith("path contains a NUL byte")


# -- item 3: stdout that cannot be written, Ctrl-C anywhere -------------------------------------------------
def test_a_full_or_closed_stdout_is_one_line_and_exit_2(tiny_model, tmp_path):
    _image(tmp_path / "a.png")
    with open("/dev/full", "w") as full:
        for args in (
            ("score", tmp_path / "a.png", "-f", "jsonl"),
            ("score", tmp_path / "a.png", "-f", "json"),
            ("info",),
        ):
            p = _cli(*args, "--model", tiny_model, stdout=full)
            assert (p.returncode, p.stderr) == (
                2,
                "redaes-lite: error: cannot write to stdout (No space left on device)\n",
            ), args
    p = _cli("score", tmp_path / "a.png", "--model", tiny_model, preexec_fn=lambda: os.close(1))
    assert (p.returncode, p.stderr) == (2, "redaes-lite: error: stdout is closed; pass --output FILE\n")
    out = tmp_path / "rows.jsonl"
    p = _cli(
        "score", tmp_path / "a.png", "--model", tiny_model, "-f", "jsonl", "-o", out, preexec_fn=lambda: os.close(1)
    )
    assert p.returncode == 0 and len(out.read_text().splitlines()) == 1, p.stderr


def _as_from_a_terminal() -> None:
    """SIGINT as a terminal's Ctrl-C meets it: a background job (a CI runner, nohup) starts with it ignored, and
    a mask blocking it survives exec; either way the child would never see the signal this test sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_ctrl_c_before_the_run_handles_it_is_exit_130_without_a_traceback(tiny_model, tmp_path, monkeypatch, capsys):
    def interrupted(argv=None):
        raise KeyboardInterrupt  # Ctrl-C while the model loads

    monkeypatch.setattr(cli, "run", interrupted)
    try:
        cli.main()
    except BaseException as e:  # noqa: BLE001 - a KeyboardInterrupt escaping would end the test session
        ended = e
    assert isinstance(ended, SystemExit) and ended.code == 130
    assert capsys.readouterr().err == "redaes-lite: interrupted\n"
    # A real one: `rank` scores everything before it writes (and before the run's own handler is in place).
    folder = tmp_path / "in"
    folder.mkdir()
    big = Image.fromarray(np.random.default_rng(0).integers(0, 256, (600, 800, 3), np.uint8))
    big.save(tmp_path / "src.png")
    for i in range(5000):  # enough work that the run cannot end before the signal, however loaded the machine
        os.link(tmp_path / "src.png", folder / f"{i:04d}.png")
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI, "rank", str(folder), "--model", str(tiny_model), "--progress"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_as_from_a_terminal,
    )
    seen = ""
    while "scoring" not in seen:  # the progress line: imports and the model load are done
        char = proc.stderr.read(1)
        assert char, seen  # the process ended before scoring
        seen += char
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err and "KeyboardInterrupt" not in err, err


# -- item 3: unverified model files -------------------------------------------------------------------------
def test_a_model_file_without_a_sidecar_says_its_integrity_was_not_verified(tmp_path):
    alone = make_tiny_model(tmp_path / "alone", sidecar=False)
    paired = make_tiny_model(tmp_path / "paired")
    assert not load(alone).verified and load(paired).verified and load().verified
    r = run("info", "--model", alone)
    assert "integrity                      NOT verified: no model.json beside it records its sha256" in r.stdout
    assert json.loads(run("info", "--model", paired, "-f", "json").stdout)["integrity"] == (
        "verified: sha256 matches model.json"
    )
    _image(tmp_path / "a.png")
    warning = f"redaes-lite: warning: {alone}: integrity not verified (no model.json beside it records its sha256)\n"
    assert run("score", tmp_path / "a.png", "--model", alone).stderr == warning
    assert run("score", tmp_path / "a.png", "--model", alone, "-q").stderr == ""
    assert run("score", tmp_path / "a.png", "--model", paired).stderr == ""


# -- item 4: output safety ----------------------------------------------------------------------------------
def test_csv_text_cells_that_would_be_formulas_are_escaped_and_numbers_are_not():
    rows = [
        {"path": p, "score": 0.0, "utility": -0.5, "factors": {"exposure": -1.25}, "model": "m@1", "error": e}
        for p, e in [
            ('=HYPERLINK("http://x").jpg', None),
            ("-a.jpg", "-x: bad"),
            ("+a.jpg", "@SUM(1)"),
            ("@a.jpg", None),
            ("\ta.jpg", "\rx"),
            ("a=b.jpg", None),
        ]
    ]
    out = io.StringIO()
    write_rows(rows, out, fmt="csv", factors=["exposure"])
    table = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["path"] for r in table] == [
        '\'=HYPERLINK("http://x").jpg',
        "'-a.jpg",
        "'+a.jpg",
        "'@a.jpg",
        "'\ta.jpg",
        "a=b.jpg",
    ]
    assert [r["error"] for r in table] == ["", "'-x: bad", "'@SUM(1)", "", "'\rx", ""]
    assert {(r["utility"], r["factor.exposure"], r["score"]) for r in table} == {("-0.5", "-1.25", "0.0")}


def test_the_table_escapes_control_characters(tiny_model, tmp_path):
    name = "a\x1b[2J\x07b\u202egpj.png"  # clears the screen, rings, and reverses the rest of the line
    _image(tmp_path / name)
    r = run("score", tmp_path / name, tmp_path / "gone\n.png", "--model", tiny_model)
    assert "\x1b" not in r.stdout and "\x07" not in r.stdout and "\u202e" not in r.stdout
    assert "a\\x1b[2J\\x07b\\u202egpj.png" in r.stdout and "gone\\n.png: no such file" in r.stdout
    assert r.stdout.count("\n") == 3  # the header and one line per row


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_output_onto_a_fifo_or_a_symlink_writes_through(tiny_model, tmp_path):
    _image(tmp_path / "a.png")
    target = tmp_path / "real.csv"
    link = tmp_path / "link.csv"
    link.symlink_to(target.name)  # dangling until written
    assert run("score", tmp_path / "a.png", "--model", tiny_model, "-f", "csv", "-o", link).exit_code == 0
    assert link.is_symlink() and target.read_text().startswith("path,score,")
    fifo = tmp_path / "rows.fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE, text=True)
    try:
        assert run("score", tmp_path / "a.png", "--model", tiny_model, "-f", "jsonl", "-o", fifo).exit_code == 0
        assert json.loads(reader.communicate(timeout=30)[0])["error"] is None
    finally:
        reader.kill()
    if Path("/proc/self/fd").is_dir():  # a link to a pipe (as /dev/stdout is): written through
        p = _cli("score", tmp_path / "a.png", "--model", tiny_model, "-f", "jsonl", "-o", "/proc/self/fd/1")
        assert p.returncode == 0 and json.loads(p.stdout)["error"] is None, p.stderr
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and sorted(p.name for p in tmp_path.iterdir()) == [
        "a.png",
        "link.csv",
        "real.csv",
        "rows.fifo",
    ]
    r = run("score", tmp_path / "a.png", "--model", tiny_model, "-f", "jsonl", "-o", fifo, "--resume")
    assert r.exit_code == 2 and "--resume needs --output to be a regular file" in r.stderr


def test_temporary_files_of_killed_writers_are_found_and_live_ones_kept(tmp_path):
    out = tmp_path / "rows.csv"
    dead = tmp_path / ".rows.csv.abcd1234.tmp"
    dead.write_text("half a row")
    (tmp_path / ".rows.csv.notours.tmp").write_text("")  # not mkstemp's name: not ours
    with atomic_open(out) as f:
        live = [p for p in tmp_path.glob(".rows.csv.*.tmp") if p != dead and "notours" not in p.name]
        assert len(live) == 1 and stale_temporaries(out) == []  # the live writer's lock is held
        f.write("new\n")
    assert out.read_text() == "new\n" and sorted(p.name for p in tmp_path.iterdir()) == [
        ".rows.csv.notours.tmp",
        "rows.csv",
    ]


def test_a_sigkilled_runs_temporary_file_is_resumed_from_then_removed(tiny_model, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (600, 800, 3), np.uint8)).save(tmp_path / "src.png")
    for i in range(150):
        os.link(tmp_path / "src.png", folder / f"{i:03d}.png")
    out = tmp_path / "rows.jsonl"
    args = ["score", str(folder), "--model", str(tiny_model), "-f", "jsonl", "-o", str(out), "--batch-size", "2"]
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(p.stat().st_size > 0 for p in tmp_path.glob(".rows.jsonl.*.tmp")):
        time.sleep(0.01)
    proc.kill()
    proc.communicate(timeout=60)
    left = list(tmp_path.glob(".rows.jsonl.*.tmp"))
    assert len(left) == 1 and not out.exists()
    p = _cli(*args, "--resume")
    reused = int(p.stderr.split("resuming: ")[1].split(" of")[0])
    assert p.returncode == 0 and reused > 0, p.stderr
    assert [row["path"] for row in _jsonl(out.read_text())] == [str(folder / f"{i:03d}.png") for i in range(150)]
    assert not list(tmp_path.glob(".rows.jsonl.*.tmp"))


# -- item 5: quiet means quiet ------------------------------------------------------------------------------
@pytest.fixture
def warning_files(tmp_path) -> Path:
    """Images whose malformed EXIF makes Pillow warn (several times for some), in three formats."""
    folder = tmp_path / "warn"
    folder.mkdir()
    bad = fuzzkit.exif_raw(3, 0x7FFFFFFF, b"\x00\x06")
    for fmt, ext in (("PNG", "png"), ("JPEG", "jpg"), ("WEBP", "webp")):
        (folder / f"bad.{ext}").write_bytes(fuzzkit._save(fuzzkit._photo(), fmt, exif=bad))
    (folder / "garbage.png").write_bytes(fuzzkit.hostile()["exif-garbage"])
    (folder / "samples.tif").write_bytes(fuzzkit._tiff_tags(8, 8, samples=16))  # Pillow logs an error record
    _image(folder / "clean.png")
    return folder


WARNED = ("bad.jpg", "bad.png", "bad.webp", "garbage.png", "samples.tif")


@pytest.mark.parametrize("workers", ["0", "2"])
def test_quiet_keeps_decoder_warnings_off_stderr(tiny_model, warning_files, workers, capfd):
    r = run("score", warning_files, "--model", tiny_model, "-f", "jsonl", "-q", "--workers", workers)
    err = r.stderr + capfd.readouterr().err  # worker processes write to the real stderr
    assert r.exit_code == 1 and err == ""
    r = run("score", warning_files, "--model", tiny_model, "-f", "jsonl", "--workers", workers)
    lines = (r.stderr + capfd.readouterr().err).splitlines()
    lines.remove("redaes-lite: 1 of 6 inputs failed")  # samples.tif
    assert sorted(line.split(": ")[2] for line in lines) == sorted(str(warning_files / n) for n in WARNED), lines
    assert all(line.startswith("redaes-lite: warning: ") for line in lines)


@pytest.mark.parametrize("workers", ["0", "1"])
def test_what_c_decoders_print_is_dropped_too(tiny_model, warning_files, workers):
    """libtiff prints its errors on a broken JPEG-in-TIFF straight to descriptor 2 (two lines for one file)."""
    im = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8))
    buf = io.BytesIO()
    im.save(buf, format="TIFF", compression="jpeg")
    data = bytearray(buf.getvalue())
    at = data.find(b"\xff\xc4")  # the Huffman table in JPEGTables: counts that overflow it
    data[at + 4 : at + 21] = b"\xff" * 17
    (warning_files / "huffman.tif").write_bytes(bytes(data))
    p = _cli("score", warning_files, "--model", tiny_model, "-f", "jsonl", "-q", "--workers", workers)
    assert p.returncode == 1 and p.stderr == ""
    p = _cli("score", warning_files, "--model", tiny_model, "-f", "jsonl", "--workers", workers)
    lines = p.stderr.splitlines()
    assert lines[-1] == "redaes-lite: 2 of 7 inputs failed" and all(
        line.startswith("redaes-lite: warning: ") for line in lines[:-1]
    ), lines
    assert sorted(line.split(": ")[2] for line in lines[:-1]) == sorted(str(warning_files / n) for n in WARNED)


# -- item 6: every decoded extension is found -----------------------------------------------------------------
def test_folder_walks_find_every_extension_the_loader_decodes(tiny_model, tmp_path):
    Image.init()
    from redaes_lite._safe_open import DECODED_FORMATS

    decoded = {e for e, fmt in Image.registered_extensions().items() if fmt in (*DECODED_FORMATS, "MPO")}
    assert decoded <= image_extensions()
    assert {".j2k", ".j2c", ".jpc", ".jpf", ".jpx", ".apng", ".mpo", ".pbm", ".pfm", ".heic"} <= image_extensions()
    assert not {".pdf", ".eps", ".psd", ".ico", ".txt"} & image_extensions()
    im = Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 32, 3), np.uint8))
    made = []
    for ext in sorted(decoded):
        fmt = Image.registered_extensions()[ext]
        if fmt not in Image.SAVE:
            continue
        mode = {".pbm": "1", ".pfm": "F", ".pgm": "L"}.get(ext, "RGB")
        try:
            im.convert(mode).save(tmp_path / f"x{ext}")
        except (OSError, KeyError, ValueError):
            continue  # a codec this Pillow build lacks
        made.append(str(tmp_path / f"x{ext}"))
    assert len(made) >= 20 and [p for p, _ in expand([str(tmp_path)], recursive=False)] == sorted(made)
    rows = _jsonl(run("score", tmp_path, "--model", tiny_model, "-f", "jsonl").stdout)
    assert [r["error"] for r in rows] == [None] * len(made)
