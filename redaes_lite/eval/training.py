"""Which labelled images trained a model: its ``redaes.training_data`` against the committed split.

A model's ``redaes.training_data`` names its data sets in words ("BIQ2021 train split (2550 images)",
"redaes photos, train split (373 photos)"). Every stage of ``distill`` trains on one committed split,
``distill/splits/<name>_{train,val}.txt``, and the runtime ships a copy of those lists
(``redaes_lite/eval/splits/``; the runtime never imports ``distill``, which a pip install lacks). So
``eval`` can tell, by file name, which labelled images the model was trained on, warn, and report its
figures on the others as well: on the shared BIQ2021 subset, these are exactly the committed validation
split.

A training-data entry that names a split's data set and says "train split" trained on that split's
train list; one that names the data set without "train split" is taken to have used all of it (train
and validation lists), so no image of it counts as held out. The lists are the split of this checkout:
a model trained on an older split, or on a subset of the train list (the permissive model uses the
permissive photos of ``photos_train``), is judged by the whole current list, which errs on the side of
warning. Data sets that no list covers are matched by name only (:func:`named_without_list`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ..metadata import ModelInfo

__all__ = ["SPLIT_DIR", "SPLITS", "TrainingImages", "named_without_list", "training_images", "validation_images"]

#: The shipped copies of ``distill/splits``.
SPLIT_DIR = Path(__file__).resolve().parent / "splits"
#: Split name -> how a ``redaes.training_data`` name refers to its data set.
SPLITS = {
    "biq2021": re.compile(r"\bbiq[- ]?2021\b", re.IGNORECASE),
    "para": re.compile(r"\bpara\b", re.IGNORECASE),
    "photos": re.compile(r"\bredaes photos\b", re.IGNORECASE),
}
_TRAIN_SPLIT = re.compile(r"\btrain(ing)?[- ]split\b", re.IGNORECASE)


@cache
def _names(split: str, part: str) -> frozenset[str]:
    path = SPLIT_DIR / f"{split}_{part}.txt"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return frozenset()  # a trimmed installation: nothing is known about this split
    return frozenset(line.strip() for line in text.splitlines() if line.strip())


@dataclass(frozen=True)
class TrainingImages:
    """The images a model was trained on, as far as the committed split knows them."""

    #: ``redaes.training_data`` name -> the file names of its images
    sources: Mapping[str, frozenset[str]]

    @property
    def names(self) -> frozenset[str]:
        """The file names of all the training images."""
        return frozenset().union(*self.sources.values())

    def __contains__(self, path: object) -> bool:
        name = Path(str(path)).name
        return any(name in names for names in self.sources.values())

    def __bool__(self) -> bool:
        return any(self.sources.values())

    def sources_of(self, paths: Iterable[object]) -> list[str]:
        """The ``redaes.training_data`` names that some of ``paths`` come from, in the model's order."""
        found = {Path(str(p)).name for p in paths}
        return [source for source, names in self.sources.items() if found & names]


def training_images(info: ModelInfo) -> TrainingImages:
    """The file names of the model's training images that the committed split lists (empty if none)."""
    sources: dict[str, frozenset[str]] = {}
    for entry in info.training_data:
        text = str(entry.get("name", ""))
        for split, pattern in SPLITS.items():
            if pattern.search(text):
                found = _names(split, "train") | (frozenset() if _TRAIN_SPLIT.search(text) else _names(split, "val"))
                if found:
                    sources[text] = sources.get(text, frozenset()) | found
    return TrainingImages(sources)


def validation_images() -> frozenset[str]:
    """The file names of every committed validation list."""
    return frozenset().union(*(_names(split, "val") for split in SPLITS))


def _words(text: str) -> str:
    """Lower case, each run of other characters one space, padded: ``" koniq 10k "``."""
    return " " + " ".join(re.findall(r"[a-z0-9]+", text.lower())) + " "


def named_without_list(info: ModelInfo, names: Iterable[str]) -> list[str]:
    """The ``redaes.training_data`` names that mention one of ``names`` (a data set's name, title or
    aliases; punctuation and case ignored) and that no committed list covers: there the images cannot be
    told apart, only the data set."""
    keys = {_words(n) for n in names if _words(n).strip()}
    out = []
    for entry in info.training_data:
        text = str(entry.get("name", ""))
        if any(pattern.search(text) for pattern in SPLITS.values()):
            continue  # covered image by image
        if any(key in _words(text) for key in keys):
            out.append(text)
    return out
