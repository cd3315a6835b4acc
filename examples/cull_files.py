"""What examples/cull.py reads from photo files, with the standard library alone: a rating a person stored inside
a photo (an XMP packet's xmp:Rating or the EXIF Rating tag), and the largest JPEG preview a camera embedded in a
raw file, turned by the raw's EXIF orientation (``rawpy``, when installed, for a raw without one).

Kept beside cull.py, which imports it; copy both.
"""

from __future__ import annotations

import mmap
import os
import struct
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".heic", ".heif", ".avif"})
RAW_SUFFIXES = frozenset(
    (
        ".3fr .arw .cr2 .cr3 .dcr .dng .erf .iiq .k25 .kdc .mef .mos .mrw .nef .nrw .orf .pef .raf .rw2 .rwl .sr2 .srf "
        ".srw .x3f"
    ).split()
)
X, RDF, XMP = "adobe:ns:meta/", "http://www.w3.org/1999/02/22-rdf-syntax-ns#", "http://ns.adobe.com/xap/1.0/"
RATING = f"{{{XMP}}}Rating"
DESCRIPTION = f"{{{RDF}}}Description"
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


def find_rating(root: ET.Element) -> tuple[ET.Element, str] | None:
    """The rdf:Description holding the first xmp:Rating (attribute or element form) and its value."""
    for d in root.iter(DESCRIPTION):
        if RATING in d.attrib:
            return d, d.attrib[RATING].strip()
        element = d.find(RATING)
        if element is not None:
            return d, (element.text or "").strip()
    return None


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
