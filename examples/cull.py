#!/usr/bin/env python3
"""Cull a shoot: score every photo (raw files too) and write its star rating into XMP sidecars,
leaving every rating a person set alone.

    python examples/cull.py ~/Pictures/shoot --recursive --dry-run    # print what would change, write nothing
    python examples/cull.py ~/Pictures/shoot --reject-below 1.5       # write the sidecars
    python examples/cull.py shoot/ --sidecar darktable                # only photo.ext.xmp sidecars

Ratings a person set are kept. A photo counts as rated by hand when one of its sidecars, or the XMP
packet or EXIF Rating tag inside the photo itself, holds a rating other than 0 ("unrated") that
cull.py did not write. cull.py marks the ratings it writes (``redaes:Rating``, ``redaes:CreatorTool``,
``redaes:Model``, ``redaes:Score`` beside ``xmp:Rating``, namespace ``NS`` below), so a re-run updates
its own ratings but keeps one a person has since changed. ``--overwrite`` replaces every rating.
darktable rates every photo 1 star on import unless its "initial rating" preference is 0: such a
1-star sidecar looks hand-set to cull.py; run cull.py before importing, or pass --overwrite.

Sidecar names (``--sidecar``), as the applications read them:

    darktable  photo.ext.xmp (photo.NEF.xmp, photo.jpg.xmp); digiKam writes and reads this name by default
    lightroom  photo.xmp, which Lightroom Classic and Capture One read for raw files
    both       both names
    auto       (default) the photo's existing sidecars of either name; a photo without one gets both
               names if it is a raw file, photo.ext.xmp otherwise

Lightroom Classic does not read .xmp sidecars beside JPEG, TIFF, PNG, HEIC or DNG files: for those it
reads the XMP embedded in the file and otherwise keeps ratings in its catalog, so no sidecar reaches
Lightroom for a JPEG. Where a raw and a JPEG share a name (IMG_1.CR2 + IMG_1.JPG), photo.xmp belongs to
the raw.

Raw files (CR2, CR3, NEF, NRW, ARW, SR2, DNG, RAF, ORF, RW2, PEF, SRW, 3FR, IIQ, ...) are scored
through the largest JPEG preview the camera embedded in them, found without any dependency by
scanning the file for JPEG start-of-image markers and walking each candidate's segments to its end
(lossless-JPEG raw data and 12-bit JPEGs are skipped); the raw's own EXIF orientation is applied to it.
A raw with no usable preview is decoded with ``rawpy`` if that is installed, else it is an error row.
Reading the photos (their own ratings, raw previews) is ``cull_files.py``'s, beside this file: copy both.
The photos are never opened for writing; sidecars are written atomically (a temporary file beside
them, renamed over the old one), so a crash leaves the old sidecar or the new one, never half a file.

Stars from the 0..10 display score (``redaes_lite.stars``, which ``redaes-lite report`` shows too),
with the default ``--thresholds 2,4,6,8``:

    score < 2 -> 1 star, 2 <= score < 4 -> 2, 4..6 -> 3, 6..8 -> 4, score >= 8 -> 5
    score < --reject-below (off by default) -> -1 (rejected in Lightroom and darktable)

An existing sidecar keeps everything else it holds: only the rating and cull.py's mark change.
Output: a header, one row per sidecar (score, old -> new rating or "kept N (set by hand)", path),
a summary; each error once on stderr as "error: PATH: cause". Exit status: 0 every photo rated (or
kept); 1 some photos or sidecars failed (the rest are written); 2 usage error (no photos, unusable
model, bad thresholds); 130 interrupted.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cull_files import (
    DESCRIPTION,
    IMAGE_SUFFIXES,
    RATING,
    RAW_SUFFIXES,
    RDF,
    XMP,
    PhotoError,
    X,
    find_rating,
    is_unrated,
    rawpy_image,
    read_photo,
)

import redaes_lite
from redaes_lite import Failure, RedaesError

NS = "https://github.com/redaes-lite/redaes-lite/ns/cull/1.0/"  # cull.py's mark on the ratings it writes
MARK = f"{{{NS}}}Rating"
CREATOR = "redaes-lite examples/cull.py"
NEW_SIDECAR = f"""<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="{X}">
 <rdf:RDF xmlns:rdf="{RDF}">
  <rdf:Description rdf:about=""/>
 </rdf:RDF>
