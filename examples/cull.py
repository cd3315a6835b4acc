#!/usr/bin/env python3
"""Cull a shoot: score every photo (raw files too) and write its star rating into XMP sidecars,
leaving every rating a person set alone.

    python examples/cull.py ~/Pictures/shoot --recursive --dry-run    # print what would change, write nothing
    python examples/cull.py ~/Pictures/shoot --reject-below 1.5       # write the sidecars
    python examples/cull.py shoot/ --sidecar darktable                # only photo.ext.xmp sidecars

Ratings a person set are kept. A photo counts as rated by hand when one of its sidecars, or the XMP
packet or EXIF Rating tag inside the photo itself, holds a rating other than 0 ("unrated") that
cull.py did not write. cull.py marks the ratings it writes (``redaes:Rating``, ``redaes:CreatorTool``,
``redaes:Model``, ``redaes:Score`` beside ``xmp:Rating``, namespace ``NS`` below), so a re-run updates
its own ratings but keeps one a person has since changed. ``--overwrite`` replaces every rating.
darktable rates every photo 1 star on import unless its "initial rating" preference is 0: such a
1-star sidecar looks hand-set to cull.py; run cull.py before importing, or pass --overwrite.

Sidecar names (``--sidecar``), as the applications read them:

    darktable  photo.ext.xmp (photo.NEF.xmp, photo.jpg.xmp); digiKam writes and reads this name by default
    lightroom  photo.xmp, which Lightroom Classic and Capture One read for raw files
    both       both names
    auto       (default) the photo's existing sidecars of either name; a photo without one gets both
               names if it is a raw file, photo.ext.xmp otherwise

Lightroom Classic does not read .xmp sidecars beside JPEG, TIFF, PNG, HEIC or DNG files: for those it
reads the XMP embedded in the file and otherwise keeps ratings in its catalog, so no sidecar reaches
Lightroom for a JPEG. Where a raw and a JPEG share a name (IMG_1.CR2 + IMG_1.JPG), photo.xmp belongs to
the raw.

Raw files (CR2, CR3, NEF, NRW, ARW, SR2, DNG, RAF, ORF, RW2, PEF, SRW, 3FR, IIQ, ...) are scored
through the largest JPEG preview the camera embedded in them, found without any dependency by
scanning the file for JPEG start-of-image markers and walking each candidate's segments to its end
(lossless-JPEG raw data and 12-bit JPEGs are skipped); the raw's own EXIF orientation is applied to it.
A raw with no usable preview is decoded with ``rawpy`` if that is installed, else it is an error row.
The photos are never opened for writing; sidecars are written atomically (a temporary file beside
them, renamed over the old one), so a crash leaves the old sidecar or the new one, never half a file.

Stars from the 0..10 display score (``redaes_lite.stars``, which ``redaes-lite report`` shows too),
with the default ``--thresholds 2,4,6,8``:

    score < 2 -> 1 star, 2 <= score < 4 -> 2, 4..6 -> 3, 6..8 -> 4, score >= 8 -> 5
    score < --reject-below (off by default) -> -1 (rejected in Lightroom and darktable)

An existing sidecar keeps everything else it holds: only the rating and cull.py's mark change.
Output: a header, one row per sidecar (score, old -> new rating or "kept N (set by hand)", path),
a summary; each error once on stderr as "error: PATH: cause". Exit status: 0 every photo rated (or
kept); 1 some photos or sidecars failed (the rest are written); 2 usage error (no photos, unusable
model, bad thresholds); 130 interrupted.
"""

from __future__ import annotations

