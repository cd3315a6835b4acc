"""The one pixel path of redaes-lite: image loading and preprocessing.

Training (``distill``), export (``export``) and inference (``redaes_lite``) all call :func:`load_image`
and :func:`preprocess`, so every stage sees exactly the same pixels. Mobile apps re-implement this
module from ``docs/model-format.md`` (section 4, "Preprocessing") and ``examples/EMBEDDING.md``.

Order of operations (each step is part of the contract):

1. open lazily and check the pixel count from the header against ``max_pixels``;
2. JPEG: ``im.draft("RGB", (2 * W, 2 * H))`` for a model input of W x H, so a 12 MP photo is decoded
   at a DCT-reduced size (Pillow picks the largest reduction keeping both sides >= the request);
   the bytes the decode will need are estimated from the header and checked against ``max_decode_bytes``
   (``redaes_lite._cost``: a limit on work, not on pixels, so it changes no pixel);
3. first frame of animations; EXIF orientation applied (malformed EXIF: no orientation, in every format);
4. every mode to RGB: alpha (and palette transparency) composited on ``pad``; 16-bit and float
   greyscale scaled to 8 bits by their range; CMYK through Pillow's conversion;
5. resize (``letterbox`` | ``squash`` | ``center_crop``) with Pillow's antialiased filter;
6. ``(x / 255 - mean) / std`` per channel, float32 NCHW. Letterbox padding is written in the
   normalised domain as ``(pad - mean) / std``, i.e. exactly the value a ``pad`` pixel would take.
"""

from __future__ import annotations

import json
import os
import threading
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

from ._cost import check_python_decoder, decode_bytes, jpeg_coefficients, orientation
from ._safe_open import DECODE_ERRORS, check_jpeg_scans, first_line, open_image, over_limit, read_source
from .errors import ImageError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DECODE_BYTES",
    "DEFAULT_MAX_PIXELS",
    "ImageInput",
    "PreprocessSpec",
    "decoding",
    "describe_input",
    "load_image",
    "preprocess",
    "to_array",
]

#: Default limit on decoded pixels (width x height from the header): enough for 100 MP photos.
DEFAULT_MAX_PIXELS = 120_000_000
#: Default limit on the size of an encoded image (file or bytes), checked before it is read.
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
#: Default limit on the memory one decode may need (decoder buffers, decoded frame, conversion to RGB,
#: rotation, resize), estimated from the header before decoding: an RGB PNG or TIFF up to 120 MP, RGBA up to
#: 55 MP, a WebP up to 29 MP; JPEGs decode at draft size. :class:`~redaes_lite.Scorer` also keeps
#: the total of its decodes in flight within it.
DEFAULT_MAX_DECODE_BYTES = 512 * 1024 * 1024

ImageInput = str | os.PathLike | bytes | bytearray | memoryview | Image.Image | np.ndarray

# Longest side accepted (JPEG's own limit). Decoders spend ~50 ns per row whatever its width, so a 69-byte
# PNG claiming 1 x 100,000,000 pixels (under max_pixels) took 4 s; real photos are far from this.
_MAX_SIDE = 65_535
# Bounds of a usable spec: a model input of at most 8,192 a side, and std >= 0.001 so that a pixel step
# (1/255) is at most ~4 units after normalisation (a model reading 0..255 has std 1/255 = 0.0039); a tiny
# std would turn every input into infinities.
_MAX_INPUT_SIDE = 8192
_MIN_STD = 0.001
_RESIZE_MODES = ("letterbox", "squash", "center_crop")
_INTERPOLATION = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}


