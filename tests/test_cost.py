"""Bounded cost per decode: structures refused from their bytes (time), decodes refused from
their estimated memory, the bytes in flight bounded across threads and worker processes, malformed EXIF
ignored in every format, and the pixels of every other input unchanged.

The bombs are built at a reduced size (tests/fuzzkit.py); the checks trigger on structure, so a limit
lowered in proportion refuses them the same way. Full-size ones: see the README's limits section.
"""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path

import fuzzkit
import numpy as np
import pytest
from clirun import invoke
from PIL import Image, ImageOps
from test_preprocess import photo, png_bytes

from redaes_lite import ImageError, _cost, cli, load, preprocess
from redaes_lite._cost import DecodeBudget
from redaes_lite._decode_pool import DecodePool
from redaes_lite.preprocess import PreprocessSpec, load_image, to_array

SPEC = PreprocessSpec(size=(32, 32))
PHOTOS = Path("/work/shared/data/photos")
FAST_S = 1.0  # a refusal reads headers only


def refused(data: bytes, match: str, **limits: object) -> str:
    t0 = time.process_time()
    with pytest.raises(ImageError, match=match) as e:
        load_image(data, SPEC, **limits)
    assert time.process_time() - t0 < FAST_S
    message = str(e.value)
    assert message.startswith(f"<{len(data)} bytes>: ") and "\n" not in message
    return message


# -- time: structures refused from their bytes -------------------------------------------------------
def test_tiff_strip_floods_are_refused_before_pillow_reads_them():
    assert load_image(fuzzkit.tiff_many_strips(10, width=10, height=10), SPEC).size == (10, 10)
    refused(
        fuzzkit.tiff_many_strips(11, width=10, height=10),
        r"TIFF has 11 strip entries \(tag 273\) for a "
        r"10x10 image, over the 10 it can need",
    )
    refused(fuzzkit.tiff_many_strips(200_000), "200,000 strip entries")  # a 100 x 100 image


def test_long_tiff_tag_arrays_and_bigtiff_entry_floods_are_refused():
    data = bytearray(fuzzkit.tiff_many_strips(10, width=10, height=10))
    data[10 + 2 * 12 + 4 : 10 + 2 * 12 + 8] = (_cost.TIFF_MAX_TAG_VALUES + 1).to_bytes(4, "little")  # BitsPerSample
    refused(bytes(data), r"TIFF tag 258 has 262,145 values")
    bigtiff = b"II+\x00\x08\x00\x00\x00" + (16).to_bytes(8, "little") + (10**9).to_bytes(8, "little")
    refused(bigtiff, r"BigTIFF directory claims 1,000,000,000 entries")


def test_jpeg_fill_runs_and_segment_floods_are_refused(monkeypatch):
    plain = load_image(fuzzkit.jpeg_fill(0), SPEC)
    assert np.array_equal(np.asarray(load_image(fuzzkit.jpeg_fill(1000), SPEC)), np.asarray(plain))  # legal fill
    monkeypatch.setattr(_cost, "JPEG_MAX_FILL", 4096)
    refused(fuzzkit.jpeg_fill(5000), r"JPEG has over 4,096 fill or junk bytes between its header segments")
    data = fuzzkit.jpeg_fill(0)
    monkeypatch.setattr(_cost, "JPEG_MAX_SEGMENTS", 100)
    refused(data[:2] + b"\xff\xfe\x00\x02" * 101 + data[2:], r"JPEG has over 100 header segments")
    assert load_image(data[:2] + b"\xff\xfe\x00\x02" * 90 + data[2:], SPEC).size == plain.size


def test_png_chunk_floods_are_refused(monkeypatch):
    assert load_image(fuzzkit.png_many_chunks(150), SPEC).size == (8, 8)
    monkeypatch.setattr(_cost, "PNG_MAX_CHUNKS", 100)
    refused(fuzzkit.png_many_chunks(150), r"PNG has over 100 chunks")
    # after the image data too: Pillow reads those one by one when it finishes loading
    base = fuzzkit.png(8, 8, colour=0, raw=b"\x00" * 72)
    trailing = base[:-12] + fuzzkit._chunk(b"zzZz", b"") * 150 + base[-12:]
    refused(trailing, r"PNG has over 100 chunks")


