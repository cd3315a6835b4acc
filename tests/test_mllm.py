"""MLLM teacher: a tiny random Qwen2.5-VL loaded from a local folder through the real prompt -> generate ->
parse path, plus a scripted engine for the sampling, retry and pointwise logic."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from PIL import Image

from distill.teachers.base import PairRequest
from distill.teachers.engines import (
    Prompt,
    Sampling,
    TransformersEngine,
    load_engine,
    model_name,
)
from distill.teachers.mllm import MLLMTeacher
from redaes_lite.errors import ModelError

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_vlm import make_tiny_vlm

    return make_tiny_vlm(tmp_path_factory.mktemp("ckpt") / "Tiny-VLM")


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    """Three small photos: a dark source, a brighter edit of it, and a grey one."""
    for name, grey in (("src.png", 60), ("bright.png", 160), ("grey.png", 110)):
        Image.new("RGB", (40, 30), (grey, grey, grey)).save(tmp_path / name)
    return tmp_path


class ScriptedEngine:
    """An engine whose answer is a function of the prompt; records every prompt it was given."""

    name = "scripted"

    def __init__(self, answer: Callable[[Prompt, int], str]) -> None:
        self.answer = answer
        self.prompts: list[Prompt] = []

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[str]:
        out = [self.answer(p, len(self.prompts) + i) for i, p in enumerate(prompts)]
        self.prompts.extend(prompts)
        return out


def _brightness(im: Image.Image) -> float:
    return im.convert("L").getpixel((0, 0)) / 255


# -- the real model ---------------------------------------------------------------------------------
def test_random_model_from_local_folder_is_retried_then_recorded_as_failed(tiny_vlm, photos):
    import torch

    teacher = MLLMTeacher.from_pretrained(
        str(tiny_vlm), root=photos, retries=1, max_new_tokens=6, engine_options={"device": "cpu"}
    )
    engine = teacher.engine
    assert engine.name == "tiny-vlm" and next(engine.model.parameters()).dtype == torch.float32  # fp32 on CPU
    calls: list[int] = []
    real = engine.generate
    engine.generate = lambda prompts, sampling: calls.append(len(prompts)) or real(prompts, sampling)
    reqs = [PairRequest("src.png", "bright.png", group="g"), PairRequest("src.png", "grey.png", group="g")]
    recs = list(teacher.label(reqs))
    assert [r.status for r in recs] == ["failed", "failed"]  # random weights never close an <answer>
    assert all("malformed answer after 2 tries" in r.error for r in recs)
    assert all(r.delta is None and r.teacher == "tiny-vlm@pairwise-v1" for r in recs)
    assert calls == [2, 2]  # one round for both pairs, then one retry round
    assert [r.id for r in recs] == [teacher.key(q) for q in reqs]


def test_canned_generation_goes_through_the_processor_and_parser(tiny_vlm, photos):
    import torch

    engine = TransformersEngine.load(str(tiny_vlm), device="cpu", dtype="float32")
    canned = "<think>The edit lifts the shadows.</think><answer>-0.5</answer>"
    canned_ids = engine.processor.tokenizer(canned, add_special_tokens=False)["input_ids"]
    seen: dict[str, torch.Tensor] = {}

    def fake_generate(input_ids, **kwargs):
        seen.update(kwargs, input_ids=input_ids)
        tail = torch.tensor([canned_ids] * input_ids.shape[0], dtype=input_ids.dtype)
        return torch.cat([input_ids, tail], dim=1)

    engine.model.generate = fake_generate
    teacher = MLLMTeacher(engine, root=photos, samples=2)
    recipe = ({"op": "exposure", "strength": 0.5},)
    (rec,) = teacher.label([PairRequest("src.png", "bright.png", group="g", recipe=recipe)])
    assert rec.status == "ok" and rec.delta == -0.5 and rec.samples == [-0.5, -0.5] and rec.spread == 0.0
    assert rec.rationale == "The edit lifts the shadows." and rec.source == "mllm"
    assert rec.recipe == [{"op": "exposure", "strength": 0.5}] and rec.group == "g"
    # Both images reached the vision tower, and sampling settings reached generate().
    image_pad = engine.processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert seen["image_grid_thw"].shape[0] == 4  # 2 samples x 2 images
    assert int((seen["input_ids"][0] == image_pad).sum()) >= 2
    assert seen["do_sample"] is True and seen["temperature"] == 0.7 and seen["top_k"] == 0


def test_vllm_engine_fails_clearly_when_vllm_is_missing(tiny_vlm):
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(ModelError, match="pip install vllm"):
            load_engine("vllm", str(tiny_vlm))
    else:
        pytest.skip("vllm is installed")
    with pytest.raises(ValueError, match="known: transformers, vllm"):
        load_engine("onnx", str(tiny_vlm))


def test_missing_checkpoint_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="cannot load"):
        TransformersEngine.load(str(tmp_path / "nowhere"), device="cpu")


# -- sampling, retries and modes (scripted engine) --------------------------------------------------
def test_k_samples_are_averaged_and_malformed_ones_replaced(photos):
    script = ["<answer>0.5</answer>", "oops", "<answer>1.5</answer>", "<answer>1.0</answer>"]
    engine = ScriptedEngine(lambda p, i: script[i])
    teacher = MLLMTeacher(engine, root=photos, samples=3, retries=1)
    (rec,) = teacher.label([PairRequest("src.png", "bright.png", group="g")])
    assert rec.status == "ok" and sorted(rec.samples) == [0.5, 1.0, 1.5]
    assert rec.delta == pytest.approx(1.0) and rec.spread == pytest.approx(statistics.pstdev([0.5, 1.0, 1.5]))
    assert len(engine.prompts) == 4


def test_retries_run_out_into_a_failed_record_without_a_guess(photos):
    engine = ScriptedEngine(lambda p, i: "<think>hmm</think><answer>about 9</answer>")
    teacher = MLLMTeacher(engine, root=photos, retries=2)
    (rec,) = teacher.label([PairRequest("src.png", "bright.png", group="g")])
    assert rec.status == "failed" and rec.delta is None and rec.samples is None
    assert "after 3 tries" in rec.error and "outside [-4, 4]" in rec.error
    assert len(engine.prompts) == 3


def test_unreadable_image_fails_only_its_pair(photos):
    engine = ScriptedEngine(lambda p, i: "<answer>1</answer>")
    teacher = MLLMTeacher(engine, root=photos)
    recs = list(
        teacher.label([PairRequest("src.png", "missing.jpg", group="g"), PairRequest("src.png", "grey.png", group="g")])
    )
    assert [r.status for r in recs] == ["failed", "ok"]
    assert "missing.jpg" in recs[0].error and "cannot read" in recs[0].error
    assert len(engine.prompts) == 1


def test_pointwise_takes_the_difference_and_rates_a_shared_source_once(photos):
    engine = ScriptedEngine(lambda p, i: f"<think>looked</think><answer>{1 + 4 * _brightness(p.images[0])}</answer>")
    teacher = MLLMTeacher(engine, root=photos, mode="pointwise", batch_size=1)
    reqs = [PairRequest("src.png", "bright.png", group="g"), PairRequest("src.png", "grey.png", group="g")]
    recs = list(teacher.label(reqs))
    assert teacher.id == "scripted@pointwise-v1"
    assert [r.status for r in recs] == ["ok", "ok"]
    assert recs[0].delta == pytest.approx(4 * (160 - 60) / 255, abs=0.01)
    assert recs[0].delta > recs[1].delta > 0
    assert len(engine.prompts) == 3  # src, bright, grey: the source's rating is reused across batches
    assert all(len(p.images) == 1 for p in engine.prompts)
    assert recs[0].rationale.startswith("a: looked")


def test_pointwise_failure_names_the_side(photos):
    engine = ScriptedEngine(lambda p, i: "<answer>3</answer>" if _brightness(p.images[0]) < 0.3 else "nothing")
    teacher = MLLMTeacher(engine, root=photos, mode="pointwise", retries=0)
    (rec,) = teacher.label([PairRequest("src.png", "bright.png", group="g")])
    assert rec.status == "failed" and rec.error.startswith("b: malformed answer")


def test_large_images_are_shrunk_to_the_pixel_budget(photos):
    Image.new("RGB", (1200, 900), (90, 90, 90)).save(photos / "big.jpg", quality=90)
    engine = ScriptedEngine(lambda p, i: "<answer>0</answer>")
    teacher = MLLMTeacher(engine, root=photos, image_max_pixels=100_000)
    next(teacher.label([PairRequest("big.jpg", "src.png", group="g")]))
    big, small = engine.prompts[0].images
    assert big.size[0] * big.size[1] <= 100_000 and abs(big.size[0] / big.size[1] - 4 / 3) < 0.01
    assert small.size == (40, 30)


# -- cache keys -------------------------------------------------------------------------------------
def test_keys_follow_image_content_teacher_and_prompt(photos):
    (photos / "copy.png").write_bytes((photos / "src.png").read_bytes())
    engine = ScriptedEngine(lambda p, i: "")
    t = MLLMTeacher(engine, root=photos)
    base = t.key(PairRequest("src.png", "bright.png", group="g"))
    assert t.key(PairRequest("copy.png", "bright.png", group="other")) == base  # content, not path or group
    assert t.key(PairRequest("bright.png", "src.png", group="g")) != base  # order matters: delta is b - a
    assert MLLMTeacher(engine, root=photos, name="other").key(PairRequest("src.png", "bright.png", group="g")) != base
    pointwise = MLLMTeacher(engine, root=photos, mode="pointwise")
    assert pointwise.key(PairRequest("src.png", "bright.png", group="g")) != base
    Image.new("RGB", (40, 30), (61, 60, 60)).save(photos / "src.png")
    assert MLLMTeacher(engine, root=photos).key(PairRequest("src.png", "bright.png", group="g")) != base


def test_model_name_from_folder_or_hub_id():
    assert model_name("/ckpt/Aes-R1-7B/") == "aes-r1-7b"
    assert model_name("ssssmark/Aes-R1") == "aes-r1"


def test_bad_options_are_refused(photos):
    engine = ScriptedEngine(lambda p, i: "")
    with pytest.raises(ValueError, match="pointwise"):
        MLLMTeacher(engine, mode="pointwise", prompt="pairwise-v1")
    with pytest.raises(ValueError, match="mode"):
        MLLMTeacher(engine, mode="triplet")
    with pytest.raises(ValueError, match="samples"):
        MLLMTeacher(engine, samples=0)


def test_generated_images_are_found_by_their_sha256_name(photos):
    (photos / "00ff.png").write_bytes((photos / "bright.png").read_bytes())  # how `distill edits` stores them
    engine = ScriptedEngine(lambda p, i: f"<answer>{_brightness(p.images[1]) - _brightness(p.images[0])}</answer>")
    teacher = MLLMTeacher(engine, root=photos)
    ok, missing = teacher.label(
        [PairRequest("src.png", "sha256:00ff", group="g"), PairRequest("src.png", "sha256:beef", group="g")]
    )
    assert ok.status == "ok" and ok.delta == pytest.approx(100 / 255, abs=0.01) and ok.b == "sha256:00ff"
    assert missing.status == "failed" and "sha256:beef" in missing.error


def test_from_pretrained_refuses_bad_options_before_loading(tmp_path):
    # The checkpoint does not exist: a ModelError would mean the options were checked only after loading.
    with pytest.raises(ValueError, match="samples"):
        MLLMTeacher.from_pretrained(str(tmp_path / "nowhere"), samples=0)
    with pytest.raises(ValueError, match="bad sampling"):
        MLLMTeacher.from_pretrained(str(tmp_path / "nowhere"), top_p=0.0)


def test_vllm_engine_glue_with_a_stand_in_vllm_module(tiny_vlm, photos, monkeypatch):
    """vLLM is not installable here: a stand-in module checks what the engine hands it and reads back."""
    import sys
    import types

    made: dict = {}

    class LLM:
        def __init__(self, **kw):
            made["llm"] = kw

        def generate(self, requests, params, use_tqdm):
            made["requests"], made["params"] = requests, params
            out = types.SimpleNamespace(text="<think>ok</think><answer>1.25</answer>")
            return [types.SimpleNamespace(outputs=[out]) for _ in requests]

    class SamplingParams:
        def __init__(self, **kw):
            self.kw = kw

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams))
    teacher = MLLMTeacher.from_pretrained(str(tiny_vlm), engine="vllm", root=photos, temperature=0.5)
    assert teacher.batch_size == 256 and teacher.id == "tiny-vlm@pairwise-v1"
    (rec,) = teacher.label([PairRequest("src.png", "bright.png", group="g")])
    assert rec.ok and rec.delta == 1.25 and rec.rationale == "ok"
    assert made["llm"]["limit_mm_per_prompt"] == {"image": 2} and made["llm"]["dtype"] == "bfloat16"
    (req,) = made["requests"]
    assert req["prompt"].count("<|image_pad|>") == 2 and req["prompt"].endswith("<|im_start|>assistant\n")
    assert [im.size for im in req["multi_modal_data"]["image"]] == [(40, 30), (40, 30)]
    assert made["params"].kw == {"temperature": 0.5, "top_p": 0.9, "max_tokens": 512}
