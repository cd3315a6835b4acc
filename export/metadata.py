"""Checkpoint fields -> :class:`redaes_lite.metadata.ModelInfo` -> ONNX ``metadata_props`` + ``model.json``.

A thin layer: the format itself (keys, JSON encoding, validation, sidecar layout) has one
implementation, :mod:`redaes_lite.metadata`; this module only decides what goes in and where it is written.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from redaes_lite.errors import ModelError
from redaes_lite.metadata import ModelInfo, embed_props, write_sidecar
from redaes_lite.preprocess import PreprocessSpec

from .errors import ExportError

__all__ = ["info_from_checkpoint", "onnx_opset", "read_info", "stamp", "with_quantization"]


def info_from_checkpoint(
    ckpt: dict[str, Any], *, student: dict[str, Any], quantization: str = "fp32", source: str = "checkpoint"
) -> ModelInfo:
    """The model metadata a checkpoint describes; ``student`` is the rebuilt student's ``info()``."""
    try:
        spec = PreprocessSpec.from_dict(dict(ckpt["preprocess"]))
        return ModelInfo(
            version=str(ckpt["version"]),
            preprocess=spec,
            factors=tuple(ckpt["factors"]),
            temperature=ckpt["temperature"],
            lapse=ckpt.get("lapse", 0.0),  # checkpoints from before the lapse fit have none
            calibration=dict(ckpt["calibration"]),
            student=dict(student),
            teacher=tuple(ckpt["teachers"]),
            training_data=tuple(ckpt["training_data"]),
            quantization=quantization,
            license=ckpt["license"],
            metrics=ckpt.get("metrics") or None,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ExportError(f"{source}: checkpoint metadata is invalid ({e})") from None


def with_quantization(info: ModelInfo, quantization: str) -> ModelInfo:
    """``info`` for a reduced-precision copy of the same model."""
    return dataclasses.replace(info, quantization=quantization)


def onnx_opset(path: str | os.PathLike) -> int:
    """Default-domain opset of an ONNX file."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def stamp(onnx_path: str | os.PathLike, info: ModelInfo, *, external_data: dict[str, str] | None = None) -> Path:
    """Write ``info`` into the ONNX file's ``metadata_props`` (in place) and its sidecar; returns the sidecar.

    The sidecar is written last because its sha256 covers the file with the metadata in it. A file that
    reads weights from files beside it (``external_data``: ``{name: sha256}``) keeps reading them from
    there: they are not pulled into it.
    """
    import onnx

    onnx_path = Path(onnx_path)
    model = onnx.load(str(onnx_path), load_external_data=False)
    embed_props(model, info)
    onnx.save(model, str(onnx_path))
    return write_sidecar(onnx_path, info, external_data=external_data)


def read_info(path: str | os.PathLike) -> ModelInfo:
    """The ``redaes.*`` metadata of an ``.onnx`` or ``.ort`` file, read from the file itself (not the sidecar)."""
    path = Path(path)
    if path.suffix == ".ort":
        import onnxruntime as ort

        try:
            props = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta()
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own untyped errors for a bad file
            raise ModelError(f"{path}: cannot open ORT model ({e})") from None
        return ModelInfo.from_props(props.custom_metadata_map, source=str(path))
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf decode errors have no common base class
        raise ModelError(f"{path}: not an ONNX file ({e})") from None
    return ModelInfo.from_props({p.key: p.value for p in model.metadata_props}, source=str(path))
