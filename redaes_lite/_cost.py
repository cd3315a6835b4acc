"""What a decode will cost, known before it starts: structure checks on the file bytes (time) and the
decoded bytes estimated from the header (memory), and the budget that bounds the bytes in flight.

The threat is small files that pass every size limit but cost seconds of CPU or gigabytes of memory. Each rule
here is a cheap, bounded walk over the bytes Pillow would otherwise parse one by one in Python, or a count
Pillow does not check; real photos are far from every limit.

* **Time**: JPEG fill and junk bytes before the image data (Pillow reads them a byte at a time, ~0.6 us
  each) and marker segments; PNG chunks (~3 us each, before and after the image data); TIFF strip and tile
  counts (Pillow builds a list entry per strip: 20 M strips of a 100 x 100 image took 43 s and 5.5 GB) and
  other long numeric tag arrays; BigTIFF entry counts; JPEG 2000 files over 16 MiB (OpenJPEG's time
  follows the codestream's size); and the pixels Pillow's pure-Python decoders (RLE BMP, PPM/PGM with a
  maxval other than 255, plain PNM) would decode.
* **Memory**: :func:`decode_bytes` is the peak memory of ``load_image`` + ``to_array`` for one image
  (decoder buffers, the decoded frame in Pillow's storage, conversion to RGB, rotation, resize), from the
  header alone, calibrated against measured peaks.
"""

from __future__ import annotations

import math
import struct
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, BinaryIO

from PIL import Image

from .errors import ImageError

if TYPE_CHECKING:
    from .preprocess import PreprocessSpec

__all__ = [
    "DecodeBudget",
    "check_python_decoder",
    "check_structure",
    "decode_bytes",
    "jpeg_coefficients",
    "orientation",
]

# -- time: structure checks before Image.open ---------------------------------------------------------
#: Fill (0xFF) and junk bytes allowed between JPEG header segments (Pillow: ~0.6 us each, 0.15 s here).
JPEG_MAX_FILL = 256 * 1024
#: Header segments allowed before a JPEG's first scan (real files: a few dozen; ICC profiles up to 255).
JPEG_MAX_SEGMENTS = 10_000
#: Chunks allowed in a PNG, image data included (~3 us each in Pillow: 0.3 s). A 256 MB PNG written in
#: libpng's 8 KB IDAT chunks has 32,768.
PNG_MAX_CHUNKS = 100_000
#: Values allowed in a TIFF tag other than strip and tile offsets and counts (Pillow unpacks them into
#: Python tuples; ColorMap needs 3 x 65,536 at most).
TIFF_MAX_TAG_VALUES = 1 << 18
#: Entries allowed in a BigTIFF directory (classic TIFF stops at 65,535; real files have a few dozen).
TIFF_MAX_ENTRIES = 65_535
#: Bytes allowed in a JPEG 2000 file: OpenJPEG decodes about 130 ns a byte of codestream (a lossless 5.8 MP
#: noise image of 18.8 MB took 2.5 CPU-s), beside ~35 ns a pixel; lossy photos are a few MB.
JPEG2000_MAX_BYTES = 16 * 1024 * 1024
#: Samples (pixels x bands) allowed per Pillow pure-Python decoder, each about 1.5 CPU-s on a 2-core VM
#: at its worst case measured: RLE BMP 120 ns per pixel (rows of one pixel and an end of line), PPM/PGM
#: with a maxval other than 255 (16-bit) 700 ns per sample, plain PNM 350 ns per sample.
PYTHON_DECODER_SAMPLES = {"bmp_rle": 12_000_000, "ppm": 2_000_000, "ppm_plain": 4_000_000}
_PYTHON_DECODER_NAMES = {
    "bmp_rle": "RLE-compressed BMP",
    "ppm": "PNM with a maxval other than 255",
    "ppm_plain": "plain (ASCII) PNM",
}

_READ = 4096


