"""Readers for the standard IAA/IQA data sets in their native (as-downloaded) layouts.

A data set is data, not code (pyiqa's ``default_dataset_configs``): a :class:`DatasetSpec` names the
label files and image folders of each split relative to the data set's root, the columns to read,
the score range and whether lower is better. Four generic parsers (``table``, ``whitespace``, ``ava``,
``livec``) turn those files into :class:`LabelledImage` records. Entries are registered by name;
duplicates raise and typos get close matches.

Layouts (root = the folder the archive unpacks to):

========== ======================================================== ===========================
name       labels                                                   images
========== ======================================================== ===========================
ava        ``AVA.txt`` vote counts 1..10 -> mean; group: challenge  ``images/<id>.jpg``
koniq10k   ``koniq10k_distributions_sets.csv`` (``set`` column) or   ``1024x768/`` or ``512x384/``
           ``koniq10k_scores_and_distributions.csv``; ``MOS``
spaq       ``Annotations/MOS and Image attribute scores.xlsx``      ``TestImage/``
tad66k     ``labels/merge/{train,test}.csv`` (``image,score``)      ``TAD66K/``
para       ``annotation/PARA-Giaa{Train,Test}.csv``                 ``imgs/<sessionId>/<imageName>``
aadb       ``imgListFiles_label/imgList*Regression_score.txt``      ``datasetImages_originalSize/``,
                                                                    test: ``AADB_newtest_originalSize/``
flickr-aes ``FLICKR-AES_image_score.txt`` (``name score``)          ``40K/``
biq2021    ``Test.csv`` / ``Train.csv`` (``Image Name,MOS``)          ``Images/``
livec      ``Data/AllImages_release.mat`` + ``AllMOS_release.mat``  ``Images/`` (the 7 practice
                                                                    images ``t1..t7`` are left out
                                                                    of ``test``, as is customary)
========== ======================================================== ===========================
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .._registry import Registry
from ..errors import RedaesError
from .matfile import load_mat
from .tables import read_rows

__all__ = [
    "Dataset",
    "DatasetSpec",
    "LabelledImage",
    "Split",
    "get_dataset",
    "list_datasets",
    "read_dataset",
    "read_labels",
    "register_dataset",
]

#: The built-in entries, package data beside this module: a JSON list of :meth:`DatasetSpec.from_dict` objects.
_ENTRIES = "datasets.json"


@dataclass(frozen=True)
class LabelledImage:
    """One image with its human label (higher is better once a reader is done) and optional group."""

    path: Path
    label: float
    group: str | None = None


@dataclass(frozen=True)
class Split:
    """Where one split lives: candidate label files and image folders (first that exists wins)."""

    labels: tuple[str, ...]
    images: tuple[str, ...]
    #: keep rows whose ``column`` equals ``value`` (KonIQ's ``set`` column)
    where: tuple[str, str] | None = None
    #: default id list (one image name or id a line) restricting the split, relative to the root
    id_list: str | None = None
    #: leading records to leave out (LIVE-in-the-Wild's practice images)
    skip_first: int = 0


@dataclass(frozen=True)
class DatasetSpec:
    """A data set's native layout and label semantics."""

    name: str
    title: str
    parser: str
    splits: Mapping[str, Split]
    default_split: str
    mos_range: tuple[float, float]
    lower_better: bool = False
    #: table columns: image name (or a ``{column}`` template), label and optional group
    image_col: str = "image"
    label_col: str = "mos"
    group_col: str | None = None
    aliases: tuple[str, ...] = ()
    url: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "splits", MappingProxyType(dict(self.splits)))
        if self.default_split not in self.splits:
            raise ValueError(f"data set {self.name}: default split {self.default_split!r} is not among its splits")
        if self.parser not in _PARSERS:
            raise ValueError(f"data set {self.name}: unknown parser {self.parser!r}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DatasetSpec:
        """A spec from plain JSON data: lists where the fields are tuples, each split an object of :class:`Split`'s
        fields (``where`` as ``[column, value]``)."""
        splits = {
            name: Split(**{**sp, **{k: tuple(sp[k]) for k in ("labels", "images", "where") if sp.get(k)}})
            for name, sp in d["splits"].items()
        }
        return cls(
            **{
                **d,
                "splits": splits,
                "mos_range": tuple(d["mos_range"]),
                "aliases": tuple(d.get("aliases", ())),
            }
        )


@dataclass(frozen=True)
class Dataset:
    """A data set read from disk: its spec, the split, the label file used and the records."""

    spec: DatasetSpec
    split: str
    label_file: Path
    records: tuple[LabelledImage, ...] = field(repr=False)


# ---------------------------------------------------------------------------------------------- parsers


def _parse_table(spec: DatasetSpec, label_file: Path, images: Path, split: Split) -> Iterator[LabelledImage]:
    rows = read_rows(label_file)
    template = spec.image_col if "{" in spec.image_col else "{" + spec.image_col + "}"
    for lineno, row in enumerate(rows, 2):
        if split.where and row.get(split.where[0]) != split.where[1]:
            continue
        try:
            name = template.format(**row)
            label = float(row[spec.label_col])
        except KeyError as e:
            raise RedaesError(f"{label_file}: no column {e} (columns: {', '.join(row)})") from None
        except ValueError:
            raise RedaesError(f"{label_file}:{lineno}: label {row[spec.label_col]!r} is not a number") from None
        group = row.get(spec.group_col) if spec.group_col else None
        yield LabelledImage(images / name, label, group or None)


def _parse_whitespace(spec: DatasetSpec, label_file: Path, images: Path, split: Split) -> Iterator[LabelledImage]:
    """``name score`` a line (AADB, FLICKR-AES); names carry no spaces in these sets."""
    for lineno, line in enumerate(_read_text(label_file).splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            yield LabelledImage(images / parts[0], float(parts[1]))
        except (IndexError, ValueError):
            raise RedaesError(f"{label_file}:{lineno}: expected 'name score', got {line.strip()!r}") from None


def _parse_ava(spec: DatasetSpec, label_file: Path, images: Path, split: Split) -> Iterator[LabelledImage]:
    """``AVA.txt``: index, image id, votes for scores 1..10, two semantic tags, challenge id."""
    for lineno, line in enumerate(_read_text(label_file).splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            votes = [int(v) for v in parts[2:12]]
            if len(votes) != 10 or len(parts) < 15:
                raise ValueError
        except ValueError:
            raise RedaesError(f"{label_file}:{lineno}: expected 15 fields (index, id, 10 vote counts, ...)") from None
        total = sum(votes)
        if total == 0:
            raise RedaesError(f"{label_file}:{lineno}: image {parts[1]} has no votes")
        mean = sum((k + 1) * v for k, v in enumerate(votes)) / total
        yield LabelledImage(images / f"{parts[1]}.jpg", mean, parts[14])


def _parse_livec(spec: DatasetSpec, label_file: Path, images: Path, split: Split) -> Iterator[LabelledImage]:
    """``AllImages_release.mat`` (cell of names) + ``AllMOS_release.mat`` beside it; the practice
    images ``t1..t7`` live in ``Images/trainingImages/``."""
    names = load_mat(label_file).get("AllImages_release")
    mos_file = label_file.with_name("AllMOS_release.mat")
    if not mos_file.is_file():
        raise RedaesError(f"{mos_file}: no such label file (LIVE-in-the-Wild keeps it beside {label_file.name})")
    mos = load_mat(mos_file).get("AllMOS_release")
    if not isinstance(names, list) or mos is None or len(names) != mos.size:
        raise RedaesError(f"{label_file.parent}: AllImages_release and AllMOS_release do not match")
    for name, value in zip(names, mos.ravel(order="F")):
        path = images / name
        if not path.exists() and (images / "trainingImages" / name).exists():
            path = images / "trainingImages" / name
        yield LabelledImage(path, float(value))


_Parser = Callable[[DatasetSpec, Path, Path, Split], Iterator[LabelledImage]]
_PARSERS: dict[str, _Parser] = {
    "table": _parse_table,
    "whitespace": _parse_whitespace,
    "ava": _parse_ava,
    "livec": _parse_livec,
}


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise RedaesError(f"{path}: cannot read label file ({e})") from None


# ---------------------------------------------------------------------------------------------- registry


@functools.cache
def _registry() -> Registry[DatasetSpec]:
    """The data sets: the entries of ``datasets.json`` (package data), read on first use, and any registered since."""
    registry: Registry[DatasetSpec] = Registry("data set")
    for entry in json.loads(resources.files(__package__).joinpath(_ENTRIES).read_text(encoding="utf-8")):
        spec = DatasetSpec.from_dict(entry)
        registry.add(spec.name, spec, aliases=spec.aliases)
    return registry


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add a data set; a name or alias already taken raises ``ValueError``."""
    _registry().add(spec.name, spec, aliases=spec.aliases)
    return spec


def list_datasets() -> list[str]:
    return _registry().names()


def get_dataset(name: str) -> DatasetSpec:
    """The spec registered as ``name`` (case-insensitive; aliases accepted)."""
    registry = _registry()
    key = name.lower()
    if key in registry:
        return registry.get(key)
    close = registry.close_matches(key)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise RedaesError(f"unknown data set {name!r}{hint} (known: {', '.join(list_datasets())})")


def _first_existing(root: Path, candidates: tuple[str, ...], what: str, spec: DatasetSpec) -> Path:
    for rel in candidates:
        if (root / rel).exists():
            return root / rel
    raise RedaesError(f"{root}: no {what} for {spec.title} (looked for {', '.join(candidates)})")


def _read_id_list(path: Path) -> set[str]:
    return {line.strip() for line in _read_text(path).splitlines() if line.strip()}


def read_dataset(
    name: str | DatasetSpec,
    root: str | os.PathLike,
    *,
    split: str | None = None,
    id_list: str | os.PathLike | None = None,
) -> Dataset:
    """Read a data set's labels from its native layout under ``root``.

    ``split`` defaults to the spec's (usually ``test``); ``id_list`` is a file of image names or ids,
    one a line, that restricts the records (e.g. the AVA test list used by NIMA and MUSIQ). Labels
    of ``lower_better`` sets are negated so that higher is better everywhere downstream.
    """
    spec = name if isinstance(name, DatasetSpec) else get_dataset(name)
    root = Path(root)
    if not root.is_dir():
        raise RedaesError(f"{root}: data set root is not a folder")
    split = split or spec.default_split
    if split not in spec.splits:
        raise RedaesError(f"{spec.title} has no split {split!r} (splits: {', '.join(spec.splits)})")
    sp = spec.splits[split]
    label_file = _first_existing(root, sp.labels, "label file", spec)
    images = _first_existing(root, sp.images, "image folder", spec)
    records = list(_PARSERS[spec.parser](spec, label_file, images, sp))[sp.skip_first :]
    list_path = Path(id_list) if id_list is not None else (root / sp.id_list if sp.id_list else None)
    if list_path is not None:
        if not list_path.is_file():
            raise RedaesError(f"{list_path}: no such id list for {spec.title} split {split!r} (pass one with --list)")
        keep = _read_id_list(list_path)
        records = [r for r in records if r.path.name in keep or r.path.stem in keep]
    if spec.lower_better:
        records = [LabelledImage(r.path, -r.label, r.group) for r in records]
    return Dataset(spec, split, label_file, tuple(records))


def read_labels(
    path: str | os.PathLike,
    *,
    root: str | os.PathLike,
    image_col: str = "image",
    label_col: str = "mos",
    group_col: str | None = None,
    lower_better: bool = False,
) -> list[LabelledImage]:
    """Records of a user's own label table (CSV/TSV/XLSX) with image paths relative to ``root``."""
    spec = DatasetSpec(
        name="labels",
        title=str(path),
        parser="table",
        splits={"all": Split(labels=(str(path),), images=(str(root),))},
        default_split="all",
        mos_range=(-math.inf, math.inf),
        lower_better=lower_better,
        image_col=image_col,
        label_col=label_col,
        group_col=group_col,
    )
    records = list(_parse_table(spec, Path(path), Path(root), spec.splits["all"]))
    if group_col and records and all(r.group is None for r in records):
        raise RedaesError(f"{path}: group column {group_col!r} is empty or missing")
    sign = -1.0 if lower_better else 1.0
    return [LabelledImage(r.path, sign * r.label, r.group) for r in records]
