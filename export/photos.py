"""Which real photos export calibrates on and gates with, from the committed split (``distill.splits``).

- Calibration (int8 QDQ activation ranges): photos of the *train* split.
- Parity (every gate): the *validation* photos, then BIQ2021 validation images until there are enough.
  None of them is a calibration photo, so the int8 gate measures on images the quantiser never saw.

Both lists are deterministic: the same split gives the same photos in the same order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .errors import ExportError

__all__ = ["DEFAULT_CALIBRATION", "DEFAULT_PARITY", "calibration_photos", "data_roots", "parity_photos"]

DEFAULT_CALIBRATION = 128
DEFAULT_PARITY = 200


def data_roots() -> tuple[Path, Path]:
    """``(photos root, BIQ2021 root)`` under the split's data root (``REDAES_DATA`` overrides it)."""
    from distill.splits import DATA_ROOT

    return DATA_ROOT / "photos", DATA_ROOT / "biq2021"


def _spread(items: Sequence[Path], n: int) -> list[Path]:
    """``n`` items evenly spaced over ``items`` (all of them if there are fewer): varied scenes, deterministic."""
    if n <= 0:
        return []
    if n >= len(items):
        return list(items)
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def _existing(paths: list[Path], what: str) -> list[Path]:
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise ExportError(f"{missing[0]}: {what} photo listed in the split is missing ({len(missing)} missing)")
    return paths


def calibration_photos(n: int = DEFAULT_CALIBRATION, *, photos_root: str | os.PathLike | None = None) -> list[Path]:
    """``n`` photos of the train split, spread over the list."""
    from distill.splits import load_split

    root = Path(photos_root) if photos_root is not None else data_roots()[0]
    train = sorted(load_split("photos")["train"])
    return _existing(_spread([root / f for f in train], n), "calibration")


def parity_photos(
    n: int = DEFAULT_PARITY,
    *,
    photos_root: str | os.PathLike | None = None,
    biq_root: str | os.PathLike | None = None,
) -> list[Path]:
    """``n`` held-out photos: validation photos first, then BIQ2021 validation images; raises if too few."""
    from distill.splits import load_split

    roots = data_roots()
    photos = Path(photos_root) if photos_root is not None else roots[0]
    biq = Path(biq_root) if biq_root is not None else roots[1]
    val = [photos / f for f in sorted(load_split("photos")["val"])]
    biq_val = [biq / "images" / f for f in sorted(load_split("biq2021")["val"])]
    chosen = val[:n] + _spread(biq_val, max(0, n - len(val)))
    if len(chosen) < n:
        raise ExportError(f"only {len(chosen)} held-out photos in the validation split; the gates need {n}")
    return _existing(chosen, "parity")