def check_structure(f: BinaryIO, name: str, head: bytes) -> None:
    """Refuse a JPEG, PNG or TIFF whose structure would cost far more to parse than its image needs.
    Reads only headers (a bounded number of small reads); the stream position is restored."""
    pos = f.tell()
    try:
        if head[:2] == b"\xff\xd8":
            _check_jpeg(f, name)
        elif head[:8] == b"\x89PNG\r\n\x1a\n":
            _check_png(f, name)
        elif head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            _check_tiff(f, name, head)
        elif head[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n" or head[:4] == b"\xff\x4f\xff\x51":
            size = f.seek(0, 2)
            if size > JPEG2000_MAX_BYTES:
                raise ImageError(
                    f"{name}: JPEG 2000 file of {size / 2**20:.1f} MiB, over the "
                    f"{JPEG2000_MAX_BYTES / 2**20:.0f} MiB decoded in reasonable time"
                )
    except (struct.error, OSError, ValueError, OverflowError):
        pass  # a header too broken to walk: Pillow's own checks refuse it
    finally:
        f.seek(pos)


def _jpeg_length_markers() -> frozenset[int]:
    """Markers Pillow reads a length for (those with a handler); the others are one byte pair."""
    from PIL import JpegImagePlugin

    return frozenset(m & 0xFF for m, (_, _, handler) in JpegImagePlugin.MARKER.items() if handler is not None)


def _check_jpeg(f: BinaryIO, name: str) -> None:
    """Walk the markers as Pillow's JPEG parser does, up to the first scan, counting the bytes it reads
    one at a time (fill 0xFF bytes, junk) and the segments it parses."""
    with_length = _jpeg_length_markers()
    pos, slow, segments = 2, 0, 0
    while True:
        f.seek(pos)
        chunk = f.read(_READ)
        if len(chunk) < 2:
            return  # truncated: Pillow's own errors apply
        if chunk[0] != 0xFF:  # junk between segments
            at = chunk.find(b"\xff")
            step = at if at > 0 else len(chunk)
            slow += step
            pos += step
        else:
            run = len(chunk) - len(chunk.lstrip(b"\xff"))
            if run == len(chunk):  # the fill goes on past this read
                slow += run
                pos += run
            else:
                slow += run - 1
                pos += run - 1  # at the 0xFF before the marker
                marker = chunk[run]
                if marker == 0xDA:
                    return  # start of scan: libjpeg reads the rest, in C
                segments += 1
                if marker in with_length:
                    if run + 3 > len(chunk):
                        f.seek(pos + 2)
                        raw = f.read(2)
                        if len(raw) < 2:
                            return
                    else:
                        raw = chunk[run + 1 : run + 3]
                    pos += 2 + struct.unpack(">H", raw)[0]
                else:
                    pos += 2
        if slow > JPEG_MAX_FILL:
            raise ImageError(
                f"{name}: JPEG has over {JPEG_MAX_FILL:,} fill or junk bytes between its header "
                "segments (too slow to parse)"
            )
        if segments > JPEG_MAX_SEGMENTS:
            raise ImageError(f"{name}: JPEG has over {JPEG_MAX_SEGMENTS:,} header segments (too slow to parse)")


def _check_png(f: BinaryIO, name: str) -> None:
    pos, chunks = 8, 0
    while chunks <= PNG_MAX_CHUNKS:
        f.seek(pos)
        head = f.read(8)
        if len(head) < 8:
            return
        length, kind = struct.unpack(">I4s", head)
        chunks += 1
        if kind == b"IEND":
            return
        pos += 12 + length
    raise ImageError(f"{name}: PNG has over {PNG_MAX_CHUNKS:,} chunks (too slow to parse)")


_TIFF_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8, 17: 8, 18: 8}
_STRIP_TAGS = (273, 279)  # StripOffsets, StripByteCounts
_TILE_TAGS = (324, 325)  # TileOffsets, TileByteCounts
_NUMERIC = frozenset(_TIFF_SIZES) - {1, 2, 6, 7}  # BYTE, ASCII, SBYTE, UNDEFINED stay bytes in Pillow


