"""NIMA (idealo's MobileNet v1 on AVA) from its Keras 2.1.6 HDF5 file: strict loading, layouts, padding,
the real file's counts and a pinned score, and the ONNX round trip.

Synthetic files are written in Keras's layout (``<layer>/<layer>/<weight>:0`` datasets, ``layer_names`` and
``weight_names`` attributes), with the real file's layer and tensor names; the architecture below is spelt
out independently of ``distill/teachers/nima.py``, and checked against the real file when it exists.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
h5py = pytest.importorskip("h5py")

from distill.teachers.nima import (  # noqa: E402
    NIMA_SHA256,
    default_path,
    export_nima_onnx,
    load_nima,
    mean_score,
    nima_predict,
    nima_preprocess,
    nima_scores,
)

REAL = default_path()
needs_real = pytest.mark.skipif(not REAL.is_file(), reason=f"NIMA weights not at {REAL}")
PHOTO = REAL.parents[2] / "data" / "photos" / "bsds_100075.jpg"
#: NIMA mean score of PHOTO, computed once with this implementation, whose scores over the shared photos have
#: the mean and spread the weights' README gives (with nearest resize, as NIMA was trained; bilinear shifts them).
PINNED_SCORE = 5.46293

#: MobileNet v1 1.0 depthwise-separable blocks: (output channels, stride).
BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]


def keras_layers() -> list[tuple[str, dict[str, tuple[int, ...]]]]:
    """(layer name, {weight: shape}) in Keras 2.1.6's order, weightless layers included."""

    def bn(name: str, c: int) -> tuple[str, dict[str, tuple[int, ...]]]:
        return name, {w: (c,) for w in ("gamma", "beta", "moving_mean", "moving_variance")}

    out = [
        ("input_1", {}),
        ("conv1_pad", {}),
        ("conv1", {"kernel": (3, 3, 3, 32)}),
        bn("conv1_bn", 32),
        ("conv1_relu", {}),
    ]
    c = 32
    for i, (co, _) in enumerate(BLOCKS, 1):
        out += [
            (f"conv_pad_{i}", {}),
            (f"conv_dw_{i}", {"depthwise_kernel": (3, 3, c, 1)}),
            bn(f"conv_dw_{i}_bn", c),
            (f"conv_dw_{i}_relu", {}),
            (f"conv_pw_{i}", {"kernel": (1, 1, c, co)}),
            bn(f"conv_pw_{i}_bn", co),
            (f"conv_pw_{i}_relu", {}),
        ]
        c = co
    return out + [
        ("global_average_pooling2d_1", {}),
        ("dropout_1", {}),
        ("dense_1", {"kernel": (1024, 10), "bias": (10,)}),
    ]


def write_keras(
    path: Path, tensors: dict[str, np.ndarray], layers: list[str], extra: dict[str, np.ndarray] | None = None
) -> Path:
    """A Keras 2.1.6 weights file: ``tensors`` keyed ``"<layer>/<weight>"``; ``extra`` datasets stored unlisted."""
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"], f.attrs["backend"] = b"2.1.6", b"tensorflow"
        f.attrs["layer_names"] = np.array([n.encode() for n in layers])
        for layer in layers:
            g = f.create_group(layer)
            names = [k.split("/", 1)[1] for k in tensors if k.split("/", 1)[0] == layer]
            g.attrs["weight_names"] = np.array([f"{layer}/{w}:0".encode() for w in names]) if names else np.array([])
            for w in names:
                g.create_dataset(f"{layer}/{w}:0", data=tensors[f"{layer}/{w}"], compression="gzip")
        for key, value in (extra or {}).items():
            f.create_dataset(key, data=value)
    return path


def synthetic_tensors(seed: int = 0) -> dict[str, np.ndarray]:
    """Small random weights (BN variances positive) that keep activations finite and non-trivial."""
    rng = np.random.default_rng(seed)
    out = {}
    for layer, weights in keras_layers():
        for w, shape in weights.items():
            if w == "moving_variance":
                v = rng.uniform(0.5, 1.5, shape)
            elif w == "gamma":
                v = rng.uniform(0.5, 1.5, shape)
            else:
                fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
                v = rng.normal(0, 1 / np.sqrt(fan_in), shape) if len(shape) > 1 else rng.normal(0, 0.1, shape)
            out[f"{layer}/{w}"] = v.astype(np.float32)
    return out


