"""The report in WebKit (WebKitGTK: Safari's engine, and that of every browser on iOS), headless in a virtual display:
the page loads from disk, its DOM order is rank's, it logs nothing to the console, the keys move between photos,
and screenshots are left for a person to look at:

    /tmp/redaes-report-webkit.png        the contact sheet at 1280x1000
    /tmp/redaes-report-webkit-phone.png  the same on a 390x844 phone screen

``tests/webkit_page.py`` runs under the system Python, which has Debian's PyGObject and WebKitGTK
(``gir1.2-webkit2-4.1 python3-gi python3-gi-cairo xvfb``). Skipped where they are missing, unless
REDAES_REQUIRE_BROWSER is set, as CI (.ci/run installs them) sets it: there a missing one fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from test_report_firefox import CARDS, KEYS, sheet  # noqa: F401 - the same report, fixture included

HERE = Path(__file__).resolve().parent
SYSTEM_PYTHON = "/usr/bin/python3"
ARTEFACTS = Path("/tmp")
PROBE = (
    "import gi; gi.require_version('WebKit2', '4.1'); gi.require_foreign('cairo'); from gi.repository import WebKit2"
)


def _webkit() -> bool:
    if not (shutil.which("xvfb-run") and Path(SYSTEM_PYTHON).is_file()):
        return False
    return subprocess.run([SYSTEM_PYTHON, "-c", PROBE], capture_output=True).returncode == 0


HAVE_WEBKIT = _webkit()
if not HAVE_WEBKIT and os.environ.get("REDAES_REQUIRE_BROWSER"):
    raise RuntimeError(
        "REDAES_REQUIRE_BROWSER is set but WebKitGTK is missing "
        "(apt-get install gir1.2-webkit2-4.1 python3-gi python3-gi-cairo xvfb xauth)"
    )
pytestmark = pytest.mark.skipif(not HAVE_WEBKIT, reason="no WebKitGTK for the system Python, or no xvfb-run")


def _as_json(script: str) -> str:
    """A script whose completion value is its result, JSON-encoded (what webkit_page.py reads back)."""
    return f"JSON.stringify((function () {{ {script} }}).apply(null, __ARGS__))"


def open_page(page: Path, tmp_path: Path, *scripts: str, screenshot: Path | None = None, size=(1280, 1000)) -> dict:
    out = tmp_path / f"webkit-{len(list(tmp_path.iterdir()))}.json"
    cmd = ["xvfb-run", "-a", SYSTEM_PYTHON, str(HERE / "webkit_page.py"), str(page), str(out)]
    cmd += ["--width", str(size[0]), "--height", str(size[1]), "--settle-ms", "2000"]
    for s in scripts:
        cmd += ["--script", s]
    if screenshot is not None:
        screenshot.unlink(missing_ok=True)
        cmd += ["--screenshot", str(screenshot)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    state = json.loads(out.read_text())
    assert done.returncode == 0 and state["error"] is None, (state, done.stderr[-2000:])
    state["console"] = [line for line in done.stderr.splitlines() if " CONSOLE " in line]
    return state


def test_a_script_error_is_seen(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text("<!doctype html><title>x</title><script>noSuchFunction()</script>")
    state = open_page(page, tmp_path)
    assert any("CONSOLE JS ERROR" in line and "noSuchFunction" in line for line in state["console"])


def test_dom_order_keys_and_screenshots(sheet, tmp_path):  # noqa: F811 - the imported fixture
    out, ranked = sheet
    expected = [str(r.input) for r in ranked if hasattr(r, "score")]
    keys = ["ArrowRight", "ArrowRight", "l", "ArrowLeft", "h", "ArrowDown", "ArrowUp", "End", "Home"]
    shot = ARTEFACTS / "redaes-report-webkit.png"
    state = open_page(
        out,
        tmp_path,
        _as_json(CARDS).replace("__ARGS__", "[]"),
        _as_json("return document.body.textContent.indexOf('broken <&>.jpg') >= 0").replace("__ARGS__", "[]"),
        screenshot=shot,  # taken after the scripts: these two leave the page as it opened
    )
    cards, failed_listed = state["results"]
    assert cards == expected and failed_listed
    assert state["console"] == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    (steps,) = open_page(out, tmp_path, _as_json(KEYS).replace("__ARGS__", json.dumps([keys])))["results"]
    index = [s[0] for s in steps]
    assert index[:5] == [0, 1, 2, 1, 0]
    assert steps[5][1] == steps[4][1] and steps[5][2] > steps[4][2]  # ArrowDown: the card straight below
    assert index[6] == 0 and index[7:] == [len(expected) - 1, 0]
    phone = ARTEFACTS / "redaes-report-webkit-phone.png"
    state = open_page(out, tmp_path, screenshot=phone, size=(390, 844))
    assert state["console"] == [] and phone.stat().st_size > 20_000