def _check_tiff(f: BinaryIO, name: str, head: bytes) -> None:
    """The first directory (the one Pillow opens): its entry count, the strip or tile counts against what
    the image size can need (one strip per row, one 16 x 16 tile, per plane) and other numeric arrays."""
    order = "<" if head[:2] == b"II" else ">"
    big = head[2:4] in (b"+\x00", b"\x00+")
    f.seek(0)
    header = f.read(16)
    if big:
        if len(header) < 16:
            return
        ifd = struct.unpack(order + "Q", header[8:16])[0]
        f.seek(ifd)
        raw = f.read(8)
        if len(raw) < 8:
            return
        entries, entry_size, value_at = struct.unpack(order + "Q", raw)[0], 20, 12
        if entries > TIFF_MAX_ENTRIES:
            raise ImageError(f"{name}: BigTIFF directory claims {entries:,} entries, over {TIFF_MAX_ENTRIES:,}")
    else:
        if len(header) < 8:
            return
        f.seek(struct.unpack(order + "I", header[4:8])[0])
        raw = f.read(2)
        if len(raw) < 2:
            return
        entries, entry_size, value_at = struct.unpack(order + "H", raw)[0], 12, 8
    table = f.read(entries * entry_size)
    counts: dict[int, int] = {}
    values: dict[int, int] = {}
    for i in range(len(table) // entry_size):
        entry = table[i * entry_size : (i + 1) * entry_size]
        tag, kind = struct.unpack(order + "HH", entry[:4])
        count = struct.unpack(order + ("Q" if big else "I"), entry[4:value_at])[0]
        counts[tag] = count
        if count == 1 and kind in ((3, 4, 16) if big else (3, 4)):
            fmt = {3: "H", 4: "I", 16: "Q"}[kind]
            values[tag] = struct.unpack(order + fmt, entry[value_at : value_at + struct.calcsize(fmt)])[0]
        if kind in _NUMERIC and tag not in _STRIP_TAGS + _TILE_TAGS and count > TIFF_MAX_TAG_VALUES:
            raise ImageError(f"{name}: TIFF tag {tag} has {count:,} values, over {TIFF_MAX_TAG_VALUES:,}")
    width, height = values.get(256, 0), values.get(257, 0)
    if not (width and height):
        return  # Pillow refuses it (or it has sides as arrays: refused as absurd by Pillow's own checks)
    planes = min(values.get(277, 1), 16) if values.get(284, 1) == 2 else 1
    bounds = {_STRIP_TAGS: height * planes, _TILE_TAGS: math.ceil(width / 16) * math.ceil(height / 16) * planes}
    for tags, bound in bounds.items():
        for tag in tags:
            if counts.get(tag, 0) > bound:
                what = "strip" if tags is _STRIP_TAGS else "tile"
                raise ImageError(
                    f"{name}: TIFF has {counts[tag]:,} {what} entries (tag {tag}) for a {width}x{height} "
                    f"image, over the {bound:,} it can need"
                )


def check_python_decoder(im: Image.Image, name: str) -> None:
    """Refuse an image that one of Pillow's pure-Python decoders would spend seconds on."""
    tile = getattr(im, "tile", None)  # an image made in memory (Image.new) has none
    codec = tile[0][0] if tile else None
    limit = PYTHON_DECODER_SAMPLES.get(codec) if codec in Image.DECODERS else None
    samples = im.width * im.height * len(im.getbands())
    if limit is not None and samples > limit:
        raise ImageError(
            f"{name}: {_PYTHON_DECODER_NAMES[codec]} of {im.width}x{im.height} has {samples / 1e6:.1f} M "
            f"samples, over the {limit / 1e6:.0f} M decoded in reasonable time"
        )


# -- memory: decoded bytes from the header --------------------------------------------------------
_ORIENTATIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def orientation(im: Image.Image, *, loaded: bool) -> Image.Transpose | None:
    """The transposition the EXIF orientation asks for (``ImageOps.exif_transpose``'s table), or None.

    Malformed EXIF (an unreadable block, an orientation of the wrong type or out of range) is no
    orientation, in every format. Before loading (``loaded=False``) only EXIF that the header already
    holds is read: Pillow would decode a PNG to look for EXIF after its image data."""
    if not loaded and im.format == "PNG" and "exif" not in im.info:
        return None
    try:
        value = im.getexif().get(0x0112)
    except Exception:  # noqa: BLE001 - any failure to parse EXIF means no usable orientation
        return None
    try:
        return _ORIENTATIONS.get(value)  # as exif_transpose looks it up: 6.0 and a rational 6/1 are 6
    except TypeError:  # an unhashable value (a tuple of several)
        return None


def _pixel_bytes(mode: str) -> int:
    """Bytes per pixel in Pillow's storage (RGB is stored in 4)."""
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode.startswith("I;16") else 4


def _to_rgb_bytes(im: Image.Image) -> int:
    """Bytes per pixel that ``preprocess._flatten`` adds beside the decoded frame."""
    mode, transparent = im.mode, "transparency" in im.info
    if mode == "RGB":
        return 0
    if mode == "RGBA":
        return 5  # the RGB canvas and the alpha band
    if mode in ("LA", "La", "PA", "RGBa") or (mode in ("P", "L") and transparent):
        return 9 + (4 if mode == "L" else 0)  # to RGBA, then the canvas and the alpha band
    if mode.startswith("I;16") or mode in ("I", "F"):
        return 5  # 8-bit grey, then RGB
    return 4  # a conversion to RGB


def _decoder_bytes(im: Image.Image, pixels: int, encoded: int) -> int:
    """Buffers a format's decoder holds beside the decoded frame (measured on 16 MP images)."""
    fmt, bands = im.format, len(im.getbands())
    if fmt == "WEBP":
        return 13 * pixels  # libwebp's canvas and the bytes Pillow copies it through (measured 12.8 B/px)
    if fmt == "JPEG2000":
        return (4 * bands + 4) * pixels  # OpenJPEG's 32-bit samples per component (15 B/px for RGB)
    if fmt == "AVIF":
        return 6 * pixels
    if fmt == "HEIF":
        return 4 * pixels
    if fmt == "TIFF":
        tags = getattr(im, "tag_v2", {})
        tw, th = tags.get(322), tags.get(323)
        packed = math.ceil(bands * max(_ints(tags.get(258)) or [8]) / 8)  # bytes per pixel in the file
        if isinstance(tw, int) and isinstance(th, int):
            return tw * th * max(packed, _pixel_bytes(im.mode))  # libtiff's tile buffer
        if im.info.get("compression", "raw") != "raw":  # libtiff, which maps the whole file in memory
            rows = tags.get(278)
            rows = min(rows, im.height) if isinstance(rows, int) and rows > 0 else im.height
            return im.width * rows * packed + encoded  # and its strip buffer
        return 0
    tile = getattr(im, "tile", None)
    if tile and tile[0][0] in Image.DECODERS:
        return 2 * pixels * _pixel_bytes(im.mode)  # a Python decoder's bytearray and its bytes copy
    return 0  # JPEG: see decode_bytes (the coefficients of a multi-scan JPEG); PNG, GIF, BMP, TGA, PPM: none


def _ints(value: object) -> list[int]:
    values = value if isinstance(value, tuple) else (value,)
    return [v for v in values if isinstance(v, int) and 0 < v <= 64]


def decode_bytes(
    im: Image.Image, spec: PreprocessSpec, *, encoded: int = 0, coefficients: int = 0, rotated: bool = False
) -> int:
    """Peak bytes of decoding ``im`` (opened, JPEG draft applied) and preprocessing it for ``spec``:
    the decoded frame in Pillow's storage, the decoder's own buffers, a rotated copy when the EXIF
    orientation asks for one, the conversion to RGB and the resize. ``encoded``: the size of the file or
    bytes (libtiff maps a compressed TIFF whole); ``coefficients``: the DCT coefficient buffer of a
    multi-scan JPEG (libjpeg keeps the full-size image's while it decodes)."""
    w, h = im.size
    pixels = w * h
    frame = pixels * _pixel_bytes(im.mode)
    load = frame + _decoder_bytes(im, pixels, encoded) + coefficients
    rotate = 2 * frame if rotated else 0
    convert = frame + pixels * _to_rgb_bytes(im)
    return max(load, rotate, convert) + _resize_bytes(w, h, spec) + _FIXED


#: Decoder state, scratch strips of the 16-bit conversion and the like: a constant on top of every estimate.
_FIXED = 32 * 1024 * 1024


def _resize_bytes(w: int, h: int, spec: PreprocessSpec) -> int:
    """The resized image and Pillow's intermediate (horizontal pass first) of ``preprocess._resize``."""
    th, tw = spec.size
    if spec.resize == "squash":
        nw, nh = tw, th
    else:
        scale = (min if spec.resize == "letterbox" else max)(tw / w, th / h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    return 4 * (nw * h + nw * nh)


def jpeg_coefficients(im: Image.Image) -> int:
    """Bytes of the DCT coefficients of a JPEG at full size (2 bytes each), from its components' sampling:
    call it before ``draft()`` changes ``im.size``."""
    layers = getattr(im, "layer", None) or [("", 1, 1, 0)] * len(im.getbands())
    hmax = max(layer[1] for layer in layers) or 1
    vmax = max(layer[2] for layer in layers) or 1
    w, h = im.size
    total = 0
    for _, hs, vs, _ in layers:
        total += math.ceil(math.ceil(w * hs / hmax) / 8) * math.ceil(math.ceil(h * vs / vmax) / 8) * 128
    return total


# -- the bytes in flight --------------------------------------------------------------------------
#: After a decode estimated above this, freed memory is handed back to the system (see :func:`trim`).
TRIM_ABOVE = 64 * 1024 * 1024
_malloc_trim: Callable[[int], int] | None | bool = False  # False: not looked up yet


def trim(nbytes: int) -> None:
    """Hand freed heap memory back to the system after a decode of ``nbytes`` over :data:`TRIM_ABOVE`.

    Pillow allocates images in 16 MB blocks; once glibc has freed one such mapped block it serves the next
    ones from its heap, which it keeps: 4 workers that had each decoded one 490 MB image held 2.2 GB
    between decodes. ``malloc_trim`` (glibc only; elsewhere nothing is done) returns the free pages.
    """
    global _malloc_trim
    if nbytes <= TRIM_ABOVE:
        return
    if _malloc_trim is False:
        try:
            import ctypes

            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = None
    if _malloc_trim is not None:
        _malloc_trim(0)


class DecodeBudget:
    """A weighted semaphore over bytes, first come first served: decodes reserve their estimate before
    they start and release it when done, so that the decodes in flight together stay within ``total``.
    A request over ``total`` waits until nothing else is in flight and then runs alone."""

    def __init__(self, total: int) -> None:
        if not isinstance(total, int) or total < 1:
            raise ValueError(f"total must be a positive int, got {total!r}")
        self.total = total
        self.in_flight = 0
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()

    def acquire(self, nbytes: int) -> int:
        """Wait until ``nbytes`` (clamped to ``total``) fit; returns what was reserved, for :meth:`release`."""
        nbytes = min(max(int(nbytes), 0), self.total)
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            while self._queue[0] is not ticket or self.in_flight + nbytes > self.total:
                self._cond.wait()
            self._queue.popleft()
            self.in_flight += nbytes
            self._cond.notify_all()
        return nbytes

    def release(self, nbytes: int) -> None:
        with self._cond:
            self.in_flight -= nbytes
            self._cond.notify_all()

    @contextmanager
    def hold(self) -> Iterator[Callable[[int], None]]:
        """A ``reserve(nbytes)`` function for one decode; what it reserved is released at exit."""
        held: list[int] = []

        def reserve(nbytes: int) -> None:
            held.append(self.acquire(nbytes))

        try:
            yield reserve
        finally:
            for n in held:
                self.release(n)
            trim(sum(held))
