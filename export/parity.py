"""Parity gates: an exported file must agree with its reference, or export fails (gates raise, never warn).

- :func:`torch_gate`: fp32 ONNX vs the torch student, max ``|Δ|`` of utility and factors <= 1e-4.
- :func:`ranking_gate`: a reduced-precision file vs fp32, Spearman >= 0.99 and pairwise-order
  agreement >= 98% on photos not used for calibration.
- :func:`identical_ranking_gate`: ``.ort`` vs its ``.onnx``, the same order for every pair.

:func:`stability` is context, not a gate: how far fp32's own ranking moves under invisible input changes
(half an 8-bit step of pixel noise, a mirror image). A reduced-precision file cannot be expected to track
fp32 more closely than fp32 tracks itself; the report puts both side by side.

Each side preprocesses the photos with the spec *its own file* declares (the torch side with the
checkpoint's), through :func:`redaes_lite.preprocess.preprocess`, so metadata that disagrees with the
weights (say, a wrong normalisation) fails the gate just as wrong weights do.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from redaes_lite.eval.metrics import pair_accuracy, srcc
from redaes_lite.metadata import ModelInfo
from redaes_lite.preprocess import ImageInput, PreprocessSpec, preprocess

from .checkpoint import read_checkpoint, trained_student
from .errors import ParityError
from .metadata import read_info
from .onnx import INPUT

__all__ = ["Gate", "PhotoSet", "identical_ranking_gate", "ranking_gate", "run_model", "stability", "torch_gate"]

TORCH_TOL = 1e-4
MIN_SPEARMAN = 0.99
MIN_PAIRWISE = 0.98
MIN_IMAGES = 200
_BATCH = 32


@dataclass(frozen=True)
class Gate:
    """One parity check: what was compared, on how many photos, the figures and the limits they met."""

    name: str
    reference: str
    candidate: str
    n_images: int
    figures: dict[str, float]
    limits: dict[str, str] = field(default_factory=dict)
    failures: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "failures": list(self.failures), "passed": self.passed}


def _enforce(gate: Gate) -> Gate:
    if gate.failures:
        raise ParityError(f"{gate.candidate}: {gate.name} parity gate failed: {'; '.join(gate.failures)}", gate=gate)
    return gate


def run_model(
    path: str | os.PathLike, pixels: np.ndarray, *, batch_size: int = _BATCH
) -> tuple[np.ndarray, np.ndarray]:
    """``(utility [N], factors [N, K])`` of an ``.onnx``/``.ort`` file on CPU, in batches."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outs = [
        session.run(["utility", "factors"], {INPUT: pixels[i : i + batch_size]})
        for i in range(0, len(pixels), batch_size)
    ]
    return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])


