"""redaes_lite.report and `redaes-lite report`: the contact sheet's order is rank's, every name and error is
escaped, failed files are listed, groups mark their best, the file stays small and needs no network."""

from __future__ import annotations

import csv
import html
import io
import re
from pathlib import Path

import numpy as np
import pytest
from clirun import invoke
from PIL import Image, ImageDraw

import redaes_lite
from redaes_lite import load
from redaes_lite.cli import run
from redaes_lite.report import (
    STAR_THRESHOLDS,
    build_comparison,
    build_report,
    near_duplicates,
    render_comparison,
    render_report,
    stars,
    thumbnail,
    thumbnails,
)

HOSTILE = '<b onmouseover=alert(1)>&"x\u202e.jpg'


def photo(seed: int, size: tuple[int, int] = (480, 360), grain: float = 6.0) -> Image.Image:
    """A gradient with a few shapes and camera-like grain: compresses like a photo, not like noise."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w] / max(w, h)
    base, slope = rng.uniform(0.1, 0.9, 3), rng.uniform(-0.5, 0.5, (2, 3))
    arr = np.clip(base + x[..., None] * slope[0] + y[..., None] * slope[1], 0, 1) * 255
    im = Image.fromarray(arr.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(im)
    for _ in range(4):
        x0, y0 = int(rng.integers(0, w * 3 // 4)), int(rng.integers(0, h * 3 // 4))
        draw.ellipse(
            [x0, y0, x0 + int(rng.integers(20, w // 2)), y0 + int(rng.integers(20, h // 2))],
            fill=tuple(int(c) for c in rng.integers(0, 256, 3)),
        )
    noisy = np.asarray(im, np.float32) + rng.normal(0, grain, (h, w, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def shoot(folder: Path, n: int = 6, *, size: tuple[int, int] = (480, 360)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"img_{i:02d}.jpg"
        photo(i, size).save(path, quality=90)
        paths.append(path)
    return paths


def contact_sheet(folder: Path, n: int, tiny_model) -> tuple[Path, list, object]:
    """``redaes-lite report`` of ``n`` shared photos with the embedded default model where they are here (a
    screenshot worth looking at), else of generated ones with the tiny model, plus a broken file; returns the
    report, ``rank``'s results for the same files and the scorer."""
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"
    if shared.is_dir():
        import shutil

        for p in sorted(shared.glob("*.jpg"))[:n]:
            shutil.copy(p, folder / p.name)
        scorer = load()
    else:
        shoot(folder, n)
        scorer = load(tiny_model)
    (folder / "broken <&>.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    out = folder / "report.html"
    result = invoke(run, "report", folder, "-o", out, "--model", scorer.path, "--title", "Test shoot")
    assert result.exit_code == 1, result.output  # the broken file
    ranked = scorer.rank(sorted(str(p) for p in folder.glob("*.jpg")), on_error="record")
    return out, ranked, scorer


def cards(page: str) -> list[str]:
    """The data-path of each photo card, in document order, unescaped."""
    return [html.unescape(m) for m in re.findall(r'<li class="card[^"]*"[^>]*data-path="([^"]*)"', page)]


@pytest.fixture(scope="module")
def scorer(tiny_model):
    return load(tiny_model)


def test_stars_are_culls_mapping():
    assert [stars(s) for s in (0.0, 1.99, 2.0, 3.99, 4.0, 6.0, 7.99, 8.0, 10.0)] == [1, 1, 2, 2, 3, 4, 4, 5, 5]
    assert stars(1.0, reject_below=1.5) == -1 and stars(1.5, reject_below=1.5) == 1
    assert stars(5.0, thresholds=(0, 0, 0, 0)) == 5 and stars(5.0, thresholds=(9, 9, 9, 9)) == 1
    assert redaes_lite.stars is stars and redaes_lite.STAR_THRESHOLDS == STAR_THRESHOLDS == (2.0, 4.0, 6.0, 8.0)


def test_order_equals_rank_failures_last(scorer, tmp_path):
    paths = [str(p) for p in shoot(tmp_path / "s", 7)]
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    paths.insert(3, str(tmp_path / "broken.jpg"))
    paths.append(str(tmp_path / "missing.jpg"))
    results = scorer.score_many(paths, on_error="record")
    report = build_report(paths, results, model=scorer.model_id, thumbs=thumbnails(paths))
    ranked = scorer.rank(paths, on_error="record")
    assert [p.path for p in report.photos] == [str(r.input) for r in ranked]
    assert [p.place for p in report.photos] == [1, 2, 3, 4, 5, 6, 7, None, None]
    page = render_report(report)
    scored = [str(r.input) for r in ranked if isinstance(r, redaes_lite.Ranked)]
    assert cards(page) == scored
    for p, r in zip(report.photos, ranked):
        if p.error is None:
            assert p.score == r.score.score and p.stars == stars(r.score.score)


def test_factors_apart_are_the_largest_differences_from_the_median(scorer, tmp_path):
    paths = [str(p) for p in shoot(tmp_path, 5)]
    results = scorer.score_many(paths)
    report = build_report(paths, results, model=scorer.model_id)
    for p in report.photos:
        r = results[p.index]
        diffs = sorted(((n, v - report.median[n]) for n, v in r.factors.items()), key=lambda nd: -abs(nd[1]))
        assert p.apart == tuple(nd for nd in diffs[:3] if nd[1] != 0)
    assert report.median["exposure"] == float(np.median([r.factors["exposure"] for r in results]))


def test_paths_and_errors_are_escaped(scorer, tmp_path):
    (tmp_path / HOSTILE).write_bytes((tmp_path / shoot(tmp_path, 1)[0]).read_bytes())
    (tmp_path / "bad<i>.png").write_bytes(b"\x89PNG\r\n\x1a\n<script>alert(2)</script>")
    out = tmp_path / "report.html"
    result = invoke(run, "report", tmp_path, "-o", out, "--model", scorer.path, "--title", "<title>&")
    assert result.exit_code == 1, result.output
    page = out.read_text(encoding="utf-8")
    assert "<b onmouseover" not in page and "<script>alert" not in page and "bad<i>" not in page
    assert "&lt;b onmouseover=alert(1)&gt;&amp;&quot;x\\u202e.jpg" in page  # the bidi override shown, not obeyed
    assert "<title>&lt;title&gt;&amp;</title>" in page
    assert "\u202e" not in page
    assert re.search(r"bad&lt;i&gt;\.png</code>: [^<]*not a recognised image format|bad&lt;i&gt;\.png</code>: ", page)


def test_failed_files_are_listed_with_their_errors(scorer, tmp_path):
    good = shoot(tmp_path / "s", 2)
    (tmp_path / "s" / "empty.jpg").write_bytes(b"")
    out = tmp_path / "r.html"
    result = invoke(run, "report", tmp_path / "s", tmp_path / "nope.jpg", "-o", out, "--model", scorer.path)
    assert result.exit_code == 1 and "2 of 4 inputs failed" in result.stderr
    page = out.read_text(encoding="utf-8")
    failed = page[page.index('<section class="failed"') :]
    assert "Could not be scored (2)" in failed
    errors = dict(re.findall(r"<code>([^<]*)</code>: ([^<]*)</li>", failed))
    assert set(errors) == {str(tmp_path / "s" / "empty.jpg"), str(tmp_path / "nope.jpg")}
    assert all(errors.values()) and "no such file" in errors[str(tmp_path / "nope.jpg")]
    assert cards(page) == [str(r.input) for r in scorer.rank([str(p) for p in good])]


def test_html_is_self_contained_and_small(scorer, tmp_path):
    paths = shoot(tmp_path / "s", 12, size=(1600, 1200))
    out = tmp_path / "r.html"
    assert invoke(run, "report", tmp_path / "s", "-o", out, "--model", scorer.path).exit_code == 0
    page = out.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href|action)=["'](?!data:)""", page)  # every resource is a data: URI
    assert "http://" not in page and "https://" not in page and "@import" not in page
    assert "default-src 'none'" in page
    per_photo = len(page.encode()) / len(paths)
    assert per_photo < 40_000, per_photo
    assert len(re.findall(r'<img src="data:image/(webp|jpeg);base64,', page)) == len(paths)