@pytest.mark.parametrize(
    ("make", "decoder"),
    [
        (lambda n: fuzzkit.bmp_rle8_rows(n, n), "bmp_rle"),
        (lambda n: fuzzkit.ppm16(n, n), "ppm"),
        (lambda n: b"P3 %d %d 255\n" % (n, n) + b"1 2 3 " * n * n, "ppm_plain"),
    ],
)
def test_big_images_for_pillows_python_decoders_are_refused(monkeypatch, make, decoder):
    assert load_image(make(20), SPEC).size == (20, 20)
    bands = 1 if decoder == "bmp_rle" else 3  # an 8-bit BMP is a palette image
    monkeypatch.setitem(_cost.PYTHON_DECODER_SAMPLES, decoder, 20 * 20 * bands)
    refused(make(21), r"of 21x21 has 0\.0 M samples, over the 0 M decoded in reasonable time")


def test_the_issues_memory_bombs_are_refused_from_their_header():
    webp = fuzzkit.webp_lossless_zeros(10_950, 10_950)
    gif = fuzzkit.gif_screen(10_950, 10_950)
    assert len(webp) < 40 and len(gif) < 45
    refused(webp, r"decoding 10950x10950 WEBP RGBA needs about \d+ MiB, over max_decode_bytes 512 MiB")
    refused(gif, r"decoding 10950x10950 GIF P needs about \d+ MiB, over max_decode_bytes 512 MiB")
    # an RGBA PNG of zeros (466 KB at 10,950^2), here at 2,000^2 with the limit lowered in proportion
    refused(
        fuzzkit.png_zeros(2000, 2000), r"decoding 2000x2000 PNG RGBA needs about \d+ MiB", max_decode_bytes=40 << 20
    )
    assert load_image(fuzzkit.webp_lossless_zeros(64, 48), SPEC).size == (64, 48)  # small ones decode


# -- memory: the estimate ---------------------------------------------------------------------------
def _estimate(data: bytes, spec: PreprocessSpec = SPEC) -> int:
    seen: list[int] = []
    preprocess._load(data, spec, max_pixels=None, max_bytes=None, max_decode_bytes=None, reserve=seen.append)
    return seen[0]


@pytest.mark.slow
def test_the_estimate_follows_modes_formats_and_the_jpeg_draft():
    im = photo(1000, 800)
    rgb = _estimate(fuzzkit._save(im, "PNG"))
    rgba = _estimate(fuzzkit._save(im.convert("RGBA"), "PNG"))
    webp = _estimate(fuzzkit._save(im, "WEBP", lossless=True))
    assert rgb < rgba < webp
    assert rgb - _cost._FIXED >= 4 * 1000 * 800  # RGB is stored in 4 bytes a pixel
    # JPEG: decoded at draft size; a progressive one also holds its full-size coefficients
    big = photo(4000, 3000)
    baseline = _estimate(fuzzkit._save(big, "JPEG"))
    progressive = _estimate(fuzzkit._save(big, "JPEG", progressive=True))
    assert baseline - _cost._FIXED < 4 * 1000 * 750  # at most 1/4 of each side is decoded for a 32 x 32 input
    assert progressive - baseline >= 2 * 4000 * 3000 * 1.5 * 0.99  # 4:2:0: 1.5 coefficients of 2 bytes a pixel
    # a rotated image is copied once
    exif = fuzzkit.exif_bytes(6)
    assert _estimate(fuzzkit._save(im, "WEBP", exif=exif)) >= _estimate(fuzzkit._save(im, "WEBP"))


