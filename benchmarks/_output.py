"""What every benchmark does with its figures after printing its table: one JSON file, written atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from redaes_lite._atomic import atomic_open


def write_json(path: Path, doc: Any) -> None:
    """``doc`` as indented JSON at ``path`` (folders made; a reader never sees half a file), then one line
    naming it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as f:
        json.dump(doc, f, indent=2)
    print(f"wrote {path}")
