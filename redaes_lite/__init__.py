"""redaes-lite: on-device relative photo aesthetics — which photo is better, by how much, and why.

    >>> import redaes_lite
    >>> scorer = redaes_lite.load("model.onnx")         # doctest: +SKIP
    >>> scorer.compare("a.jpg", "b.jpg").preferred      # doctest: +SKIP
    'b'

Importing is cheap and side-effect free: numpy, Pillow and ONNX Runtime load when first needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Comparison",
    "Failure",
    "ImageError",
    "ModelError",
    "Ranked",
    "RedaesError",
    "Score",
    "STAR_THRESHOLDS",
    "Scorer",
    "__version__",
    "compare",
    "load",
    "rank",
    "score",
    "stars",
]

# Public name -> defining module, imported on first attribute access (PEP 562) so that
# `redaes-lite --version` and `import redaes_lite` stay fast.
_LAZY = {
    "Comparison": "results",
    "Failure": "results",
    "Ranked": "results",
    "Score": "results",
    "ImageError": "errors",
    "ModelError": "errors",
    "RedaesError": "errors",
    "Scorer": "api",
    "compare": "api",
    "rank": "api",
    "score": "api",
    "load": "api",
    "STAR_THRESHOLDS": "report",
    "stars": "report",
}

if TYPE_CHECKING:
    from .api import Scorer, compare, load, rank, score
    from .errors import ImageError, ModelError, RedaesError
    from .report import STAR_THRESHOLDS, stars
    from .results import Comparison, Failure, Ranked, Score


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'redaes_lite' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