</x:xmpmeta>
"""


# -- ratings --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SidecarState:
    rating: str | None  # xmp:Rating as written, None when absent
    ours: bool  # cull.py wrote this rating (its mark holds the same value)


def sidecar_state(root: ET.Element) -> SidecarState:
    found = find_rating(root)
    if found is None:
        return SidecarState(rating=None, ours=False)
    description, value = found
    return SidecarState(rating=value, ours=description.get(MARK) == value)


# -- sidecars -------------------------------------------------------------------------------------


def find_photos(paths: list[Path], *, recursive: bool) -> list[Path]:
    """Photos and raw files named or inside the folders named, sorted; hidden files (``._IMG_1.CR2``,
    cull.py's temporary files) are left out."""
    found = set()
    for path in paths:
        if path.is_dir():
            found.update(p for p in (path.rglob("*") if recursive else path.iterdir()) if p.is_file())
        elif path.is_file():
            found.add(path)
    suffixes = IMAGE_SUFFIXES | RAW_SUFFIXES
    return sorted(p for p in found if p.suffix.lower() in suffixes and not p.name.startswith("."))


def is_raw(photo: Path) -> bool:
    return photo.suffix.lower() in RAW_SUFFIXES


def darktable_name(photo: Path) -> Path:
    return photo.with_name(photo.name + ".xmp")


def lightroom_owners(photos: list[Path]) -> dict[Path, Path]:
    """photo.xmp -> the one photo it belongs to: the only photo of that name, or the only raw among them."""
    claims: dict[Path, list[Path]] = {}
    for photo in photos:
        claims.setdefault(photo.with_suffix(".xmp"), []).append(photo)
    owners = {}
    for sidecar, claimants in claims.items():
        raws = [p for p in claimants if is_raw(p)]
        if len(claimants) == 1 or len(raws) == 1:
            owners[sidecar] = claimants[0] if len(claimants) == 1 else raws[0]
    return owners


def sidecars_for(photo: Path, style: str, owners: dict[Path, Path]) -> tuple[list[Path], list[Path]]:
    """(the sidecars of ``photo`` that may hold its rating, the ones to write in ``style``)."""
    darktable, lightroom = darktable_name(photo), photo.with_suffix(".xmp")
    related = [darktable] + ([lightroom] if owners.get(lightroom) == photo else [])
    if style == "darktable":
        return related, [darktable]
    if style == "lightroom":
        if lightroom not in related:
            other = owners.get(lightroom)
            why = f"belongs to {other.name}" if other else "is shared with another photo of that name"
            raise PhotoError(f"sidecar {lightroom.name} {why}; use --sidecar darktable or auto")
        return related, [lightroom]
    if style == "both":
        return related, related
    existing = [s for s in related if s.exists()]
    return related, existing or (related if is_raw(photo) else [darktable])


def read_sidecar(path: Path) -> tuple[str, ET.Element]:
    """The sidecar's text and parsed root; PhotoError naming the cause when it is no XMP file."""
    try:
        text = path.read_text(encoding="utf-8")
        root = ET.fromstring(text.removeprefix("\ufeff"))
    except (UnicodeDecodeError, ET.ParseError) as e:
        raise PhotoError(f"not an XMP file ({e}); left as it is") from None
    if root.tag not in (f"{{{X}}}xmpmeta", f"{{{RDF}}}RDF"):
        raise PhotoError(f"not an XMP file (root element {root.tag}); left as it is")
    return text, root


def _register_namespaces(text: str) -> None:
    """Make ElementTree write the file's own prefixes (xmp:, dc:, darktable:, ...) instead of ns0:."""
    ET.register_namespace("xmp", XMP)  # for a Rating added to a file that never declared xmp:
    ET.register_namespace("redaes", NS)
    for _, (prefix, uri) in ET.iterparse(io.StringIO(text), events=("start-ns",)):
        # ElementTree reserves ns<digits> for itself; redaes: stays cull.py's
        if not re.fullmatch(r"ns\d+", prefix) and prefix != "redaes" and uri != NS:
            ET.register_namespace(prefix, uri)


def _set_rating(root: ET.Element, rating: int, mark: dict[str, str]) -> None:
    """Change xmp:Rating where it is (attribute or element form), else add it to the first
    rdf:Description; cull.py's mark goes on the same rdf:Description."""
    found = find_rating(root)
    if found is not None:
        description, _ = found
        element = description.find(RATING)
        if element is not None and RATING not in description.attrib:
            element.text = str(rating)
        else:
            description.set(RATING, str(rating))
    else:
        descriptions = list(root.iter(DESCRIPTION))
        if not descriptions:
            rdf = root if root.tag == f"{{{RDF}}}RDF" else root.find(f"{{{RDF}}}RDF")
            if rdf is None:
                raise PhotoError("not an XMP file (no rdf:RDF element); left as it is")
            descriptions = [ET.SubElement(rdf, DESCRIPTION, {f"{{{RDF}}}about": ""})]
        description = descriptions[0]
        description.set(RATING, str(rating))
    description.set(MARK, str(rating))
    for key, value in mark.items():
        description.set(f"{{{NS}}}{key}", value)


def updated_sidecar(text: str, rating: int, mark: dict[str, str]) -> str:
    """``text`` with its xmp:Rating set to ``rating`` and cull.py's mark; comments, other properties and
    the text around the root element (``<?xpacket ...?>`` wrappers, padding) are kept."""
    bom = "\ufeff" if text.startswith("\ufeff") else ""
    text = text.removeprefix(bom)
    _register_namespaces(text)
    parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True, insert_pis=True))
    root = ET.fromstring(text, parser=parser)
    _set_rating(root, rating, mark)
    # ElementTree keeps only the root element: copy what surrounds it in the file verbatim.
    start = re.search(r"<(?![?!])([^\s/>]+)", text)
    end = text.rfind(f"</{start.group(1)}>")
    head = text[: start.start()]
    tail = text[end + len(start.group(1)) + 3 :] if end >= 0 else "\n"
    return bom + head + ET.tostring(root, encoding="unicode") + tail


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it, fsynced and renamed over it:
    readers see the old file or the whole new one. The old file's permissions are kept."""
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)  # the only portable way to read the umask
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- the run --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    sidecar: Path  # or, for a rating kept inside the photo, the photo
    old: str | None
    new: int | None  # None: kept
    write: str | None = None  # the new sidecar text; None: nothing to write

    def change(self) -> str:
        if self.new is None:
            return f"kept {self.old} (set by hand)"
        if self.old is not None and self.write is None:
            return f"{self.old} (unchanged)"
        return f"{self.old or 'none'} -> {self.new}" + ("" if self.sidecar.exists() else " (new file)")


