"""examples/cull.py on tiny generated photos and fake raw files, with the embedded default model: hand-set
ratings survive, cull.py's own are updated, raw files get their sidecars, a dry run writes nothing."""

from __future__ import annotations

import importlib.util
import io
import os
import re
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "examples" / "cull.py"
XMP_RATING = "{http://ns.adobe.com/xap/1.0/}Rating"
ALL_FIVE, ALL_ONE = ("--thresholds", "0,0,0,0"), ("--thresholds", "10,10,10,10")  # every photo 5 / 1 star(s)

sys.path.insert(0, str(SCRIPT.parent))  # cull.py imports cull_files.py beside it, as when it runs as a script
_spec = importlib.util.spec_from_file_location("cull", SCRIPT)
cull = sys.modules["cull"] = importlib.util.module_from_spec(_spec)  # dataclasses look their module up
_spec.loader.exec_module(cull)
cull_files = sys.modules["cull_files"]


def jpeg(width: int, height: int, seed: int = 0, app1: bytes = b"") -> bytes:
    """A small JPEG of smooth noise; ``app1`` (an APP1 payload) is inserted after the SOI."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (max(2, height // 16), max(2, width // 16), 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(small).resize((width, height), Image.BILINEAR).save(out, "JPEG", quality=90)
    data = out.getvalue()
    if app1:
        data = data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:]
    return data


def fake_raw(*jpegs: bytes, orientation: int = 1) -> bytes:
    """A TIFF-like raw: a little-endian header, IFD0 holding Orientation, 'sensor data', then ``jpegs``."""
    ifd = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    sensor = np.random.default_rng(7).integers(0, 256, 20000, dtype=np.uint8).tobytes()
    return b"II*\0" + struct.pack("<I", 8) + ifd + sensor + b"".join(j + bytes(64) for j in jpegs)


def sidecar_text(rating: int | str, extra: str = "") -> str:
    return f"""<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:redaes="https://github.com/redaes-lite/redaes-lite/ns/cull/1.0/" xmp:Rating="{rating}" xmp:Label="Red"{extra}>
   <dc:subject><rdf:Bag><rdf:li>holiday</rdf:li></rdf:Bag></dc:subject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>