def test_max_decode_bytes_in_load_image_load_and_the_cli(tiny_model, tmp_path):
    data = png_bytes(photo(200, 100))
    need = _estimate(data)
    assert load_image(data, SPEC, max_decode_bytes=need).size == (200, 100)
    refused(data, "over max_decode_bytes", max_decode_bytes=need - 1)
    path = tmp_path / "p.png"
    path.write_bytes(data)
    with pytest.raises(ImageError, match="over max_decode_bytes"):
        load(tiny_model, max_decode_bytes=need // 2).score(path)
    assert load(tiny_model, max_decode_bytes=None).max_decode_bytes is None
    for workers in ("0", "2"):
        r = invoke(
            cli.run,
            "score",
            path,
            "--model",
            tiny_model,
            "--max-decode-bytes",
            str(need // 2),
            "-f",
            "jsonl",
            "--workers",
            workers,
        )
        assert r.exit_code == 1 and "over max_decode_bytes" in json.loads(r.stdout)["error"]
        r = invoke(
            cli.run,
            "score",
            path,
            "--model",
            tiny_model,
            "--max-decode-bytes",
            "0",
            "-f",
            "jsonl",
            "--workers",
            workers,
        )
        assert r.exit_code == 0
    assert preprocess.DEFAULT_MAX_DECODE_BYTES == cli.DEFAULT_MAX_DECODE_BYTES == 512 * 1024 * 1024
    with pytest.raises(ValueError, match="max_decode_bytes must be a positive int"):
        load(tiny_model, max_decode_bytes=0)


# -- memory: the bytes in flight --------------------------------------------------------------------
def test_the_budget_is_weighted_first_come_first_served_and_never_over():
    budget = DecodeBudget(100)
    peak, order, lock = [0], [], threading.Lock()

    def work(i: int, n: int) -> None:
        with budget.hold() as reserve:
            reserve(n)
            with lock:
                peak[0] = max(peak[0], budget.in_flight)
                order.append(i)
            time.sleep(0.01)

    threads = [threading.Thread(target=work, args=(i, n)) for i, n in enumerate([60, 60, 30, 500, 10] * 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(order) == 20 and peak[0] <= 100 and budget.in_flight == 0
    assert budget.acquire(10**9) == 100  # a request over the total is clamped: it runs alone
    budget.release(100)


def _watch_budget(monkeypatch) -> list[int]:
    """Record the most bytes any DecodeBudget had in flight."""
    peak = [0]
    real = DecodeBudget.acquire

    def acquire(self, nbytes):
        got = real(self, nbytes)
        peak[0] = max(peak[0], self.in_flight)
        return got

    monkeypatch.setattr(DecodeBudget, "acquire", acquire)
    return peak


def test_score_many_and_workers_keep_the_bytes_in_flight_within_the_limit(tiny_model, tmp_path, monkeypatch):
    paths = []
    for i in range(8):
        paths.append(tmp_path / f"{i}.png")
        photo(300 + i, 200, seed=i).save(paths[-1])
    need = _estimate(paths[0].read_bytes(), load(tiny_model).info.preprocess)
    limit = 2 * need + need // 2  # two at a time
    peak = _watch_budget(monkeypatch)
    scorer = load(tiny_model, max_decode_bytes=limit)
    results = scorer.score_many(paths, batch_size=8)
    assert results == load(tiny_model).score_many(paths, batch_size=8)  # the budget changes no result
    assert need < peak[0] <= limit
    peak[0] = 0
    spec = scorer.info.preprocess
    with DecodePool(3, spec=spec, max_pixels=None, max_bytes=None, max_decode_bytes=limit) as pool:
        decoded = [d for batch in pool.batches([str(p) for p in paths], 4) for d in batch]
    assert need < peak[0] <= limit  # the parent grants the workers' reservations from one budget
    for got, path in zip(decoded, paths):
        np.testing.assert_array_equal(got, to_array(load_image(path, spec), spec))


def test_a_worker_that_dies_holding_bytes_gives_them_back(tmp_path):
    paths = []
    for i in range(4):
        paths.append(str(tmp_path / f"{i}.png"))
        photo(seed=i).save(paths[-1])
    with DecodePool(1, spec=SPEC, max_pixels=None, max_bytes=None, max_decode_bytes=1 << 30) as pool:
        pool._workers[0].proc.kill()
        batch = next(pool.batches(paths, 4))
        assert "crashed its worker process" in batch[0].error
        assert all(isinstance(d, np.ndarray) for d in batch[1:])
        assert pool._budget.in_flight == 0


# -- consistency: malformed EXIF is no orientation, in every format ---------------------------------
BAD_EXIF = [
    b"MM\x00\x80\x00\x00\x00\x08" + b"\x00" * 16,  # not a TIFF header: Pillow's EXIF parser raised
    b"Exif\x00b\x00\x01" + b"\x01" * 32,
    fuzzkit.exif_raw(3, 0x7FFFFFFF, b"\x00\x06"),
    fuzzkit.exif_raw(2, 3, b"up\x00"),
]


@pytest.mark.parametrize("exif", BAD_EXIF, ids=range(len(BAD_EXIF)))
@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_malformed_exif_never_fails_an_image(fmt, exif):
    im = photo()
    if fmt == "PNG":  # an eXIf chunk before the image data
        data = fuzzkit.png(96, 64, chunks=[(b"eXIf", exif)], raw=b"".join(b"\x00" + r.tobytes() for r in _rows(im)))
        plain = fuzzkit.png(96, 64, raw=b"".join(b"\x00" + r.tobytes() for r in _rows(im)))
    else:
        data, plain = fuzzkit._save(im, fmt, exif=exif, quality=90), fuzzkit._save(im, fmt, quality=90)
    assert np.array_equal(np.asarray(load_image(data, SPEC)), np.asarray(load_image(plain, SPEC)))


def _rows(im: Image.Image) -> list[np.ndarray]:
    return list(np.asarray(im))


# -- real photos and every mode: the same pixels as Pillow's plain path ------------------------------
def _reference(data: bytes, spec: PreprocessSpec) -> np.ndarray:
    """The pipeline as it was before the cost checks: draft, load, ImageOps.exif_transpose, to RGB."""
    im = Image.open(io.BytesIO(data))
    if im.format == "JPEG":
        im.draft("RGB", (2 * spec.width, 2 * spec.height))
    im.load()
    im = ImageOps.exif_transpose(im)
    pad = tuple(int(round(255 * p)) for p in spec.pad)
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA"):
        rgba = im.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, pad)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        im = canvas
    return to_array(im.convert("RGB"), spec)


def _modes() -> dict[str, bytes]:
    im = photo(120, 90)
    out = {
        f"{mode}-{fmt}": fuzzkit._save(im.convert(mode), fmt)
        for mode in ("RGB", "RGBA", "L", "LA", "P")
        for fmt in ("PNG", "TIFF", "WEBP")
        if not (fmt == "WEBP" and mode in ("LA", "P"))
    }
    out["rotated-jpeg"] = fuzzkit._save(im, "JPEG", exif=fuzzkit.exif_bytes(6))
    out["rotated-png"] = fuzzkit._save(im, "PNG", exif=fuzzkit.exif_bytes(8))
    out["rotated-tiff"] = fuzzkit._save(im, "TIFF", tiffinfo={274: 3})
    out["progressive-jpeg"] = fuzzkit._save(photo(1200, 900), "JPEG", progressive=True)
    return out


@pytest.mark.parametrize(("label", "data"), sorted(_modes().items()))
def test_every_mode_gives_the_pixels_of_pillows_plain_path(label, data):
    spec = PreprocessSpec()
    np.testing.assert_array_equal(to_array(load_image(data, spec), spec), _reference(data, spec))


@pytest.mark.skipif(not PHOTOS.is_dir(), reason="needs the shared photos")
def test_real_photos_give_the_pixels_of_pillows_plain_path():
    photos = sorted(p for p in PHOTOS.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[::40]
    assert len(photos) >= 8
    spec = PreprocessSpec()
    for path in photos:
        data = path.read_bytes()
        np.testing.assert_array_equal(to_array(load_image(path, spec), spec), _reference(data, spec), err_msg=str(path))


def test_big_jpeg2000_files_are_refused_from_their_size(monkeypatch):
    data = fuzzkit._save(photo(), "JPEG2000")
    assert load_image(data, SPEC).size == (96, 64)
    monkeypatch.setattr(_cost, "JPEG2000_MAX_BYTES", len(data) - 1)
    refused(data, r"JPEG 2000 file of 0\.0 MiB, over the 0 MiB decoded in reasonable time")
