"""The report in Firefox (headless, over Marionette): the same page as in Chromium loads from disk, its DOM order is
rank's, the page logs no error to the console, the keys move between photos, and screenshots are left for a
person to look at:

    /tmp/redaes-report-firefox.png        the contact sheet in a 1280x1000 window
    /tmp/redaes-report-firefox-phone.png  the same in the narrowest window Firefox opens (500 px wide: two columns)

Skipped when no firefox binary is on PATH, unless REDAES_REQUIRE_BROWSER is set, as CI (.ci/run, which installs
Debian's firefox-esr) sets it: there a missing browser fails.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from firefox import firefox, session
from test_report import contact_sheet

from redaes_lite import Ranked

if firefox() is None and os.environ.get("REDAES_REQUIRE_BROWSER"):
    raise RuntimeError("REDAES_REQUIRE_BROWSER is set but no firefox binary is on PATH (apt-get install firefox-esr)")
pytestmark = pytest.mark.skipif(firefox() is None, reason="no firefox binary on PATH (apt-get install firefox-esr)")

ARTEFACTS = Path("/tmp")
CARDS = "return Array.from(document.querySelectorAll('li.card')).map(c => c.dataset.path)"
# Presses keys and records which card has the focus after each, and where it is.
KEYS = """
var out = [], cards = Array.prototype.slice.call(document.querySelectorAll('.card'));
arguments[0].forEach(function (key) {
  document.dispatchEvent(new KeyboardEvent('keydown', {key: key, bubbles: true, cancelable: true}));
  var c = document.activeElement, r = c.getBoundingClientRect();
  out.push([cards.indexOf(c), Math.round(r.left), Math.round(r.top + scrollY)]);
});
return out;
"""


@pytest.fixture(scope="module")
def sheet(tmp_path_factory, tiny_model):
    out, ranked, _ = contact_sheet(tmp_path_factory.mktemp("sheet-firefox"), 17, tiny_model)
    return out, ranked


def test_a_script_error_is_seen(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text("<!doctype html><title>x</title><script>noSuchFunction()</script>")
    with session() as ff:
        ff.open(page)
        assert any("noSuchFunction" in e for e in ff.console_errors())


def test_dom_order_keys_and_screenshots(sheet):
    out, ranked = sheet
    expected = [str(r.input) for r in ranked if isinstance(r, Ranked)]
    with session() as ff:
        ff.open(out)
        assert ff.script(CARDS) == expected
        assert "broken <&>.jpg" in ff.script("return document.body.textContent")  # listed among the failed
        assert ff.console_errors() == []
        shot = ff.screenshot(ARTEFACTS / "redaes-report-firefox.png")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
        steps = ff.script(
            KEYS, ["ArrowRight", "ArrowRight", "l", "ArrowLeft", "h", "ArrowDown", "ArrowUp", "End", "Home"]
        )
        index = [s[0] for s in steps]
        assert index[:5] == [0, 1, 2, 1, 0]
        assert steps[5][1] == steps[4][1] and steps[5][2] > steps[4][2]  # ArrowDown: the card straight below
        assert index[6] == 0 and index[7:] == [len(expected) - 1, 0]
        ff.open(out, width=390, height=844)
        phone = ff.screenshot(ARTEFACTS / "redaes-report-firefox-phone.png")
        assert phone.stat().st_size > 20_000 and ff.console_errors() == []