"""


def rating_of(sidecar: Path) -> int:
    values = [e.get(XMP_RATING) for e in ET.parse(sidecar).iter() if e.get(XMP_RATING) is not None]
    assert len(values) == 1, f"{sidecar}: {len(values)} xmp:Rating attributes"
    return int(values[0])


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def main(capsys: pytest.CaptureFixture, *args: str | Path) -> tuple[int, list[tuple[str, str, str]], str]:
    """Run cull.main in-process: (exit status, rows as (score, change, path), stderr)."""
    rc = cull.main([*map(str, args)])
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith("cull.py: ") and lines[1].split() == ["score", "rating", "sidecar"], out
    assert re.match(r"(would write|wrote) \d+ sidecars", lines[-1]), out
    rows = [tuple(re.split(r"\s{2,}", line.strip())) for line in lines[2:-1]]
    assert all(len(row) == 3 for row in rows), out
    return rc, rows, err


@pytest.fixture
def shoot(tmp_path: Path) -> Path:
    folder = tmp_path / "shoot"
    folder.mkdir()
    for i, name in enumerate(("a.jpg", "b.jpg", "c.png")):
        data = jpeg(96, 64, seed=i)
        if name.endswith(".png"):
            Image.open(io.BytesIO(data)).save(folder / name)
        else:
            (folder / name).write_bytes(data)
    (folder / "IMG_1.NEF").write_bytes(fake_raw(jpeg(160, 120, 1), jpeg(480, 320, 2)))
    return folder


def test_hand_set_ratings_are_kept_unless_overwrite(shoot: Path, capsys: pytest.CaptureFixture) -> None:
    hand = {
        "a.jpg.xmp": sidecar_text(2),  # darktable style, no mark: a person's
        "IMG_1.xmp": sidecar_text(1),  # the raw's Lightroom sidecar
        "b.jpg.xmp": sidecar_text(3, ' redaes:Rating="5"'),  # cull.py wrote 5, a person changed it to 3
    }
    for name, text in hand.items():
        (shoot / name).write_text(text, encoding="utf-8")
    before = snapshot(shoot)

    rc, rows, err = main(capsys, shoot, *ALL_FIVE)

    assert rc == 0, err
    assert {p: b for p, b in snapshot(shoot).items() if p in before} == before  # bytes identical
    kept = {Path(path).name: change for _, change, path in rows if change.startswith("kept")}
    assert kept == {
        "a.jpg.xmp": "kept 2 (set by hand)",
        "IMG_1.xmp": "kept 1 (set by hand)",
        "b.jpg.xmp": "kept 3 (set by hand)",
    }
    assert not (shoot / "IMG_1.NEF.xmp").exists()  # a hand rating anywhere protects the photo's other sidecars
    assert rating_of(shoot / "c.png.xmp") == 5  # the unrated photo is rated

    rc, rows, err = main(capsys, shoot, *ALL_FIVE, "--overwrite")

    assert rc == 0, err
    for name in hand:
        text = (shoot / name).read_text(encoding="utf-8")
        assert rating_of(shoot / name) == 5, name
        assert text.startswith('<?xpacket begin="\ufeff"') and text.rstrip().endswith('<?xpacket end="w"?>')
        assert 'xmp:Label="Red"' in text and "<rdf:li>holiday</rdf:li>" in text
        assert 'redaes:Rating="5"' in text and "redaes:CreatorTool=" in text
    assert ("2 -> 5", str(shoot / "a.jpg.xmp")) in {(c, p) for _, c, p in rows}


def test_ratings_inside_the_photo_are_kept(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    packet = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="4"/></rdf:RDF></x:xmpmeta>'
    )
    (tmp_path / "xmp.jpg").write_bytes(jpeg(96, 64, app1=b"http://ns.adobe.com/xap/1.0/\0" + packet))
    exif = Image.Exif()
    exif[0x4746] = 3  # EXIF Rating, as Windows and some cameras write it
    Image.open(io.BytesIO(jpeg(96, 64, 1))).save(tmp_path / "exif.jpg", exif=exif)
    Image.open(io.BytesIO(jpeg(96, 64, 2))).save(tmp_path / "zero.jpg", exif=Image.Exif())  # no rating

    rc, rows, err = main(capsys, tmp_path, *ALL_FIVE)

    assert rc == 0, err
    assert {(Path(p).name, c) for _, c, p in rows} == {
        ("exif.jpg", "kept 3 (set by hand)"),
        ("xmp.jpg", "kept 4 (set by hand)"),
        ("zero.jpg.xmp", "none -> 5 (new file)"),
    }
    assert sorted(p.name for p in tmp_path.glob("*.xmp")) == ["zero.jpg.xmp"]


def test_a_rerun_updates_cull_s_own_ratings(shoot: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(capsys, shoot, *ALL_ONE)[0] == 0
    sidecars = sorted(shoot.glob("*.xmp"))
    assert [p.name for p in sidecars] == ["IMG_1.NEF.xmp", "IMG_1.xmp", "a.jpg.xmp", "b.jpg.xmp", "c.png.xmp"]
    assert all(rating_of(p) == 1 for p in sidecars)

    rc, rows, _ = main(capsys, shoot, *ALL_FIVE)

    assert rc == 0 and {c for _, c, _ in rows} == {"1 -> 5"} and len(rows) == 5
    assert all(rating_of(p) == 5 for p in sidecars)
    before = snapshot(shoot)
    rc, rows, _ = main(capsys, shoot, *ALL_FIVE)
    assert rc == 0 and {c for _, c, _ in rows} == {"5 (unchanged)"} and snapshot(shoot) == before


@pytest.mark.parametrize(
    ("style", "expected"),
    [
        ("auto", ["IMG_1.NEF.xmp", "IMG_1.jpg.xmp", "IMG_1.xmp"]),  # raw: both names; JPEG: photo.ext.xmp
        ("darktable", ["IMG_1.NEF.xmp", "IMG_1.jpg.xmp"]),
        ("both", ["IMG_1.NEF.xmp", "IMG_1.jpg.xmp", "IMG_1.xmp"]),  # IMG_1.xmp is the raw's, not the JPEG's
    ],
)
def test_raw_files_get_sidecars_in_the_chosen_style(
    tmp_path: Path, capsys: pytest.CaptureFixture, style: str, expected: list[str]
) -> None:
    (tmp_path / "IMG_1.NEF").write_bytes(fake_raw(jpeg(480, 320, 2)))
    (tmp_path / "IMG_1.jpg").write_bytes(jpeg(96, 64, 3))

    rc, rows, err = main(capsys, tmp_path, "--sidecar", style)

    assert rc == 0, err
    assert sorted(p.name for p in tmp_path.glob("*.xmp")) == expected
    assert all(c.startswith("none -> ") and c.endswith(" (new file)") for _, c, _ in rows)


def test_lightroom_style_gives_the_shared_name_to_the_raw(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "IMG_1.CR2").write_bytes(fake_raw(jpeg(480, 320, 2)))
    (tmp_path / "IMG_1.jpg").write_bytes(jpeg(96, 64, 3))
    (tmp_path / "IMG_2.NEF").write_bytes(fake_raw(jpeg(480, 320, 4)))

    rc, rows, err = main(capsys, tmp_path, "--sidecar", "lightroom")

    assert rc == 1
    assert sorted(p.name for p in tmp_path.glob("*.xmp")) == ["IMG_1.xmp", "IMG_2.xmp"]
    assert err.splitlines() == [
        f"error: {tmp_path / 'IMG_1.jpg'}: sidecar IMG_1.xmp belongs to IMG_1.CR2; use --sidecar darktable or auto"
    ]


def test_auto_updates_the_existing_sidecar_name(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "a.jpg").write_bytes(jpeg(96, 64))
    (tmp_path / "IMG_1.ARW").write_bytes(fake_raw(jpeg(480, 320, 2)))
    (tmp_path / "a.xmp").write_text(sidecar_text(0), encoding="utf-8")  # 0: unrated
    (tmp_path / "IMG_1.ARW.xmp").write_text(sidecar_text(0), encoding="utf-8")

    rc, rows, err = main(capsys, tmp_path, *ALL_FIVE)

    assert rc == 0, err
    assert sorted(p.name for p in tmp_path.glob("*.xmp")) == ["IMG_1.ARW.xmp", "a.xmp"]  # no second name
    assert {c for _, c, _ in rows} == {"0 -> 5"}


def test_dry_run_changes_nothing(shoot: Path, capsys: pytest.CaptureFixture) -> None:
    (shoot / "a.jpg.xmp").write_text(sidecar_text(2), encoding="utf-8")
    (shoot / "b.jpg.xmp").write_text(sidecar_text(1, ' redaes:Rating="1"'), encoding="utf-8")  # cull.py's own
    before = snapshot(shoot)

    rc = cull.main([str(shoot), *ALL_FIVE, "--dry-run"])
    out = capsys.readouterr().out

    assert rc == 0 and snapshot(shoot) == before
    assert "dry run, nothing is written" in out.splitlines()[0]
    assert re.search(r"kept 2 \(set by hand\)\s+" + re.escape(str(shoot / "a.jpg.xmp")), out)
    assert re.search(r"1 -> 5\s+" + re.escape(str(shoot / "b.jpg.xmp")), out)
    assert re.search(r"none -> 5 \(new file\)\s+" + re.escape(str(shoot / "IMG_1.NEF.xmp")), out)
    assert out.splitlines()[-1].startswith("would write 4 sidecars")  # b, c.png, the raw's two


def test_broken_files_are_error_rows_and_the_rest_are_rated(shoot: Path) -> None:
    (shoot / "broken.jpg").write_bytes(b"not a photo")
    (shoot / "empty.ORF").write_bytes(b"")
    (shoot / "nopreview.CR2").write_bytes(fake_raw())
    (shoot / "thumbonly.RAF").write_bytes(fake_raw(jpeg(160, 120)))  # too small to score
    (shoot / "truncated.NEF").write_bytes(fake_raw(jpeg(480, 320))[:-2000])
    (shoot / "b.jpg.xmp").write_text("<x:xmpmeta broken", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(shoot)], capture_output=True, text=True, env=env, timeout=120
    )

    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    errors = done.stderr.splitlines()
    bad = ["b.jpg", "broken.jpg", "empty.ORF", "nopreview.CR2", "thumbonly.RAF", "truncated.NEF"]
    assert [line.split(": ")[1] for line in errors] == [str(shoot / name) for name in bad], done.stderr
    assert all(line.startswith("error: ") and line.count(str(shoot)) == 1 for line in errors), done.stderr
    assert (shoot / "b.jpg.xmp").read_text(encoding="utf-8") == "<x:xmpmeta broken"  # never replaced
    assert sorted(p.name for p in shoot.glob("*.xmp")) == [
        "IMG_1.NEF.xmp",
        "IMG_1.xmp",
        "a.jpg.xmp",
        "b.jpg.xmp",
        "c.png.xmp",
    ]
    assert "6 errors" in done.stdout.splitlines()[-1]


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cull.main([str(tmp_path)]) == 2
    (tmp_path / "a.jpg").write_bytes(jpeg(96, 64))
    assert cull.main([str(tmp_path), "--model", str(tmp_path / "missing.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path}: no photos found") and "missing.onnx" in err
    assert not list(tmp_path.glob("*.xmp"))


def test_preview_extraction(tmp_path: Path) -> None:
    thumb, preview = jpeg(160, 120, 1), jpeg(640, 480, 2)
    lossless = b"\xff\xd8\xff\xc3\x00\x0b\x10\x01\x00\x02\x00\x01\x01\x11\x00\xff\xda\x00\x02\x00\xff\xd9"
    data = fake_raw(thumb, lossless, preview, orientation=6)
    found = [(j.width, j.height, data[j.start : j.end]) for j in cull_files.jpegs_in(data)]
    assert found == [(160, 120, thumb), (640, 480, preview)]  # the lossless raw data is skipped

    (tmp_path / "x.DNG").write_bytes(data)
    got = cull.read_photo(tmp_path / "x.DNG", raw=True).preview
    with Image.open(io.BytesIO(got)) as im:
        assert im.size == (640, 480) and im.getexif().get(0x0112) == 6  # the raw's orientation travels along
        assert np.array_equal(np.asarray(im), np.asarray(Image.open(io.BytesIO(preview))))


def test_cull_uses_only_the_public_api() -> None:
    source = SCRIPT.read_text(encoding="utf-8")
    assert not re.search(r"redaes_lite\._|from redaes_lite\.\w+ import|import redaes_lite\.", source)


def test_rawpy_develops_a_raw_without_a_preview(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """With rawpy installed (a stand-in here), a raw without a usable preview is developed instead."""
    import types

    class NoThumb(Exception):
        pass

    class Raw:
        def __enter__(self) -> Raw:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def extract_thumb(self) -> None:
            raise NoThumb

        def postprocess(self, **kwargs: object) -> np.ndarray:
            return np.asarray(Image.open(io.BytesIO(jpeg(480, 320, 5))))

    def imread(path: str) -> Raw:
        if "broken" in path:
            raise OSError("LibRaw: unsupported file format")
        return Raw()

    stub = types.SimpleNamespace(
        imread=imread,
        LibRawNoThumbnailError=NoThumb,
        LibRawUnsupportedThumbnailError=NoThumb,
        ThumbFormat=types.SimpleNamespace(JPEG="jpeg"),
    )
    monkeypatch.setitem(sys.modules, "rawpy", stub)
    (tmp_path / "dev.CR3").write_bytes(b"....ftypcrx " + bytes(100))
    (tmp_path / "broken.CR3").write_bytes(b"....ftypcrx " + bytes(100))

    rc, rows, err = main(capsys, tmp_path, "--sidecar", "darktable")

    assert rc == 1 and [Path(p).name for _, _, p in rows] == ["dev.CR3.xmp"]
    assert (
        err == f"error: {tmp_path / 'broken.CR3'}: no embedded JPEG preview, and rawpy cannot read it "
        "(LibRaw: unsupported file format)\n"
    )
