"""The `label` command: pairs file, resumable cache keyed by content, shards, interruption, merge."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from PIL import Image

from distill import label as lab
from distill.registry import TEACHERS
from distill.teachers.base import PairRequest
from distill.teachers.mllm import MLLMTeacher
from redaes_lite.pairs import PairLabel, pair_id, read_pairs, write_pairs


class CountingTeacher:
    """Labels ``delta = len(b) - len(a)``; pairs whose ``b`` contains "bad" fail. Remembers what it saw."""

    id = "counting@1"

    def __init__(self, root: Path = Path(".")) -> None:
        self.seen: list[PairRequest] = []

    def key(self, req: PairRequest) -> str:
        return pair_id(req.a, req.b, self.id)

    def label(self, pairs: Iterable[PairRequest]) -> Iterator[PairLabel]:
        for req in pairs:
            self.seen.append(req)
            common = {"id": self.key(req), "a": req.a, "b": req.b, "group": req.group}
            common.update(source="model", teacher=self.id)
            if "bad" in req.b:
                yield PairLabel(delta=None, status="failed", error="no luck", **common)
            else:
                yield PairLabel(delta=float(len(req.b) - len(req.a)), **common)


if "counting-test" not in TEACHERS:
    TEACHERS.add("counting-test", CountingTeacher)


def _requests(n: int, *, bad_every: int = 0) -> list[PairRequest]:
    def b(i: int) -> str:
        return f"{'bad' if bad_every and i % bad_every == 0 else 'ed'}{i}.jpg"

    return [PairRequest(f"src{i % 7}.jpg", b(i), group=f"g{i % 7}") for i in range(n)]


def _write_pairs_file(path: Path, reqs: list[PairRequest]) -> Path:
    path.write_text("".join(json.dumps({"a": r.a, "b": r.b, "group": r.group}) + "\n" for r in reqs))
    return path


# -- the pairs file ---------------------------------------------------------------------------------
def test_pairs_file_accepts_minimal_and_pair_label_lines(tmp_path):
    f = tmp_path / "pairs.jsonl"
    f.write_text(
        '{"a": "x.jpg", "b": "y.jpg", "group": "s1"}\n\n'
        '{"id": "k", "a": "x.jpg", "b": "z.jpg", "group": "s1", "delta": 0.3, "source": "edit",'
        ' "recipe": [{"op": "exposure", "strength": -0.5}], "tags": ["underexposed"]}\n'
    )
    reqs = list(lab.read_requests(f))
    assert [(r.a, r.b, r.group) for r in reqs] == [("x.jpg", "y.jpg", "s1"), ("x.jpg", "z.jpg", "s1")]
    assert reqs[1].recipe == ({"op": "exposure", "strength": -0.5},) and reqs[1].tags == ("underexposed",)


@pytest.mark.parametrize(
    ("line", "why"),
    [('{"a": "x.jpg", "b": "y.jpg"}', "group"), ('["x", "y"]', "JSON object"), ("{nope", "bad pair")],
)
def test_bad_pairs_lines_name_file_and_line(tmp_path, line, why):
    f = tmp_path / "pairs.jsonl"
    f.write_text('{"a": "x.jpg", "b": "y.jpg", "group": "g"}\n' + line + "\n")
    with pytest.raises(ValueError, match=rf"pairs.jsonl:2: .*{why}"):
        list(lab.read_requests(f))


# -- shards -----------------------------------------------------------------------------------------
def test_shards_are_disjoint_and_complete():
    reqs = _requests(300)
    shards = [[r for r in reqs if lab.in_shard(r, (i, 4))] for i in range(4)]
    assert min(len(s) for s in shards) > 40  # roughly balanced
    flat = [r for s in shards for r in s]
    assert len(flat) == len(reqs) and set(flat) == set(reqs)


@pytest.mark.parametrize("text", ["4/4", "-1/4", "1", "a/b", "0/0"])
def test_bad_shard_specs_are_refused(text):
    with pytest.raises(ValueError, match="shard"):
        lab.parse_shard(text)


# -- cache and resume -------------------------------------------------------------------------------
def test_resume_skips_done_pairs_and_keeps_failures(tmp_path):
    out = tmp_path / "labels.jsonl"
    reqs = _requests(20, bad_every=5)
    first = CountingTeacher()
    stats = lab.label(first, reqs[:12], out)
    assert (stats.ok, stats.failed, stats.skipped) == (9, 3, 0)
    again = CountingTeacher()
    stats = lab.label(again, reqs, out)
    assert (stats.ok, stats.failed, stats.skipped) == (7, 1, 12)
    assert again.seen == reqs[12:]
    recs = list(read_pairs(out))
    assert len(recs) == 20 and len({r.id for r in recs}) == 20
    assert sum(not r.ok for r in recs) == 4  # failed records are written, not dropped

    retry = CountingTeacher()
    lab.label(retry, reqs, out, retry_failed=True)
    assert [r.b for r in retry.seen] == [r.b for r in reqs if "bad" in r.b]


def test_cache_is_keyed_by_image_content_not_paths(tmp_path):
    class Fixed:
        name = "fixed"

        def __init__(self) -> None:
            self.calls = 0

        def generate(self, prompts, sampling):
            self.calls += len(prompts)
            return ["<think>fine</think><answer>2.25</answer>"] * len(prompts)

    old, new = tmp_path / "old", tmp_path / "new"
    for root in (old, new):
        root.mkdir()
        for name, grey in (("a.png", 50), ("b.png", 90), ("c.png", 130)):
            Image.new("RGB", (16, 12), (grey,) * 3).save(root / name)
    reqs = [PairRequest("a.png", "b.png", group="g"), PairRequest("a.png", "c.png", group="g")]
    out = tmp_path / "labels.jsonl"
    engine = Fixed()
    lab.label(MLLMTeacher(engine, root=old), reqs, out)
    assert engine.calls == 2
    # Same bytes under another root: nothing to do. New content in c.png: only that pair is relabelled.
    stats = lab.label(MLLMTeacher(engine, root=new), reqs, out)
    assert (stats.skipped, engine.calls) == (2, 2)
    Image.new("RGB", (16, 12), (131, 130, 130)).save(new / "c.png")
    stats = lab.label(MLLMTeacher(engine, root=new), reqs, out)
    assert (stats.skipped, stats.ok, engine.calls) == (1, 1, 3)
    # Another prompt (pointwise) is another cache entry for the very same images.
    stats = lab.label(MLLMTeacher(engine, root=new, mode="pointwise", prompt="pointwise-v1"), reqs, out)
    assert stats.skipped == 0 and stats.ok == 2


def test_unfinished_last_line_is_repaired_before_appending(tmp_path):
    out = tmp_path / "labels.jsonl"
    reqs = _requests(4)
    lab.label(CountingTeacher(), reqs[:2], out)
    with open(out, "a") as f:
        f.write('{"id": "half-writ')  # what SIGKILL in the middle of a write leaves
    stats = lab.label(CountingTeacher(), reqs, out)
    assert (stats.skipped, stats.ok) == (2, 2)
    assert [r.b for r in read_pairs(out)] == [r.b for r in reqs]


def test_interrupt_keeps_finished_lines_and_reports_130(tmp_path, monkeypatch):
    class Interrupting(CountingTeacher):
        def label(self, pairs):
            for i, rec in enumerate(super().label(pairs)):
                if i == 2:
                    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the third pair is being worked on
                yield rec

    # What was there before (SIG_IGN under a background job, not Python's default) must come back.
    before = signal.getsignal(signal.SIGINT)
    pairs = _write_pairs_file(tmp_path / "pairs.jsonl", _requests(6))
    out = tmp_path / "labels.jsonl"
    monkeypatch.setitem(TEACHERS._map, "counting-test", Interrupting)
    assert lab.main(["--teacher", "counting-test", "--pairs", str(pairs), "--out", str(out)]) == 130
    assert len(list(read_pairs(out))) == 2
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored
    monkeypatch.setitem(TEACHERS._map, "counting-test", CountingTeacher)
    assert lab.main(["--teacher", "counting-test", "--pairs", str(pairs), "--out", str(out)]) == 0
    assert len(list(read_pairs(out))) == 6


def test_a_signal_during_a_write_waits_for_the_line():
    written: list[int] = []
    with pytest.raises(lab.Interrupted) as info, lab.deferred_interrupts() as guard:
        for rec in guard.protect_writes(iter([1, 2, 3])):
            os.kill(os.getpid(), signal.SIGTERM)  # arrives mid-write
            written.append(rec)  # ... and the write still completes
    assert written == [1] and info.value.signame == "SIGTERM"


# -- merge ------------------------------------------------------------------------------------------
def _rec(i: str, ok: bool, b: str = "b.jpg") -> PairLabel:
    extra = {"delta": 1.0} if ok else {"delta": None, "status": "failed", "error": "x"}
    return PairLabel(id=i, a="a.jpg", b=b, source="mllm", teacher="t@1", group="g", **extra)


def test_merge_dedupes_by_id_and_prefers_ok(tmp_path):
    a, b, out = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "m.jsonl"
    write_pairs(a, [_rec("1", True, "first.jpg"), _rec("2", False)])
    write_pairs(b, [_rec("2", True), _rec("3", False), _rec("1", True, "second.jpg")])
    assert lab.main(["merge", str(a), str(b), "--out", str(out)]) == 0
    merged = {r.id: r for r in read_pairs(out)}
    assert [r.id for r in read_pairs(out)] == ["1", "2", "3"]
    assert merged["1"].b == "first.jpg" and merged["2"].ok and not merged["3"].ok
    assert lab.merge([a, b], out) == (3, 2)


# -- command line -----------------------------------------------------------------------------------
def test_cli_refuses_mllm_options_for_registered_teachers_and_hints_typos(tmp_path, capsys):
    pairs = _write_pairs_file(tmp_path / "pairs.jsonl", _requests(2))
    out = str(tmp_path / "o.jsonl")
    assert lab.main(["--teacher", "counting-test", "--pairs", str(pairs), "--out", out, "--samples", "4"]) == 2
    assert "--samples only apply to an MLLM teacher" in capsys.readouterr().err
    assert lab.main(["--teacher", "countin-test", "--pairs", str(pairs), "--out", out]) == 2
    assert "did you mean 'counting-test'" in capsys.readouterr().err


def test_cli_labels_with_a_tiny_local_checkpoint_and_resumes(tmp_path, capsys):
    pytest.importorskip("transformers")
    from tiny_vlm import make_tiny_vlm

    ckpt = make_tiny_vlm(tmp_path / "Tiny-VLM")
    for name, grey in (("s.png", 40), ("e1.png", 120), ("e2.png", 200)):
        Image.new("RGB", (32, 24), (grey,) * 3).save(tmp_path / name)
    reqs = [PairRequest("s.png", "e1.png", group="s"), PairRequest("s.png", "e2.png", group="s")]
    pairs = _write_pairs_file(tmp_path / "pairs.jsonl", reqs)
    out = tmp_path / "labels.jsonl"
    argv = [
        "--teacher",
        str(ckpt),
        "--pairs",
        str(pairs),
        "--root",
        str(tmp_path),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--max-new-tokens",
        "4",
        "--retries",
        "0",
        "--shard",
        "0/1",
    ]
    assert lab.main(argv) == 0
    recs = list(read_pairs(out))
    assert [r.status for r in recs] == ["failed", "failed"] and recs[0].teacher == "tiny-vlm@pairwise-v1"
    assert lab.main(argv) == 0
    assert "0 ok, 0 failed, 2 already labelled" in capsys.readouterr().err
    assert lab.main([*argv, "--tensor-parallel-size", "2"]) == 2
    assert "--tensor-parallel-size: not an option of --engine transformers" in capsys.readouterr().err


def test_built_in_teachers_are_found_by_name(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    recipe = [{"op": "exposure", "strength": -0.5}]
    pairs.write_text(json.dumps({"a": "p.jpg", "b": "sha256:00", "group": "p", "recipe": recipe}) + "\n")
    out = tmp_path / "labels.jsonl"
    assert lab.main(["--teacher", "edit-oracle", "--pairs", str(pairs), "--out", str(out)]) == 0
    (rec,) = read_pairs(out)
    assert rec.ok and rec.teacher == "edit-oracle@1" and rec.delta < 0 and rec.recipe == recipe
    assert "biq2021-mos" in TEACHERS
