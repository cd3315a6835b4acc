"""``python -m distill pack``: the shrunk data copy a GPU machine trains on keeps names, labels and splits."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from distill.__main__ import main as distill_main
from redaes_lite.preprocess import load_image


def _data_root(root: Path) -> Path:
    rng = np.random.default_rng(0)
    (root / "photos").mkdir(parents=True)
    (root / "biq2021" / "images").mkdir(parents=True)
    rows = []
    for i, (w, h) in enumerate([(640, 480), (300, 500), (200, 100)]):
        name = f"p{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "photos" / name, quality=95)
        rows.append(
            {
                "file": name,
                "source": "x",
                "licence": "CC0",
                "tags": "well_made",
                "pair_id": "",
                "width": w,
                "height": h,
                "commercial_use": "yes",
            }
        )
    with open(root / "photos" / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with open(root / "biq2021" / "labels.csv", "w") as f:
        f.write("image,mos,subset\n")
        for i in range(4):
            name = f"ss01 ({i}).jpg"  # BIQ2021's names have spaces and brackets
            Image.fromarray(rng.integers(0, 255, (512, 512, 3), dtype=np.uint8)).save(
                root / "biq2021" / "images" / name
            )
            f.write(f"{name},{0.1 * i:.4f},ss01\n")
    return root


def test_pack_shrinks_every_image_and_keeps_names_and_labels(tmp_path: Path) -> None:
    data, out = _data_root(tmp_path / "data"), tmp_path / "pack"
    argv = ["pack", "--data", str(data), "--out", str(out), "--photos-side", "320", "--biq-side", "256"]
    assert distill_main([*argv, "--weights", "--workers", "1"]) == 0
    with open(out / "photos" / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["file"] for r in rows] == ["p0.jpg", "p1.jpg", "p2.jpg"]
    for r in rows:
        im = load_image(out / "photos" / r["file"])  # found from the content, whatever the suffix
        assert (im.width, im.height) == (int(r["width"]), int(r["height"]))
        assert Image.open(out / "photos" / r["file"]).format == "WEBP"
    assert [(r["width"], r["height"]) for r in rows] == [("320", "240"), ("192", "320"), ("200", "100")]
    assert (out / "biq2021" / "labels.csv").read_text() == (data / "biq2021" / "labels.csv").read_text()
    assert load_image(out / "biq2021" / "images" / "ss01 (3).jpg").size == (256, 256)
    assert not list(out.rglob(".*.tmp")) and not (out / "weights").exists()
