"""The one pixel path: input kinds, EXIF, modes, JPEG draft, resize modes and every bad input."""

from __future__ import annotations

import builtins
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from redaes_lite.errors import ImageError
from redaes_lite.preprocess import PreprocessSpec, load_image, preprocess, to_array

SPEC = PreprocessSpec(size=(32, 32))


def photo(w: int = 96, h: int = 64, seed: int = 0) -> Image.Image:
    """A photo-like RGB image: gradients plus noise, not symmetric under any flip or rotation."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    arr = np.stack([255 * x / w, 255 * y / h, 128 + 60 * np.sin(x / 7.0) * (y > h // 3)], axis=-1)
    arr = np.clip(arr + rng.normal(0, 8, arr.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def png_bytes(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", **kw)
    return buf.getvalue()


# -- input kinds ---------------------------------------------------------------------------------
def test_every_input_kind_gives_the_same_pixels(tmp_path):
    im = photo()
    path = tmp_path / "p.png"
    path.write_bytes(png_bytes(im))
    kinds = [str(path), path, path.read_bytes(), bytearray(path.read_bytes()), im, np.asarray(im)]
    arrays = [preprocess(k, SPEC) for k in kinds]
    assert arrays[0].shape == (1, 3, 32, 32) and arrays[0].dtype == np.float32
    for a in arrays[1:]:
        np.testing.assert_array_equal(a, arrays[0])


def test_batch_preprocess_stacks_in_order():
    ims = [photo(seed=s) for s in range(3)]
    batch = preprocess(ims, SPEC)
    assert batch.shape == (3, 3, 32, 32)
    np.testing.assert_array_equal(batch[2], preprocess(ims[2], SPEC)[0])


@pytest.mark.parametrize(
    ("x", "cause"),
    [
        (np.zeros((4, 4, 3), np.float32), "uint8"),
        (np.zeros((4, 4, 2), np.uint8), "shape"),
        (np.zeros((0, 4, 3), np.uint8), "shape"),
        (12345, "unsupported input type"),
    ],
)
def test_bad_in_memory_inputs(x, cause):
    with pytest.raises(ImageError, match=cause):
        load_image(x)


# -- EXIF orientation ------------------------------------------------------------------------------
# Stored pixels = inverse of what orientation o asks a viewer to do, so upright after transposing.
_STORE_AS = {
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,
    8: Image.Transpose.ROTATE_270,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    5: Image.Transpose.TRANSPOSE,
}


@pytest.mark.parametrize("orientation", sorted(_STORE_AS))
def test_exif_orientation_is_applied(orientation):
    upright = photo()
    stored = upright.transpose(_STORE_AS[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = png_bytes(stored, exif=exif)
    loaded = load_image(data, SPEC)
    assert loaded.size == upright.size
    np.testing.assert_array_equal(np.asarray(loaded), np.asarray(upright))


# -- modes ---------------------------------------------------------------------------------------
def _mode_images() -> dict[str, Image.Image]:
    base = photo(32, 24)
    p_trans = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    p_trans.info["transparency"] = 0
    i16 = Image.fromarray((np.arange(32 * 24).reshape(24, 32) * 80).astype(np.uint16))
    return {
        "L": base.convert("L"),
        "LA": base.convert("LA"),
        "P": base.convert("P"),
        "P+transparency": p_trans,
        "RGBA": base.convert("RGBA"),
        "CMYK": base.convert("CMYK"),
        "1": base.convert("1"),
        "I;16": i16,
        "I": base.convert("I"),
        "F": base.convert("F"),
    }


@pytest.mark.parametrize("mode", list(_mode_images()))
def test_every_mode_becomes_rgb(mode):
    im = _mode_images()[mode]
    for x in (im, png_bytes(im) if mode not in ("CMYK", "F", "I") else im):
        out = load_image(x, SPEC)
        assert out.mode == "RGB" and out.size == im.size


def test_transparent_pixels_take_the_pad_colour():
    spec = PreprocessSpec(size=(8, 8), pad=(1.0, 0.0, 0.0))
    rgba = Image.new("RGBA", (8, 8), (0, 255, 0, 0))
    assert load_image(rgba, spec).getpixel((3, 3)) == (255, 0, 0)


def test_16_bit_png_uses_the_full_range(tmp_path):
    arr = np.array([[0, 65535], [32768, 65535]], np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(arr).save(path)
    out = np.asarray(load_image(path, SPEC))
    assert out[0, 0, 0] == 0 and out[0, 1, 0] == 255 and out[1, 0, 0] in (127, 128)


def test_animation_uses_the_first_frame():
    frames = [Image.new("RGB", (16, 16), c) for c in ((250, 0, 0), (0, 0, 250))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    out = load_image(buf.getvalue(), SPEC)
    r, g, b = out.getpixel((8, 8))
    assert r > 200 and b < 50


def test_heif_is_decoded_when_pillow_heif_is_installed():
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    buf = io.BytesIO()
    photo().save(buf, format="HEIF", quality=90)
    assert load_image(buf.getvalue(), SPEC).size == (96, 64)


def test_heif_without_pillow_heif_says_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def no_heif(name, *a, **kw):
        if name == "pillow_heif":
            raise ImportError(name)
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_heif)
    fake_heic = b"\x00\x00\x00\x18ftypheic" + b"\x00" * 32
    with pytest.raises(ImageError, match=r"redaes-lite\[heif\]"):
        load_image(fake_heic)


# -- JPEG draft ----------------------------------------------------------------------------------
def test_big_jpegs_are_decoded_at_reduced_size(tmp_path):
    path = tmp_path / "big.jpg"
    photo(2000, 1500).save(path, quality=90)
    out = load_image(path, SPEC)  # draft("RGB", (64, 64)) -> 1/8 scale
    assert out.size == (250, 188)
    big = load_image(path, PreprocessSpec(size=(1000, 1000)))  # needs >= 2000 px: no reduction
    assert big.size == (2000, 1500)


def test_draft_is_not_applied_to_in_memory_images():
    im = photo(2000, 1500)
    assert load_image(im, SPEC).size == (2000, 1500)


# -- resize modes --------------------------------------------------------------------------------
def test_letterbox_keeps_aspect_and_pads_with_pad_value():
    spec = PreprocessSpec(size=(32, 32), resize="letterbox")
    arr = to_array(Image.new("RGB", (64, 32), (255, 255, 255)), spec)
    pad = (np.asarray(spec.pad) - spec.mean) / np.asarray(spec.std)
    np.testing.assert_allclose(arr[:, 0, 0], pad, rtol=1e-6)  # top rows are padding
    np.testing.assert_allclose(arr[:, 16, 0], (1 - np.asarray(spec.mean)) / spec.std, rtol=1e-5)


@pytest.mark.parametrize("resize", ["letterbox", "squash", "center_crop"])
def test_resize_modes_give_the_model_size(resize):
    spec = PreprocessSpec(size=(24, 40), resize=resize)
    assert to_array(photo(100, 30), spec).shape == (3, 24, 40)


def test_spec_round_trips_and_rejects_bad_values():
    spec = PreprocessSpec(size=(48, 64), resize="squash")
    assert PreprocessSpec.from_json(spec.to_json()) == spec
    for bad in ({"resize": "stretch"}, {"size": [0, 3]}, {"std": [1, 0, 1]}, {"interpolation": "magic"}):
        with pytest.raises(ValueError):
            PreprocessSpec.from_dict(bad)


# -- bad files -----------------------------------------------------------------------------------
def _bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))  # noqa: E731
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make", "cause"),
    [
        (lambda d: d / "missing.jpg", "no such file"),
        (lambda d: d, "is a directory"),
        (lambda d: _write(d, "empty.jpg", b""), "empty file"),
        (lambda d: _write(d, "text.jpg", b"not the pixels you are looking for\n" * 4), "not a recognised image"),
        (lambda d: _write(d, "bomb.png", _bomb_png(30000, 30000)), "decompression bomb|exceeds max_pixels"),
        (lambda d: _write(d, "big.png", _bomb_png(11000, 11000)), "exceeds max_pixels"),
    ],
    ids=["missing", "directory", "zero-byte", "not-an-image", "bomb", "over-max-pixels"],
)
def test_bad_files_fail_with_one_line_naming_file_and_cause(tmp_path, make, cause):
    path = make(tmp_path)
    with pytest.raises(ImageError, match=cause) as e:
        load_image(path)
    msg = str(e.value)
    assert msg.startswith(str(path)) and "\n" not in msg


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_images_fail_and_are_never_silently_loaded(tmp_path, fmt):
    buf = io.BytesIO()
    photo(400, 300).save(buf, format=fmt)
    path = _write(tmp_path, f"cut.{fmt.lower()}", buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageError, match="corrupt or truncated") as e:
        load_image(path, SPEC)
    assert str(e.value).startswith(str(path))
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_max_pixels_is_checked_from_the_header_and_configurable():
    data = png_bytes(photo(50, 40))
    with pytest.raises(ImageError, match="exceeds max_pixels"):
        load_image(data, max_pixels=1999)
    assert load_image(data, max_pixels=2000).size == (50, 40)
    assert load_image(data, max_pixels=None).size == (50, 40)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(tmp_path):
    path = _write(tmp_path, "locked.png", png_bytes(photo()))
    path.chmod(0)
    try:
        with pytest.raises(ImageError, match="permission denied"):
            load_image(path)
    finally:
        path.chmod(0o644)
