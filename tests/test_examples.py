"""The example programs, run as a user runs them (a subprocess) on real photos with the permissive model."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"
NAMES = ("bsds_102061.jpg", "bsds_107045.jpg", "bsds_100075.jpg")
XMP_RATING = "{http://ns.adobe.com/xap/1.0/}Rating"

pytestmark = pytest.mark.skipif(not PHOTOS.is_dir(), reason=f"{PHOTOS} is absent")


def run(script: str, *args: str | Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # the runtime from this checkout, installed or not
    cmd = [sys.executable, str(REPO / "examples" / script), *map(str, args), "--model", "permissive"]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "shoot"
    folder.mkdir()
    for name in NAMES:
        shutil.copy(PHOTOS / name, folder / name)
    return folder


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_best_shot_picks_the_undegraded_frame(photos: Path, tmp_path: Path) -> None:
    from PIL import Image, ImageEnhance, ImageFilter

    original = photos / NAMES[0]
    with Image.open(original) as im:
        im.filter(ImageFilter.GaussianBlur(8)).save(photos / "blurred.jpg", quality=95)
        ImageEnhance.Brightness(im).enhance(0.2).save(photos / "dark.jpg", quality=95)
    burst = [photos / "blurred.jpg", original, photos / "dark.jpg"]

    done = run("best_shot.py", *burst, "--copy-to", tmp_path / "picks")

    assert done.returncode == 0, done.stderr
    assert f"best: {original}" in done.stdout
    assert (tmp_path / "picks" / original.name).read_bytes() == original.read_bytes()
    assert run("best_shot.py", *burst, "--copy-to", tmp_path / "picks").returncode == 2  # never overwrites


def test_best_shot_exit_codes(photos: Path, tmp_path: Path) -> None:
    assert run("best_shot.py", photos / NAMES[0], tmp_path / "missing.jpg").returncode == 1
    assert run("best_shot.py", tmp_path / "missing.jpg").returncode == 3
    (tmp_path / "empty").mkdir()
    assert run("best_shot.py", tmp_path / "empty").returncode == 2


def rating_of(sidecar: Path) -> int:
    values = [e.get(XMP_RATING) for e in ET.parse(sidecar).iter() if e.get(XMP_RATING) is not None]
    assert len(values) == 1, f"{sidecar}: {len(values)} xmp:Rating attributes"
    return int(values[0])


def test_cull_writes_ratings_and_leaves_originals_alone(photos: Path) -> None:
    """Real photos end to end; tests/test_cull.py covers hand-set ratings, raw files, styles and dry runs."""
    before = {p.name: sha256(p) for p in photos.iterdir()}

    done = run("cull.py", photos, "--reject-below", "3")

    assert done.returncode == 0, done.stderr
    assert {p.name: sha256(p) for p in photos.glob("*.jpg")} == before
    rows = done.stdout.splitlines()[2:-1]  # header, column names, rows "score  none -> N (new file)  sidecar", summary
    assert len(rows) == len(NAMES)
    for line in rows:
        score, change, sidecar = re.split(r"\s{2,}", line.strip())
        expected = -1 if float(score) < 3 else 1 + sum(float(score) >= t for t in (2, 4, 6, 8))
        assert change == f"none -> {expected} (new file)"
        assert rating_of(Path(sidecar)) == expected
    assert sorted(p.name for p in photos.glob("*.xmp")) == sorted(f"{n}.xmp" for n in NAMES)


def test_explain_prints_preference_and_factors(photos: Path) -> None:
    from PIL import Image, ImageEnhance

    original = photos / NAMES[1]
    with Image.open(original) as im:
        ImageEnhance.Brightness(im).enhance(0.2).save(photos / "dark.jpg", quality=95)

    done = run("explain.py", photos / "dark.jpg", original)

    assert done.returncode == 0, done.stderr
    assert "preferred: b" in done.stdout and "probability:" in done.stdout and "delta (b - a): +" in done.stdout
    factor_rows = [line for line in done.stdout.splitlines() if line.startswith(("exposure ", "sharpness "))]
    assert len(factor_rows) == 2 and all("|" in row for row in factor_rows)
    assert done.stdout.rstrip().splitlines()[-1].startswith("b is preferred")
