"""HTML of :mod:`redaes_lite.report`: one file, no network (a Content-Security-Policy allows only ``data:``
images and the page's own style and script, by hash), a responsive grid, keyboard navigation.

Every path, error, title and model name goes through :func:`_text`: control and bidirectional characters
shown as escapes (as in the CLI's table), then HTML-escaped, quotes included.
"""

from __future__ import annotations

import base64
import hashlib
import html
import os
from typing import TYPE_CHECKING

from ._cli_io import visible

if TYPE_CHECKING:
    from .report import ComparisonView, Photo, Report

__all__ = ["render_comparison", "render_report"]

_CSS = """\
:root{color-scheme:light dark;--bg:#f4f4f2;--fg:#1c1c1c;--muted:#5e5e5e;--card:#fff;--line:#d9d9d6;
--accent:#0b63c4;--up:#1a7f37;--down:#b42318;--best:#b7791f}
@media (prefers-color-scheme:dark){:root{--bg:#151515;--fg:#ececec;--muted:#a8a8a8;--card:#242424;--line:#3a3a3a;
--accent:#74b7ff;--up:#5fcf7c;--down:#ff8a7a;--best:#f0b429}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
header,main{max-width:1680px;margin:0 auto;padding:12px 16px}
h1{font-size:1.3rem;margin:0 0 4px}h2{font-size:1.1rem;margin:24px 0 8px}
.meta,.keys{color:var(--muted);margin:2px 0;font-size:.9rem}
kbd{border:1px solid var(--line);border-radius:3px;padding:0 4px;font:inherit;font-size:.85em}
.grid{list-style:none;margin:0;padding:0;display:grid;gap:12px;
grid-template-columns:repeat(auto-fill,minmax(min(100%,210px),1fr))}
@media (max-width:480px){.grid{grid-template-columns:repeat(2,minmax(0,1fr));gap:8px}header,main{padding:8px}}
.card{background:var(--card);border:2px solid var(--line);border-radius:8px;overflow:hidden;
content-visibility:auto;contain-intrinsic-size:auto 330px}
.card:focus{outline:3px solid var(--accent);outline-offset:2px}
.card.best{border-color:var(--best)}
.card img,.noimg{display:block;width:100%;height:auto;aspect-ratio:4/3;object-fit:contain;
background:rgba(127,127,127,.15)}
.noimg{display:flex;align-items:center;justify-content:center;color:var(--muted);font-size:.85rem}
.info{padding:6px 8px 8px}
.top{display:flex;align-items:baseline;gap:6px;flex-wrap:wrap}
.place{color:var(--muted);font-size:.85rem}.score{font-weight:700;font-size:1.15rem}
.stars{color:var(--best);letter-spacing:1px}.stars.rejected{color:var(--down);letter-spacing:0}
.tag{font-size:.75rem;border:1px solid var(--line);border-radius:10px;padding:0 6px;color:var(--muted)}
.best .tag.group{border-color:var(--best);color:var(--fg);font-weight:600}
.path{margin:4px 0 2px;font-size:.8rem;color:var(--muted);overflow-wrap:anywhere}
.why{list-style:none;margin:0;padding:0;font-size:.82rem;display:flex;flex-wrap:wrap;gap:2px 10px}
.up{color:var(--up)}.down{color:var(--down)}
.failed li{margin:4px 0;overflow-wrap:anywhere}.failed code{font-size:.85rem}
.pair{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,320px),1fr));gap:12px}
.verdict{font-size:1.05rem;margin:8px 0}
.chart{width:100%;max-width:760px;height:auto;font-size:13px}
.chart text{fill:var(--fg)}.chart .axis{stroke:var(--muted)}.chart .up{fill:var(--up)}.chart .down{fill:var(--down)}
"""

# Arrows / h j k l move between photos (up and down by rows of the grid), Home / End to the ends.
_JS = """\
(function(){var cards=Array.prototype.slice.call(document.querySelectorAll('.card'));
if(!cards.length)return;var grid=cards[0].parentNode;
function cols(){return Math.max(1,getComputedStyle(grid).gridTemplateColumns.split(' ').length)}
var step={ArrowRight:1,l:1,ArrowLeft:-1,h:-1,ArrowDown:'+',j:'+',ArrowUp:'-',k:'-'};
document.addEventListener('keydown',function(e){if(e.altKey||e.ctrlKey||e.metaKey)return;
var i=cards.indexOf(document.activeElement),k=e.key,s=step[k],to;
if(k==='Home')to=0;else if(k==='End')to=cards.length-1;
else if(s===undefined)return;else if(i<0)to=0;
else to=i+(s==='+'?cols():s==='-'?-cols():s);
to=Math.max(0,Math.min(cards.length-1,to));e.preventDefault();cards[to].focus();
cards[to].scrollIntoView({block:'nearest'});});})();
"""


