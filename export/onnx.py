"""Checkpoint -> one self-contained fp32 ONNX file: ``pixel_values`` [N,3,H,W] -> ``utility`` [N], ``factors`` [N,K].

The default exporter is ``torch.onnx.export(dynamo=True, external_data=False)``. Measured on
``tf_efficientnet_lite0`` at 224 (``python -m export.benchmark``, 2-core shared box): it folds timm's TF
"same" padding into the convolutions (97 nodes against the legacy exporter's 600-636, where the padding is
recomputed from ``Shape`` ops at run time) and ran 1.3-2.0x faster on one thread in five runs, at the same
size (13.1 MiB) and the same agreement with torch (< 3e-6). So it is the default; the legacy TorchScript
exporter stays selectable for backbones the dynamo exporter cannot trace.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path
from typing import Any

from .checkpoint import read_checkpoint, trained_student
from .errors import ExportError
from .metadata import info_from_checkpoint, stamp

__all__ = ["DEFAULT_OPSET", "EXPORTERS", "INPUT", "OUTPUTS", "check_contract", "export_module", "export_onnx"]

INPUT = "pixel_values"
OUTPUTS = ("utility", "factors")
EXPORTERS = ("dynamo", "legacy")
# 18 gives the same graph as the dynamo exporter's default (20) for the Lite CNNs and loads in older ONNX
# Runtime builds (1.14+), which matters for apps that pin their mobile runtime.
DEFAULT_OPSET = 18
# An example batch of 2 keeps N symbolic: torch.export specialises dimensions of size 0 and 1.
_EXAMPLE_BATCH = 2


def _contract_module(model: Any) -> Any:
    """Wrap ``model`` so the graph's outputs are exactly ``(utility [N], factors [N, K])``."""
    import torch

    class Contract(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            utility, factors = self.inner(pixel_values)
            return utility.reshape(-1), factors

    return Contract(model).eval()


def export_module(
    model: Any, out: str | os.PathLike, *, size: tuple[int, int], exporter: str = "dynamo", opset: int = DEFAULT_OPSET
) -> Path:
    """Export a torch module returning ``(utility, factors)`` to ``out`` (no metadata); returns ``out``."""
    import torch

    if exporter not in EXPORTERS:
        raise ExportError(f"unknown exporter {exporter!r}; choose one of {', '.join(EXPORTERS)}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    module = _contract_module(model)
    example = (torch.zeros(_EXAMPLE_BATCH, 3, *size),)
    names: dict[str, Any] = {"input_names": [INPUT], "output_names": list(OUTPUTS), "opset_version": opset}
    log = io.StringIO()
    try:
        # The exporters print progress and deprecation chatter; keep the CLI's output to what it decides.
        with warnings.catch_warnings(), contextlib.redirect_stdout(log), torch.no_grad():
            warnings.simplefilter("ignore")
            if exporter == "dynamo":
                dims = ({0: torch.export.Dim("N")},)
                torch.onnx.export(
                    module,
                    example,
                    str(out),
                    dynamo=True,
                    external_data=False,
                    dynamic_shapes=dims,
                    verbose=False,
                    **names,
                )
            else:
                axes = {INPUT: {0: "N"}, OUTPUTS[0]: {0: "N"}, OUTPUTS[1]: {0: "N"}}
                torch.onnx.export(module, example, str(out), dynamo=False, dynamic_axes=axes, **names)
    except Exception as e:  # noqa: BLE001 - exporter failures come in many types; name the exporter
        raise ExportError(f"{out}: {exporter} ONNX export failed ({type(e).__name__}: {e})") from None
    _strip_exporter_debug(out)
    check_contract(out)
    return out


def _strip_exporter_debug(path: Path) -> None:
    """Drop the per-node ``metadata_props`` the dynamo exporter leaves (``pkg.torch.onnx.stack_trace`` and
    friends): about 210 KB on Lite0, naming the build machine's source and venv paths, of no use at run time."""
    import onnx

    model = onnx.load(str(path))
    nodes = [n for g in [model.graph, *model.functions] for n in g.node]
    if any(len(n.metadata_props) for n in nodes):
        for n in nodes:
            del n.metadata_props[:]
        onnx.save(model, str(path))


def _dims(value_info: Any) -> list[Any]:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def check_contract(path: str | os.PathLike, *, n_factors: int | None = None) -> None:
    """Raise :class:`ExportError` unless the graph has the contract's input, outputs and a symbolic N.

    With ``n_factors``, ``factors`` must have that many columns (the length of ``redaes.factors``).
    """
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    onnx.checker.check_model(model)
    inputs = {i.name: _dims(i) for i in model.graph.input}
    outputs = {o.name: _dims(o) for o in model.graph.output}
    x, u, f = inputs.get(INPUT), outputs.get(OUTPUTS[0]), outputs.get(OUTPUTS[1])
    problems = []
    if list(inputs) != [INPUT] or x is None or len(x) != 4 or x[1] != 3 or not isinstance(x[0], str):
        problems.append(f"input must be {INPUT} [N,3,H,W] with a symbolic N, got {inputs}")
    if list(outputs) != list(OUTPUTS) or u is None or f is None or len(u) != 1 or len(f) != 2:
        problems.append(f"outputs must be utility [N], factors [N,K], got {outputs}")
    elif n_factors is not None and f[1] != n_factors:
        problems.append(f"factors has {f[1]} columns but the checkpoint names {n_factors} factors")
    if problems:
        raise ExportError(f"{path}: graph breaks the model contract: {'; '.join(problems)}")


def export_onnx(
    checkpoint: str | os.PathLike, out: str | os.PathLike, *, exporter: str = "dynamo", opset: int = DEFAULT_OPSET
) -> Path:
    """Export ``checkpoint``'s student to the fp32 ONNX file ``out`` with metadata and ``model.json``."""
    ckpt = read_checkpoint(checkpoint)
    student = trained_student(ckpt)
    info = info_from_checkpoint(ckpt, student=student.info(), source=str(checkpoint))
    export_module(student, out, size=info.preprocess.size, exporter=exporter, opset=opset)
    check_contract(out, n_factors=len(info.factors))
    stamp(out, info)
    return Path(out)