def _torch_outputs(model: Any, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import torch

    us, fs = [], []
    with torch.no_grad():
        for i in range(0, len(pixels), _BATCH):
            u, f = model(torch.from_numpy(pixels[i : i + _BATCH]))
            us.append(u.reshape(-1).numpy())
            fs.append(f.numpy())
    return np.concatenate(us), np.concatenate(fs)


class PhotoSet:
    """Photos and their pixels per spec: every gate given one set decodes each photo once per spec.

    The gates accept a plain sequence of images too; pass a ``PhotoSet`` to share the decoding.
    """

    def __init__(self, images: Sequence[ImageInput]) -> None:
        self.images = list(images)
        self._pixels: dict[PreprocessSpec, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: slice) -> PhotoSet:
        return PhotoSet(self.images[index])

    def pixels(self, spec: PreprocessSpec) -> np.ndarray:
        if spec not in self._pixels:
            self._pixels[spec] = preprocess(self.images, spec)
        return self._pixels[spec]


Photos = PhotoSet | Sequence[ImageInput]


def _photos(images: Photos) -> PhotoSet:
    return images if isinstance(images, PhotoSet) else PhotoSet(images)


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    """Largest absolute difference; infinite when the shapes differ or a value is not finite."""
    if a.shape != b.shape:
        return math.inf
    d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    if not d.size:
        return 0.0
    return float(d.max()) if np.isfinite(d).all() else math.inf


def torch_gate(
    checkpoint: str | os.PathLike, onnx_path: str | os.PathLike, images: Photos, *, tol: float = TORCH_TOL
) -> Gate:
    """fp32 ONNX vs the checkpoint's torch student; raises :class:`ParityError` if any output differs by > ``tol``."""
    ckpt = read_checkpoint(checkpoint)
    photos = _photos(images)
    t_u, t_f = _torch_outputs(trained_student(ckpt), photos.pixels(PreprocessSpec.from_dict(dict(ckpt["preprocess"]))))
    o_u, o_f = run_model(onnx_path, photos.pixels(read_info(onnx_path).preprocess))
    figures = {"max_abs_utility": _max_abs(t_u, o_u), "max_abs_factors": _max_abs(t_f, o_f)}
    failures = tuple(f"{k} = {v:.3g} > {tol:g}" for k, v in figures.items() if not v <= tol)
    gate = Gate(
        "torch-onnx",
        str(checkpoint),
        str(onnx_path),
        len(photos),
        figures,
        {"max_abs_utility": f"<= {tol:g}", "max_abs_factors": f"<= {tol:g}"},
        failures,
    )
    return _enforce(gate)


def _same_model(a: ModelInfo, b: ModelInfo) -> list[str]:
    """Metadata fields that differ between two precisions of one model (the quantization may differ)."""
    a, b = replace(a, quantization="fp32"), replace(b, quantization="fp32")
    return [k for k in a.to_dict() if a.to_dict()[k] != b.to_dict().get(k)]


def _metadata_failures(got: dict[str, Any]) -> list[str]:
    differs = got["metadata_differs"]
    return [f"metadata differs from the reference in {', '.join(differs)}"] if differs else []


def _count_failures(images: Photos, min_images: int) -> list[str]:
    return [f"only {len(images)} photos, the gate needs >= {min_images}"] if len(images) < min_images else []


def _compare(reference: str | os.PathLike, candidate: str | os.PathLike, photos: PhotoSet) -> dict[str, Any]:
    ref_info, cand_info = read_info(reference), read_info(candidate)
    r_u, r_f = run_model(reference, photos.pixels(ref_info.preprocess))
    c_u, c_f = run_model(candidate, photos.pixels(cand_info.preprocess))
    factor_srcc = [srcc(c_f[:, k], r_f[:, k]) for k in range(r_f.shape[1])] if r_f.shape == c_f.shape else []
    return {
        "figures": {
            "spearman": srcc(c_u, r_u) if np.isfinite(c_u).all() else float("nan"),
            "pairwise_agreement": pair_accuracy(c_u, r_u) if np.isfinite(c_u).all() else float("nan"),
            "max_abs_utility": _max_abs(r_u, c_u),
            "utility_std": float(np.std(r_u)),
            "min_factor_spearman": float(np.nanmin(factor_srcc)) if factor_srcc else float("nan"),
        },
        "metadata_differs": _same_model(ref_info, cand_info),
    }


def ranking_gate(
    reference: str | os.PathLike,
    candidate: str | os.PathLike,
    images: Photos,
    *,
    min_spearman: float = MIN_SPEARMAN,
    min_pairwise: float = MIN_PAIRWISE,
    min_images: int = MIN_IMAGES,
) -> Gate:
    """A reduced-precision ``candidate`` vs the fp32 ``reference`` on ``images`` (not the calibration photos)."""
    got = _compare(reference, candidate, _photos(images))
    fig = got["figures"]
    failures = _metadata_failures(got) + _count_failures(images, min_images)
    if not fig["spearman"] >= min_spearman:
        failures.append(f"Spearman {fig['spearman']:.4f} < {min_spearman}")
    if not fig["pairwise_agreement"] >= min_pairwise:
        failures.append(f"pairwise agreement {fig['pairwise_agreement']:.4f} < {min_pairwise}")
    limits = {
        "spearman": f">= {min_spearman}",
        "pairwise_agreement": f">= {min_pairwise}",
        "images": f">= {min_images}",
    }
    return _enforce(Gate("fp32-reduced", str(reference), str(candidate), len(images), fig, limits, tuple(failures)))


def identical_ranking_gate(
    reference: str | os.PathLike,
    candidate: str | os.PathLike,
    images: Photos,
    *,
    min_images: int = MIN_IMAGES,
    exact: bool = False,
) -> Gate:
    """``.ort`` vs the ``.onnx`` it was made from: every pair of photos the reference orders, in the same order.

    ``exact``: the utilities must also be equal bit for bit (a file that is the same computation stored
    another way, e.g. an int8 file reading its weights from the fp16 file, gate ``same-computation``).
    """
    got = _compare(reference, candidate, _photos(images))
    fig = got["figures"]
    failures = _metadata_failures(got) + _count_failures(images, min_images)
    if not fig["pairwise_agreement"] == 1.0:
        failures.append(f"ranking differs (pairwise agreement {fig['pairwise_agreement']:.6f} < 1)")
    limits = {"pairwise_agreement": "== 1", "images": f">= {min_images}"}
    if exact:
        limits["max_abs_utility"] = "== 0"
        if not fig["max_abs_utility"] == 0:
            failures.append(f"utilities differ (max |delta| {fig['max_abs_utility']:.3g} > 0)")
    name = "same-computation" if exact else "onnx-ort"
    return _enforce(Gate(name, str(reference), str(candidate), len(images), fig, limits, tuple(failures)))


def stability(path: str | os.PathLike, images: Photos, *, noise_lsb: float = 0.5, seed: int = 0) -> dict[str, float]:
    """Agreement of a model with itself when its input changes invisibly (context for the gates, never a gate).

    ``noise``: Gaussian pixel noise of ``noise_lsb`` 8-bit steps; ``hflip``: the mirror image.
    """
    photos = _photos(images)
    spec = read_info(path).preprocess
    pixels = photos.pixels(spec)
    ref, _ = run_model(path, pixels)
    step = np.float32(noise_lsb / 255) / np.asarray(spec.std, np.float32).reshape(1, 3, 1, 1)
    noise = np.random.default_rng(seed).standard_normal(pixels.shape, dtype=np.float32) * step
    out = {}
    for name, x in (("noise", pixels + noise), ("hflip", np.ascontiguousarray(pixels[..., ::-1]))):
        u, _ = run_model(path, x)
        out[f"{name}_spearman"], out[f"{name}_pairwise_agreement"] = srcc(u, ref), pair_accuracy(u, ref)
    return {"noise_lsb": noise_lsb, **out}
