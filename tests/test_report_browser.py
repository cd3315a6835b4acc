"""The report in a real browser: headless Chromium loads it from disk, its DOM order is rank's, the page logs
nothing to the console (no script error, no CSP refusal), the keys move between photos, 500 photos render
in under 2 s, and screenshots are left for a person to look at:

    /tmp/redaes-report.png          the contact sheet at 1280x1000
    /tmp/redaes-report-phone.png    the same on a 390x844 phone screen
    /tmp/redaes-report-compare.png  the compare view

Skipped when no chromium binary is on PATH, unless REDAES_REQUIRE_BROWSER is set, as CI (.ci/run, which
installs Debian's package) sets it: there a missing browser fails.
"""

from __future__ import annotations

import html
import os
import re
import struct
from pathlib import Path

import pytest
from browser import chromium, instrumented, visit
from clirun import invoke
from test_report import contact_sheet, photo

from redaes_lite import Ranked
from redaes_lite.cli import run
from redaes_lite.report import Thumb, build_report, render_report, thumbnail
from redaes_lite.results import Score

if chromium() is None and os.environ.get("REDAES_REQUIRE_BROWSER"):
    raise RuntimeError("REDAES_REQUIRE_BROWSER is set but no chromium binary is on PATH (apt-get install chromium)")
pytestmark = pytest.mark.skipif(chromium() is None, reason="no chromium binary on PATH (apt-get install chromium)")

ARTEFACTS = Path("/tmp")


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is no PNG"
    return struct.unpack(">II", head[16:24])


def dom_cards(dom: str) -> list[str]:
    return [html.unescape(m) for m in re.findall(r'<li class="card[^"]*"[^>]*data-path="([^"]*)"', dom)]


@pytest.fixture(scope="module")
def sheet(tmp_path_factory, tiny_model):
    return contact_sheet(tmp_path_factory.mktemp("sheet"), 23, tiny_model)


def test_console_errors_are_seen(tmp_path):
    """The check below would see a script error, a console.error and a script the page's CSP refuses."""
    page = tmp_path / "bad.html"
    page.write_text(
        '<!DOCTYPE html><meta http-equiv="Content-Security-Policy" content="script-src \'none\'">'
        "<p>x</p><script>console.error('boom'); nope();</script>",
        encoding="utf-8",
    )
    assert any("violates the following Content Security Policy" in line for line in visit(page, "--dump-dom").console)
    page.write_text("<!DOCTYPE html><p>x</p><script>console.error('boom'); nope();</script>", encoding="utf-8")
    console = " ".join(visit(page, "--dump-dom").console)
    assert "boom" in console and "Uncaught ReferenceError" in console


def test_dom_order_is_rank_and_console_is_clean(sheet):
    out, ranked, _ = sheet
    seen = visit(out, "--dump-dom")
    assert seen.console == []
    assert dom_cards(seen.stdout) == [str(r.input) for r in ranked if isinstance(r, Ranked)]
    assert "broken &lt;&amp;&gt;.jpg</code>" in seen.stdout  # listed among the failed, escaped


def test_screenshots(sheet, tmp_path):
    out, _, scorer = sheet
    for name, (w, h) in (("redaes-report.png", (1280, 1000)), ("redaes-report-phone.png", (390, 844))):
        shot = ARTEFACTS / name
        shot.unlink(missing_ok=True)
        seen = visit(out, f"--screenshot={shot}", width=w, height=h)
        assert seen.console == [] and png_size(shot) == (w, h) and shot.stat().st_size > 20_000
    a, b = sorted(p for p in out.parent.glob("*.jpg") if "broken" not in p.name)[:2]
    compare = tmp_path / "compare.html"
    assert invoke(run, "report", "--compare", a, b, "-o", compare, "--model", scorer.path).exit_code == 0
    shot = ARTEFACTS / "redaes-report-compare.png"
    seen = visit(compare, f"--screenshot={shot}", width=1280, height=1000)
    assert seen.console == [] and png_size(shot) == (1280, 1000)


# Presses keys on the page once it has loaded and records which card has the focus after each.
_KEYS = """
addEventListener('load', function () {
  var out = [], cards = Array.prototype.slice.call(document.querySelectorAll('.card'));
  function press(key) {
    document.dispatchEvent(new KeyboardEvent('keydown', {key: key, bubbles: true, cancelable: true}));
    var c = document.activeElement;
    out.push([key, cards.indexOf(c), Math.round(c.getBoundingClientRect().left),
              Math.round(c.getBoundingClientRect().top + scrollY)].join(':'));
  }
  ['ArrowRight', 'ArrowRight', 'l', 'ArrowLeft', 'h', 'ArrowDown', 'j', 'ArrowUp', 'k', 'End', 'ArrowRight', 'Home']
    .forEach(press);
  document.body.setAttribute('data-keys', out.join(' '));
});
"""


def test_keys_move_between_photos(sheet, tmp_path):
    out, ranked, _ = sheet
    page = tmp_path / "keys.html"
    page.write_text(instrumented(out.read_text(encoding="utf-8"), _KEYS), encoding="utf-8")
    dom = visit(page, "--dump-dom").stdout
    steps = [s.split(":") for s in re.search(r'data-keys="([^"]*)"', dom).group(1).split()]
    index = [int(s[1]) for s in steps]
    last = sum(isinstance(r, Ranked) for r in ranked) - 1
    assert index[:5] == [0, 1, 2, 1, 0]
    below, below2 = steps[5], steps[6]  # ArrowDown and j: the card straight below, then the one below that
    assert below[2] == steps[4][2] == below2[2] and int(steps[4][3]) < int(below[3]) < int(below2[3])
    assert index[7] == index[5] and index[8] == 0  # ArrowUp and k go back up
    assert index[9:] == [last, last, 0]  # End, nothing past the end, Home


# Records when the load event came (ms since navigation start) and the first contentful paint.
_TIMING = """
addEventListener('load', function () {
  var paint = performance.getEntriesByName('first-contentful-paint')[0];
  document.documentElement.setAttribute('data-load-ms', performance.now().toFixed(0));
  document.documentElement.setAttribute('data-fcp-ms', paint ? paint.startTime.toFixed(0) : '-1');
});
"""


@pytest.mark.slow
def test_500_photos_render_in_under_2_s(tmp_path):
    thumbs, results = [], []
    for i in range(500):  # 500 different thumbnails (identical data: URIs would be decoded once)
        t = thumbnail(_jpeg(photo(i, (320, 240), grain=4.0)))
        thumbs.append(Thumb(uri=t.uri, width=t.width, height=t.height, dhash=i))
        u = (i * 7919 % 500) / 50
        results.append(Score(score=u, utility=u, factors={"exposure": u / 3, "contrast": -u / 5, "sharpness": i % 7}))
    paths = [f"shoot/IMG_{i:04d}.jpg" for i in range(500)]
    report = build_report(paths, results, model="test@1", thumbs=thumbs, groups=[None] * 500)
    page = render_report(report)
    assert len(page.encode()) / 500 < 40_000
    timed = tmp_path / "timed.html"
    timed.write_text(instrumented(page, _TIMING), encoding="utf-8")
    seen = visit(timed, "--dump-dom")
    load_ms = int(re.search(r'data-load-ms="(\d+)"', seen.stdout).group(1))
    assert len(dom_cards(seen.stdout)) == 500
    assert load_ms < 2000, f"500 photos: load event after {load_ms} ms"
    plain = tmp_path / "plain.html"
    plain.write_text(page, encoding="utf-8")
    assert visit(plain, "--dump-dom").console == []


def _jpeg(im) -> bytes:
    import io

    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()