import argparse
import io
import mmap
import os
import re
import struct
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redaes_lite
from redaes_lite import Failure, RedaesError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".heic", ".heif", ".avif"})
RAW_SUFFIXES = frozenset(
    {
        ".3fr",
        ".arw",
        ".cr2",
        ".cr3",
        ".dcr",
        ".dng",
        ".erf",
        ".iiq",
        ".k25",
        ".kdc",
        ".mef",
        ".mos",
        ".mrw",
        ".nef",
        ".nrw",
        ".orf",
        ".pef",
        ".raf",
        ".rw2",
        ".rwl",
        ".sr2",
        ".srf",
        ".srw",
        ".x3f",
    }
)
X, RDF, XMP = "adobe:ns:meta/", "http://www.w3.org/1999/02/22-rdf-syntax-ns#", "http://ns.adobe.com/xap/1.0/"
NS = "https://github.com/redaes-lite/redaes-lite/ns/cull/1.0/"  # cull.py's mark on the ratings it writes
RATING, MARK = f"{{{XMP}}}Rating", f"{{{NS}}}Rating"
CREATOR = "redaes-lite examples/cull.py"
DESCRIPTION = f"{{{RDF}}}Description"
NEW_SIDECAR = f"""<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="{X}">
 <rdf:RDF xmlns:rdf="{RDF}">
  <rdf:Description rdf:about=""/>
 </rdf:RDF>
</x:xmpmeta>
"""
MIN_PREVIEW_SIDE = 320  # a raw's largest embedded JPEG must be at least this long on its long side


class PhotoError(Exception):
    """A photo or sidecar that cannot be handled; the message is the cause, without the path."""


# -- ratings --------------------------------------------------------------------------------------


def is_unrated(value: str | None) -> bool:
    """No rating, or XMP's 0 ("unrated")."""
    if value is None:
        return True
    try:
        return float(value) == 0
    except ValueError:
        return False  # a rating we cannot read is someone's: keep it


@dataclass(frozen=True)
class SidecarState:
    rating: str | None  # xmp:Rating as written, None when absent
    ours: bool  # cull.py wrote this rating (its mark holds the same value)


def find_rating(root: ET.Element) -> tuple[ET.Element, str] | None:
    """The rdf:Description holding the first xmp:Rating (attribute or element form) and its value."""
    for d in root.iter(DESCRIPTION):
        if RATING in d.attrib:
            return d, d.attrib[RATING].strip()
        element = d.find(RATING)
        if element is not None:
            return d, (element.text or "").strip()
    return None


def sidecar_state(root: ET.Element) -> SidecarState:
    found = find_rating(root)
    if found is None:
        return SidecarState(rating=None, ours=False)
    description, value = found
    return SidecarState(rating=value, ours=description.get(MARK) == value)


# -- reading embedded metadata and raw previews ---------------------------------------------------


def _u16(data: Any, at: int, order: str) -> int:
    return struct.unpack_from(order + "H", data, at)[0]


def tiff_tags(data: Any, base: int = 0) -> dict[int, int]:
    """Single-valued SHORT/LONG tags of the first IFD of a TIFF structure at ``base`` (a raw file's
    header, or the EXIF block of a JPEG); {} when there is none."""
    head = bytes(data[base : base + 2])
    order = {b"II": "<", b"MM": ">"}.get(head)
    if order is None or len(data) < base + 8:
        return {}
    try:
        at = base + struct.unpack_from(order + "I", data, base + 4)[0]
        count = _u16(data, at, order)
        tags = {}
        for i in range(min(count, 1024)):
            tag, kind, n = struct.unpack_from(order + "HHI", data, at + 2 + 12 * i)
            if n == 1 and kind == 3:  # SHORT
                tags[tag] = _u16(data, at + 10 + 12 * i, order)
            elif n == 1 and kind == 4:  # LONG
                tags[tag] = struct.unpack_from(order + "I", data, at + 10 + 12 * i)[0]
        return tags
    except struct.error:  # an IFD that runs past the end of the data
        return {}


ORIENTATION, EXIF_RATING = 0x0112, 0x4746


@dataclass(frozen=True)
class Jpeg:
    start: int
    end: int  # one past the EOI marker
    width: int
    height: int
    exif: int | None  # offset of the TIFF structure of its EXIF block, if any