def plan_photo(photo: Path, score: float, embedded: str | None, args: argparse.Namespace, owners: dict) -> list[Row]:
    """What to do with each of ``photo``'s sidecars. Raises PhotoError (the cause) or OSError."""
    rating = redaes_lite.stars(score, thresholds=args.thresholds, reject_below=args.reject_below)
    related, targets = sidecars_for(photo, args.sidecar, owners)
    states: dict[Path, tuple[str, ET.Element, SidecarState]] = {}
    for sidecar in related:
        if sidecar.exists():
            try:
                text, root = read_sidecar(sidecar)
            except PhotoError as e:
                raise PhotoError(f"sidecar {sidecar.name}: {e}") from None
            states[sidecar] = (text, root, sidecar_state(root))
    hand = [(s, st.rating) for s, (_, _, st) in states.items() if not st.ours and not is_unrated(st.rating)]
    if embedded is not None:
        hand.append((photo, embedded))
    if hand and not args.overwrite:
        return [Row(sidecar=where, old=value, new=None) for where, value in hand]
    mark = {"CreatorTool": CREATOR, "Model": args.model_id, "Score": f"{score:.2f}"}
    rows = []
    for sidecar in targets:
        if sidecar in states:
            text, _, state = states[sidecar]
            if state.ours and state.rating == str(rating):
                rows.append(Row(sidecar=sidecar, old=state.rating, new=rating))
                continue
            content = updated_sidecar(text, rating, mark)
            rows.append(Row(sidecar=sidecar, old=state.rating, new=rating, write=content))
        else:
            content = updated_sidecar(NEW_SIDECAR, rating, mark)
            rows.append(Row(sidecar=sidecar, old=None, new=rating, write=content))
    return rows