def test_near_duplicates_group_and_mark_the_best(scorer, tmp_path):
    base = photo(1)
    folder = tmp_path / "s"
    folder.mkdir()
    base.save(folder / "a1.jpg", quality=92)
    Image.eval(base, lambda v: min(255, v + 6)).save(folder / "a2.jpg", quality=92)  # a burst: nearly the same
    base.transpose(Image.Transpose.ROTATE_180).save(folder / "b.jpg", quality=92)  # same pixels, other picture
    photo(7).save(folder / "c.jpg", quality=92)
    paths = [str(folder / n) for n in ("a1.jpg", "a2.jpg", "b.jpg", "c.jpg")]
    thumbs = thumbnails(paths)
    assert near_duplicates([t.dhash for t in thumbs]) == ["1", "1", None, None]
    results = scorer.score_many(paths)
    report = build_report(paths, results, model=scorer.model_id, thumbs=thumbs)
    group = [p for p in report.photos if p.group == "1"]
    assert [p.best for p in group] == [True, False]  # the better-ranked of the two
    page = render_report(report)
    assert page.count('class="card best"') == 1 and "best of group 1" in page
    out = tmp_path / "r.html"
    assert invoke(run, "report", folder, "-o", out, "--model", scorer.path, "--near-duplicates", "-1").exit_code == 0
    assert "best of group" not in out.read_text(encoding="utf-8")