_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_DECODABLE_SOF = frozenset({0xC0, 0xC1, 0xC2})  # baseline, extended, progressive; not lossless or arithmetic
_OTHER_SOF = frozenset({0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def parse_jpeg(data: Any, start: int) -> Jpeg | None:
    """The decodable 8-bit JPEG starting at ``start`` (its SOI), walked marker by marker to the start of
    its scan, then to the EOI (entropy-coded data never holds FF D9); None if it is not one."""
    i, size, exif, limit = start + 2, None, None, len(data)
    for _ in range(1000):
        if i + 4 > limit or data[i] != 0xFF:
            return None
        while data[i + 1] == 0xFF and i + 5 < limit:  # fill bytes
            i += 1
        marker = data[i + 1]
        if marker in _STANDALONE:
            i += 2
            continue
        length = _u16(data, i + 2, ">")
        if length < 2 or i + 2 + length > limit:
            return None
        if marker in _OTHER_SOF or (marker in _DECODABLE_SOF and data[i + 4] != 8):
            return None  # lossless (the raw data of CR2 and DNG), arithmetic or 12-bit: not a preview
        if marker in _DECODABLE_SOF and length >= 8:
            size = (_u16(data, i + 7, ">"), _u16(data, i + 5, ">"))
        elif marker == 0xE1 and exif is None and bytes(data[i + 4 : i + 10]) == b"Exif\0\0":
            exif = i + 10
        elif marker == 0xDA:  # start of scan
            end = data.find(b"\xff\xd9", i + 2 + length)
            if size is None or min(size) < 1 or end < 0:
                return None
            return Jpeg(start=start, end=end + 2, width=size[0], height=size[1], exif=exif)
        elif marker == 0xD9:
            return None
        i += 2 + length
    return None


def jpegs_in(data: Any) -> Iterator[Jpeg]:
    """Every decodable JPEG embedded in ``data``, nested ones (an EXIF thumbnail) included."""
    at = data.find(b"\xff\xd8\xff")
    while at >= 0:
        jpeg = parse_jpeg(data, at)
        if jpeg is not None:
            yield jpeg
        at = data.find(b"\xff\xd8\xff", at + 2)


def with_orientation(jpeg: bytes, orientation: int) -> bytes:
    """``jpeg`` with an EXIF block holding only ``orientation`` inserted after its SOI (readers use the
    first EXIF block), so the decoder turns the preview as the raw says."""
    tiff = b"MM\0*\0\0\0\x08" + struct.pack(">HHHIHHI", 1, ORIENTATION, 3, 1, orientation, 0, 0)
    segment = b"Exif\0\0" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(segment) + 2) + segment + jpeg[2:]


def _xmp_ratings(data: Any) -> Iterator[str]:
    """xmp:Rating of each XMP packet found in ``data`` that has one (packets that do not parse are skipped)."""
    at = data.find(b"<x:xmpmeta")
    for _ in range(16):
        if at < 0:
            return
        end = data.find(b"</x:xmpmeta>", at)
        if end < 0 or end - at > 4 << 20:
            return
        try:
            found = find_rating(ET.fromstring(bytes(data[at : end + 12]).decode("utf-8", "replace")))
        except ET.ParseError:
            found = None
        if found is not None:
            yield found[1]
        at = data.find(b"<x:xmpmeta", end)


def embedded_rating(data: Any, *, raw: bool) -> str | None:
    """A rating other than 0 stored inside the photo: an XMP packet's xmp:Rating, else the EXIF Rating tag
    (of the raw's first IFD, or of a JPEG's EXIF block)."""
    for value in _xmp_ratings(data):
        if not is_unrated(value):
            return value
    if raw:
        tags = tiff_tags(data)
    else:
        jpeg = parse_jpeg(data, 0) if bytes(data[:3]) == b"\xff\xd8\xff" else None
        tags = tiff_tags(data, jpeg.exif) if jpeg is not None and jpeg.exif is not None else {}
    value = tags.get(EXIF_RATING)
    return None if not value else str(value)


@dataclass(frozen=True)
class Embedded:
    rating: str | None  # a hand rating stored in the photo itself
    preview: bytes | None  # raw files: the JPEG to score


def read_photo(path: Path, *, raw: bool) -> Embedded:
    """The rating inside ``path`` and, for a raw file, its largest embedded JPEG preview (None if it has
    none, or none at least MIN_PREVIEW_SIDE long), turned by the raw's orientation. Raises OSError."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            raise PhotoError("empty file")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            rating = embedded_rating(data, raw=raw)
            if not raw:
                return Embedded(rating=rating, preview=None)
            best = max(jpegs_in(data), key=lambda j: (j.width * j.height, j.end - j.start), default=None)
            if best is None or max(best.width, best.height) < MIN_PREVIEW_SIDE:
                return Embedded(rating=rating, preview=None)
            preview = bytes(data[best.start : best.end])
            orientation = tiff_tags(data).get(ORIENTATION, 1)
            own = tiff_tags(data, best.exif).get(ORIENTATION, 1) if best.exif is not None else 1
            if own == 1 and orientation in range(2, 9):
                preview = with_orientation(preview, orientation)
            return Embedded(rating=rating, preview=preview)


def rawpy_image(path: Path) -> Any:
    """The raw decoded by rawpy (its embedded thumbnail, else a half-size development); PhotoError
    without rawpy or when it fails."""
    try:
        import rawpy
    except ImportError:
        raise PhotoError("no embedded JPEG preview found (install rawpy to develop this raw)") from None
    try:
        with rawpy.imread(str(path)) as raw:
            try:
                thumb = raw.extract_thumb()
                return bytes(thumb.data) if thumb.format == rawpy.ThumbFormat.JPEG else thumb.data
            except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
                return raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8)
    except Exception as e:  # noqa: BLE001 - LibRaw's errors have no common base; each becomes an error row
        raise PhotoError(f"no embedded JPEG preview, and rawpy cannot read it ({e})") from None


# -- sidecars -------------------------------------------------------------------------------------


def find_photos(paths: list[Path], *, recursive: bool) -> list[Path]:
    """Photos and raw files named or inside the folders named, sorted; hidden files (``._IMG_1.CR2``,
    cull.py's temporary files) are left out."""
    found = set()
    for path in paths:
        if path.is_dir():
            found.update(p for p in (path.rglob("*") if recursive else path.iterdir()) if p.is_file())
        elif path.is_file():
            found.add(path)
    suffixes = IMAGE_SUFFIXES | RAW_SUFFIXES
    return sorted(p for p in found if p.suffix.lower() in suffixes and not p.name.startswith("."))


def is_raw(photo: Path) -> bool:
    return photo.suffix.lower() in RAW_SUFFIXES


def darktable_name(photo: Path) -> Path:
    return photo.with_name(photo.name + ".xmp")


def lightroom_owners(photos: list[Path]) -> dict[Path, Path]:
    """photo.xmp -> the one photo it belongs to: the only photo of that name, or the only raw among them."""
    claims: dict[Path, list[Path]] = {}
    for photo in photos:
        claims.setdefault(photo.with_suffix(".xmp"), []).append(photo)
    owners = {}
    for sidecar, claimants in claims.items():
        raws = [p for p in claimants if is_raw(p)]
        if len(claimants) == 1 or len(raws) == 1:
            owners[sidecar] = claimants[0] if len(claimants) == 1 else raws[0]
    return owners


def sidecars_for(photo: Path, style: str, owners: dict[Path, Path]) -> tuple[list[Path], list[Path]]:
    """(the sidecars of ``photo`` that may hold its rating, the ones to write in ``style``)."""
    darktable, lightroom = darktable_name(photo), photo.with_suffix(".xmp")
    related = [darktable] + ([lightroom] if owners.get(lightroom) == photo else [])
    if style == "darktable":
        return related, [darktable]
    if style == "lightroom":
        if lightroom not in related:
            other = owners.get(lightroom)
            why = f"belongs to {other.name}" if other else "is shared with another photo of that name"
            raise PhotoError(f"sidecar {lightroom.name} {why}; use --sidecar darktable or auto")
        return related, [lightroom]
    if style == "both":
        return related, related
    existing = [s for s in related if s.exists()]
    return related, existing or (related if is_raw(photo) else [darktable])


def read_sidecar(path: Path) -> tuple[str, ET.Element]:
    """The sidecar's text and parsed root; PhotoError naming the cause when it is no XMP file."""
    try:
        text = path.read_text(encoding="utf-8")
        root = ET.fromstring(text.removeprefix("\ufeff"))
    except (UnicodeDecodeError, ET.ParseError) as e:
        raise PhotoError(f"not an XMP file ({e}); left as it is") from None
    if root.tag not in (f"{{{X}}}xmpmeta", f"{{{RDF}}}RDF"):
        raise PhotoError(f"not an XMP file (root element {root.tag}); left as it is")
    return text, root


def _register_namespaces(text: str) -> None:
    """Make ElementTree write the file's own prefixes (xmp:, dc:, darktable:, ...) instead of ns0:."""
    ET.register_namespace("xmp", XMP)  # for a Rating added to a file that never declared xmp:
    ET.register_namespace("redaes", NS)
    for _, (prefix, uri) in ET.iterparse(io.StringIO(text), events=("start-ns",)):
        # ElementTree reserves ns<digits> for itself; redaes: stays cull.py's
        if not re.fullmatch(r"ns\d+", prefix) and prefix != "redaes" and uri != NS:
            ET.register_namespace(prefix, uri)


def _set_rating(root: ET.Element, rating: int, mark: dict[str, str]) -> None:
    """Change xmp:Rating where it is (attribute or element form), else add it to the first
    rdf:Description; cull.py's mark goes on the same rdf:Description."""
    found = find_rating(root)
    if found is not None:
        description, _ = found
        element = description.find(RATING)
        if element is not None and RATING not in description.attrib:
            element.text = str(rating)
        else:
            description.set(RATING, str(rating))
    else:
        descriptions = list(root.iter(DESCRIPTION))
        if not descriptions:
            rdf = root if root.tag == f"{{{RDF}}}RDF" else root.find(f"{{{RDF}}}RDF")
            if rdf is None:
                raise PhotoError("not an XMP file (no rdf:RDF element); left as it is")
            descriptions = [ET.SubElement(rdf, DESCRIPTION, {f"{{{RDF}}}about": ""})]
        description = descriptions[0]
        description.set(RATING, str(rating))
    description.set(MARK, str(rating))
    for key, value in mark.items():
        description.set(f"{{{NS}}}{key}", value)


def updated_sidecar(text: str, rating: int, mark: dict[str, str]) -> str:
    """``text`` with its xmp:Rating set to ``rating`` and cull.py's mark; comments, other properties and
    the text around the root element (``<?xpacket ...?>`` wrappers, padding) are kept."""
    bom = "\ufeff" if text.startswith("\ufeff") else ""
    text = text.removeprefix(bom)
    _register_namespaces(text)
    parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True, insert_pis=True))
    root = ET.fromstring(text, parser=parser)
    _set_rating(root, rating, mark)
    # ElementTree keeps only the root element: copy what surrounds it in the file verbatim.
    start = re.search(r"<(?![?!])([^\s/>]+)", text)
    end = text.rfind(f"</{start.group(1)}>")
    head = text[: start.start()]
    tail = text[end + len(start.group(1)) + 3 :] if end >= 0 else "\n"
    return bom + head + ET.tostring(root, encoding="unicode") + tail


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it, fsynced and renamed over it:
    readers see the old file or the whole new one. The old file's permissions are kept."""
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)  # the only portable way to read the umask
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- the run --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    sidecar: Path  # or, for a rating kept inside the photo, the photo
    old: str | None
    new: int | None  # None: kept
    write: str | None = None  # the new sidecar text; None: nothing to write

    def change(self) -> str:
        if self.new is None:
            return f"kept {self.old} (set by hand)"
        if self.old is not None and self.write is None:
            return f"{self.old} (unchanged)"
        return f"{self.old or 'none'} -> {self.new}" + ("" if self.sidecar.exists() else " (new file)")


