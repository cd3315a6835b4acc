"""Opening untrusted image files and bytes for :mod:`redaes_lite.preprocess`: size limits before any read,
regular files only, a short list of decoders, and JPEG scan bombs refused from a scan count.

Found by fuzzing (``benchmarks/fuzz.py``, ``tests/test_fuzz.py``): every rule here answers an input that
hung, crashed or took seconds.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import warnings
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image, UnidentifiedImageError, features

from ._cost import check_structure
from .errors import ImageError

__all__ = [
    "DECODED_FORMATS",
    "DECODE_ERRORS",
    "check_jpeg_scans",
    "first_line",
    "open_image",
    "over_limit",
    "read_source",
]

# The formats we decode (those of the CLI's image extensions; JPEG covers MPO). Pillow would otherwise
# try every plugin it has on untrusted bytes, EPS (Ghostscript) and a dozen rarely fuzzed decoders included.
DECODED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP", "HEIF", "AVIF", "JPEG2000", "PPM", "TGA")
# libjpeg decodes every scan of a progressive (or non-interleaved) JPEG over all blocks of the full-size
# image (draft() only shrinks the output), so a small file that repeats a scan costs ~0.7 ns per pixel
# per scan: 1,000 scans of a 64 MP image took 46 s. Limit the scans (as libjpeg-turbo advises) and
# pixels x scans (~1 s here).
_JPEG_MAX_SCANS = 500
_JPEG_SCAN_BUDGET = 1_500_000_000
_SOS = b"\xff\xda"  # start-of-scan marker; entropy-coded data never contains it (0xFF is stuffed)
# What Pillow and its plugins raise on corrupt or hostile data (found by fuzzing: EXIF parsing raises
# struct.error, the AVIF and HEIF decoders RuntimeError, header parsers Lookup/Type/Arithmetic errors).
DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    LookupError,
    TypeError,
    AttributeError,
    ArithmeticError,
    RuntimeError,
    struct.error,
)
# ISO BMFF brands of the formats pillow-heif opens (HEIC/HEIF/AVIF).
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis")


def over_limit(size: int, limit: int, big: str, small: str) -> tuple[str, str]:
    """``size`` and ``limit`` for a message, in millions (``big``: "MP", "MB") from 100,000 up, else whole
    ``small`` units ("px", "bytes"); exact counts where the rounded figures would read the same."""

    def text(n: int) -> str:
        return f"{n / 1e6:.1f} {big}" if n >= 100_000 else f"{n:,} {small}"

    a, b = text(size), text(limit)
    return (f"{size:,} {small}", f"{limit:,} {small}") if a == b else (a, b)


def _heif_brand(head: bytes) -> bytes | None:
    """The ISO BMFF brand of HEIC/HEIF/AVIF data, else None."""
    if len(head) >= 12 and head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return head[8:12]
    return None


def _register_heif(name: str, brand: bytes) -> None:
    try:
        import pillow_heif  # type: ignore[import-not-found]
    except ImportError:
        if brand.startswith(b"avi") and features.check("avif"):
            return  # this Pillow decodes AVIF itself
        raise ImageError(f"{name}: HEIC/HEIF/AVIF image needs pillow-heif: pip install 'redaes-lite[heif]'") from None
    pillow_heif.register_heif_opener()


def _open_file(path: Path, name: str, max_bytes: int | None) -> BinaryIO:
    """Open a regular file for reading and check its size from ``fstat`` before reading a byte.

    ``O_NONBLOCK`` makes opening a FIFO return at once (it is then refused) instead of waiting for a writer.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{name}: is a directory, not an image") from None
    except PermissionError:
        raise ImageError(f"{name}: permission denied") from None
    except OSError as e:
        raise ImageError(f"{name}: cannot read ({e.strerror or e})") from None
    except ValueError:  # no file system takes a NUL byte in a name; os.open says so with a ValueError
        shown = name.replace("\0", "\\x00")
        raise ImageError(f"{shown}: path contains a NUL byte") from None
    st = os.fstat(fd)
    problem = None
    if stat.S_ISDIR(st.st_mode):
        problem = "is a directory, not an image"
    elif not stat.S_ISREG(st.st_mode):
        problem = "not a regular file (a device, pipe or socket)"
    elif st.st_size == 0:
        problem = "empty file (0 bytes)"
    elif max_bytes is not None and st.st_size > max_bytes:
        size, limit = over_limit(st.st_size, max_bytes, "MB", "bytes")
        problem = f"file is {size}, over max_bytes {limit}"
    if problem:
        os.close(fd)
        raise ImageError(f"{name}: {problem}")
    return os.fdopen(fd, "rb")