def _hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode("ascii") + "'"


_CSP = (
    f"default-src 'none'; img-src data:; style-src {_hash(_CSS)}; script-src {_hash(_JS)}; "
    "base-uri 'none'; form-action 'none'"
)


def _text(value: object) -> str:
    """A value as HTML text or attribute: control characters escaped visibly, then HTML-escaped."""
    return html.escape(visible(str(value)), quote=True)


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="generator" content="redaes-lite report">'
        f"<title>{_text(title)}</title><style>{_CSS}</style></head>\n<body>\n{body}\n"
        f"<script>{_JS}</script>\n</body></html>\n"
    )


def _stars(n: int | None) -> str:
    if n is None:
        return ""
    if n < 1:
        return '<span class="stars rejected" aria-label="rejected">rejected</span>'
    return f'<span class="stars" aria-label="{n} of 5 stars" title="{n} of 5 stars">{"★" * n}{"☆" * (5 - n)}</span>'


def _image(photo: Photo, *, lazy: bool) -> str:
    t = photo.thumb
    if t is None:
        return '<div class="noimg">no preview</div>'
    load = ' loading="lazy"' if lazy else ""
    return f'<img src="{t.uri}" width="{t.width}" height="{t.height}" alt=""{load} decoding="async">'


def _why(photo: Photo) -> str:
    if not photo.apart:
        return ""
    items = "".join(f'<li class="{"up" if d > 0 else "down"}">{_text(n)} {d:+.2f}</li>' for n, d in photo.apart)
    return f'<ul class="why" title="factor utility minus the shoot\'s median">{items}</ul>'


def _folder(paths: list[str]) -> str:
    """The folder all ``paths`` share (ending in a separator), shown once in the header; "" if none, or if it
    is only the root."""
    if len(paths) < 2:
        return ""
    head = os.path.commonprefix(paths)
    cut = max(head.rfind("/"), head.rfind(os.sep))
    return head[: cut + 1] if cut > 0 else ""


def _error(photo: Photo) -> str:
    """The error without a leading repeat of the path (the list shows the path)."""
    error = photo.error or ""
    return error[len(photo.path) + 2 :] if error.startswith(photo.path + ": ") else error


def _card(photo: Photo, *, lazy: bool = True, folder: str = "", side: str = "", preferred: bool = False) -> str:
    """One photo; ``side`` ("A", "B") and ``preferred`` for the compare view."""
    group = ""
    if photo.group is not None:
        label = f"best of group {photo.group}" if photo.best else f"group {photo.group}"
        group = f'<span class="tag group">{_text(label)}</span>'
    elif preferred:
        group = '<span class="tag group">preferred</span>'
    path = _text(photo.path)
    shown = _text(photo.path[len(folder) :])
    place = f"{side} #{photo.place}" if side else f"#{photo.place}"
    return (
        f'<li class="card{" best" if photo.best or preferred else ""}" tabindex="0" data-place="{photo.place}" '
        f'data-path="{path}" title="{path}">{_image(photo, lazy=lazy)}<div class="info"><div class="top">'
        f'<span class="place">{place}</span><span class="score">{photo.score:.1f}</span>'
        f'{_stars(photo.stars)}{group}</div><p class="path">{shown}</p>{_why(photo)}</div></li>'
    )


def _failed(photos: tuple[Photo, ...]) -> str:
    if not photos:
        return ""
    items = "".join(
        f'<li data-path="{_text(p.path)}"><code>{_text(p.path)}</code>: {_text(_error(p))}</li>' for p in photos
    )
    return f'<section class="failed" id="failed"><h2>Could not be scored ({len(photos)})</h2><ul>{items}</ul></section>'


