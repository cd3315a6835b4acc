"""Parse an MLLM answer of the form ``<think>reasoning</think><answer>number</answer>``.

The rule is deliberately narrow so a label is never guessed: take the *last* complete ``<answer>`` block
(models sometimes restate the format first), then the *first* number in it. Anything else — no block,
an unclosed block (generation hit ``max_new_tokens``), no number, a number outside the prompt's range —
is malformed, and the teacher retries with a fresh sample.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

__all__ = ["Answer", "MalformedAnswer", "parse_answer"]

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL | re.IGNORECASE)
_OPEN = re.compile(r"<answer>", re.IGNORECASE)
_TAG = re.compile(r"</?think>", re.IGNORECASE)
# A signed decimal; the sign must touch the digits.
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
# Typographic minus and dashes that models emit instead of "-".
_MINUS = str.maketrans({"\u2212": "-", "\u2013": "-", "\u2014": "-", "\uff0d": "-"})


class MalformedAnswer(ValueError):
    """The text has no usable answer; the message says why, in a few words."""


@dataclass(frozen=True)
class Answer:
    """A parsed answer: its number and the reasoning that led to it (``None`` when there is none)."""

    value: float
    rationale: str | None


def parse_answer(text: str, *, answer_range: tuple[float, float] | None = None) -> Answer:
    """The first number of the last ``<answer>`` block of ``text``; raises :class:`MalformedAnswer`."""
    blocks = list(_ANSWER.finditer(text))
    tail = text[blocks[-1].end() :] if blocks else text
    if _OPEN.search(tail):
        # The final answer was cut off (max_new_tokens); an earlier block may only restate the format.
        raise MalformedAnswer("unclosed <answer> block")
    if not blocks:
        raise MalformedAnswer("no <answer> block")
    last = blocks[-1]
    inner = last.group(1).translate(_MINUS)
    match = _NUMBER.search(inner)
    if match is None:
        raise MalformedAnswer(f"no number in <answer>{_clip(last.group(1))}</answer>")
    if inner[: match.start()].rstrip().endswith(("-", "+")):
        # "- 2": a sign set apart from its digits; reading it either way would be a guess.
        raise MalformedAnswer(f"detached sign in <answer>{_clip(last.group(1))}</answer>")
    value = float(match.group(0))
    if not math.isfinite(value):
        raise MalformedAnswer(f"answer {match.group(0)} is not finite")
    if answer_range is not None and not answer_range[0] <= value <= answer_range[1]:
        lo, hi = answer_range
        raise MalformedAnswer(f"answer {match.group(0)} outside [{lo:g}, {hi:g}]")
    return Answer(value=value, rationale=_rationale(text[: last.start()]))


def _rationale(before: str) -> str | None:
    """The last ``<think>`` block before the answer, else whatever text precedes the answer."""
    thoughts = _THINK.findall(before)
    text = thoughts[-1] if thoughts else _TAG.sub("", before)
    text = text.strip()
    return text or None


def _clip(s: str, n: int = 40) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 1] + "…"
