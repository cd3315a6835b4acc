"""Committed splits: no source scene on both sides, up to date with the data, permissive subset marked."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill import splits

DATA = splits.DATA_ROOT
needs_data = pytest.mark.skipif(not (DATA / "photos" / "manifest.csv").is_file(), reason="shared data not present")


@pytest.mark.parametrize(("value", "ok"), [("yes", True), ("no", False), (" Yes ", True), ("NO", False)])
def test_commercial_use_is_the_manifests_column(value: str, ok: bool) -> None:
    assert splits.commercial_use(value) is ok


@pytest.mark.parametrize("value", ["", "maybe", "CC0 1.0", "true"])
def test_commercial_use_refuses_anything_but_yes_or_no(value: str) -> None:
    with pytest.raises(ValueError, match="commercial_use must be yes or no"):
        splits.commercial_use(value)


def test_the_manifest_decides_not_the_licence_text(tmp_path) -> None:
    head = "file,source,licence,tags,pair_id,width,height,commercial_use\n"
    path = tmp_path / "manifest.csv"
    # The column decides even where the licence text reads permissive (and the reverse).
    path.write_text(head + "a.jpg,x,CC0 1.0,,,10,10,no\nb.jpg,x,all rights reserved,,,10,10,yes\n")
    assert [r["permissive"] for r in splits.read_manifest(path)] == [False, True]
    path.write_text(head.replace(",commercial_use", "") + "a.jpg,x,CC0 1.0,,,10,10\n")
    with pytest.raises(ValueError, match=r"manifest.csv:2: bad manifest row"):
        splits.read_manifest(path)
    path.write_text(head + "a.jpg,x,CC0 1.0,,,10,10,\n")
    with pytest.raises(ValueError, match=r"manifest.csv:2: bad manifest row \(commercial_use must be yes or no"):
        splits.read_manifest(path)


def test_split_keys_is_deterministic_and_stratified() -> None:
    keys = [f"k{i}" for i in range(200)]

    def stratum(k: str) -> bool:
        return int(k[1:]) % 4 == 0

    val = splits.split_keys(keys, name="t", stratum=stratum)
    assert val == splits.split_keys(reversed(keys), name="t", stratum=stratum)
    assert len(val) == 30 and sum(stratum(k) for k in val) == round(0.15 * 50)
    assert val != splits.split_keys(keys, name="other", stratum=stratum)


def test_load_split_errors(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="photos"):
        splits.load_split("imagenet")
    with pytest.raises(FileNotFoundError, match="python -m distill.splits"):
        splits.load_split("photos", split_dir=tmp_path)


def test_tags_of_accepts_manifest_strings_and_sequences() -> None:
    assert splits.tags_of({"tags": "well_made;night"}) == ("well_made", "night")
    assert splits.tags_of({"tags": ("underexposed",)}) == ("underexposed",) and splits.tags_of({}) == ()


@needs_data
def test_committed_lists_match_the_data(tmp_path: Path) -> None:
    fresh = splits.make(out_dir=tmp_path)
    for name in splits.SPLITS:
        assert splits.load_split(name) == fresh[name], f"distill/splits/{name}_*.txt stale: python -m distill.splits"


@needs_data
def test_photos_split_by_scene_without_leak() -> None:
    rows = splits.read_manifest()
    split = splits.load_split("photos")
    train, val = set(split["train"]), set(split["val"])
    assert not train & val and train | val == {r["file"] for r in rows}
    scene_side = {}
    for r in rows:
        side = r["file"] in val
        assert scene_side.setdefault(splits.scene_of(r), side) == side, f"scene {splits.scene_of(r)} on both sides"
    assert 0.12 < len(val) / len(rows) < 0.18
    permissive = [r for r in rows if r["permissive"]]
    assert len(permissive) == 209  # photos/README.md: commercial use allowed
    assert 0.1 < sum(r["file"] in val for r in permissive) / len(permissive) < 0.2


@needs_data
def test_biq2021_split_by_image_without_leak() -> None:
    split = splits.load_split("biq2021")
    train, val = set(split["train"]), set(split["val"])
    assert not train & val and len(train | val) == 3000 and len(val) == 450


@pytest.mark.skipif(not (DATA / "para" / "labels.csv").is_file(), reason="PARA not present")
def test_para_split_by_session_without_leak() -> None:
    import csv

    with open(DATA / "para" / "labels.csv", newline="", encoding="utf-8") as f:
        session = {r["image"]: r["session"] for r in csv.DictReader(f)}
    split = splits.load_split("para")
    train, val = set(split["train"]), set(split["val"])
    assert not train & val and train | val == set(session)
    assert not {session[x] for x in train} & {session[x] for x in val}, "a PARA session on both sides"
    assert 0.12 < len(val) / len(session) < 0.18