LAYER_NAMES = [name for name, _ in keras_layers()]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    tensors = synthetic_tensors()
    return write_keras(tmp_path_factory.mktemp("nima") / "synthetic.hdf5", tensors, LAYER_NAMES), tensors


# ---------------------------------------------------------------------------------------------- synthetic


def test_synthetic_file_loads_with_keras_layouts(synthetic: tuple[Path, dict[str, np.ndarray]]) -> None:
    path, t = synthetic
    model = load_nima(path, sha256=None)
    assert model.loaded is not None and model.loaded.tensors == 137 and model.loaded.values == 3_239_114
    L = model.layers
    # conv HWIO -> OIHW, depthwise HxWxCx1 -> Cx1xHxW, dense (in, out) -> (out, in); BN by name
    np.testing.assert_array_equal(L["conv1"].weight.numpy(), t["conv1/kernel"].transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(L["conv_dw_5"].weight.numpy(), t["conv_dw_5/depthwise_kernel"].transpose(2, 3, 0, 1))
    np.testing.assert_array_equal(L["conv_pw_13"].weight.numpy()[:, :, 0, 0], t["conv_pw_13/kernel"][0, 0].T)
    np.testing.assert_array_equal(L["dense_1"].weight.numpy(), t["dense_1/kernel"].T)
    np.testing.assert_array_equal(L["dense_1"].bias.numpy(), t["dense_1/bias"])
    bn = L["conv_pw_7_bn"]
    for attr, w in [
        ("weight", "gamma"),
        ("bias", "beta"),
        ("running_mean", "moving_mean"),
        ("running_var", "moving_variance"),
    ]:
        np.testing.assert_array_equal(getattr(bn, attr).numpy(), t[f"conv_pw_7_bn/{w}"])
    assert bn.eps == pytest.approx(1e-3) and not model.training
    probs = model(torch.zeros(2, 3, 224, 224))
    assert probs.shape == (2, 10) and torch.allclose(probs.sum(-1), torch.ones(2))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ("missing", r"synthetic-bad\.hdf5: missing tensor conv_dw_3_bn/moving_mean"),
        ("extra_listed", r"synthetic-bad\.hdf5: unexpected tensor dense_1/extra:0"),
        ("extra_unlisted", r"synthetic-bad\.hdf5: unexpected tensor stray/kernel:0"),
        ("shape", r"synthetic-bad\.hdf5: tensor conv_pw_2/conv_pw_2/kernel:0 has shape \(1, 1, 64, 127\)"),
        ("transposed", r"synthetic-bad\.hdf5: tensor dense_1/dense_1/kernel:0 has shape \(10, 1024\)"),
        ("no_pad_layer", r"synthetic-bad\.hdf5: no layer conv_pad_2: not the Keras 2.1.6"),
    ],
)
def test_strict_loading_names_the_file(tmp_path: Path, change: str, match: str) -> None:
    tensors, layers, extra = synthetic_tensors(), list(LAYER_NAMES), {}
    if change == "missing":
        del tensors["conv_dw_3_bn/moving_mean"]
    elif change == "extra_listed":
        tensors["dense_1/extra"] = np.zeros(3, np.float32)
    elif change == "extra_unlisted":
        extra["stray/kernel:0"] = np.zeros(3, np.float32)
    elif change == "shape":
        tensors["conv_pw_2/kernel"] = np.zeros((1, 1, 64, 127), np.float32)
    elif change == "transposed":
        tensors["dense_1/kernel"] = tensors["dense_1/kernel"].T.copy()
    else:  # a later Keras's graph: pads only before stride-2 convolutions
        layers.remove("conv_pad_2")
    path = write_keras(tmp_path / "synthetic-bad.hdf5", tensors, layers, extra)
    with pytest.raises(ValueError, match=match) as e:
        load_nima(path, sha256=None)
    assert "\n" not in str(e.value)


