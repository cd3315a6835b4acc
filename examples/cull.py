#!/usr/bin/env python3
"""Cull a folder: score every photo and write its star rating into an XMP sidecar.

    python examples/cull.py ~/Pictures/shoot --recursive --dry-run     # print the plan, write nothing
    python examples/cull.py ~/Pictures/shoot --reject-below 1.5        # write photo.xmp beside photo.jpg
    python examples/cull.py shoot/ --sidecar-style darktable           # write photo.jpg.xmp instead

The originals are never opened for writing: only the sidecar is written (atomically), which Lightroom
(`photo.xmp`) and darktable (`photo.jpg.xmp`; it also reads `photo.xmp`) pick up on import or on
"read metadata from file".

Rating (xmp:Rating) from the 0..10 display score, with the default ``--thresholds 2,4,6,8``:

    score < 2 -> 1 star, 2 <= score < 4 -> 2, 4..6 -> 3, 6..8 -> 4, score >= 8 -> 5
    score < --reject-below (off by default) -> -1 (rejected in Lightroom and darktable)

An existing sidecar keeps everything else it holds: only its xmp:Rating is changed (or added), with
``--no-overwrite`` it is left alone. Exit status: 0 every photo rated; 1 some photos or sidecars failed
(each is reported, the rest are written); 2 usage error (no photos, unusable model, bad thresholds).
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import xml.etree.ElementTree as ET
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path

import redaes_lite
from redaes_lite import Failure, RedaesError
from redaes_lite._atomic import atomic_open

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".heic", ".heif", ".avif"})
X, RDF, XMP = "adobe:ns:meta/", "http://www.w3.org/1999/02/22-rdf-syntax-ns#", "http://ns.adobe.com/xap/1.0/"
RATING = f"{{{XMP}}}Rating"
NEW_SIDECAR = f"""<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="{X}">
 <rdf:RDF xmlns:rdf="{RDF}">
  <rdf:Description rdf:about="" xmlns:xmp="{XMP}" xmp:Rating="{{rating}}"/>
 </rdf:RDF>
</x:xmpmeta>
"""


@dataclass(frozen=True)
class Plan:
    photo: Path
    sidecar: Path
    score: float
    rating: int
    action: str  # "new", "update" or "skip (exists)"


def rating_for(score: float, *, thresholds: list[float], reject_below: float | None) -> int:
    """1 + the number of thresholds at or below ``score`` (1..5 for four thresholds); -1 below ``reject_below``."""
    if reject_below is not None and score < reject_below:
        return -1
    return 1 + bisect_right(thresholds, score)


def sidecar_path(photo: Path, style: str) -> Path:
    return photo.with_suffix(".xmp") if style == "lightroom" else photo.with_name(photo.name + ".xmp")


def find_photos(folder: Path, *, recursive: bool) -> list[Path]:
    files = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in files if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _register_namespaces(text: str) -> None:
    """Make ElementTree write the file's own prefixes (xmp:, dc:, darktable:, ...) instead of ns0:."""
    ET.register_namespace("xmp", XMP)  # for a Rating added to a file that never declared xmp:
    for _, (prefix, uri) in ET.iterparse(io.StringIO(text), events=("start-ns",)):
        if not re.fullmatch(r"ns\d+", prefix):  # ElementTree reserves ns<digits> for itself
            ET.register_namespace(prefix, uri)


def _set_rating(root: ET.Element, rating: int) -> None:
    """Change xmp:Rating where it is (attribute or element form), else add it to the first rdf:Description."""
    descriptions = list(root.iter(f"{{{RDF}}}Description"))
    for d in descriptions:
        if RATING in d.attrib:
            d.set(RATING, str(rating))
            return
    for element in root.iter(RATING):
        element.text = str(rating)
        return
    if not descriptions:
        rdf = root if root.tag == f"{{{RDF}}}RDF" else root.find(f"{{{RDF}}}RDF")
        if rdf is None:
            raise ValueError("no rdf:RDF element")
        descriptions = [ET.SubElement(rdf, f"{{{RDF}}}Description", {f"{{{RDF}}}about": ""})]
    descriptions[0].set(RATING, str(rating))