def test_groups_csv_marks_the_best_of_each_group(scorer, tmp_path):
    paths = shoot(tmp_path / "s", 5)
    table = tmp_path / "groups.csv"
    with open(table, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "group"])
        w.writerows([[paths[0], "x"], [paths[1], "x"], [paths[2], "y"], [paths[3], "y"]])
    out = tmp_path / "r.html"
    assert invoke(run, "report", *paths, "-o", out, "--model", scorer.path, "--groups", table).exit_code == 0
    page = out.read_text(encoding="utf-8")
    ranked = [str(r.input) for r in scorer.rank([str(p) for p in paths])]
    best = {
        g: next(p for p in ranked if p in {str(q) for q in members})
        for g, members in (("x", paths[:2]), ("y", paths[2:4]))
    }
    marked = re.findall(r'<li class="card best"[^>]*data-path="([^"]*)"', page)
    assert sorted(marked) == sorted(best.values())
    (tmp_path / "bad.csv").write_text("file,name\na,b\n", encoding="utf-8")
    result = invoke(run, "report", *paths, "-o", out, "--model", scorer.path, "--groups", tmp_path / "bad.csv")
    assert result.exit_code == 2 and "'path' and 'group'" in result.stderr


def test_compare_view(scorer, tmp_path):
    a, b = (str(p) for p in shoot(tmp_path, 2))
    out = tmp_path / "c.html"
    assert invoke(run, "report", "--compare", a, b, "-o", out, "--model", scorer.path).exit_code == 0
    page = out.read_text(encoding="utf-8")
    c = scorer.compare(a, b)
    assert cards(page) == [a, b]
    assert f"<b>{c.preferred.upper()}</b> is preferred, with probability {c.probability:.2f}" in page
    assert page.count("<rect ") == len(c.factors) and "<svg" in page
    for name, d in c.factors.items():
        assert f"<title>{name} {d:+.3f}</title>" in page
    view = build_comparison(a, b, scorer.score_many([a, b]), c, model="m", thumbs=thumbnails([a, b], size=64))
    assert view.a.path == a and render_comparison(view).count("<img ") == 2
    result = invoke(run, "report", "--compare", a, "-o", out, "--model", scorer.path)
    assert result.exit_code == 2 and "two photos" in result.stderr