def test_missing_file_wrong_sha_and_not_hdf5(tmp_path: Path, synthetic: tuple[Path, dict[str, np.ndarray]]) -> None:
    with pytest.raises(FileNotFoundError, match=r"NIMA weights not found at .*nope\.hdf5"):
        load_nima(tmp_path / "nope.hdf5")
    with pytest.raises(ValueError, match=rf"synthetic\.hdf5: sha256 [0-9a-f]{{64}} is not the expected {NIMA_SHA256}"):
        load_nima(synthetic[0])  # the default checks the shipped release's hash
    junk = tmp_path / "junk.hdf5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match=r"junk\.hdf5: not an HDF5 file"):
        load_nima(junk, sha256=None)


def test_every_3x3_conv_is_padded_symmetrically(synthetic: tuple[Path, dict[str, np.ndarray]]) -> None:
    """Keras 2.1.6: zero pad (1, 1) on every side before each 3x3 conv, stride 2 included (later Keras: (0, 1))."""
    model = load_nima(synthetic[0], sha256=None)
    # conv1 (stride 2) by hand: impulses at pixels (0, 0) and (223, 223) and a kernel with distinct taps, so
    # which tap each output reads shows the padding (a (0, 1) pad would give taps (0, 0) and (1, 1)).
    k = np.zeros((3, 3, 3, 32), np.float32)
    k[:, :, 0, 0] = np.arange(1, 10, dtype=np.float32).reshape(3, 3)  # tap (h, w) = 3h + w + 1
    x = torch.zeros(1, 3, 224, 224)
    x[0, 0, 0, 0] = 1.0
    x[0, 0, 223, 223] = 1.0
    seen: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        model.layers["conv1"].weight.copy_(torch.from_numpy(k.transpose(3, 2, 0, 1)))
    hooks = [model.layers["conv1"].register_forward_hook(lambda m, i, o: seen.__setitem__("conv1", o))]
    for name, conv in model.layers.items():
        if getattr(conv, "kernel_size", None) == (3, 3):
            hooks.append(conv.register_forward_pre_hook(lambda m, i, name=name: seen.__setitem__(name + ":in", i[0])))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    out = seen["conv1"][0, 0]
    assert out.shape == (112, 112)
    assert out[0, 0].item() == 5.0  # tap (1, 1): the impulse sits in the middle of the first window
    assert out[111, 111].item() == 9.0  # last window: rows 221..223, pixel 223 under tap (2, 2) (a (0, 1) pad: (1, 1))
    # a direct conv on the hand-made input agrees only with the symmetric pad
    w = torch.from_numpy(k.transpose(3, 2, 0, 1))
    sym = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (1, 1, 1, 1)), w, stride=2)
    later = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (0, 1, 0, 1)), w, stride=2)
    assert torch.equal(seen["conv1"], sym) and not torch.equal(seen["conv1"], later)
    # every 3x3 conv sees its input grown by 2 with zero borders on all four sides
    sides = {
        "conv1": 224,
        **{f"conv_dw_{i}": s for i, s in enumerate([112, 112, 56, 56, 28, 28, 14, 14, 14, 14, 14, 14, 7], 1)},
    }
    for name, side in sides.items():
        t = seen[name + ":in"]
        assert t.shape[-2:] == (side + 2, side + 2), name
        for border in (t[..., 0, :], t[..., -1, :], t[..., :, 0], t[..., :, -1]):
            assert torch.count_nonzero(border) == 0, name


