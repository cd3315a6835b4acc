"""idealo's NIMA (MobileNet v1 trained on AVA) rebuilt in PyTorch from its Keras 2.1.6 HDF5 weights.

Why: NIMA is the published peer every shipped model is measured against (``MODEL_CARD.md``) and, its weights
being Apache-2.0, a teacher the ``permissive`` model may learn from. The release is a weights-only Keras
file; running it through TensorFlow would drag a second framework into the tool chain, so this module
rebuilds the graph exactly as Keras 2.1.6 built it (``../shared/weights/nima-mobilenet-ava/README.md``):

- MobileNet v1, alpha 1.0: a symmetric zero pad of 1 before *every* 3x3 convolution, stride 2 included
  (later Keras pads stride 2 by (0, 1); that graph differs by up to 0.03 in probability), then a valid
  convolution; BatchNorm eps 1e-3; ReLU6; global average pool; Dropout(0.75); Dense 1024 -> 10; softmax.
- Loading is strict: every tensor of the file is used exactly once with its shape checked, and the shipped
  file's sha256 is verified (a mismatch raises; pass ``sha256=None`` to load another file).
- Preprocessing is idealo's, not ``redaes_lite.preprocess``'s: full decode (no JPEG draft), EXIF orientation,
  RGB, 224x224 ignoring the aspect ratio with **nearest** sampling, ``x / 127.5 - 1``.
- Output: a distribution over scores 1..10; the score is its mean ``sum(i * p_i)``.

As a teacher (``source: "model"``): :class:`NimaTeacher` labels pairs of any images (photos, their crops and
edits, unlabelled photos) with ``delta = score(b) - score(a)`` for ``python -m distill label --teacher nima``;
``distill.sources.teacher_loop`` runs the same network in the loop (a source config's ``teacher: nima``).
"""

from __future__ import annotations

import hashlib
import io
import os
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from distill.splits import DATA_ROOT
from distill.teachers.base import ImageRefs, PairRequest
from redaes_lite.errors import ImageError
from redaes_lite.pairs import PairLabel, content_hash, pair_id
from redaes_lite.preprocess import load_image

__all__ = [
    "NIMA_FILE",
    "NIMA_SHA256",
    "NIMA_SIZE",
    "TEACHER_ID",
    "LoadInfo",
    "NimaNet",
    "NimaTeacher",
    "default_path",
    "export_nima_onnx",
    "load_nima",
    "mean_score",
    "nima_predict",
    "nima_preprocess",
    "nima_scores",
    "teacher_id",
    "training_data",
]

NIMA_FILE = "weights_mobilenet_aesthetic_0.07.hdf5"
#: sha256 of idealo's release (README next to the file: repository commit dceaf7c, 13,174,216 bytes).
NIMA_SHA256 = "e563ad91b3d47410e45f7238f07ab8f6abd1bd0c4b18a4b0af9c681a21a91cb2"
NIMA_SIZE = 224
#: (output channels, stride) of the 13 depthwise-separable blocks ``conv_dw_i`` / ``conv_pw_i``.
BLOCKS = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)
#: Keras weight name -> torch attribute of the layer's module.
_ATTR = {
    "kernel": "weight",
    "depthwise_kernel": "weight",
    "bias": "bias",
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}
#: Padding layers Keras 2.1.6 wrote (later versions pad only stride-2 blocks, differently).
_PAD_LAYERS = ("conv1_pad", *(f"conv_pad_{i}" for i in range(1, 14)))

#: Teacher id of idealo's release: the weights folder's name, and idealo's file version (its EMD, 0.07).
TEACHER_ID = "nima-mobilenet-ava@idealo-0.07"
#: Version of what a record's delta means (mean-score difference, idealo preprocessing), part of record ids.
LABEL_VERSION = "mean-score-v1"
#: The training-data record of a model taught by the release (``distill.provenance``): Apache-2.0 weights, so
#: ``permissive`` may learn from it (``MODEL_CARD.md``); export copies it into ``redaes.training_data``.
TRAINING_DATA_NAME = "NIMA-MobileNet (idealo, trained on AVA), Apache-2.0 weights"
TRAINING_DATA_LICENSE = (
    "permissive: Apache-2.0 weights, copyright 2018 idealo internet GmbH "
    f"(idealo's {NIMA_FILE}, sha256 {NIMA_SHA256[:12]}; trained on AVA)"
)


