"""Every prompt the MLLM teacher sends, as versioned templates in one place.

A template's ``name`` (``pairwise-v1``) is its version: it goes into the teacher id
(``aes-r1-7b@pairwise-v1``) and, with a digest of the text, into each record's cache key, so editing a
prompt can never reuse labels made with the old one. To change a prompt, add ``…-v2`` next to ``…-v1``
rather than editing it: old label files stay explained by the code.

``{image}`` marks where each image goes in the user turn (source first, then edited, for pairwise).
Both modes answer on the same 1-5 scale as Aes-R1, so their deltas are in the same units:
pointwise scores are 1..5 and their difference lies in -4..4, the range pairwise answers are asked for.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_PROMPT", "PROMPTS", "PromptTemplate", "get_prompt"]

_THINK_ANSWER = (
    "First think it through and put all of your reasoning inside one pair of <think>...</think> tags. "
    "Then give only the number inside one pair of <answer>...</answer> tags, with no other text outside "
    "the tags.\nYour response should look like: <think>...</think><answer>...</answer>"
)


@dataclass(frozen=True)
class PromptTemplate:
    """A chat prompt with ``n_images`` ``{image}`` slots and the range a valid answer lies in."""

    name: str
    mode: str
    text: str
    answer_range: tuple[float, float]
    system: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("pairwise", "pointwise"):
            raise ValueError(f"prompt {self.name}: mode must be 'pairwise' or 'pointwise', got {self.mode!r}")
        want = 2 if self.mode == "pairwise" else 1
        if self.text.count("{image}") != want:
            raise ValueError(f"prompt {self.name}: a {self.mode} prompt needs {want} {{image}} slot(s)")

    @property
    def n_images(self) -> int:
        return self.text.count("{image}")

    @property
    def version(self) -> str:
        """Name plus a digest of the wording: part of every cache key made with this prompt."""
        wording = "\x1f".join((self.system or "", self.text, repr(self.answer_range)))
        return f"{self.name}:{hashlib.sha256(wording.encode('utf-8')).hexdigest()[:12]}"

    def messages(self) -> list[dict[str, Any]]:
        """Hugging Face chat messages; ``{"type": "image"}`` parts stand where the images go, in order."""
        parts: list[dict[str, Any]] = []
        for i, chunk in enumerate(self.text.split("{image}")):
            if i:
                parts.append({"type": "image"})
            if chunk:
                parts.append({"type": "text", "text": chunk})
        msgs: list[dict[str, Any]] = []
        if self.system:
            msgs.append({"role": "system", "content": [{"type": "text", "text": self.system}]})
        msgs.append({"role": "user", "content": parts})
        return msgs


PROMPTS: dict[str, PromptTemplate] = {
    t.name: t
    for t in (
        # The RED-Aes way: one prompt sees the source and its edited version and reasons about the change.
        PromptTemplate(
            name="pairwise-v1",
            mode="pairwise",
            text=(
                "You are an expert in photographic aesthetics. The first picture {image} is the original photo; "
                "the second picture {image} is an edited version of it. How did the edit change the overall "
                "aesthetic quality? Consider exposure, contrast, colour, white balance, sharpness, noise, "
                "composition and any artefacts.\n"
                "Rate the change on the 1-5 aesthetic scale (1 very poor, 5 excellent): answer the edited "
                "photo's rating minus the original's, a signed number between -4 and 4 with two decimals "
                "(positive if the edit made the photo better, negative if worse, 0 if no visible change).\n"
                + _THINK_ANSWER
            ),
            answer_range=(-4.0, 4.0),
        ),
        # Aes-R1 style: one image, an absolute 1-5 rating; the teacher takes the difference of two ratings.
        PromptTemplate(
            name="pointwise-v1",
            mode="pointwise",
            text=(
                "You are an expert in photographic aesthetics. What is your overall rating of the aesthetics of "
                "this picture {image}? The rating is a number between 1 and 5 with two decimals, 1 meaning very "
                "poor and 5 excellent.\n" + _THINK_ANSWER
            ),
            answer_range=(1.0, 5.0),
        ),
    )
}

DEFAULT_PROMPT = {"pairwise": "pairwise-v1", "pointwise": "pointwise-v1"}


def get_prompt(name: str) -> PromptTemplate:
    """The template called ``name``; unknown names list the known ones."""
    try:
        return PROMPTS[name]
    except KeyError:
        raise KeyError(f"unknown prompt {name!r}; known: {', '.join(sorted(PROMPTS))}") from None