def test_preprocessing_is_idealos(tmp_path: Path) -> None:
    from PIL import Image

    # 4x2 image, nearest to 224x224 ignoring aspect: each source pixel becomes a 56x112 block
    src = np.array(
        [
            [[0, 0, 0], [255, 255, 255], [0, 0, 0], [255, 0, 0]],
            [[255, 255, 255], [0, 0, 0], [255, 255, 255], [0, 0, 255]],
        ],
        np.uint8,
    )
    Image.fromarray(src).save(tmp_path / "a.png")
    Image.fromarray(src).convert("L").save(tmp_path / "gray.png")
    x = nima_preprocess([tmp_path / "a.png", src, (tmp_path / "a.png").read_bytes()])
    assert x.shape == (3, 3, 224, 224) and x.dtype == torch.float32
    blocks = np.repeat(np.repeat(src, 112, 0), 56, 1).astype(np.float32)
    expected = torch.from_numpy(blocks / 127.5 - 1).permute(2, 0, 1)
    for i in range(3):
        assert torch.equal(x[i], expected)
    g = nima_preprocess(tmp_path / "gray.png")
    assert g.shape == (1, 3, 224, 224) and torch.equal(g[0, 0], g[0, 1])
    # EXIF orientation 6 (rotate 90 clockwise to display): a 4x2 file shows as 2x4
    im = Image.fromarray(src)
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(tmp_path / "rot.jpg", exif=exif, quality=100)
    r = nima_preprocess(tmp_path / "rot.jpg")[0]
    # displayed top row = the file's left column read upwards: white (src[1, 0]) then black (src[0, 0])
    assert r[0, 0, 0] > 0.9 and r[0, 0, 223] < -0.9


def test_mean_score_is_sum_i_p_i() -> None:
    p = np.zeros((2, 10), np.float32)
    p[0, 0], p[1, 4], p[1, 9] = 1.0, 0.5, 0.5
    np.testing.assert_allclose(mean_score(p), [1.0, 7.5])
    assert torch.allclose(mean_score(torch.from_numpy(p)), torch.tensor([1.0, 7.5]))


# ---------------------------------------------------------------------------------------------- real file


@pytest.fixture(scope="module")
def real() -> object:
    if not REAL.is_file():
        pytest.skip(f"NIMA weights not at {REAL}")
    torch.set_num_threads(1)
    return load_nima()


@needs_real
def test_synthetic_layout_mirrors_the_real_file() -> None:
    with h5py.File(REAL, "r") as f:
        assert [n.decode() for n in f.attrs["layer_names"]] == LAYER_NAMES
        assert f.attrs["keras_version"] in (b"2.1.6", "2.1.6")
        real_shapes: dict[str, tuple[int, ...]] = {}
        f.visititems(lambda n, o: real_shapes.__setitem__(n, o.shape) if isinstance(o, h5py.Dataset) else None)
    ours = {f"{layer}/{layer}/{w}:0": s for layer, ws in keras_layers() for w, s in ws.items()}
    assert real_shapes == ours


@needs_real
def test_real_file_counts_and_pinned_score(real: object) -> None:
    info = real.loaded
    assert info.tensors == 137 and info.values == 3_239_114 and info.sha256 == NIMA_SHA256
    n = sum(p.numel() for p in real.parameters()) + sum(b.numel() for k, b in real.named_buffers() if "running" in k)
    assert n == 3_239_114
    if not PHOTO.is_file():
        pytest.skip(f"no {PHOTO}")
    probs, score = nima_predict(real, [PHOTO, PHOTO], batch_size=1)
    assert probs.shape == (2, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert score[0] == pytest.approx(PINNED_SCORE, abs=1e-3)
    assert nima_scores(real, [str(PHOTO)])[0] == pytest.approx(PINNED_SCORE, abs=1e-3)


@needs_real
def test_a_copy_with_one_byte_changed_fails_the_sha256(tmp_path: Path) -> None:
    bad = tmp_path / REAL.name
    shutil.copyfile(REAL, bad)
    with open(bad, "r+b") as f:
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 1]))
    with pytest.raises(ValueError, match="sha256"):
        load_nima(bad)


@needs_real
@pytest.mark.slow
def test_onnx_round_trip_matches_torch(real: object, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    path = export_nima_onnx(real, tmp_path / "nima.onnx")
    photos = sorted(PHOTO.parent.glob("*.jpg"))[:3] or [PHOTO]
    x = nima_preprocess(photos)  # batch 3: exported at 2, N must be dynamic
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["pixel_values"]
    assert [o.name for o in sess.get_outputs()] == ["probabilities", "score"]
    probs, score = sess.run(None, {"pixel_values": x.numpy()})
    with torch.no_grad():
        want = real(x).numpy()
    np.testing.assert_allclose(probs, want, atol=1e-4)
    np.testing.assert_allclose(score, mean_score(want), atol=1e-4)
