"""Fuzzing kit for the image loading path: seed files, hostile headers and byte mutators.

Shared by ``tests/test_fuzz.py`` (short, seeded, in CI) and ``benchmarks/fuzz.py`` (the long campaign).
Everything is deterministic: mutations are lists of ``(op, a, b)`` integer triples, so hypothesis can
draw and shrink them and the campaign can draw them from a seeded ``random.Random``.

The oracle is :func:`check`: an input must end in a float32 ``[3, H, W]`` array of finite values or a
:class:`~redaes_lite.errors.RedaesError`; anything else propagates and is a finding.
"""

from __future__ import annotations

import functools
import io
import struct
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, TiffImagePlugin

from redaes_lite.errors import RedaesError
from redaes_lite.preprocess import PreprocessSpec, load_image, to_array

__all__ = [
    "SPEC",
    "check",
    "hostile",
    "exif_bytes",
    "exif_raw",
    "jpeg_with_scans",
    "png",
    "seeds",
]

SPEC = PreprocessSpec(size=(32, 32))
#: Field values that break parsers: zero, one, sign and width boundaries.
INTERESTING = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)


def check(
    data: bytes | Path, *, spec: PreprocessSpec = SPEC, max_pixels: int | None = 120_000_000
) -> tuple[str, str, float]:
    """Run one input (bytes or a file) through ``load_image`` + ``to_array``: ``("ok" | "error", message,
    seconds)``.

    Any exception other than ``RedaesError`` escapes (a finding), as does a wrong or non-finite array.
    """
    t0 = time.perf_counter()
    try:
        arr = to_array(load_image(data, spec, max_pixels=max_pixels), spec)
    except RedaesError as e:
        return "error", str(e), time.perf_counter() - t0
    if arr.shape != (3, *spec.size) or arr.dtype != np.float32 or not np.isfinite(arr).all():
        raise AssertionError(f"bad array {arr.shape} {arr.dtype} finite={np.isfinite(arr).all()}")
    return "ok", "", time.perf_counter() - t0