def render_report(report: Report) -> str:
    """The contact sheet of ``report`` as one HTML document."""
    ranked = [p for p in report.photos if p.error is None]
    folder = _folder([p.path for p in ranked])  # the failed are listed with their whole paths
    # The first screen's images load at once, the rest as they are scrolled to.
    cards = "\n".join(_card(p, lazy=n >= 12, folder=folder) for n, p in enumerate(ranked))
    cuts = ", ".join(f"{t:g}" for t in report.thresholds)
    reject = f"; rejected below {report.reject_below:g}" if report.reject_below is not None else ""
    count = len({p.group for p in ranked if p.group is not None})
    groups = f"{count} groups, the best of each marked" if count else "no groups of similar photos"
    failed = f", {len(report.failed)} failed" if report.failed else ""
    body = (
        f"<header><h1>{_text(report.title)}</h1>"
        f'<p class="meta">{f"in {_text(folder)} · " if folder else ""}{len(ranked)} scored{failed} · '
        f"model {_text(report.model)} · "
        f"stars from the 0-10 score at {cuts}{reject} · {groups} · "
        "factors: utility minus the shoot's median</p>"
        '<p class="keys">Keys: <kbd>←</kbd><kbd>→</kbd> or <kbd>h</kbd><kbd>l</kbd> previous / next, '
        "<kbd>↑</kbd><kbd>↓</kbd> or <kbd>k</kbd><kbd>j</kbd> row up / down, <kbd>Home</kbd> <kbd>End</kbd>"
        f'</p></header>\n<main><ol class="grid" id="photos">\n{cards}\n</ol>\n{_failed(report.failed)}</main>'
    )
    return _page(report.title, body)


def _chart(factors: dict[str, float]) -> str:
    """Horizontal bars of ``f(b) - f(a)`` about a centre line: left favours A, right favours B."""
    if not factors:
        return ""
    row, label, half, room = 26, 150, 300, 56  # room: for the value written past the end of a bar
    width, height = label + 2 * half, row * len(factors) + 30
    top = (max(abs(v) for v in factors.values()) or 1.0) / (half - room)
    centre = label + half
    parts = [
        f'<text x="{centre - 8}" y="14" text-anchor="end">← favours A</text>',
        f'<text x="{centre + 8}" y="14">favours B →</text>',
    ]
    for n, (name, d) in enumerate(factors.items()):
        y = 24 + n * row
        w = abs(d) / top
        x = centre if d > 0 else centre - w
        tx, anchor = (centre + w + 6, "start") if d > 0 else (centre - w - 6, "end")
        parts.append(
            f'<text x="{label - 10}" y="{y + 15}" text-anchor="end">{_text(name)}</text>'
            f'<rect class="{"up" if d > 0 else "down"}" x="{x:.1f}" y="{y + 3}" width="{w:.1f}" '
            f'height="{row - 8}" rx="2"><title>{_text(name)} {d:+.3f}</title></rect>'
            f'<text x="{tx:.1f}" y="{y + 15}" text-anchor="{anchor}">{d:+.2f}</text>'
        )
    parts.append(f'<line class="axis" x1="{centre}" x2="{centre}" y1="20" y2="{height - 4}"/>')
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="factor differences, B minus A">{"".join(parts)}</svg>'
    )


def render_comparison(view: ComparisonView) -> str:
    """Two photos side by side, the verdict, and the factor differences as a bar chart."""
    c = view.comparison
    cards = []
    for side, photo in (("A", view.a), ("B", view.b)):
        if photo.error is not None:
            cards.append(
                f'<li class="card" tabindex="0" data-path="{_text(photo.path)}"><div class="noimg">'
                f'{side}: could not be scored</div><div class="info"><p class="path">'
                f"{_text(photo.path)}: {_text(_error(photo))}</p></div></li>"
            )
            continue
        cards.append(_card(photo, lazy=False, side=side, preferred=c is not None and c.preferred == side.lower()))
    if c is not None:
        better = "B" if c.preferred == "b" else "A"
        verdict = (
            f'<p class="verdict"><b>{better}</b> is preferred, with probability {c.probability:.2f} '
            f"(delta = u(B) − u(A) = {c.delta:+.3f}).</p>"
        )
        chart = "<h2>Why: factor differences, B minus A</h2>" + _chart(c.factors)
    else:
        verdict, chart = '<p class="verdict">No comparison: a photo could not be scored.</p>', ""
    body = (
        f'<header><h1>{_text(view.title)}</h1><p class="meta">model {_text(view.model)}</p>{verdict}</header>\n'
        f'<main><ol class="grid pair" id="photos">{"".join(cards)}</ol>{chart}</main>'
    )
    return _page(view.title, body)
