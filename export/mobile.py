"""ONNX -> ORT mobile format (``.ort``) plus the operator list for a reduced ONNX Runtime build.

``onnxruntime.tools.convert_onnx_models_to_ort`` with the *Fixed* optimisation style: the graph is
optimised once, here, and saved; the phone loads it without optimising again. ``required_operators.config``
lists the operators the file uses, the input of ONNX Runtime's ``--include_ops_by_config`` minimal build
(see ``export/README.md``). The ``.ort`` file keeps the ``redaes.*`` metadata; its ``model.json`` sidecar
carries it as well, for platforms whose runtime cannot read it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from redaes_lite.metadata import write_sidecar

from .errors import ExportError
from .int8 import shared_data_files
from .metadata import onnx_opset, read_info

__all__ = ["OPERATORS_CONFIG", "TARGETS", "to_ort"]

OPERATORS_CONFIG = "required_operators.config"
# "arm" lets the optimiser fuse int8 QDQ nodes the way ARM phones run them fastest; "amd64" adds x86-only
# layouts (NCHWc) that a phone cannot run.
TARGETS = ("arm", "amd64")
_CONVERTER_LOGGER = "ort_format_model.utils"


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Raise one logger's level to WARNING for the duration, then restore it."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def to_ort(src: str | os.PathLike, out: str | os.PathLike, *, target: str = "arm") -> Path:
    """Convert the ONNX file ``src`` to the ``.ort`` file ``out``; writes ``required_operators.config`` and
    the sidecar (``<stem>.json``) beside it. Returns ``out``."""
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    if target not in TARGETS:
        raise ExportError(f"unknown ORT target {target!r}; choose one of {', '.join(TARGETS)}")
    src, out = Path(src), Path(out)
    if out.suffix != ".ort":
        raise ExportError(f"{out}: an ORT format file must end in .ort")
    info = read_info(src)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="redaes-ort-") as tmp:
        # Not named after ``out``: an int8 file reading its weights from model.onnx would then read itself.
        stem = "ort-input"
        staged = Path(tmp) / "in" / f"{stem}.onnx"
        staged.parent.mkdir()
        shutil.copyfile(src, staged)
        for name in shared_data_files(src):  # the .ort holds the weights itself
            shutil.copyfile(src.parent / name, staged.parent / name)
        try:
            # The converter prints its progress and logs at INFO; keep both out of the export command's output.
            with contextlib.redirect_stdout(io.StringIO()), _quiet(_CONVERTER_LOGGER):
                convert_onnx_models_to_ort(
                    staged,
                    output_dir=Path(tmp) / "out",
                    optimization_styles=[OptimizationStyle.Fixed],
                    target_platform=target,
                )
        except Exception as e:  # noqa: BLE001 - the converter raises whatever onnxruntime raised
            raise ExportError(f"{src}: ORT format conversion failed ({e})") from None
        produced = Path(tmp) / "out" / f"{stem}.ort"
        config = Path(tmp) / "out" / f"{stem}.{OPERATORS_CONFIG}"
        shutil.move(produced, out)
        # The generated header names the temporary path it came from; name the shipped file instead.
        lines = [ln for ln in config.read_text().splitlines() if not ln.startswith("# - ")]
        lines.insert(1, f"# - {out.name}")
        (out.parent / OPERATORS_CONFIG).write_text("\n".join(lines) + "\n")
    write_sidecar(out, info, opset=onnx_opset(src))
    return out