def updated_sidecar(text: str, rating: int) -> str:
    """``text`` with its xmp:Rating set to ``rating``; comments, other properties and the text around
    the root element (``<?xpacket ...?>`` wrappers, padding) are kept."""
    _register_namespaces(text)
    parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True, insert_pis=True))
    root = ET.fromstring(text, parser=parser)
    _set_rating(root, rating)
    # ElementTree keeps only the root element: copy what surrounds it in the file verbatim.
    start = re.search(r"<(?![?!])([^\s/>]+)", text)
    end = text.rfind(f"</{start.group(1)}>")
    head = text[: start.start()]
    tail = text[end + len(start.group(1)) + 3 :] if end >= 0 else "\n"
    return head + ET.tostring(root, encoding="unicode") + tail


def write_sidecar(plan: Plan) -> None:
    if plan.action == "update":
        content = updated_sidecar(plan.sidecar.read_text(encoding="utf-8"), plan.rating)
    else:
        content = NEW_SIDECAR.format(rating=plan.rating)
    with atomic_open(plan.sidecar) as f:  # a crash leaves the old sidecar, never half a file
        f.write(content)


def thresholds_arg(text: str) -> list[float]:
    """``--thresholds``: four ascending scores separating 1|2|3|4|5 stars."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not numbers: {text!r}") from None
    if len(values) != 4 or values != sorted(values):
        raise argparse.ArgumentTypeError(f"need four ascending scores (for 2..5 stars), got {text!r}")
    return values


def make_plans(photos: list[Path], results: list, args: argparse.Namespace) -> tuple[list[Plan], list[str]]:
    """One plan per scored photo; errors for unreadable photos and for photos sharing one sidecar
    (``a.jpg`` and ``a.png`` both map to ``a.xmp`` in Lightroom style: neither is written)."""
    errors = [f"{photos[r.index]}: {r.error}" for r in results if isinstance(r, Failure)]
    owners: dict[Path, list[Path]] = {}
    for photo in photos:
        owners.setdefault(sidecar_path(photo, args.sidecar_style), []).append(photo)
    plans = []
    for photo, result in zip(photos, results):
        sidecar = sidecar_path(photo, args.sidecar_style)
        if isinstance(result, Failure):
            continue
        if len(owners[sidecar]) > 1:
            errors.append(f"{photo}: sidecar {sidecar.name} is shared with another photo; use --sidecar-style darktable")
            continue
        rating = rating_for(result.score, thresholds=args.thresholds, reject_below=args.reject_below)
        action = "new" if not sidecar.exists() else "skip (exists)" if args.no_overwrite else "update"
        plans.append(Plan(photo=photo, sidecar=sidecar, score=result.score, rating=rating, action=action))
    return plans, errors


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Score photos and write star ratings into XMP sidecars.")
    p.add_argument("folder", type=Path, help="folder of photos")
    p.add_argument("--recursive", action="store_true", help="include subfolders")
    p.add_argument("--model", default="default", help="'default', 'permissive' or a model file (default: default)")
    p.add_argument("--sidecar-style", choices=("lightroom", "darktable"), default="lightroom",
                   help="lightroom: photo.xmp (read by both); darktable: photo.jpg.xmp")
    p.add_argument("--thresholds", type=thresholds_arg, default=[2.0, 4.0, 6.0, 8.0], metavar="T2,T3,T4,T5",
                   help="lowest score for 2, 3, 4 and 5 stars (default: 2,4,6,8)")
    p.add_argument("--reject-below", type=float, metavar="SCORE", help="rate photos scoring below SCORE -1 (rejected)")
    p.add_argument("--no-overwrite", action="store_true", help="leave existing sidecars alone")
    p.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    photos = find_photos(args.folder, recursive=args.recursive) if args.folder.is_dir() else []
    if not photos:
        print(f"error: {args.folder}: no photos found", file=sys.stderr)
        return 2
    try:
        scorer = redaes_lite.load(args.model)
    except RedaesError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    plans, errors = make_plans(photos, scorer.score_many(photos, on_error="record"), args)
    for plan in plans:
        print(f"{plan.score:5.2f}  {plan.rating:>2}  {plan.action:<13}  {plan.sidecar}")
        if args.dry_run or plan.action.startswith("skip"):
            continue
        try:
            write_sidecar(plan)
        except (OSError, ValueError, ET.ParseError) as e:  # a broken sidecar is reported, never replaced
            errors.append(f"{plan.sidecar}: cannot update ({e})")
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
