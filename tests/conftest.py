"""Shared fixtures: a tiny contract-conforming ONNX model (see ``tests/modelkit.py``) and test images."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # so tests can `import modelkit`

from modelkit import make_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path to a tiny model (32x32 letterbox, factors exposure/contrast/sharpness) with its sidecar.

    Session-scoped and shared: treat it as read-only; build your own with ``make_tiny_model`` to vary it.
    """
    return make_tiny_model(tmp_path_factory.mktemp("tiny_model"))