def plan_photo(photo: Path, score: float, embedded: str | None, args: argparse.Namespace, owners: dict) -> list[Row]:
    """What to do with each of ``photo``'s sidecars. Raises PhotoError (the cause) or OSError."""
    rating = redaes_lite.stars(score, thresholds=args.thresholds, reject_below=args.reject_below)
    related, targets = sidecars_for(photo, args.sidecar, owners)
    states: dict[Path, tuple[str, ET.Element, SidecarState]] = {}
    for sidecar in related:
        if sidecar.exists():
            try:
                text, root = read_sidecar(sidecar)
            except PhotoError as e:
                raise PhotoError(f"sidecar {sidecar.name}: {e}") from None
            states[sidecar] = (text, root, sidecar_state(root))
    hand = [(s, st.rating) for s, (_, _, st) in states.items() if not st.ours and not is_unrated(st.rating)]
    if embedded is not None:
        hand.append((photo, embedded))
    if hand and not args.overwrite:
        return [Row(sidecar=where, old=value, new=None) for where, value in hand]
    mark = {"CreatorTool": CREATOR, "Model": args.model_id, "Score": f"{score:.2f}"}
    rows = []
    for sidecar in targets:
        if sidecar in states:
            text, _, state = states[sidecar]
            if state.ours and state.rating == str(rating):
                rows.append(Row(sidecar=sidecar, old=state.rating, new=rating))
                continue
            content = updated_sidecar(text, rating, mark)
            rows.append(Row(sidecar=sidecar, old=state.rating, new=rating, write=content))
        else:
            content = updated_sidecar(NEW_SIDECAR, rating, mark)
            rows.append(Row(sidecar=sidecar, old=None, new=rating, write=content))
    return rows