# -- building blocks -----------------------------------------------------------------------------
def _photo(w: int = 48, h: int = 36, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    arr = np.stack([255 * x / w, 255 * y / h, 128 + 60 * np.sin(x / 5.0)], axis=-1) + rng.normal(0, 10, (h, w, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def _save(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def exif_bytes(orientation: object = None, *, description_len: int = 0) -> bytes:
    """EXIF (``Exif\\0\\0``-less TIFF form as Pillow writes it) with an orientation value and a long text."""
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    if description_len:
        exif[0x010E] = "x" * description_len
    return exif.tobytes()


def exif_raw(kind: int, count: int, value: bytes) -> bytes:
    """``Exif\\0\\0`` + a big-endian IFD whose orientation entry has any type, count and value (4 bytes
    inline, longer values right after the IFD)."""
    inline = value if len(value) <= 4 else struct.pack(">I", 8 + 2 + 12 + 4)
    ifd = struct.pack(">HHHI", 1, 0x0112, kind, count) + inline.ljust(4, b"\x00") + b"\x00" * 4
    return b"Exif\x00\x00MM\x00*" + struct.pack(">I", 8) + ifd + (value if len(value) > 4 else b"")


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png(
    width: int,
    height: int,
    *,
    depth: int = 8,
    colour: int = 2,
    chunks: Sequence[tuple[bytes, bytes]] = (),
    raw: bytes | None = None,
    interlace: int = 0,
) -> bytes:
    """A PNG with any header values and extra chunks (before IDAT), CRCs correct so parsers go deep."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    body = _chunk(b"IHDR", ihdr) + b"".join(_chunk(k, v) for k, v in chunks)
    idat = zlib.compress(raw if raw is not None else b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + body + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def fix_png_crcs(data: bytes) -> bytes:
    """Recompute every chunk CRC of a (mutated) PNG, so that a mutation reaches the chunk's parser."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return data
    out, i = bytearray(data[:8]), 8
    while i + 12 <= len(data):
        n = struct.unpack(">I", data[i : i + 4])[0]
        end = i + 8 + n
        if end + 4 > len(data):
            break
        out += data[i:end] + struct.pack(">I", zlib.crc32(data[i + 4 : end]))
        i = end + 4
    return bytes(out + data[i:])


def _jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """``(start, end, marker)`` of each JPEG segment; a scan runs to the next real marker."""
    segs, i = [], 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        m = data[i + 1]
        if m == 0xD9:
            segs.append((i, i + 2, m))
            break
        end = i + 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
        if m == 0xDA:
            while (end := data.find(b"\xff", end)) != -1 and (data[end + 1] == 0 or 0xD0 <= data[end + 1] <= 0xD7):
                end += 2
            end = len(data) if end == -1 else end
        segs.append((i, end, m))
        i = end
    return segs


def jpeg_with_scans(extra: int, *, width: int | None = None, height: int | None = None, seed: int = 0) -> bytes:
    """A small progressive JPEG whose last scan is repeated ``extra`` times (libjpeg decodes each one over
    the whole image), optionally with its SOF dimensions patched to ``width`` x ``height``."""
    data = _save(_photo(32, 24, seed).convert("L"), "JPEG", progressive=True, quality=80)
    segs = _jpeg_segments(data)
    last = [s for s in segs if s[2] == 0xDA][-1]
    data = data[: last[1]] + data[last[0] : last[1]] * extra + data[last[1] :]
    if width is not None and height is not None:
        sof = next(s for s in segs if s[2] in (0xC0, 0xC1, 0xC2))
        data = data[: sof[0] + 5] + struct.pack(">HH", height, width) + data[sof[0] + 9 :]
    return data


# -- seeds ---------------------------------------------------------------------------------------
def _tiff(im: Image.Image, **kw) -> bytes:
    return _save(im, "TIFF", **kw)


def _animated(fmt: str, **kw) -> bytes:
    frames = [_photo(24, 18, s) for s in range(3)]
    return _save(frames[0], fmt, save_all=True, append_images=frames[1:], **kw)


def _optional(make: Callable[[], bytes]) -> bytes | None:
    try:
        return make()
    except (OSError, KeyError, ValueError, ImportError):  # encoder not built into this Pillow
        return None


@functools.cache
def seeds() -> dict[str, bytes]:
    """Small valid files in every format and mode the loader handles (those this Pillow can write)."""
    im = _photo()
    p_trans = im.convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    p_trans.info["transparency"] = 0
    i16 = Image.fromarray((np.arange(48 * 36).reshape(36, 48) * 37 % 65536).astype(np.uint16))
    ifd = TiffImagePlugin.ImageFileDirectory_v2()
    ifd[274] = 6  # orientation in a TIFF's own tags
    makers: dict[str, Callable[[], bytes]] = {
        "jpeg": lambda: _save(im, "JPEG", quality=85),
        "jpeg-progressive": lambda: _save(im, "JPEG", quality=85, progressive=True),
        "jpeg-grey": lambda: _save(im.convert("L"), "JPEG"),
        "jpeg-cmyk": lambda: _save(im.convert("CMYK"), "JPEG"),
        "jpeg-exif6": lambda: _save(im, "JPEG", exif=exif_bytes(6)),
        "jpeg-exif-huge": lambda: _save(im, "JPEG", exif=exif_bytes(3, description_len=60_000)),
        "mpo": lambda: _save(im, "MPO", save_all=True, append_images=[_photo(seed=1)]),
        "png": lambda: _save(im, "PNG"),
        "png-rgba": lambda: _save(im.convert("RGBA"), "PNG"),
        "png-la": lambda: _save(im.convert("LA"), "PNG"),
        "png-p-trns": lambda: _save(p_trans, "PNG"),
        "png-1bit": lambda: _save(im.convert("1"), "PNG"),
        "png-16": lambda: _save(i16, "PNG"),
        "png-exif8": lambda: _save(im, "PNG", exif=exif_bytes(8)),
        "png-exif-huge": lambda: _save(im, "PNG", exif=exif_bytes(2, description_len=200_000)),
        "png-interlaced": lambda: png(8, 8, raw=_adam7_rows(8, 8), interlace=1),
        "apng": lambda: _animated("PNG"),
        "gif": lambda: _save(im, "GIF"),
        "gif-animated": lambda: _animated("GIF", loop=0, duration=50),
        "gif-transparent": lambda: _save(p_trans, "GIF", transparency=0),
        "webp": lambda: _save(im, "WEBP", quality=80),
        "webp-lossless-alpha": lambda: _save(im.convert("RGBA"), "WEBP", lossless=True),
        "webp-animated": lambda: _animated("WEBP"),
        "webp-exif": lambda: _save(im, "WEBP", exif=exif_bytes(5)),
        "tiff": lambda: _tiff(im),
        "tiff-lzw": lambda: _tiff(im, compression="tiff_lzw"),
        "tiff-deflate": lambda: _tiff(im, compression="tiff_adobe_deflate"),
        "tiff-jpeg": lambda: _tiff(im, compression="jpeg"),
        "tiff-cmyk": lambda: _tiff(im.convert("CMYK")),
        "tiff-i16": lambda: _tiff(i16),
        "tiff-float": lambda: _tiff(im.convert("F")),
        "tiff-orientation": lambda: _tiff(im, tiffinfo=ifd),
        "tiff-multipage": lambda: _animated("TIFF"),
        "bmp": lambda: _save(im, "BMP"),
        "bmp-palette": lambda: _save(im.convert("P"), "BMP"),
        "ppm": lambda: _save(im, "PPM"),
        "pgm-16": lambda: _save(i16, "PPM"),
        "tga-rle": lambda: _save(im, "TGA", compression="tga_rle"),
        "jpeg2000": lambda: _save(im, "JPEG2000"),
        "avif": lambda: _save(im, "AVIF", quality=60),
        "heic": _heic,
    }
    made = {name: _optional(make) for name, make in makers.items()}
    return {name: data for name, data in made.items() if data}


def _adam7_rows(w: int, h: int) -> bytes:
    """Raw rows of an interlaced RGB PNG (Pillow cannot write one): each pass's rows, filter byte 0."""
    passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
    out = b""
    for x0, y0, dx, dy in passes:
        pw, ph = len(range(x0, w, dx)), len(range(y0, h, dy))
        out += b"".join(b"\x00" + bytes((7 * i + 11 * r) % 256 for i in range(3 * pw)) for r in range(ph if pw else 0))
    return out


def _heic() -> bytes:
    import pillow_heif

    pillow_heif.register_heif_opener()
    return _save(_photo(), "HEIF", quality=60)


# -- hostile structures --------------------------------------------------------------------------
def _gif_screen(w: int, h: int) -> bytes:
    """A GIF whose logical screen and first frame claim w x h."""
    data = bytearray(seeds()["gif"])
    data[6:10] = struct.pack("<HH", w, h)
    at = data.index(b"\x2c", 13 + 3 * 256 if data[10] & 0x80 else 13)
    data[at + 5 : at + 9] = struct.pack("<HH", w, h)
    return bytes(data)


def _bmp(w: int, h: int, bpp: int = 24) -> bytes:
    header = struct.pack("<IiiHHIIiiII", 40, w, h, 1, bpp, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + 64, 0, 0, 54) + header + b"\x00" * 64


def _palette_png(entries: int, trns: int, value: int) -> bytes:
    """Palette tricks: a PLTE with ``entries`` colours, a tRNS of ``trns`` bytes, pixels of ``value``."""
    plte = bytes(i % 256 for i in range(3 * entries))
    chunks = [(b"PLTE", plte)] + ([(b"tRNS", b"\x80" * trns)] if trns else [])
    return png(8, 8, colour=3, chunks=chunks, raw=b"".join(b"\x00" + bytes([value]) * 8 for _ in range(8)))


def _tiff_tags(w: int, h: int, *, bits: int = 8, samples: int = 3, photometric: int = 2) -> bytes:
    """A minimal little-endian TIFF with any width, height, bits and samples (strip of 64 zero bytes)."""
    tags = [
        (256, 4, w),
        (257, 4, h),
        (258, 3, bits),
        (259, 3, 1),
        (262, 3, photometric),
        (273, 4, 8 + 2 + 12 * 9 + 4),
        (277, 3, samples),
        (278, 4, max(h, 1)),
        (279, 4, 64),
    ]
    ifd = struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", t, k, 1, v) for t, k, v in tags)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00\x00\x00\x00" + b"\x00" * 64


_DIMS = (
    (0, 0),
    (1, 0),
    (0, 1),
    (1, 1),
    (1, 100_000_000),
    (100_000_000, 1),
    (65535, 65535),
    (16384, 16384),
    (0x7FFFFFFF, 0x7FFFFFFF),
    (0xFFFFFFFF, 1),
    (11_000, 11_000),
)


@functools.cache
def hostile() -> dict[str, bytes]:
    """Crafted inputs: absurd dimensions per format, huge and wrong EXIF, palette tricks, scan bombs."""
    out: dict[str, bytes] = {}
    for w, h in _DIMS:
        out[f"png-{w}x{h}"] = png(w, h)
        out[f"tiff-{w}x{h}"] = _tiff_tags(w, h)
        if w < 65536 and h < 65536:
            out[f"gif-{w}x{h}"] = _gif_screen(w, h)
            out[f"jpeg-sof-{w}x{h}"] = jpeg_with_scans(0, width=w, height=h)
        if w < 2**31 and h < 2**31:
            out[f"bmp-{w}x{h}"] = _bmp(w, h)
            out[f"bmp-topdown-{w}x{h}"] = _bmp(w, -h)
    for value in (0, 9, 255, 65535):
        out[f"exif-orientation-{value}"] = _save(_photo(), "JPEG", exif=exif_bytes(value))
    weird = {
        "ascii": (2, 3, b"up\x00"),
        "pair": (3, 2, b"\x00\x01\x00\x06"),
        "rational": (5, 1, b"\x00\x00\x00\x06" * 2),
        "float": (11, 1, struct.pack(">f", 6.0)),
        "count-huge": (3, 0x7FFFFFFF, b"\x00\x06"),
        "type-99": (99, 1, b"\x00\x06"),
    }
    for label, (kind, count, value) in weird.items():
        out[f"exif-orientation-{label}"] = _save(_photo(), "JPEG", exif=exif_raw(kind, count, value))
    out["exif-huge-png"] = _save(_photo(), "PNG", exif=exif_bytes(6, description_len=2_000_000))
    grey = b"\x00" * 9 * 8  # 8 rows of an 8-px grey PNG
    garbage = b"MM\x00*\x00\x00\x00\x08\xff\xff" + b"\x01" * 64  # 65535 entries promised, 5 there
    # one entry: the EXIF IFD pointer (0x8769), pointing back at this IFD
    loop = b"II*\x00\x08\x00\x00\x00\x01\x00\x69\x87\x04\x00\x01\x00\x00\x00\x08\x00\x00\x00" + b"\x00" * 4
    out["exif-garbage"] = png(8, 8, colour=0, raw=grey, chunks=[(b"eXIf", garbage)])
    out["exif-loop"] = png(8, 8, colour=0, raw=grey, chunks=[(b"eXIf", loop)])
    for entries, trns, value in ((1, 0, 255), (1, 300, 7), (0, 0, 0), (256, 256, 255), (2, 1, 200), (300, 0, 1)):
        out[f"palette-{entries}-trns{trns}-px{value}"] = _palette_png(entries, trns, value)
    out["grey-trns-out-of-range"] = png(8, 8, depth=2, colour=0, chunks=[(b"tRNS", b"\xff\xff")], raw=b"\x00" * 24)
    out["tiff-16-samples"] = _tiff_tags(8, 8, samples=16)
    out["tiff-bits-0"] = _tiff_tags(8, 8, bits=0)
    out["tiff-lab"] = _tiff_tags(8, 8, photometric=8)
    out["tiff-ycbcr"] = _tiff_tags(8, 8, photometric=6)
    out["jpeg-scan-bomb-small"] = jpeg_with_scans(600)
    out["jpeg-scan-bomb-64mp"] = jpeg_with_scans(60, width=8000, height=8000)
    # the cost bombs below, small (their checks trigger on structure) or tiny at full size
    out["tiff-strip-flood"] = tiff_many_strips(1000, width=10, height=10)
    out["bmp-rle8-rows"] = bmp_rle8_rows(300, 30)
    out["jpeg-fill"] = jpeg_fill(3000)
    out["png-chunk-flood"] = png_many_chunks(300)
    out["ppm16"] = ppm16(30, 30)
    out["webp-lossless-10950"] = webp_lossless_zeros(10_950, 10_950)
    out["gif-screen-10950"] = gif_screen(10_950, 10_950)
    out["png-rgba-zeros"] = png_zeros(300, 300)
    return out


# -- cost bombs: small files that pass the size limits but cost seconds or gigabytes ----------------
# Each takes its size, so that the tests can build a scaled-down one and a lowered limit, and
# a benchmark the full-size ones. Writers stream to a file where the bomb is big.
def tiff_many_strips(entries: int, *, width: int = 100, height: int = 100) -> bytes:
    """A greyscale TIFF whose StripOffsets and StripByteCounts (one shared array) hold ``entries`` values."""
    tags = [
        (256, 3, 1, width),
        (257, 3, 1, height),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 4, entries, 0),
        (277, 3, 1, 1),
        (278, 4, 1, 1),
        (279, 4, entries, 0),
    ]
    array_at = 8 + 2 + 12 * len(tags) + 4
    ifd = struct.pack("<H", len(tags))
    for tag, kind, count, value in tags:
        ifd += struct.pack("<HHII", tag, kind, count, array_at if count > 1 else value)
    # Each strip: 8 bytes at offset 8 (the IFD itself); the array says (8, 8, 8, ...) for offsets and counts.
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00" * 4 + struct.pack("<I", 8) * entries


def bmp_rle8_rows(width: int, height: int) -> bytes:
    """An 8-bit RLE BMP of ``width`` x ``height`` whose every row is one pixel, then end of line."""
    data = b"\x01\x00\x00\x00" * height + b"\x00\x01"
    palette = b"\x00\x00\x00\x00" * 256
    header = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(data), 2835, 2835, 256, 0)
    offset = 14 + 40 + len(palette)
    return b"BM" + struct.pack("<IHHI", offset + len(data), 0, 0, offset) + header + palette + data


def jpeg_fill(fill: int) -> bytes:
    """A small JPEG with ``fill`` 0xFF fill bytes after a COM segment (legal, read a byte at a time)."""
    data = _save(_photo(), "JPEG", quality=80)
    return data[:2] + b"\xff\xfe\x00\x04hi" + b"\xff" * fill + data[2:]


def png_many_chunks(chunks: int, *, width: int = 8, height: int = 8) -> bytes:
    """An 8-bit greyscale PNG with ``chunks`` empty unknown ancillary chunks before its image data."""
    empty = _chunk(b"zzZz", b"")
    raw = (b"\x00" + b"\x80" * width) * height
    return png(width, height, colour=0, raw=raw)[:33] + empty * chunks + png(width, height, colour=0, raw=raw)[33:]


def ppm16(width: int, height: int, *, maxval: int = 65535) -> bytes:
    """A binary 16-bit RGB PPM of zeros (Pillow decodes it in Python, sample by sample)."""
    return b"P6 %d %d %d\n" % (width, height, maxval) + bytes(6 * width * height)


def webp_lossless_zeros(width: int, height: int) -> bytes:
    """A lossless WebP of ``width`` x ``height`` transparent black pixels in 34 bytes: five one-symbol
    prefix codes, so that each pixel takes no bits at all (sides up to 16,384)."""
    bits = [(0x2F, 8), (width - 1, 14), (height - 1, 14), (1, 1), (0, 3), (0, 1), (0, 1), (0, 1)]
    bits += [(1, 1), (0, 1), (0, 1), (0, 1)] * 5  # simple code, 1 symbol, 1-bit symbol, symbol 0
    acc = n = 0
    for value, width_bits in bits:
        acc |= value << n
        n += width_bits
    payload = acc.to_bytes((n + 7) // 8, "little")
    if len(payload) % 2:
        payload += b"\x00"
    chunk = b"VP8L" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def png_zeros(width: int, height: int, *, colour: int = 6, level: int = 9) -> bytes:
    """An 8-bit PNG (RGBA by default) of zeros, compressed row by row: 10,950² RGBA is 466 KB."""
    row = b"\x00" * (1 + width * {0: 1, 2: 3, 4: 2, 6: 4}[colour])
    z = zlib.compressobj(level)
    parts = [z.compress(row) for _ in range(height)] + [z.flush()]
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")


def gif_screen(width: int, height: int) -> bytes:
    """A 43-byte GIF: a ``width`` x ``height`` logical screen holding one 1 x 1 frame."""
    header = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return header + frame + b"\x3b"