def read_source(x: Any, name: str, max_bytes: int | None) -> BinaryIO:
    """A seekable binary stream over a path or bytes input, size-checked before reading."""
    if isinstance(x, (str, os.PathLike)):
        return _open_file(Path(x), name, max_bytes)
    size = x.nbytes if isinstance(x, memoryview) else len(x)
    if not size:
        raise ImageError(f"{name}: empty input (0 bytes)")
    if max_bytes is not None and size > max_bytes:
        have, limit = over_limit(size, max_bytes, "MB", "bytes")
        raise ImageError(f"{name}: input is {have}, over max_bytes {limit}")
    return io.BytesIO(x)


def _count_scans(f: BinaryIO) -> int:
    """Start-of-scan markers in a JPEG stream, read in 1 MiB chunks (a marker may straddle two). Markers
    inside APPn payloads count too, which only errs on the safe side. The stream position is kept."""
    pos = f.tell()
    f.seek(0)
    count, tail = 0, b""
    while chunk := f.read(1 << 20):
        count += (tail + chunk).count(_SOS)
        tail = chunk[-1:]
    f.seek(pos)
    return count


def _single_scan(f: BinaryIO, components: int) -> bool:
    """Whether a sequential JPEG's first scan holds all its components: libjpeg then refuses a second
    scan, so there is nothing to count. Walks the header segments up to the first SOS."""
    pos = f.tell()
    try:
        f.seek(2)
        for _ in range(1000):  # header segments; a real file has a few dozen at most
            head = f.read(5)
            if len(head) < 5 or head[0] != 0xFF:
                return False
            if head[1] == 0xDA:
                return head[4] == components
            length = struct.unpack(">H", head[2:4])[0]
            if length < 2:
                return False
            f.seek(length - 3, os.SEEK_CUR)
        return False
    finally:
        f.seek(pos)


def check_jpeg_scans(im: Image.Image, f: BinaryIO, name: str) -> bool:
    """Refuse a JPEG whose scans would take too long to decode (see ``_JPEG_SCAN_BUDGET``). Returns whether
    it has several scans (libjpeg then holds the whole image's coefficients while it decodes)."""
    if not im.info.get("progressive") and _single_scan(f, len(im.getbands())):
        return False
    pixels = im.width * im.height
    scans = _count_scans(f)
    limit = min(_JPEG_MAX_SCANS, max(1, _JPEG_SCAN_BUDGET // max(pixels, 1)))
    if scans > limit:
        raise ImageError(f"{name}: JPEG has {scans} scans, over the limit of {limit} for its size (too slow to decode)")
    return True


def open_image(f: BinaryIO, name: str) -> Image.Image:
    """Open lazily (header only) from a stream, trying only :data:`DECODED_FORMATS`."""
    head = f.read(16)
    f.seek(0)
    brand = _heif_brand(head)
    if brand is not None:
        _register_heif(name, brand)
    check_structure(f, name, head)
    try:
        with warnings.catch_warnings():
            # Our own max_pixels check replaces Pillow's bomb warning; its hard error still counts.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            Image.init()  # Pillow's own plugins (once); pillow-heif registers HEIF/AVIF when first needed
            return Image.open(f, formats=[fmt for fmt in DECODED_FORMATS if fmt in Image.OPEN])
    except Image.DecompressionBombError as e:
        raise ImageError(f"{name}: decompression bomb refused ({e})") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not a recognised image format") from None
    except DECODE_ERRORS as e:
        raise ImageError(f"{name}: cannot open image ({first_line(e)})") from None


def first_line(e: BaseException) -> str:
    """An exception as a short single line (decoder messages may quote header bytes at length)."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text if len(text) <= 160 else text[:159] + "…"
