"""Ray Data integration (``redaes_lite.integrations.ray``): on a local 2-CPU cluster, every row equals
``score_many``'s result for the same input, and bad inputs are error rows, never a failed job.

Skipped when Ray Data is not installed (``pip install "redaes-lite[ray]"``); CI installs it, so it runs there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import redaes_lite
from redaes_lite import Failure, ModelError, Score

REPO = Path(__file__).resolve().parents[1]
N_PHOTOS = 49  # and one broken file: 50 rows

try:
    import ray
    import ray.data  # noqa: F401

    HAVE_RAY = True
except ImportError:  # pragma: no cover - CI installs the [ray] extra
    HAVE_RAY = False

needs_ray = pytest.mark.skipif(not HAVE_RAY, reason='Ray Data is not installed (pip install "redaes-lite[ray]")')


def make_photos(folder: Path) -> list[Path]:
    """49 small, varied photos (gradients, blocks and noise; JPEG and PNG; portrait and landscape) and one
    broken JPEG (its first 300 bytes)."""
    rng = np.random.default_rng(23)
    folder.mkdir()
    paths = []
    for i in range(N_PHOTOS):
        h, w = int(rng.integers(64, 240)), int(rng.integers(64, 240))
        y, x = np.mgrid[0:h, 0:w] / max(h, w)
        base = rng.uniform(0, 255, 3) * (0.3 + 0.7 * (x if i % 2 else y))[..., None]
        img = np.clip(base + rng.normal(0, 4 + 6 * (i % 5), (h, w, 3)), 0, 255).astype(np.uint8)
        path = folder / (f"photo_{i:02d}.png" if i % 7 == 0 else f"photo_{i:02d}.jpg")
        options = {"quality": int(rng.integers(40, 95))} if path.suffix == ".jpg" else {}
        Image.fromarray(img).save(path, **options)
        paths.append(path)
    broken = folder / "broken.jpg"
    broken.write_bytes(paths[1].read_bytes()[:300])
    return [*paths, broken]


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return make_photos(tmp_path_factory.mktemp("ray") / "photos")


@pytest.fixture(scope="module")
def cluster():
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR", object_store_memory=256 * 2**20
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def expected(photos: list[Path]) -> dict[str, Score | Failure]:
    scorer = redaes_lite.load("default")
    return {str(p): r for p, r in zip(photos, scorer.score_many(photos, on_error="record"))}


def check_rows(
    rows: list[dict], expected: dict[str, Score | Failure], factors: tuple[str, ...], *, as_bytes: bool = False
) -> None:
    """Each row against ``score_many``'s result for its path; an input given as bytes is named by its size."""
    model = redaes_lite.load("default").model_id
    assert sorted(r["path"] for r in rows) == sorted(expected)
    for row in rows:
        want = expected[row["path"]]
        assert row["model"] == model
        if isinstance(want, Failure):
            name = f"<{Path(row['path']).stat().st_size} bytes>" if as_bytes else row["path"]
            assert row["error"] == want.error.replace(row["path"], name, 1)
            assert row["score"] is None and row["utility"] is None
            assert all(row[f"factor.{n}"] is None for n in factors)
        else:
            assert row["error"] is None, row
            assert abs(row["utility"] - want.utility) <= 1e-6
            assert abs(row["score"] - want.score) <= 1e-5
            for n in factors:
                assert abs(row[f"factor.{n}"] - want.factors[n]) <= 1e-6


def test_importing_the_integration_does_not_import_ray():
    code = (
        "import sys, redaes_lite.integrations.ray as m; assert callable(m.score_dataset); "
        "print('ray' in sys.modules, 'pyarrow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.split() == ["False", "False"]


@needs_ray
def test_paths_score_like_score_many(cluster, photos, expected):
    from redaes_lite.integrations.ray import output_columns, score_dataset

    factors = redaes_lite.load("default").info.factors
    items = [{"path": str(p), "id": i} for i, p in enumerate(photos)]
    scored = score_dataset(ray.data.from_items(items), rows_per_batch=8)
    rows = scored.take_all()
    assert len(rows) == len(photos) == 50
    assert list(rows[0]) == ["path", "id", *output_columns(factors)]  # the input's columns are kept, first
    assert sorted(r["id"] for r in rows) == list(range(50))
    check_rows(rows, expected, factors)
    assert sum(r["error"] is not None for r in rows) == 1


@needs_ray
def test_bytes_from_rays_reader_score_like_score_many(cluster, photos, expected):
    from redaes_lite.integrations.ray import score_dataset

    factors = redaes_lite.load("default").info.factors
    ds = ray.data.read_binary_files(str(photos[0].parent), include_paths=True)
    rows = score_dataset(ds, column="bytes").drop_columns(["bytes"]).take_all()
    check_rows(rows, expected, factors, as_bytes=True)


@needs_ray
def test_bad_values_are_error_rows_not_a_failed_job(cluster, photos, tmp_path):
    from redaes_lite.integrations.ray import score_dataset

    (tmp_path / "folder.jpg").mkdir()
    values = [str(photos[2]), None, "/no/such/photo.jpg", str(tmp_path / "folder.jpg"), str(photos[3])]
    rows = score_dataset(ray.data.from_items([{"path": v} for v in values]), actors=1).take_all()
    errors = {r["path"]: r["error"] for r in rows}
    assert errors[str(photos[2])] is None and errors[str(photos[3])] is None
    assert errors[None] == "no input (the 'path' value is null)"
    assert errors["/no/such/photo.jpg"] == "/no/such/photo.jpg: no such file"
    assert "directory" in errors[str(tmp_path / "folder.jpg")]


@needs_ray
def test_a_bad_model_or_knob_raises_before_the_job(cluster, photos):
    from redaes_lite.integrations.ray import score_dataset

    ds = ray.data.from_items([{"path": str(photos[0])}])
    with pytest.raises(ModelError, match="no such model file"):
        score_dataset(ds, model="/no/such/model.onnx")
    for bad in ({"actors": 0}, {"actors": (2, 1)}, {"threads": 0}, {"rows_per_batch": 0}, {"num_cpus": 0}):
        with pytest.raises(ValueError):
            score_dataset(ds, **bad)
    with pytest.raises(ValueError, match="no column 'bytes'"):
        score_dataset(ds, column="bytes")


@needs_ray
def test_example_writes_parquet(photos, tmp_path):
    import pyarrow.parquet as pq

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable,
        str(REPO / "examples" / "score_with_ray.py"),
        str(photos[0].parent),
        "--out",
        str(tmp_path / "out"),
        "--num-cpus",
        "2",
        "--quiet",
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 1, run.stderr  # one broken file
    assert "broken.jpg: cannot open image" in run.stderr and "Traceback" not in run.stderr
    table = pq.read_table(tmp_path / "out")
    factors = redaes_lite.load("default").info.factors
    assert table.column_names == ["path", "score", "utility", *(f"factor.{n}" for n in factors), "model", "error"]
    assert table.num_rows == 50 and table["error"].null_count == 49
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert again.returncode == 2 and "not an empty folder" in again.stderr
    missing = subprocess.run([*cmd[:2], str(tmp_path / "nope"), *cmd[3:]], capture_output=True, text=True, env=env)
    assert missing.returncode == 2 and missing.stderr.startswith("error: ") and "Traceback" not in missing.stderr
