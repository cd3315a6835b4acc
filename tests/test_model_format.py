"""``docs/model-format.md`` re-implemented from the page alone and checked against the runtime.

``DocModel`` below knows nothing of ``redaes_lite``: it reads the ``redaes.*`` metadata from the ONNX file
with ONNX Runtime, makes ``pixel_values`` with numpy (Pillow's antialiased resampling in 22-bit fixed point,
letterbox / squash / center_crop, float32 normalisation), runs the graph, and turns the outputs into the
display score (end segments extended, then clamped), the pair probability (with ``redaes.lapse``) and the
factor differences, as the page says. Both embedded models must give the runtime's ``score()`` and
``compare()`` to 1e-6 (in fact bit for bit) on ~100 real photos.

Decoding is the one step numpy cannot do: the photos are decoded (and cut to a long side of 640 px, to
keep this test cheap) with Pillow and handed to both sides as the same uint8 arrays, which the runtime
takes as decoded and upright (no draft, no EXIF; docs section 4.3). The decoding rules themselves (the JPEG
draft size and EXIF orientation of section 4.2) are checked on files and bytes, decoded with Pillow as the
page says.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from pathlib import Path

import numpy as np
import PIL
import pytest

import redaes_lite
from redaes_lite.preprocess import PreprocessSpec, load_image, to_array
from redaes_lite.session import EMBEDDED

REPO = Path(__file__).resolve().parents[1]
PHOTOS = REPO.parent / "shared" / "data" / "photos"
TOL = 1e-6
N_PHOTOS = 100
LONG_SIDE = 640

needs_photos = pytest.mark.skipif(not PHOTOS.is_dir(), reason="shared photos not available")

# ---------------------------------------------------------------------------------------------------
# The page, re-implemented: numpy + onnxruntime, metadata from the ONNX file only.
# ---------------------------------------------------------------------------------------------------

VOCABULARY = (
    "exposure",
    "contrast",
    "saturation",
    "white_balance",
    "sharpness",
    "noise",
    "compression",
    "haze",
    "vignetting",
    "tilt",
    "composition",
)
REQUIRED = (
    "format",
    "version",
    "preprocess",
    "factors",
    "temperature",
    "calibration",
    "student",
    "teacher",
    "training_data",
    "quantization",
    "license",
)
JSON_KEYS = ("preprocess", "factors", "calibration", "student", "teacher", "training_data", "metrics")
PREC = 22  # Pillow's fixed-point precision for 8-bit resampling (section 4.4)
# Pillow 13 runs the vertical pass first when the height loses more than twice the width's pixels.
VERTICAL_FIRST_RULE = int(PIL.__version__.split(".")[0]) >= 13


def _sinc(x: float) -> float:
    return 1.0 if x == 0.0 else math.sin(x * math.pi) / (x * math.pi)


def _bicubic(x: float, a: float = -0.5) -> float:
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


FILTERS = {  # name -> (support, f)
    "box": (0.5, lambda x: 1.0 if -0.5 < x <= 0.5 else 0.0),
    "bilinear": (1.0, lambda x: max(0.0, 1.0 - abs(x))),
    "bicubic": (2.0, _bicubic),
    "lanczos": (3.0, lambda x: _sinc(x) * _sinc(x / 3.0) if -3.0 <= x < 3.0 else 0.0),
}
_taps_cache: dict[tuple[int, int, str], tuple[np.ndarray, np.ndarray]] = {}


def taps(n_in: int, n_out: int, filt: str) -> tuple[np.ndarray, np.ndarray]:
    """Source indices and 22-bit integer weights, ``[n_out, ksize]`` each (zero weight = unused tap)."""
    key = (n_in, n_out, filt)
    if key in _taps_cache:
        return _taps_cache[key]
    a, f = FILTERS[filt]
    scale = n_in / n_out
    fs = max(scale, 1.0)
    support, ss = a * fs, 1.0 / fs
    ksize = int(math.ceil(support)) * 2 + 1
    idx = np.zeros((n_out, ksize), np.int64)
    wts = np.zeros((n_out, ksize), np.int64)
    for i in range(n_out):
        center = (i + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), n_in)
        w = [f((j - center + 0.5) * ss) for j in range(lo, hi)]
        total = sum(w)
        w = [x / total if total != 0.0 else x for x in w]
        k = [int(x * (1 << PREC) - 0.5) if x < 0 else int(x * (1 << PREC) + 0.5) for x in w]
        idx[i, : hi - lo] = np.arange(lo, hi)
        wts[i, : hi - lo] = k
    _taps_cache[key] = (idx, wts)
    return idx, wts


def resample(img: np.ndarray, axis: int, n_out: int, filt: str) -> np.ndarray:
    """One pass along ``axis`` of an HxWx3 uint8 image, rounded to 8 bits."""
    idx, wts = taps(img.shape[axis], n_out, filt)
    src = np.moveaxis(img, axis, 0).astype(np.int64)
    acc = np.full((n_out, *src.shape[1:]), 1 << (PREC - 1), np.int64)
    for j in range(idx.shape[1]):
        acc += src[idx[:, j]] * wts[:, j, None, None]
    return np.moveaxis(np.clip(acc >> PREC, 0, 255).astype(np.uint8), 0, axis)


def nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """Source sample of each output sample: the position accumulated step by step (section 4.4)."""
    step, pos, out = n_in / n_out, 0.5 * (n_in / n_out), []
    for _ in range(n_out):
        out.append(int(pos))
        pos += step
    return np.array(out)


def resize(img: np.ndarray, width: int, height: int, filt: str) -> np.ndarray:
    """Two passes, each skipped when its size does not change: horizontal first, unless (Pillow 13) the
    height loses more than twice as many pixels as the width (section 4.4); ``nearest`` picks samples."""
    h, w = img.shape[:2]
    if filt == "nearest":
        return img[nearest_index(h, height)][:, nearest_index(w, width)]
    axes = [(1, width), (0, height)]
    if VERTICAL_FIRST_RULE and h - height > 0 and h - height > 2 * (w - width):
        axes.reverse()
    for axis, size in axes:
        if img.shape[axis] != size:
            img = resample(img, axis, size, filt)
    return img


def make_pixels(rgb: np.ndarray, spec: dict) -> np.ndarray:
    """Decoded 8-bit RGB HxWx3 -> float32 [3, H, W] (sections 4.4 and 4.5)."""
    H, W = spec["size"]
    h, w = rgb.shape[:2]
    filt = spec["interpolation"]
    if spec["resize"] == "squash":
        content = resize(rgb, W, H, filt)
    elif spec["resize"] == "letterbox":
        scale = min(W / w, H / h)
        nw, nh = max(1, min(W, round(w * scale))), max(1, min(H, round(h * scale)))
        content = resize(rgb, nw, nh, filt)
    else:  # center_crop
        scale = max(W / w, H / h)
        nw, nh = max(W, round(w * scale)), max(H, round(h * scale))
        left, top = (nw - W) // 2, (nh - H) // 2
        content = resize(rgb, nw, nh, filt)[top : top + H, left : left + W]
    mean, std = np.float32(spec["mean"]), np.float32(spec["std"])
    out = np.empty((H, W, 3), np.float32)
    out[...] = (np.float32(spec["pad"]) - mean) / std
    nh, nw = content.shape[:2]
    top, left = (H - nh) // 2, (W - nw) // 2
    out[top : top + nh, left : left + nw] = (content.astype(np.float32) * np.float32(1 / 255) - mean) / std
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


class DocModel:
    """A model file run the way docs/model-format.md says."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        props = self.session.get_modelmeta().custom_metadata_map
        self.meta = {k[len("redaes.") :]: v for k, v in props.items() if k.startswith("redaes.")}
        m = self.meta
        self.spec = json.loads(m["preprocess"])
        self.factors = json.loads(m["factors"])
        self.temperature = float(m["temperature"])
        self.lapse = float(m.get("lapse", "0"))
        self.calibration = json.loads(m["calibration"])

    def pixels(self, rgb: np.ndarray) -> np.ndarray:
        return make_pixels(rgb, self.spec)

    def run(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        utility, factors = self.session.run(["utility", "factors"], {"pixel_values": pixels})
        return utility, factors

    def display(self, u: float) -> float:
        U, S = self.calibration["utility"], self.calibration["score"]
        if u < U[0]:
            y = S[0] + (u - U[0]) * (S[1] - S[0]) / (U[1] - U[0])
        elif u > U[-1]:
            y = S[-1] + (u - U[-1]) * (S[-1] - S[-2]) / (U[-1] - U[-2])
        else:
            y = float(np.interp(u, U, S))
        return min(10.0, max(0.0, y))

    def score(self, u: np.float32, f: np.ndarray) -> dict:
        return {
            "score": self.display(float(u)),
            "utility": float(u),
            "factors": {n: float(v) for n, v in zip(self.factors, f)},
        }

    def compare(self, ua: np.float32, fa: np.ndarray, ub: np.float32, fb: np.ndarray) -> dict:
        delta = float(ub) - float(ua)
        diffs = [(n, float(b) - float(a)) for n, a, b in zip(self.factors, fa, fb)]
        return {
            "preferred": "b" if delta > 0 else "a",
            "probability": self.lapse / 2 + (1 - self.lapse) * sigmoid(abs(delta) / self.temperature),
            "delta": delta,
            "factors": dict(sorted(diffs, key=lambda kv: -abs(kv[1]))),
        }


# ---------------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------------


def _decode(data: bytes | Path, spec: dict | None = None) -> np.ndarray:
    """Section 4.2 with Pillow: draft("RGB", (2W, 2H)) for JPEGs, first frame, EXIF orientation, RGB."""
    from PIL import Image, ImageOps

    im = Image.open(io.BytesIO(data) if isinstance(data, bytes) else data)
    if spec is not None and im.format in ("JPEG", "MPO"):
        H, W = spec["size"]
        im.draft("RGB", (2 * W, 2 * H))
    im.load()
    return np.asarray((ImageOps.exif_transpose(im) or im).convert("RGB"))


@pytest.fixture(scope="module")
def photos() -> list[tuple[str, np.ndarray]]:
    """~100 real photos from every source (every 4th file by name), long side cut to 640 px, as uint8 RGB."""
    from PIL import Image, ImageOps

    if not PHOTOS.is_dir():
        pytest.skip("shared photos not available")
    files = sorted(PHOTOS.glob("*.jpg"))
    step = max(1, len(files) // N_PHOTOS)
    out = []
    for f in files[::step][:N_PHOTOS]:
        with Image.open(f) as im:
            im.draft("RGB", (LONG_SIDE, LONG_SIDE))
            im = (ImageOps.exif_transpose(im) or im).convert("RGB")
            im.thumbnail((LONG_SIDE, LONG_SIDE))
            out.append((f.name, np.asarray(im)))
    assert len(out) >= min(N_PHOTOS, len(files))
    # Frames far below any photo, so that every model's scores also reach past its lowest knot, where the
    # end segment is extended and clamped (a pool of real photos may hold every real photo within its knots).
    noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    return out + [("black frame", np.zeros((240, 320, 3), np.uint8)), ("noise frame", noise)]


@pytest.fixture(scope="module", params=EMBEDDED)
def pair(request, photos):
    """(runtime scorer, doc model, doc outputs per photo) for one embedded model."""
    scorer = redaes_lite.load(request.param)
    doc = DocModel(scorer.path)
    pixels = np.stack([doc.pixels(a) for _, a in photos])
    outs = [doc.run(pixels[i : i + 20]) for i in range(0, len(pixels), 20)]
    utility = np.concatenate([u for u, _ in outs])
    factors = np.concatenate([f for _, f in outs])
    return scorer, doc, pixels, utility, factors


def _close_dicts(got: dict, want: dict) -> None:
    assert list(got) == list(want), "same keys in the same order"
    np.testing.assert_allclose([got[k] for k in got], [want[k] for k in want], rtol=0, atol=TOL)


# ---------------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", EMBEDDED)
def test_metadata_and_graph_follow_the_page(name):
    doc = DocModel(redaes_lite.load(name).path)
    m = doc.meta
    assert not [k for k in REQUIRED if k not in m]
    assert m["format"] == "1" and m["version"]
    for k in JSON_KEYS:
        if k in m:
            json.loads(m[k])
    assert doc.factors and len(set(doc.factors)) == len(doc.factors) and set(doc.factors) <= set(VOCABULARY)
    assert doc.temperature > 0 and 0 <= doc.lapse < 1
    cal = doc.calibration
    U, S = cal["utility"], cal["score"]
    assert {"method", "utility", "score", "fitted_on"} <= set(cal) and len(U) == len(S) >= 2
    assert all(b > a for a, b in zip(U, U[1:])) and all(b >= a for a, b in zip(S, S[1:]))
    assert 0 <= S[0] and S[-1] <= 10
    student = json.loads(m["student"])
    assert student["input"] == doc.spec["size"] and student["backbone"].split(":")[0] in ("timm", "open_clip", "nima")
    assert m["quantization"] in ("fp32", "fp16", "int8-dynamic", "int8-qdq") and m["license"].strip()
    assert set(doc.spec) == {"size", "resize", "interpolation", "antialias", "pad", "mean", "std"}
    (inp,) = [i for i in doc.session.get_inputs() if i.name == "pixel_values"]
    assert inp.type == "tensor(float)" and inp.shape[1:] == [3, *doc.spec["size"]] and not isinstance(inp.shape[0], int)
    outs = {o.name: o for o in doc.session.get_outputs()}
    assert outs["utility"].type == outs["factors"].type == "tensor(float)"
    assert len(outs["utility"].shape) == 1 and outs["factors"].shape[1] == len(doc.factors)


@pytest.mark.parametrize("name", EMBEDDED)
def test_sidecar_holds_the_files_sha256_and_its_metadata(name):
    scorer = redaes_lite.load(name)
    side = json.loads(scorer.path.with_suffix(".json").read_text())
    assert side["file"] == scorer.path.name and isinstance(side["opset"], int)
    assert side["sha256"] == hashlib.sha256(scorer.path.read_bytes()).hexdigest()
    meta = DocModel(scorer.path).meta
    parsed = {f"redaes.{k}": json.loads(v) if k in JSON_KEYS else v for k, v in meta.items()}
    for k in ("redaes.temperature", "redaes.lapse"):
        if k in parsed:
            parsed[k] = float(parsed[k])
    assert side["metadata"] == parsed


def test_preprocessing_is_the_runtimes_bit_for_bit(pair, photos):
    scorer, _, pixels, _, _ = pair
    spec = scorer.info.preprocess
    for (name, arr), ours in zip(photos, pixels):
        np.testing.assert_array_equal(ours, to_array(load_image(arr, spec), spec), err_msg=name)


@pytest.mark.parametrize("resize_mode", ["letterbox", "squash", "center_crop"])
@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "lanczos", "box", "nearest"])
def test_every_resize_mode_and_filter_is_the_runtimes(photos, resize_mode, interpolation):
    """Spec variants of the embedded model's spec, on a few photos and odd shapes (tiny, thin, exact size)."""
    base = json.loads(DocModel(redaes_lite.load("default").path).meta["preprocess"])
    spec = {**base, "resize": resize_mode, "interpolation": interpolation, "size": [160, 192], "pad": [0.2, 0.5, 0.9]}
    rng = np.random.default_rng(0)
    shapes = [(1, 1, 3), (3, 700, 3), (500, 7, 3), (160, 192, 3), (81, 97, 3)]
    odd = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in shapes]
    tall = photos[1][1][:, : photos[1][1].shape[0] // 3]  # 3:1 portrait: Pillow 13 resizes it vertically first
    images = [a for _, a in photos[::25]] + [tall] + odd
    runtime_spec = PreprocessSpec.from_dict(spec)
    for img in images:
        want = to_array(load_image(img, runtime_spec), runtime_spec)
        np.testing.assert_array_equal(make_pixels(img, spec), want, err_msg=f"{img.shape}")


def test_nearest_halfway_cases_follow_the_accumulated_position():
    """Where ``(i + 0.5) * in / out`` is exactly an integer, Pillow's accumulated position may fall just short."""
    from PIL import Image

    rng = np.random.default_rng(1)
    for w, width in [(1276, 255), (1000, 208), (4000, 224), (7, 208), (513, 512)]:
        img = rng.integers(0, 256, (2, w, 3), dtype=np.uint8)
        want = np.asarray(Image.fromarray(img).resize((width, 2), Image.Resampling.NEAREST))
        np.testing.assert_array_equal(resize(img, width, 2, "nearest"), want, err_msg=f"{w} -> {width}")
    assert nearest_index(1276, 255)[127] == 637 and math.floor(127.5 * 1276 / 255) == 638


def test_score_matches_the_runtime(pair, photos):
    scorer, doc, _, utility, factors = pair
    U = doc.calibration["utility"]
    beyond = 0
    for (name, arr), u, f in zip(photos, utility, factors):
        want = doc.score(u, f)
        got = scorer.score(arr)
        assert abs(got.utility - want["utility"]) <= TOL, name
        assert abs(got.score - want["score"]) <= TOL, name
        _close_dicts(got.factors, want["factors"])
        beyond += not U[0] <= u <= U[-1]
    assert beyond > 0, "the photos should reach past an end knot, where the end segments are extended"


def test_compare_matches_the_runtime(pair, photos):
    scorer, doc, _, utility, factors = pair
    n = len(photos)
    pairs = [(i, (i + 1) % n) for i in range(0, n, 2)] + [(0, 0)]
    for i, j in pairs:
        want = doc.compare(utility[i], factors[i], utility[j], factors[j])
        got = scorer.compare(photos[i][1], photos[j][1])
        assert got.preferred == want["preferred"], (photos[i][0], photos[j][0])
        assert abs(got.delta - want["delta"]) <= TOL
        assert abs(got.probability - want["probability"]) <= TOL
        _close_dicts(got.factors, want["factors"])
    tie = scorer.compare(photos[0][1], photos[0][1])
    assert tie.preferred == "a" and tie.delta == 0 and tie.probability == 0.5
    # The lapse matters: the most distant pair stays below 1 - lapse/2.
    far = scorer.compare(photos[int(np.argmin(utility))][1], photos[int(np.argmax(utility))][1])
    assert far.probability < 1 - doc.lapse / 2 + 1e-12
    if doc.lapse > 0:
        assert abs(far.probability - sigmoid(abs(far.delta) / doc.temperature)) > 1e-3


@pytest.mark.parametrize("name", EMBEDDED)
def test_display_score_extends_the_end_segments_then_clamps(name):
    scorer = redaes_lite.load(name)
    doc = DocModel(scorer.path)
    U = doc.calibration["utility"]
    us = np.concatenate([np.linspace(U[0] - 20, U[-1] + 20, 401), U, np.asarray(U) + 1e-3, np.asarray(U) - 1e-3])
    want = [doc.display(float(u)) for u in us]
    np.testing.assert_allclose(scorer.info.calibrate(us), want, rtol=0, atol=1e-12)
    assert min(want) == 0.0 and max(want) == 10.0


@needs_photos
@pytest.mark.parametrize("name", EMBEDDED)
def test_files_and_bytes_decode_as_the_page_says(name, tmp_path):
    """Section 4.2 on real files, on a big JPEG (draft at a reduced size) and on an EXIF-rotated one."""
    from PIL import Image

    scorer = redaes_lite.load(name)
    doc = DocModel(scorer.path)
    spec = scorer.info.preprocess
    H, W = doc.spec["size"]
    files = sorted(PHOTOS.glob("*.jpg"))[5::45]
    # A camera-like size: 1800x1300 stored, EXIF orientation 6 (rotate 90 degrees clockwise to view).
    big = Image.fromarray(_decode(files[0])).resize((1800, 1300), Image.Resampling.BILINEAR)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    big.save(buf, "JPEG", quality=90, exif=exif)
    rotated = buf.getvalue()
    r = min(1800 // (2 * W), 1300 // (2 * H))
    s = next(s for s in (8, 4, 2, 1) if s <= r)
    assert s > 1, "the big JPEG must be drafted"
    decoded = load_image(rotated, spec)
    assert decoded.size == (math.ceil(1300 / s), math.ceil(1800 / s))  # drafted stored size, then rotated
    inputs = [*files, rotated]
    for x in inputs:
        rgb = _decode(x, doc.spec)
        np.testing.assert_array_equal(np.asarray(load_image(x, spec)), rgb)
        u, f = doc.run(doc.pixels(rgb)[None])
        want = doc.score(u[0], f[0])
        got = scorer.score(x)
        assert abs(got.utility - want["utility"]) <= TOL and abs(got.score - want["score"]) <= TOL
        _close_dicts(got.factors, want["factors"])