@dataclass(frozen=True)
class PreprocessSpec:
    """How a model wants its pixels; stored in checkpoints and in ONNX ``redaes.preprocess``.

    ``size`` is ``(H, W)``; ``pad``, ``mean`` and ``std`` are RGB in 0..1.
    """

    size: tuple[int, int] = (224, 224)
    resize: str = "letterbox"
    interpolation: str = "bilinear"
    antialias: bool = True
    pad: tuple[float, float, float] = (0.485, 0.456, 0.406)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __post_init__(self) -> None:
        # Normalise lists (from JSON) to tuples so specs compare and hash by value.
        for name in ("size", "pad", "mean", "std"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "size", tuple(int(s) for s in self.size))
        if len(self.size) != 2 or min(self.size) < 1:
            raise ValueError(f"preprocess size must be [H, W] with positive sides, got {list(self.size)}")
        if self.resize not in _RESIZE_MODES:
            raise ValueError(f"preprocess resize must be one of {_RESIZE_MODES}, got {self.resize!r}")
        if self.interpolation not in _INTERPOLATION:
            raise ValueError(
                f"preprocess interpolation must be one of {tuple(_INTERPOLATION)}, got {self.interpolation!r}"
            )
        if not self.antialias:
            # Pillow's resampling filters always widen their support when downscaling.
            raise ValueError("preprocess antialias=false is not supported (Pillow resizes with antialiasing)")
        if max(self.size) > _MAX_INPUT_SIDE:  # one such image would be gigabytes of float32
            raise ValueError(f"preprocess size must be at most {_MAX_INPUT_SIDE} a side, got {list(self.size)}")
        for name, low in (("pad", 0.0), ("mean", 0.0), ("std", _MIN_STD)):
            values = getattr(self, name)
            if len(values) != 3:
                raise ValueError(f"preprocess {name} must have 3 values (RGB), got {list(values)}")
            # NaN passes every comparison, so the range is checked as "inside", not as "not outside".
            ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) and low <= v <= 1 for v in values)
            if not ok:
                raise ValueError(f"preprocess {name} must be 3 numbers in [{low:g}, 1], got {list(values)}")

    @property
    def height(self) -> int:
        return self.size[0]

    @property
    def width(self) -> int:
        return self.size[1]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessSpec:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown preprocess keys: {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> PreprocessSpec:
        return cls.from_dict(json.loads(text))


def describe_input(x: Any) -> str:
    """A short printable name for an input: the path as given, else a description of the object."""
    if isinstance(x, (str, os.PathLike)):
        return str(x)
    if isinstance(x, (bytes, bytearray, memoryview)):
        return f"<{len(x)} bytes>"
    if isinstance(x, np.ndarray):
        return f"<array {x.shape} {x.dtype}>"
    if isinstance(x, Image.Image):
        return f"<PIL image {x.mode} {x.width}x{x.height}>"
    return f"<{type(x).__name__}>"


def _to_8bit(im: Image.Image) -> Image.Image:
    """16-bit and 32-bit int/float greyscale -> ``L``. 16-bit files use their full range; 32-bit data
    is scaled by its own finite range unless it already fits 8 bits (NaN -> low end, inf -> ends).

    Converted in strips of rows so that a 100 MP image needs a few MB of float64 scratch, not 800 MB.
    """
    w, h = im.size
    rows = max(1, (1 << 20) // w)
    strips = [(y, min(h, y + rows)) for y in range(0, h, rows)]

    def strip(y0: int, y1: int) -> np.ndarray:
        return np.asarray(im.crop((0, y0, w, y1)), dtype=np.float64)

    if im.mode.startswith("I;16"):
        lo, hi = 0.0, 65535.0
    else:
        lo, hi = np.inf, -np.inf
        for y0, y1 in strips:
            finite = strip(y0, y1)
            finite = finite[np.isfinite(finite)]
            if finite.size:
                lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
        if lo > hi:  # no finite value at all
            lo, hi = 0.0, 1.0
        elif lo >= 0 and hi <= 255:
            lo, hi = 0.0, 255.0
    out = np.empty((h, w), np.uint8)
    for y0, y1 in strips:
        arr = np.nan_to_num(strip(y0, y1), nan=lo, posinf=hi, neginf=lo)
        out[y0:y1] = np.clip((arr - lo) / max(hi - lo, 1e-12) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(out, "L")


def _flatten(im: Image.Image, pad: Sequence[float]) -> Image.Image:
    """Any Pillow mode -> RGB; transparency composited on ``pad``."""
    if im.mode == "RGB":
        return im
    pad_rgb = tuple(int(round(255 * p)) for p in pad)
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        im = _to_8bit(im)
    elif im.mode == "L" and "transparency" in im.info:
        im = im.convert("LA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im if im.mode == "RGBA" else im.convert("RGBA")  # convert() to its own mode is a copy
        canvas = Image.new("RGB", rgba.size, pad_rgb)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return im if im.mode == "RGB" else im.convert("RGB")


def _from_array(x: np.ndarray, name: str) -> Image.Image:
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3 or x.shape[2] not in (1, 3, 4) or x.shape[0] < 1 or x.shape[1] < 1:
        raise ImageError(f"{name}: expected an HxWx3 (or HxW, HxWx1, HxWx4) array, got shape {x.shape}")
    if x.dtype != np.uint8:
        raise ImageError(f"{name}: expected a uint8 array, got {x.dtype}")
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[x.shape[2]]
    return Image.fromarray(np.ascontiguousarray(x if x.shape[2] != 1 else x[:, :, 0]), mode)


def load_image(
    x: ImageInput,
    spec: PreprocessSpec | None = None,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
    max_decode_bytes: int | None = DEFAULT_MAX_DECODE_BYTES,
) -> Image.Image:
    """Read ``x`` (path, bytes, PIL image or HxWx3 uint8 array) into a decoded RGB PIL image.

    With ``spec``, JPEGs are decoded at the reduced size ``draft("RGB", (2W, 2H))`` allows and alpha is
    composited on ``spec.pad``. Files and bytes over ``max_bytes`` are refused before they are read,
    images over ``max_pixels`` from their header, and images whose decode (and preprocessing for
    ``spec``) would need more than ``max_decode_bytes`` of memory, estimated from the header, before
    decoding; ``None`` disables a limit. Structures far costlier to parse than their image needs (JPEG
    fill runs, PNG chunk floods, TIFF strip floods, big images for Pillow's Python decoders) are always
    refused. Raises :class:`ImageError` naming the input and the cause.
    """
    return _load(x, spec, max_pixels=max_pixels, max_bytes=max_bytes, max_decode_bytes=max_decode_bytes)


_current = threading.local()


def decoding() -> str | None:
    """The name of the input the calling thread is loading, else None: lets a warnings hook say which file
    a decoder's warning is about (the CLI's ``--quiet`` and one-line-per-file warnings)."""
    return getattr(_current, "name", None)


def _load(
    x: ImageInput,
    spec: PreprocessSpec | None,
    *,
    max_pixels: int | None,
    max_bytes: int | None,
    max_decode_bytes: int | None,
    reserve: Callable[[int], None] | None = None,
) -> Image.Image:
    """:func:`load_image`; ``reserve(nbytes)`` is called with the estimate once the header passed its checks
    and before decoding (:class:`~redaes_lite._cost.DecodeBudget`'s ``hold``: it may wait for room)."""
    spec = spec or PreprocessSpec()
    _current.name = describe_input(x)
    try:
        return _load_named(
            x,
            spec,
            _current.name,
            max_pixels=max_pixels,
            max_bytes=max_bytes,
            max_decode_bytes=max_decode_bytes,
            reserve=reserve,
        )
    finally:
        _current.name = None


def _load_named(
    x: ImageInput,
    spec: PreprocessSpec,
    name: str,
    *,
    max_pixels: int | None,
    max_bytes: int | None,
    max_decode_bytes: int | None,
    reserve: Callable[[int], None] | None,
) -> Image.Image:
    if isinstance(x, np.ndarray):
        return _flatten(_from_array(x, name), spec.pad)
    limits = {"max_pixels": max_pixels, "max_decode_bytes": max_decode_bytes, "reserve": reserve}
    if isinstance(x, Image.Image):
        return _decode(x, name, spec, source=None, **limits)
    if not isinstance(x, (str, os.PathLike, bytes, bytearray, memoryview)):
        raise ImageError(f"{name}: unsupported input type (use a path, bytes, PIL image or uint8 array)")
    with read_source(x, name, max_bytes) as f:
        return _decode(open_image(f, name), name, spec, source=f, **limits)


def _decode(
    im: Image.Image,
    name: str,
    spec: PreprocessSpec,
    *,
    max_pixels: int | None,
    max_decode_bytes: int | None,
    reserve: Callable[[int], None] | None,
    source: BinaryIO | None,
) -> Image.Image:
    """Check the header, then decode (JPEG: at draft size) the first frame, apply EXIF orientation, to RGB.

    ``source`` is the stream of an image we opened (``None`` for a caller's PIL image: no draft).
    """
    try:
        w, h = im.size
        if w < 1 or h < 1:
            raise ImageError(f"{name}: image has no pixels ({w}x{h})")
        if max(w, h) > _MAX_SIDE:
            raise ImageError(f"{name}: {w}x{h} has a side over {_MAX_SIDE} px")
        if max_pixels is not None and w * h > max_pixels:
            size, limit = over_limit(w * h, max_pixels, "MP", "px")
            raise ImageError(f"{name}: {w}x{h} = {size} exceeds max_pixels {limit}")
        check_python_decoder(im, name)
        coefficients = 0
        if source is not None and im.format in ("JPEG", "MPO"):
            if check_jpeg_scans(im, source, name):
                coefficients = jpeg_coefficients(im)
            im.draft("RGB", (2 * spec.width, 2 * spec.height))
        if im.tell() != 0:  # a caller's image left on a later frame (ours open on frame 0)
            im.seek(0)
        rotated = orientation(im, loaded=False) is not None  # what the header says, for the estimate
        encoded = _stream_size(source) if source is not None else 0
        need = decode_bytes(im, spec, encoded=encoded, coefficients=coefficients, rotated=rotated)
        _check_decode_bytes(im, name, need, max_decode_bytes)
        if reserve is not None:
            reserve(need)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im.load()
        # After loading, as ImageOps.exif_transpose did: Pillow rotates a TIFF itself while loading it, and a
        # PNG may hold its EXIF after the image data.
        rotate = orientation(im, loaded=True)
        if rotate is not None:
            if not rotated:
                _check_decode_bytes(im, name, decode_bytes(im, spec, encoded=encoded, rotated=True), max_decode_bytes)
            im = im.transpose(rotate)
        return _flatten(im, spec.pad)
    except ImageError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageError(f"{name}: decompression bomb refused ({e})") from None
    except DECODE_ERRORS as e:
        # Pillow signals truncated/corrupt data with several exception types; all mean "cannot decode".
        raise ImageError(f"{name}: corrupt or truncated image ({first_line(e)})") from None
    except MemoryError:
        raise ImageError(f"{name}: image too large to decode in memory") from None


def _stream_size(f: BinaryIO) -> int:
    pos = f.tell()
    size = f.seek(0, os.SEEK_END)
    f.seek(pos)
    return size


def _check_decode_bytes(im: Image.Image, name: str, need: int, limit: int | None) -> None:
    if limit is not None and need > limit:
        what = f"{im.width}x{im.height} {im.format or ''} {im.mode}".replace("  ", " ")
        raise ImageError(
            f"{name}: decoding {what} needs about {need / 2**20:.0f} MiB, over max_decode_bytes {limit / 2**20:.0f} MiB"
        )


def _resize(im: Image.Image, spec: PreprocessSpec) -> Image.Image:
    """Resize to fit the spec; returns the resized image (letterbox: the content, not yet padded)."""
    h, w = spec.size
    src_w, src_h = im.size
    resample = _INTERPOLATION[spec.interpolation]
    if spec.resize == "squash":
        return im.resize((w, h), resample)
    if spec.resize == "letterbox":
        scale = min(w / src_w, h / src_h)
        new = (max(1, min(w, round(src_w * scale))), max(1, min(h, round(src_h * scale))))
        return im.resize(new, resample)
    # center_crop: cover the target then crop the centre
    scale = max(w / src_w, h / src_h)
    new_w, new_h = max(w, round(src_w * scale)), max(h, round(src_h * scale))
    left, top = (new_w - w) // 2, (new_h - h) // 2
    return im.resize((new_w, new_h), resample).crop((left, top, left + w, top + h))


def to_array(im: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """One decoded RGB image -> normalised float32 ``[3, H, W]``."""
    h, w = spec.size
    resized = _resize(im, spec)
    mean = np.asarray(spec.mean, np.float32)
    std = np.asarray(spec.std, np.float32)
    content = (np.asarray(resized, np.float32) * np.float32(1 / 255) - mean) / std
    if content.shape[:2] == (h, w):
        return np.ascontiguousarray(content.transpose(2, 0, 1))
    fill = (np.asarray(spec.pad, np.float32) - mean) / std
    out = np.empty((h, w, 3), np.float32)
    out[...] = fill
    ch, cw = content.shape[:2]
    top, left = (h - ch) // 2, (w - cw) // 2
    out[top : top + ch, left : left + cw] = content
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def preprocess(
    images: Iterable[ImageInput] | ImageInput,
    spec: PreprocessSpec,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
    max_decode_bytes: int | None = DEFAULT_MAX_DECODE_BYTES,
) -> np.ndarray:
    """Load (if needed) and preprocess images into float32 ``[N, 3, H, W]`` for ``spec``.

    A single input gives ``N = 1``. Raises :class:`ImageError` on the first unreadable input; batch
    callers that must go on past bad inputs call :func:`load_image` per item instead.
    """
    if isinstance(images, (str, os.PathLike, bytes, bytearray, memoryview, Image.Image, np.ndarray)):
        items: list[Any] = [images]
    else:
        items = list(images)
    h, w = spec.size
    out = np.empty((len(items), 3, h, w), np.float32)
    for i, x in enumerate(items):
        out[i] = to_array(
            load_image(x, spec, max_pixels=max_pixels, max_bytes=max_bytes, max_decode_bytes=max_decode_bytes), spec
        )
    return out
