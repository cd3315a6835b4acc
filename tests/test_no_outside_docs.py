"""Nothing in the repository points readers to a document outside it (users never see those)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OUTSIDE = ("DESIGN" + ".md",)  # split so that this file does not name it


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs a git checkout")
def test_no_tracked_file_points_outside_the_repository():
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    hits = []
    for name in filter(None, files):
        path = REPO / name.decode()
        if not path.is_file() or path.suffix in (".onnx", ".ort", ".jpg", ".png", ".pt"):
            continue
        text = path.read_bytes().decode("utf-8", "replace")
        hits += [
            f"{name.decode()}:{i}" for i, line in enumerate(text.splitlines(), 1) if any(o in line for o in OUTSIDE)
        ]
    assert not hits, f"pointers to a file outside the repository (use docs/model-format.md or the README): {hits}"