def default_path() -> Path:
    """Where the shipped weights live: ``<shared>/weights/nima-mobilenet-ava/<NIMA_FILE>``."""
    return DATA_ROOT.parent / "weights" / "nima-mobilenet-ava" / NIMA_FILE


@dataclass(frozen=True)
class LoadInfo:
    """What :func:`load_nima` read: the file, its sha256, and the tensors and values it used."""

    path: Path
    sha256: str
    tensors: int
    values: int


class NimaNet(nn.Module):
    """MobileNet v1 (alpha 1.0) + Dense(1024 -> 10) softmax; modules named by their Keras layer names."""

    def __init__(self) -> None:
        super().__init__()
        layers: dict[str, nn.Module] = {}
        # (conv name, bn name) in graph order; 3x3 convs get the symmetric pad in features().
        self.plan: list[tuple[str, str]] = []

        def conv_bn(name: str, conv: nn.Conv2d) -> None:
            layers[name], layers[name + "_bn"] = conv, nn.BatchNorm2d(conv.out_channels, eps=1e-3)
            self.plan.append((name, name + "_bn"))

        conv_bn("conv1", nn.Conv2d(3, 32, 3, stride=2, bias=False))
        c = 32
        for i, (out, stride) in enumerate(BLOCKS, 1):
            conv_bn(f"conv_dw_{i}", nn.Conv2d(c, c, 3, stride=stride, groups=c, bias=False))
            conv_bn(f"conv_pw_{i}", nn.Conv2d(c, out, 1, bias=False))
            c = out
        layers["dense_1"] = nn.Linear(c, 10)
        self.layers = nn.ModuleDict(layers)
        self.dropout = nn.Dropout(0.75)  # identity in eval, kept so train() matches idealo's head
        self.loaded: LoadInfo | None = None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled 1024-d MobileNet features of normalised pixels ``[N, 3, 224, 224]``."""
        for conv_name, bn_name in self.plan:
            conv = self.layers[conv_name]
            if conv.kernel_size == (3, 3):
                x = F.pad(x, (1, 1, 1, 1))  # Keras 2.1.6 ZeroPadding2D((1, 1)), stride 2 included
            x = F.relu6(self.layers[bn_name](conv(x)))
        return x.mean(dim=(2, 3))

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Probabilities ``[N, 10]`` of the scores 1..10 from :meth:`features`."""
        return torch.softmax(self.layers["dense_1"](self.dropout(features)), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities ``[N, 10]`` of the scores 1..10."""
        return self.head(self.features(x))

    def keras_tensors(self) -> dict[str, tuple[nn.Module, str]]:
        """``"<layer>/<weight>:0"`` -> (module, torch attribute) for every tensor the Keras file must hold."""
        out = {}
        for name, module in self.layers.items():
            if isinstance(module, nn.BatchNorm2d):
                weights = ("gamma", "beta", "moving_mean", "moving_variance")
            elif isinstance(module, nn.Linear):
                weights = ("kernel", "bias")
            else:
                weights = ("depthwise_kernel",) if name.startswith("conv_dw_") else ("kernel",)
            for w in weights:
                out[f"{name}/{w}:0"] = (module, _ATTR[w])
        return out


def mean_score(probs: torch.Tensor | np.ndarray) -> Any:
    """``sum(i * p_i)`` over the last axis, i = 1..10 (same type as ``probs``)."""
    bins = np.arange(1, 11, dtype=np.float32)
    if isinstance(probs, torch.Tensor):
        return probs @ torch.from_numpy(bins).to(probs)
    return np.asarray(probs, np.float32) @ bins


# ---------------------------------------------------------------------------------------------- loading


def _to_torch(key: str, value: np.ndarray) -> torch.Tensor:
    """Keras layout -> torch: conv HWIO -> OIHW, depthwise HxWxCx1 -> Cx1xHxW, dense (in, out) -> (out, in)."""
    t = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    if key.endswith("/depthwise_kernel:0"):
        return t.permute(2, 3, 0, 1).contiguous()
    if key.endswith("/kernel:0"):
        return t.permute(3, 2, 0, 1).contiguous() if t.ndim == 4 else t.T.contiguous()
    return t


def _read_keras(path: Path) -> tuple[dict[str, np.ndarray], set[str], list[str]]:
    """``{"<layer>/<weight>": array}`` by each group's ``weight_names``, every dataset path in the file, and
    the ``layer_names`` attribute. Raises ``ValueError`` (one line, naming the file) on a malformed file."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"{path}: not an HDF5 file ({e})") from None
    with f:
        root = f["model_weights"] if "model_weights" in f else f  # a full-model file nests the weights
        if "layer_names" not in root.attrs:
            raise ValueError(f"{path}: no 'layer_names' attribute: not a Keras weights file")
        layer_names = [n.decode() if isinstance(n, bytes) else str(n) for n in root.attrs["layer_names"]]
        datasets: set[str] = set()
        root.visititems(lambda name, obj: datasets.add(name) if isinstance(obj, h5py.Dataset) else None)
        tensors: dict[str, np.ndarray] = {}
        for layer in layer_names:
            if layer not in root:
                raise ValueError(f"{path}: layer {layer!r} is listed in layer_names but has no group")
            for w in root[layer].attrs.get("weight_names", []):
                w = w.decode() if isinstance(w, bytes) else str(w)
                if f"{layer}/{w}" not in root:
                    raise ValueError(f"{path}: tensor {layer}/{w} is listed in weight_names but not stored")
                tensors[f"{layer}/{w}"] = root[f"{layer}/{w}"][()]
    return tensors, datasets, layer_names


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_nima(path: str | os.PathLike | None = None, *, sha256: str | None = NIMA_SHA256) -> NimaNet:
    """Build :class:`NimaNet` (eval mode, frozen) from idealo's HDF5 weights at ``path`` (default :func:`default_path`).

    The file's sha256 must equal ``sha256`` (the shipped release's by default; ``None`` skips the check,
    for other files). Every tensor must exist with the expected shape and be used once: a missing, extra,
    misnamed or misshapen tensor, or a file without Keras 2.1.6's padding layers, raises ``ValueError``.
    A missing file raises ``FileNotFoundError`` saying where it looked.
    """
    path = Path(path) if path is not None else default_path()
    if not path.is_file():
        raise FileNotFoundError(f"NIMA weights not found at {path} (idealo's {NIMA_FILE}; see its README)")
    digest = _file_sha256(path)
    if sha256 is not None and digest != sha256:
        raise ValueError(f"{path}: sha256 {digest} is not the expected {sha256} (pass sha256=None for other files)")
    tensors, datasets, layer_names = _read_keras(path)
    missing_pads = [p for p in _PAD_LAYERS if p not in layer_names]
    if missing_pads:
        raise ValueError(f"{path}: no layer {missing_pads[0]}: not the Keras 2.1.6 MobileNet graph (padding differs)")
    # Keras names weights "<scope>/<weight>:0" inside the layer's group; the scope is the layer's own name.
    by_key = {}
    for full, value in tensors.items():
        layer, _, weight = full.partition("/")
        key = f"{layer}/{weight.rsplit('/', 1)[-1]}"
        if key in by_key:
            raise ValueError(f"{path}: tensor {key} stored twice ({by_key[key][0]} and {full})")
        by_key[key] = (full, value)
    model = NimaNet()
    expected = model.keras_tensors()
    missing = sorted(set(expected) - set(by_key))
    extra = sorted(set(by_key) - set(expected)) + sorted(datasets - set(tensors))
    if missing:
        raise ValueError(f"{path}: missing tensor {missing[0]} ({len(missing)} missing in all)")
    if extra:
        raise ValueError(f"{path}: unexpected tensor {extra[0]} ({len(extra)} unused in all)")
    values = 0
    with torch.no_grad():
        for key, (module, attr) in expected.items():
            full, value = by_key[key]
            t = _to_torch(key, value)
            target = getattr(module, attr)
            if t.shape != target.shape:
                raise ValueError(
                    f"{path}: tensor {full} has shape {tuple(value.shape)}, "
                    f"expected the Keras layout of torch {tuple(target.shape)}"
                )
            target.copy_(t)
            values += t.numel()
    model.loaded = LoadInfo(path=path, sha256=digest, tensors=len(expected), values=values)
    return model.eval().requires_grad_(False)  # a peer / teacher: frozen unless the caller unfreezes it


# ---------------------------------------------------------------------------------------------- inference


ImageInput = Any  # path | bytes | PIL image | HxWx3 uint8 array


def _decode(x: ImageInput) -> Image.Image:
    """Full decode (no JPEG draft, unlike ``redaes_lite.preprocess``), EXIF orientation, RGB."""
    if isinstance(x, (str, os.PathLike)):
        x = Path(x).read_bytes()
    if isinstance(x, (bytes, bytearray, memoryview)):
        x = Image.open(io.BytesIO(bytes(x)))  # a caller's image to load_image: decoded whole, no draft
    return load_image(x)


def nima_preprocess(images: Iterable[ImageInput] | ImageInput) -> torch.Tensor:
    """idealo's preprocessing: RGB, 224x224 ignoring aspect with nearest sampling, ``x / 127.5 - 1``.

    Returns float32 ``[N, 3, 224, 224]``; a single input gives ``N = 1``.
    """
    if isinstance(images, (str, os.PathLike, bytes, bytearray, memoryview, Image.Image, np.ndarray)):
        images = [images]
    arrays = [
        np.asarray(_decode(x).resize((NIMA_SIZE, NIMA_SIZE), Image.Resampling.NEAREST), np.float32) / 127.5 - 1.0
        for x in images
    ]
    if not arrays:
        return torch.empty(0, 3, NIMA_SIZE, NIMA_SIZE)
    return torch.from_numpy(np.stack(arrays).transpose(0, 3, 1, 2).copy())


def _batches(items: Sequence[ImageInput], size: int) -> Iterator[Sequence[ImageInput]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def nima_predict(
    model: NimaNet, images: Sequence[ImageInput], *, batch_size: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """``(probs [N, 10], mean scores [N])`` for ``images``, in batches."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    chunks = []
    model.eval()
    with torch.inference_mode():
        for batch in _batches(list(images), batch_size):
            chunks.append(model(nima_preprocess(batch)).numpy())
    probs = np.concatenate(chunks) if chunks else np.zeros((0, 10), np.float32)
    return probs, mean_score(probs)


def nima_scores(model: NimaNet, images: Sequence[ImageInput], batch_size: int = 32) -> np.ndarray:
    """Mean scores ``sum(i * p_i)`` (1..10) of ``images`` (paths or any ``load_image`` input)."""
    return nima_predict(model, images, batch_size=batch_size)[1]


# ---------------------------------------------------------------------------------------------- teacher


def teacher_id(sha256: str, path: str | os.PathLike) -> str:
    """:data:`TEACHER_ID` for idealo's release; another file (a fine-tune) is ``nima-mobilenet:<stem>@<sha12>``."""
    return TEACHER_ID if sha256 == NIMA_SHA256 else f"nima-mobilenet:{Path(path).stem}@{sha256[:12]}"


def training_data(sha256: str, path: str | os.PathLike) -> dict[str, str]:
    """The ``training_data`` record of a model NIMA taught: ``permissive`` only for idealo's release, since
    only its licence is known (another file's weights may have learnt from anything)."""
    if sha256 == NIMA_SHA256:
        return {"name": TRAINING_DATA_NAME, "license": TRAINING_DATA_LICENSE}
    return {
        "name": f"NIMA-MobileNet weights {Path(path).name} (sha256 {sha256[:12]}, not idealo's release)",
        "license": f"unknown: that of the NIMA weights {Path(path).name} and the data they were trained on",
    }


class NimaTeacher(ImageRefs):
    """A ``model`` teacher: ``delta`` = NIMA mean score of ``b`` minus that of ``a`` (1..10 units, so -9..9).

    ``a``/``b`` are paths under ``root`` or ``sha256:<hex>`` generated images (``distill.images.resolve_image``),
    decoded and preprocessed as idealo did (:func:`nima_preprocess`). Any image works: a photo, its crops and
    edits, an unlabelled photo. An image that cannot be read or decoded gives a ``status: "failed"`` record
    naming it, never an exception. Record ids hash both images' bytes, the teacher id (weights version) and
    :data:`LABEL_VERSION`, so moved images keep their labels. Scores of the last 4,096 distinct images are
    reused (the edits of one photo share its score).

    ``path=None`` loads the shipped release and checks its sha256; another file (``--teacher nima:PATH``) is
    loaded unchecked and named by its own sha256 (:func:`teacher_id`).
    """

    source = "model"
    _CACHE = 4096

    def __init__(
        self,
        root: str | os.PathLike = ".",
        *,
        path: str | os.PathLike | None = None,
        batch_size: int | None = None,
        device: str | None = None,
    ) -> None:
        self.root = Path(root)
        self.batch_size = batch_size or 32
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = (load_nima() if path is None else load_nima(path, sha256=None)).to(self.device)
        info = self.model.loaded
        assert info is not None
        self.id = teacher_id(info.sha256, info.path)
        self._hashes: dict[str, str] = {}
        self._scores: OrderedDict[str, float] = OrderedDict()

    # -- keys
    def key(self, req: PairRequest) -> str:
        """The record id written for ``req``: both images' content + teacher id + :data:`LABEL_VERSION`."""
        return pair_id(self.image_key(req.a), self.image_key(req.b), self.id, LABEL_VERSION)

    # -- labelling
    def label(self, pairs: Iterable[PairRequest]) -> Iterator[PairLabel]:
        """One record per request, in order; ``batch_size`` requests' distinct images scored per round."""
        it = iter(pairs)
        while batch := list(islice(it, self.batch_size)):
            scores = self._score(dict.fromkeys(r for req in batch for r in (req.a, req.b)))
            for req in batch:
                sa, sb = scores[req.a], scores[req.b]
                errors = [f"{side}: {s}" for side, s in (("a", sa), ("b", sb)) if isinstance(s, str)]
                common = dict(
                    id=self.key(req),
                    a=req.a,
                    b=req.b,
                    source=self.source,
                    teacher=self.id,
                    group=req.group,
                    recipe=list(req.recipe) if req.recipe else None,
                )
                if errors:
                    yield PairLabel(delta=None, status="failed", error="; ".join(errors), **common)
                else:
                    yield PairLabel(delta=round(float(sb) - float(sa), 6), **common)

    def _score(self, refs: Iterable[str]) -> dict[str, float | str]:
        """ref -> NIMA mean score, or the reason it has none (a ``str``)."""
        out: dict[str, float | str] = {}
        todo: dict[str, torch.Tensor] = {}  # content key -> preprocessed pixels
        keys: dict[str, str] = {}
        for ref in refs:
            known = ref if ref.startswith("sha256:") else self._hashes.get(ref)
            if known is not None and known in self._scores:  # scored before: no need to read it again
                self._scores.move_to_end(known)
                keys[ref] = known
                continue
            try:
                data = self._read(ref)
            except ImageError as e:
                out[ref] = str(e)
                continue
            try:
                key = known or self._hashes.setdefault(ref, content_hash(data))
                if key not in todo:
                    todo[key] = nima_preprocess(data)
                keys[ref] = key
            except Exception as e:  # noqa: BLE001 - any decoder failure on any input is a failed record
                out[ref] = f"{ref}: cannot decode ({type(e).__name__}: {e})"
        items = list(todo.items())
        with torch.inference_mode():
            for i in range(0, len(items), self.batch_size):
                chunk = items[i : i + self.batch_size]
                x = torch.cat([t for _, t in chunk]).to(self.device)
                for (key, _), s in zip(chunk, mean_score(self.model(x)).float().cpu().tolist(), strict=True):
                    self._scores[key] = s
        for ref, key in keys.items():
            out[ref] = self._scores[key]
        while len(self._scores) > self._CACHE:
            self._scores.popitem(last=False)
        return out


# ---------------------------------------------------------------------------------------------- export


class _WithScore(nn.Module):
    def __init__(self, net: NimaNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probs = self.net(pixel_values)
        return probs, mean_score(probs)


def export_nima_onnx(model: NimaNet, path: str | os.PathLike, *, opset: int = 18) -> Path:
    """ONNX file: input ``pixel_values`` float32 ``[N, 3, 224, 224]`` (after :func:`nima_preprocess`),
    outputs ``probabilities`` ``[N, 10]`` and ``score`` ``[N]``; ``N`` dynamic. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = (torch.zeros(2, 3, NIMA_SIZE, NIMA_SIZE),)  # batch 2 keeps N symbolic
    with torch.no_grad():
        torch.onnx.export(
            _WithScore(model).eval(),
            example,
            str(path),
            dynamo=True,
            external_data=False,
            input_names=["pixel_values"],
            output_names=["probabilities", "score"],
            opset_version=opset,
            dynamic_shapes=({0: torch.export.Dim("N")},),
        )
    return path
