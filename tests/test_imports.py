"""Import hygiene: `import redaes_lite` is light (no onnxruntime until a model loads) and the runtime never
imports torch, nor the training and export tool chains."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import redaes_lite

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "timm", "open_clip", "transformers", "onnx", "distill", "export")


def _modules_after(code: str) -> set[str]:
    """Top-level modules loaded by ``code`` in a fresh interpreter."""
    probe = code + "\nimport json, sys; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_import_loads_neither_onnxruntime_nor_torch():
    loaded = _modules_after("import redaes_lite")
    assert "onnxruntime" not in loaded and "torch" not in loaded and "numpy" not in loaded


def test_using_a_model_loads_onnxruntime_but_never_torch(tiny_model):
    loaded = _modules_after(
        "import numpy as np, redaes_lite\n"
        f"s = redaes_lite.load({str(tiny_model)!r})\n"
        "s.compare(np.zeros((8, 8, 3), np.uint8), np.ones((8, 8, 3), np.uint8))\n"
        "s.rank([np.zeros((8, 8, 3), np.uint8)])"
    )
    assert "onnxruntime" in loaded
    assert not loaded & set(HEAVY)


def test_no_runtime_module_imports_torch_or_the_tool_chains():
    loaded = _modules_after(
        "import pkgutil, importlib, redaes_lite\n"
        "for m in pkgutil.walk_packages(redaes_lite.__path__, 'redaes_lite.'): importlib.import_module(m.name)"
    )
    assert not loaded & set(HEAVY)


def test_version_matches_pyproject():
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert version is not None and redaes_lite.__version__ == version.group(1)
