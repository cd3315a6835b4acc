"""Python API: load, compare, score, score_many, rank — docs/model-format.md semantics on a tiny real ONNX model."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from modelkit import make_info, make_tiny_model
from PIL import Image
from test_preprocess import photo, png_bytes

import redaes_lite
from redaes_lite import Comparison, Failure, ImageError, ModelError, Ranked, RedaesError, Score, load
from redaes_lite.metadata import sidecar_path


def grey(level: int, w: int = 48, h: int = 32) -> np.ndarray:
    return np.full((h, w, 3), level, np.uint8)


@pytest.fixture(scope="module")
def scorer(tiny_model):
    return load(tiny_model)


def test_public_api_is_exactly_the_documented_names():
    assert set(redaes_lite.__all__) == {
        "load",
        "compare",
        "score",
        "rank",
        "Scorer",
        "Comparison",
        "Score",
        "Ranked",
        "Failure",
        "RedaesError",
        "ImageError",
        "ModelError",
        "__version__",
        "stars",
        "STAR_THRESHOLDS",
    }
    for name in redaes_lite.__all__:
        assert getattr(redaes_lite, name) is not None


def test_all_input_kinds_score_identically(scorer, tmp_path):
    im = photo()
    path = tmp_path / "p.png"
    path.write_bytes(png_bytes(im))
    scores = [scorer.score(x) for x in (str(path), path, path.read_bytes(), im, np.asarray(im))]
    assert all(s == scores[0] for s in scores)
    assert isinstance(scores[0], Score) and 0 <= scores[0].score <= 10
    assert list(scores[0].factors) == list(scorer.info.factors)


def test_pixels_decoded_elsewhere_score_exactly_as_score_many(scorer):
    from redaes_lite.preprocess import load_image, to_array

    spec = scorer.info.preprocess
    images = [grey(40), photo(), grey(200, 20, 60)]
    pixels = [to_array(load_image(x, spec), spec) for x in images]
    failure = Failure("bad.jpg", 1, "bad.jpg: not an image")
    got = list(scorer.score_preprocessed([pixels[:1], [failure, *pixels[1:]]]))
    assert got == [scorer.score_many(images)[0], failure, *scorer.score_many(images)[1:]]


def test_brighter_images_score_higher_and_different_images_differ(scorer):
    dark, mid, bright = (scorer.score(grey(v)) for v in (40, 120, 220))
    assert dark.utility < mid.utility < bright.utility
    assert dark.score < mid.score < bright.score
    assert scorer.score(photo(seed=1)) != scorer.score(photo(seed=2))


def test_score_uses_the_models_calibration(scorer):
    s = scorer.score(photo())
    assert s.score == float(scorer.info.calibrate(s.utility))


def test_compare_semantics(scorer):
    dark, bright = grey(40), grey(220)
    c = scorer.compare(dark, bright)
    sa, sb = scorer.score(dark), scorer.score(bright)
    assert isinstance(c, Comparison) and c.preferred == "b"
    assert c.delta == pytest.approx(sb.utility - sa.utility, abs=1e-6)
    assert c.probability == pytest.approx(1 / (1 + math.exp(-abs(c.delta) / scorer.info.temperature)))
    assert 0.5 < c.probability < 1
    assert list(c.factors) == sorted(c.factors, key=lambda n: -abs(c.factors[n]))
    assert c.factors["exposure"] == pytest.approx(sb.factors["exposure"] - sa.factors["exposure"], abs=1e-6)
    assert scorer.compare(bright, dark).preferred == "a"


def test_a_tie_prefers_a_with_probability_one_half(scorer):
    c = scorer.compare(grey(90), grey(90))
    assert (c.preferred, c.probability, c.delta) == ("a", 0.5, 0.0)


def test_lapse_caps_the_probability_of_a_large_difference(tmp_path):
    sure = load(make_tiny_model(tmp_path / "sure", temperature=0.01))
    capped = load(make_tiny_model(tmp_path / "capped", temperature=0.01, lapse=0.1))
    a, b = grey(20), grey(240)
    assert sure.compare(a, b).delta == capped.compare(a, b).delta
    assert sure.compare(a, b).probability == pytest.approx(1.0)
    assert capped.compare(a, b).probability == pytest.approx(0.95)


def test_temperature_sharpens_probability(tmp_path):
    cold = load(make_tiny_model(tmp_path / "cold", temperature=0.1))
    warm = load(make_tiny_model(tmp_path / "warm", temperature=10.0))
    a, b = grey(100), grey(140)
    assert cold.compare(a, b).delta == warm.compare(a, b).delta
    assert cold.compare(a, b).probability > warm.compare(a, b).probability


@pytest.mark.parametrize("seeds", [(0, 1), (2, 3), (4, 5)])
def test_compare_is_exactly_antisymmetric(scorer, seeds):
    a, b = photo(seed=seeds[0]), photo(70, 90, seed=seeds[1])
    ab, ba = scorer.compare(a, b), scorer.compare(b, a)
    assert ab.delta == -ba.delta and ab.probability == ba.probability
    assert {k: -v for k, v in ab.factors.items()} == ba.factors
    assert ab.preferred != ba.preferred or ab.delta == 0


def test_results_are_bit_identical_across_calls_and_scorers(scorer, tiny_model):
    xs = [photo(seed=s) for s in range(5)]
    first = [scorer.score(x) for x in xs]
    assert [scorer.score(x) for x in xs] == first
    assert load(tiny_model, threads=1).score_many(xs, batch_size=2) == scorer.score_many(xs, batch_size=5)


def test_score_many_equals_score_in_order_for_any_batch_size(scorer):
    xs = [photo(seed=s) for s in range(7)]
    single = [scorer.score(x) for x in xs]
    for bs in (1, 3, 7, 16):
        assert scorer.score_many(xs, batch_size=bs) == single
    assert scorer.score_many(iter(xs), batch_size=2) == single  # any iterable
    assert scorer.score_many([]) == []


def test_iter_scores_reads_ahead_a_bounded_amount_and_stops_when_closed(scorer):
    """Decoding runs at most two batches ahead of the caller, and closing the iterator stops reading the input:
    a caller that stops after the first result does not pay for the whole input."""
    pulled = []

    def inputs():
        for s in range(200):
            pulled.append(s)
            yield photo(seed=s)

    it = scorer.iter_scores(inputs(), batch_size=4)
    first = next(it)
    assert first == scorer.score(photo(seed=0)) and len(pulled) == 12  # this batch + two ahead
    it.close()
    assert len(pulled) == 12


def test_score_many_raises_or_records(scorer, tmp_path):
    xs = [grey(50), tmp_path / "missing.jpg", b"", grey(200)]
    with pytest.raises(ImageError, match="missing.jpg: no such file"):
        scorer.score_many(xs, batch_size=2)
    out = scorer.score_many(xs, batch_size=3, on_error="record")
    assert [type(r) for r in out] == [Score, Failure, Failure, Score]
    assert out[1].index == 1 and out[1].input == xs[1] and "no such file" in out[1].error
    assert out[3] == scorer.score(grey(200))
    with pytest.raises(ValueError, match="on_error"):
        scorer.score_many(xs, on_error="ignore")
    with pytest.raises(ValueError, match="batch_size"):
        scorer.score_many(xs, batch_size=0)


def test_rank_best_first_ties_in_input_order_failures_last(scorer, tmp_path):
    xs = [grey(100), tmp_path / "nope.png", grey(200), grey(100), grey(30)]
    ranked = scorer.rank(xs, on_error="record")
    assert [r.index for r in ranked] == [2, 0, 3, 4, 1]
    assert isinstance(ranked[0], Ranked) and ranked[0].input is xs[2] and isinstance(ranked[-1], Failure)
    assert ranked[0].score == scorer.score(xs[2])
    assert [r.index for r in scorer.rank(xs, on_error="record", top=2)] == [2, 0, 1]
    with pytest.raises(ImageError):
        scorer.rank(xs)
    with pytest.raises(ValueError, match="top"):
        scorer.rank(xs, top=-1)


def test_rotated_copy_scores_the_same(scorer):
    upright = photo(120, 80)
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = png_bytes(upright.transpose(Image.Transpose.ROTATE_90), exif=exif)
    assert scorer.score(rotated) == scorer.score(png_bytes(upright))


def test_jpeg_rotated_copy_scores_nearly_the_same(scorer):
    upright, rotated = io.BytesIO(), io.BytesIO()
    photo(1200, 800).save(upright, format="JPEG", quality=95)
    exif = Image.Exif()
    exif[0x0112] = 8
    photo(1200, 800).transpose(Image.Transpose.ROTATE_270).save(rotated, format="JPEG", quality=95, exif=exif)
    a, b = scorer.score(upright.getvalue()), scorer.score(rotated.getvalue())
    assert a.utility == pytest.approx(b.utility, abs=0.01)


def test_results_to_dict_are_json(scorer):
    r = scorer.rank([grey(10), b"junk"], on_error="record")
    c = scorer.compare(grey(10), grey(20))
    for obj in (*r, c, scorer.score(grey(10))):
        json.dumps(obj.to_dict())
    assert r[1].to_dict() == {"input": "<4 bytes>", "index": 1, "error": r[1].error}
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.delta = 1.0  # type: ignore[misc]


# -- loading -------------------------------------------------------------------------------------
def test_load_is_cached_per_path_threads_and_providers(tiny_model):
    a, b = load(tiny_model), load(str(tiny_model.parent))
    assert a._session is b._session
    assert load(tiny_model, threads=1)._session is not a._session


def test_replaced_model_file_is_not_served_stale(tmp_path):
    path = make_tiny_model(tmp_path, version="1.0.0")
    assert load(path).info.version == "1.0.0"
    make_tiny_model(tmp_path, version="2.0.0", factors=("exposure", "noise"))
    assert load(path).info.version == "2.0.0"


def test_max_pixels_is_configurable_in_load(tiny_model):
    data = png_bytes(photo(48, 32))
    with pytest.raises(ImageError, match="max_pixels"):
        load(tiny_model, max_pixels=1535).score(data)
    assert load(tiny_model, max_pixels=1536).score(data) == load(tiny_model, max_pixels=None).score(data)


def test_a_missing_embedded_model_is_a_clear_error_never_a_fake(tmp_path, monkeypatch):
    import redaes_lite.session as session

    monkeypatch.setattr(session, "_MODELS_DIR", tmp_path)
    for call in (lambda: load(), lambda: load("default"), lambda: redaes_lite.compare(grey(1), grey(2))):
        with pytest.raises(ModelError, match="not shipped .* pass a model file"):
            call()
    with pytest.raises(ModelError, match="permissive"):
        load("permissive")


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make", "cause"),
    [
        (lambda d: d / "missing.onnx", "no such model file"),
        (lambda d: d, "folder has no model.onnx"),
        (lambda d: _write(d / "junk.onnx", b"this is not a protobuf"), "not a loadable ONNX"),
        (
            lambda d: make_tiny_model(d, sidecar=False, props={"redaes.factors": None, "redaes.license": None}),
            "lacks redaes.factors, redaes.license",
        ),
        (
            lambda d: make_tiny_model(d, sidecar=False, props=dict.fromkeys(make_info().to_props())),
            "not a redaes-lite model",
        ),
        (lambda d: make_tiny_model(d, props={"redaes.temperature": "0"}), "redaes.temperature"),
    ],
    ids=["missing", "folder-without-model", "not-onnx", "missing-keys", "no-metadata", "bad-value"],
)
def test_bad_models_fail_with_one_line_naming_file_and_cause(tmp_path, make, cause):
    path = make(tmp_path)
    with pytest.raises(ModelError, match=cause) as e:
        load(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_sha256_mismatch_is_refused(tmp_path):
    path = make_tiny_model(tmp_path)
    other = make_tiny_model(tmp_path / "other", temperature=2.0)
    shutil.copy(sidecar_path(other), sidecar_path(path))  # sidecar of another file, same name
    with pytest.raises(ModelError, match="sha256"):
        load(path)


def test_model_with_the_wrong_signature_is_refused(tmp_path):
    student = {"backbone": "timm:x", "pretrained": "none", "params": 0, "input": [64, 64]}
    props = {"redaes.preprocess": '{"size": [64, 64]}', "redaes.student": json.dumps(student)}
    path = make_tiny_model(tmp_path, size=(32, 32), sidecar=False, props=props)  # graph takes 32x32
    with pytest.raises(ModelError, match="pixel_values has shape"):
        load(path)


@pytest.mark.parametrize("backbone", ["timm:x", "open_clip:ViT-B-32", "nima:mobilenet_v1"])
def test_student_backbone_sources_that_load(tmp_path, backbone):
    student = {"backbone": backbone, "pretrained": "none", "params": 0, "input": [32, 32]}
    path = make_tiny_model(tmp_path, size=(32, 32), sidecar=False, props={"redaes.student": json.dumps(student)})
    assert load(path).info.student["backbone"] == backbone


def test_unknown_backbone_source_is_refused(tmp_path):
    student = {"backbone": "keras:mobilenet", "pretrained": "none", "params": 0, "input": [32, 32]}
    path = make_tiny_model(tmp_path, size=(32, 32), sidecar=False, props={"redaes.student": json.dumps(student)})
    with pytest.raises(ModelError, match="source one of"):
        load(path)


def test_bad_threads_and_providers(tiny_model):
    with pytest.raises(ValueError, match="providers"):
        load(tiny_model, providers=["NoSuchExecutionProvider"])
    with pytest.raises(ValueError, match="threads"):
        load(tiny_model, threads=0)


def test_every_error_is_a_redaes_error():
    assert issubclass(ImageError, RedaesError) and issubclass(ModelError, RedaesError)


# -- README ----------------------------------------------------------------------------------------
README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(tiny_model, tmp_path, monkeypatch, capsys):
    text = README.read_text()
    block = text.split("## Python API", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    for i, name in enumerate(["a.jpg", "b.jpg", "1.jpg", "2.jpg", "3.jpg"]):
        photo(seed=i).save(tmp_path / name, quality=90)
    monkeypatch.chdir(tmp_path)
    exec(compile(block.replace('"model.onnx"', repr(str(tiny_model))), "README.md", "exec"), {})
    assert "missing.jpg: no such file" in capsys.readouterr().out


def test_readme_test_command_is_what_ci_runs():
    ci = (README.parent / ".ci" / "run").read_text()
    command = "HF_HUB_OFFLINE=1 python -m pytest -q -p no:cacheprovider"
    assert command in README.read_text() and '"$PY" -m pytest -q -p no:cacheprovider' in ci
    assert "HF_HUB_OFFLINE=1" in ci


def test_readme_lint_commands_are_what_ci_runs_before_the_tests():
    ci = (README.parent / ".ci" / "run").read_text()
    readme = README.read_text()
    for check in ("ruff check .", "ruff format --check ."):
        assert f"python -m {check}" in readme and f'"$PY" -m {check}' in ci
        assert ci.index(f'"$PY" -m {check}') < ci.index('"$PY" -m pytest')


def test_embedded_models_resolve_by_name_and_must_match_their_sha256(tmp_path, monkeypatch):
    from redaes_lite import session

    monkeypatch.setattr(session, "_MODELS_DIR", tmp_path)
    path = make_tiny_model(tmp_path / "permissive", license="permissive data only")
    assert load("permissive").info.license == "permissive data only"
    sidecar_path(path).unlink()
    with pytest.raises(ModelError, match="no model.json"):
        load("permissive", threads=2)  # a new cache key: verified afresh
    make_tiny_model(tmp_path / "default")
    other = make_tiny_model(tmp_path / "other", version="9")
    shutil.copy(sidecar_path(other), sidecar_path(tmp_path / "default" / "model.onnx"))
    with pytest.raises(ModelError, match="sha256"):
        load()