def thresholds_arg(text: str) -> list[float]:
    """``--thresholds``: four ascending scores separating 1|2|3|4|5 stars."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not numbers: {text!r}") from None
    if len(values) != 4 or values != sorted(values):
        raise argparse.ArgumentTypeError(f"need four ascending scores (for 2..5 stars), got {text!r}")
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Score photos (raw files through their embedded preview) and write star ratings into XMP "
        "sidecars. Ratings a person set are kept unless --overwrite is given.",
        epilog="Lightroom Classic does not read .xmp sidecars beside JPEG (or TIFF, PNG, HEIC, DNG) files: it "
        "reads the XMP embedded in the file and its catalog. Its photo.xmp sidecars are for raw files.",
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="folders of photos, or photos")
    p.add_argument("--recursive", action="store_true", help="include subfolders")
    p.add_argument("--model", default="default", help="'default', 'permissive' or a model file (default: default)")
    p.add_argument(
        "--sidecar",
        choices=("auto", "darktable", "lightroom", "both"),
        default="auto",
        help="darktable: photo.ext.xmp (darktable, digiKam); lightroom: photo.xmp (Lightroom Classic and Capture "
        "One, for raw files); both; auto (default): a photo's existing sidecars, else both names for a raw "
        "file and photo.ext.xmp for others",
    )
    p.add_argument(
        "--thresholds",
        type=thresholds_arg,
        default=list(redaes_lite.STAR_THRESHOLDS),
        metavar="T2,T3,T4,T5",
        help="lowest score for 2, 3, 4 and 5 stars (default: 2,4,6,8)",
    )
    p.add_argument("--reject-below", type=float, metavar="SCORE", help="rate photos scoring below SCORE -1 (rejected)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace ratings set by hand too (by default only cull.py's own ratings are updated)",
    )
    p.add_argument("--dry-run", action="store_true", help="print what would change, write nothing")
    return p.parse_args(argv)


def _cause(error: str, path: Path) -> str:
    """A library error message without its leading "<input>: " (the row names the path)."""
    return re.sub(r"^(<\d+ bytes>|<array [^>]*>|" + re.escape(str(path)) + "): ", "", error)


def run(args: argparse.Namespace, photos: list[Path], scorer: Any) -> int:
    out, err = sys.stdout, sys.stderr
    thresholds = ",".join(f"{t:g}" for t in args.thresholds)
    what = "dry run, nothing is written" if args.dry_run else "writing sidecars"
    print(
        f"cull.py: {len(photos)} photos, model {scorer.model_id}, thresholds {thresholds}, "
        f"--sidecar {args.sidecar}{', --overwrite' if args.overwrite else ''}: {what}",
        file=out,
    )
    print(f"{'score':>5}  {'rating':<24}  sidecar", file=out)
    owners = lightroom_owners(photos)
    errors: dict[int, str] = {}  # photo index -> error, for photos that never reach the scorer
    embedded: dict[int, str | None] = {}
    fed: deque[int] = deque()

    def feed() -> Iterator[Any]:
        for i, photo in enumerate(photos):
            try:
                info = read_photo(photo, raw=is_raw(photo))
                x = photo if not is_raw(photo) else info.preview if info.preview is not None else rawpy_image(photo)
            except (OSError, ValueError, PhotoError) as e:
                errors[i] = str(e) if isinstance(e, PhotoError) else (e.strerror or str(e))
                continue
            embedded[i] = info.rating
            fed.append(i)
            yield x

    counts = {"written": 0, "unchanged": 0, "kept": 0, "errors": 0}
    reported = 0

    def report_errors(upto: int) -> None:
        nonlocal reported
        for i in range(reported, upto):
            if i in errors:
                print(f"error: {photos[i]}: {errors.pop(i)}", file=err)
                counts["errors"] += 1
        reported = max(reported, upto)

    for result in scorer.iter_scores(feed(), on_error="record"):
        i = fed.popleft()
        report_errors(i)
        photo = photos[i]
        reported = i + 1
        if isinstance(result, Failure):
            print(f"error: {photo}: {_cause(result.error, photo)}", file=err)
            counts["errors"] += 1
            continue
        try:
            rows = plan_photo(photo, result.score, embedded.pop(i), args, owners)
        except (OSError, PhotoError) as e:
            print(f"error: {photo}: {e.strerror if isinstance(e, OSError) and e.strerror else e}", file=err)
            counts["errors"] += 1
            continue
        for row in rows:
            print(f"{result.score:5.2f}  {row.change():<24}  {row.sidecar}", file=out)
            if row.new is None:
                counts["kept"] += 1
            elif row.write is None:
                counts["unchanged"] += 1
            elif not args.dry_run:
                try:
                    atomic_write(row.sidecar, row.write)
                except OSError as e:
                    print(f"error: {row.sidecar}: cannot write ({e.strerror or e})", file=err)
                    counts["errors"] += 1
                    continue
                counts["written"] += 1
            else:
                counts["written"] += 1
    report_errors(len(photos))
    verb = "would write" if args.dry_run else "wrote"
    print(
        f"{verb} {counts['written']} sidecars; {counts['unchanged']} unchanged, {counts['kept']} kept (set by hand), "
        f"{counts['errors']} errors",
        file=out,
    )
    return 1 if counts["errors"] else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        photos = find_photos(args.paths, recursive=args.recursive)
        if not photos:
            print(f"error: {', '.join(map(str, args.paths))}: no photos found", file=sys.stderr)
            return 2
        try:
            scorer = redaes_lite.load(args.model)
        except RedaesError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        args.model_id = scorer.model_id
        return run(args, photos, scorer)
    except KeyboardInterrupt:
        print("interrupted: sidecars written so far are complete, the rest are untouched", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `cull.py ... | head`
        sys.stderr.close()
        return 1


if __name__ == "__main__":
    sys.exit(main())