def test_progress_only_when_asked_or_on_a_terminal(scorer, tmp_path):
    shoot(tmp_path / "s", 3)
    out = tmp_path / "r.html"
    quiet = invoke(run, "report", tmp_path / "s", "-o", out, "--model", scorer.path)
    assert quiet.exit_code == 0 and quiet.stderr == "" and quiet.stdout == ""  # stderr is no terminal here
    shown = invoke(run, "report", tmp_path / "s", "-o", out, "--model", scorer.path, "--progress")
    assert "scoring 3/3" in shown.stderr and "thumbnails 3/3" in shown.stderr and shown.stdout == ""


def test_written_atomically_or_to_stdout(scorer, tmp_path, monkeypatch):
    import redaes_lite._cli_common as cli  # sink(), shared by every command, opens the output

    shoot(tmp_path / "s", 2)
    out = tmp_path / "r.html"
    out.write_text("old", encoding="utf-8")
    opened = []
    real = cli.atomic_open

    def spy(path, **kw):
        opened.append(Path(path))
        return real(path, **kw)

    monkeypatch.setattr(cli, "atomic_open", spy)
    assert invoke(run, "report", tmp_path / "s", "-o", out, "--model", scorer.path).exit_code == 0
    assert opened == [out] and out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")

    def interrupted(report):
        raise KeyboardInterrupt

    out.write_text("old", encoding="utf-8")
    monkeypatch.setattr("redaes_lite.report.render_report", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(["report", str(tmp_path / "s"), "-o", str(out), "--model", str(scorer.path)])
    assert out.read_text(encoding="utf-8") == "old"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.undo()
    result = invoke(run, "report", tmp_path / "s", "--model", scorer.path)
    assert result.exit_code == 0 and result.stdout.startswith("<!DOCTYPE html>")


def test_thumbnail_keeps_orientation_and_size(tmp_path):
    im = photo(3, (400, 200))
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: the thumbnail is portrait
    im.save(buf, "JPEG", exif=exif)
    t = thumbnail(buf.getvalue(), size=100)
    assert (t.width, t.height) == (50, 100) and t.uri.startswith("data:image/")


def test_compare_view_with_a_photo_that_fails(scorer, tmp_path):
    (a,) = shoot(tmp_path, 1)
    out = tmp_path / "c.html"
    result = invoke(run, "report", "--compare", a, tmp_path / "<none>.jpg", "-o", out, "--model", scorer.path)
    assert result.exit_code == 1 and "1 of 2 inputs failed" in result.stderr
    page = out.read_text(encoding="utf-8")
    assert "No comparison: a photo could not be scored." in page and "B: could not be scored" in page
    assert "&lt;none&gt;.jpg: no such file" in page and "<svg" not in page


def test_cards_name_photos_below_the_folder_they_share():
    from redaes_lite.report import Report
    from redaes_lite.results import Score

    def report(*paths):
        results = [Score(score=5.0, utility=float(-i), factors={"exposure": 0.0}) for i in range(len(paths))]
        return render_report(build_report(list(paths), results, model="m", groups=[None] * len(paths)))

    page = report("/shoot/day 1/a.jpg", "/shoot/day 1/b.jpg", "/shoot/day 2/c.jpg")
    assert "in /shoot/ ·" in page and '<p class="path">day 1/a.jpg</p>' in page
    assert cards(page) == ["/shoot/day 1/a.jpg", "/shoot/day 1/b.jpg", "/shoot/day 2/c.jpg"]
    page = report("/a.jpg", "/b/c.jpg")
    assert '<p class="path">/a.jpg</p>' in page and "in /" not in page
    assert isinstance(build_report(["x"], [Score(1.0, 1.0, {})], model="m", groups=[None]), Report)