def thresholds_arg(text: str) -> list[float]:
    """``--thresholds``: four ascending scores separating 1|2|3|4|5 stars."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not numbers: {text!r}") from None
    if len(values) != 4 or values != sorted(values):
        raise argparse.ArgumentTypeError(f"need four ascending scores (for 2..5 stars), got {text!r}")
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Score photos (raw files through their embedded preview) and write star ratings into XMP "
        "sidecars. Ratings a person set are kept unless --overwrite is given.",
        epilog="Lightroom Classic does not read .xmp sidecars beside JPEG (or TIFF, PNG, HEIC, DNG) files: it "
        "reads the XMP embedded in the file and its catalog. Its photo.xmp sidecars are for raw files.",
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="folders of photos, or photos")
    p.add_argument("--recursive", action="store_true", help="include subfolders")
    p.add_argument("--model", default="default", help="'default', 'permissive' or a model file (default: default)")
    p.add_argument(
        "--sidecar",
        choices=("auto", "darktable", "lightroom", "both"),
        default="auto",
        help="darktable: photo.ext.xmp (darktable, digiKam); lightroom: photo.xmp (Lightroom Classic and Capture "
        "One, for raw files); both; auto (default): a photo's existing sidecars, else both names for a raw "
        "file and photo.ext.xmp for others",
    )
    p.add_argument(
        "--thresholds",
        type=thresholds_arg,
        default=list(redaes_lite.STAR_THRESHOLDS),
        metavar="T2,T3,T4,T5",
        help="lowest score for 2, 3, 4 and 5 stars (default: 2,4,6,8)",
    )
    p.add_argument("--reject-below", type=float, metavar="SCORE", help="rate photos scoring below SCORE -1 (rejected)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace ratings set by hand too (by default only cull.py's own ratings are updated)",
    )
    p.add_argument("--dry-run", action="store_true", help="print what would change, write nothing")
    return p.parse_args(argv)


def _cause(error: str, path: Path) -> str:
    """A library error message without its leading "<input>: " (the row names the path)."""
    return re.sub(r"^(<\d+ bytes>|<array [^>]*>|" + re.escape(str(path)) + "): ", "", error)


def run(args: argparse.Namespace, photos: list[Path], scorer: Any) -> int:
    out, err = sys.stdout, sys.stderr
    thresholds = ",".join(f"{t:g}" for t in args.thresholds)
    what = "dry run, nothing is written" if args.dry_run else "writing sidecars"
    print(
        f"cull.py: {len(photos)} photos, model {scorer.model_id}, thresholds {thresholds}, "
        f"--sidecar {args.sidecar}{', --overwrite' if args.overwrite else ''}: {what}",
        file=out,
    )
    print(f"{'score':>5}  {'rating':<24}  sidecar", file=out)
    owners = lightroom_owners(photos)
    errors: dict[int, str] = {}  # photo index -> error, for photos that never reach the scorer
    embedded: dict[int, str | None] = {}
    fed: deque[int] = deque()

    def feed() -> Iterator[Any]:
        for i, photo in enumerate(photos):
            try:
                info = read_photo(photo, raw=is_raw(photo))
                x = photo if not is_raw(photo) else info.preview if info.preview is not None else rawpy_image(photo)
            except (OSError, ValueError, PhotoError) as e:
                errors[i] = str(e) if isinstance(e, PhotoError) else (e.strerror or str(e))
                continue
            embedded[i] = info.rating
            fed.append(i)
            yield x

    counts = {"written": 0, "unchanged": 0, "kept": 0, "errors": 0}
    reported = 0

    def report_errors(upto: int) -> None:
        nonlocal reported
        for i in range(reported, upto):
            if i in errors:
                print(f"error: {photos[i]}: {errors.pop(i)}", file=err)
                counts["errors"] += 1
        reported = max(reported, upto)

    for result in scorer.iter_scores(feed(), on_error="record"):
        i = fed.popleft()
        report_errors(i)
        photo = photos[i]
        reported = i + 1
        if isinstance(result, Failure):
            print(f"error: {photo}: {_cause(result.error, photo)}", file=err)
            counts["errors"] += 1
            continue
        try:
            rows = plan_photo(photo, result.score, embedded.pop(i), args, owners)
        except (OSError, PhotoError) as e:
            print(f"error: {photo}: {e.strerror if isinstance(e, OSError) and e.strerror else e}", file=err)
            counts["errors"] += 1
            continue
        for row in rows:
            print(f"{result.score:5.2f}  {row.change():<24}  {row.sidecar}", file=out)
            if row.new is None:
                counts["kept"] += 1
            elif row.write is None:
                counts["unchanged"] += 1
            elif not args.dry_run:
                try:
                    atomic_write(row.sidecar, row.write)
                except OSError as e:
                    print(f"error: {row.sidecar}: cannot write ({e.strerror or e})", file=err)
                    counts["errors"] += 1
                    continue
                counts["written"] += 1
            else:
                counts["written"] += 1
    report_errors(len(photos))
    verb = "would write" if args.dry_run else "wrote"
    print(
        f"{verb} {counts['written']} sidecars; {counts['unchanged']} unchanged, {counts['kept']} kept (set by hand), "
        f"{counts['errors']} errors",
        file=out,
    )
    return 1 if counts["errors"] else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        photos = find_photos(args.paths, recursive=args.recursive)
        if not photos:
            print(f"error: {', '.join(map(str, args.paths))}: no photos found", file=sys.stderr)
            return 2
        try:
            scorer = redaes_lite.load(args.model)
        except RedaesError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        args.model_id = scorer.model_id
        return run(args, photos, scorer)
    except KeyboardInterrupt:
        print("interrupted: sidecars written so far are complete, the rest are untouched", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `cull.py ... | head`
        sys.stderr.close()
        return 1


if __name__ == "__main__":
    sys.exit(main())
