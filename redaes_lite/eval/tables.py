"""Label tables as rows of strings: CSV, TSV and the first sheet of an ``.xlsx`` workbook (stdlib only).

SPAQ publishes its scores as an Excel workbook; a reader of ~60 lines keeps openpyxl/pandas out of
the runtime. Header names are stripped of surrounding whitespace (FLICKR-AES writes ``" worker"``).
"""

from __future__ import annotations

import csv
import os
import re
import zipfile
from pathlib import Path
from xml.etree import ElementTree

from ..errors import RedaesError

__all__ = ["read_rows"]

_NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
_REL_NS = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"
_PKG_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}Relationship"


def read_rows(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of a table with a header line, as ``{column: text}``; the format follows the file suffix."""
    path = Path(path)
    if not path.is_file():
        raise RedaesError(f"{path}: no such label file")
    if path.suffix.lower() == ".xlsx":
        grid = _xlsx_grid(path)
    else:
        try:
            with open(path, encoding="utf-8-sig", newline="") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise RedaesError(f"{path}: cannot read label file ({e})") from None
        delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
        grid = [row for row in csv.reader(text.splitlines(), delimiter=delimiter) if any(c.strip() for c in row)]
    if not grid:
        raise RedaesError(f"{path}: label file is empty")
    header = [h.strip() for h in grid[0]]
    return [dict(zip(header, (c.strip() for c in row))) for row in grid[1:]]


def _xlsx_grid(path: Path) -> list[list[str]]:
    """Cell texts of the workbook's first sheet, row by row (gaps filled with "")."""
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            shared = _shared_strings(z.read("xl/sharedStrings.xml")) if "xl/sharedStrings.xml" in names else []
            sheet = ElementTree.fromstring(z.read(_first_sheet(z, names)))
    except (zipfile.BadZipFile, KeyError, ElementTree.ParseError) as e:
        raise RedaesError(f"{path}: not a readable .xlsx workbook ({e})") from None
    grid: list[list[str]] = []
    for row in sheet.iterfind("m:sheetData/m:row", _NS):
        cells: list[str] = []
        for c in row.iterfind("m:c", _NS):
            col = _column_index(c.get("r", "")) if c.get("r") else len(cells)
            cells.extend([""] * (col - len(cells)))
            cells.append(_cell_text(c, shared))
        if any(cells):
            grid.append(cells)
    return grid


def _first_sheet(z: zipfile.ZipFile, names: set[str]) -> str:
    """Path of the first sheet in workbook order (not necessarily ``sheet1.xml``)."""
    try:
        book = ElementTree.fromstring(z.read("xl/workbook.xml"))
        rels = ElementTree.fromstring(z.read("xl/_rels/workbook.xml.rels"))
        first = book.find("m:sheets/m:sheet", _NS)
        targets = {r.get("Id"): r.get("Target", "") for r in rels.iter(_PKG_REL)}
        target = targets[first.get(_REL_NS)] if first is not None else ""
        target = target.lstrip("/") if target.startswith("/") else "xl/" + target
        if target in names:
            return target
    except (KeyError, ElementTree.ParseError):
        pass  # a workbook without (readable) relationships: fall back to the conventional name
    return "xl/worksheets/sheet1.xml"


def _shared_strings(xml: bytes) -> list[str]:
    root = ElementTree.fromstring(xml)
    # Rich-text strings split their text over several <t> runs.
    return ["".join(t.text or "" for t in si.iter(f"{{{_NS['m']}}}t")) for si in root.iterfind("m:si", _NS)]


def _column_index(ref: str) -> int:
    letters = re.match(r"[A-Z]+", ref.upper())
    index = 0
    for ch in letters.group(0) if letters else "A":
        index = index * 26 + (ord(ch) - 64)
    return index - 1


def _cell_text(c: ElementTree.Element, shared: list[str]) -> str:
    kind = c.get("t", "n")
    if kind == "inlineStr":
        return "".join(t.text or "" for t in c.iter(f"{{{_NS['m']}}}t"))
    v = c.find("m:v", _NS)
    text = v.text if v is not None and v.text is not None else ""
    if kind == "s" and text:
        return shared[int(text)]
    return text
