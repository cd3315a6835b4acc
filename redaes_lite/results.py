"""Result types of the API: frozen dataclasses with ``to_dict()`` (JSON-ready)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .preprocess import describe_input

__all__ = ["Comparison", "Failure", "Ranked", "Score"]


@dataclass(frozen=True)
class Score:
    """One image: display ``score`` in [0, 10] (the model's calibration of ``utility``), raw ``utility``
    (latent scale; only differences mean something) and per-factor utilities in model order."""

    score: float
    utility: float
    factors: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"score": self.score, "utility": self.utility, "factors": dict(self.factors)}


@dataclass(frozen=True)
class Comparison:
    """``a`` versus ``b``: ``delta = u(b) - u(a)``; ``preferred`` is "b" when ``delta > 0``, else "a";
    ``probability`` that the preferred image is the better one; ``factors`` are ``f(b) - f(a)``,
    largest absolute difference first."""

    preferred: str
    probability: float
    delta: float
    factors: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "preferred": self.preferred,
            "probability": self.probability,
            "delta": self.delta,
            "factors": dict(self.factors),
        }


@dataclass(frozen=True)
class Ranked:
    """A ranked input: the input as given, its position in the input list and its :class:`Score`."""

    input: Any
    index: int
    score: Score

    def __repr__(self) -> str:  # inputs may be large arrays: show their short name
        return f"Ranked(input={describe_input(self.input)!r}, index={self.index}, score={self.score!r})"

    def to_dict(self) -> dict[str, Any]:
        return {"input": describe_input(self.input), "index": self.index, **self.score.to_dict()}


@dataclass(frozen=True)
class Failure:
    """An input that could not be scored (``on_error="record"``): the input, its position and the
    one-line error message."""

    input: Any
    index: int
    error: str

    def __repr__(self) -> str:
        return f"Failure(input={describe_input(self.input)!r}, index={self.index}, error={self.error!r})"

    def to_dict(self) -> dict[str, Any]:
        return {"input": describe_input(self.input), "index": self.index, "error": self.error}
