"""Generation back ends for the MLLM teacher: Hugging Face transformers (default) and vLLM (``--engine vllm``).

Both take the same :class:`Prompt` list (chat messages + PIL images) and return one decoded answer per
prompt; the teacher never knows which one runs. The chat text is rendered by the checkpoint's own
processor chat template in both, so a prompt reads the same to the model whichever engine serves it.
``transformers``, ``torch`` and ``vllm`` are imported inside the functions that need them.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from PIL import Image

from redaes_lite.errors import ModelError

__all__ = ["ENGINES", "Engine", "Prompt", "Sampling", "TransformersEngine", "VLLMEngine", "load_engine", "model_name"]


@dataclass(frozen=True)
class Sampling:
    """Decoding settings. ``temperature=0`` decodes greedily (then a retry gives the same answer)."""

    max_new_tokens: int = 512
    temperature: float = 0.7
    top_p: float = 0.9

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"bad sampling settings {self}")


@dataclass(frozen=True)
class Prompt:
    """Hugging Face chat messages with ``{"type": "image"}`` parts, and the images for them in order."""

    messages: list[dict[str, Any]]
    images: tuple[Image.Image, ...]


class Engine(Protocol):
    """Turns prompts into answers: ``generate`` returns one decoded string per prompt, in order.

    ``name`` is the model's short name (the teacher id's first half); ``default_batch_size`` the number of
    pairs per round that suits the engine when the user does not choose.
    """

    name: str
    default_batch_size: int

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[str]: ...


def model_name(name_or_path: str | os.PathLike) -> str:
    """A short teacher name from a folder or hub id: ``/ckpt/Aes-R1-7B/`` and ``org/Aes-R1-7B`` give ``aes-r1-7b``."""
    return os.path.basename(os.path.normpath(str(name_or_path))).lower() or "mllm"


def _render(processor: Any, prompt: Prompt) -> str:
    """The chat text of ``prompt`` with the model's own template (image placeholders included)."""
    if getattr(processor, "chat_template", None) is None:
        raise ModelError("the checkpoint's processor has no chat template; an instruction-tuned checkpoint is needed")
    return processor.apply_chat_template(prompt.messages, tokenize=False, add_generation_prompt=True)


def _load_processor(name_or_path: str) -> Any:
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(name_or_path)
    except (OSError, ValueError) as e:
        raise ModelError(f"{name_or_path}: cannot load the processor ({str(e).splitlines()[0]})") from None


class TransformersEngine:
    """``AutoModelForImageTextToText`` (Qwen2-VL, Qwen2.5-VL, ...): each ``generate`` call is one padded batch."""

    #: Pairs per round when the caller does not say; a round generates pairs x samples sequences at once.
    default_batch_size = 8

    def __init__(self, model: Any, processor: Any, *, name: str) -> None:
        self.model = model
        self.processor = processor
        self.name = name
        # Decoder-only generation continues the last token: pad on the left so every row ends in its prompt.
        processor.tokenizer.padding_side = "left"

    @classmethod
    def load(
        cls, name_or_path: str, *, device: str | None = None, dtype: str | None = None, seed: int | None = 0
    ) -> TransformersEngine:
        """Load a local folder or hub id: bf16 on a GPU, fp32 on the CPU unless ``dtype`` says otherwise."""
        import torch
        from transformers import AutoModelForImageTextToText

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = dtype or ("float32" if device == "cpu" else "bfloat16")
        if seed is not None:
            torch.manual_seed(seed)  # later samples draw fresh numbers from this stream: retries differ
        processor = _load_processor(name_or_path)
        try:
            model = AutoModelForImageTextToText.from_pretrained(
                name_or_path, dtype=getattr(torch, dtype), device_map=None if device == "cpu" else device
            )
        except (OSError, ValueError) as e:
            raise ModelError(f"{name_or_path}: cannot load the model ({str(e).splitlines()[0]})") from None
        return cls(model.eval(), processor, name=model_name(name_or_path))

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[str]:
        import torch

        if not prompts:
            return []
        texts = [_render(self.processor, p) for p in prompts]
        inputs = self.processor(
            text=texts, images=[list(p.images) for p in prompts], padding=True, return_tensors="pt"
        ).to(self.model.device)
        greedy = sampling.temperature == 0
        options: dict[str, Any] = {"do_sample": not greedy, "max_new_tokens": sampling.max_new_tokens}
        if not greedy:
            # top_k=0 switches off the checkpoint's own top_k: Qwen2.5-VL-Instruct ships top_k=1, which
            # would make every "sample" the greedy answer (and every retry a repeat).
            options.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        with torch.inference_mode():
            out = self.model.generate(**inputs, **options, pad_token_id=self.processor.tokenizer.pad_token_id)
        new_tokens = out[:, inputs["input_ids"].shape[1] :]
        return self.processor.batch_decode(new_tokens, skip_special_tokens=True)


class VLLMEngine:
    """vLLM offline inference for large jobs: the same prompts and answers, batched by vLLM's scheduler."""

    default_batch_size = 256  # vLLM keeps the GPU full by scheduling many requests at once

    def __init__(self, llm: Any, processor: Any, *, name: str) -> None:
        self.llm = llm
        self.processor = processor
        self.name = name

    @classmethod
    def load(
        cls,
        name_or_path: str,
        *,
        dtype: str | None = None,
        seed: int | None = 0,
        tensor_parallel_size: int = 1,
        max_model_len: int = 8192,
    ) -> VLLMEngine:
        try:
            from vllm import LLM
        except ImportError:
            raise ModelError("--engine vllm needs vLLM on a GPU machine: pip install vllm") from None
        llm = LLM(
            model=name_or_path,
            dtype=dtype or "bfloat16",
            seed=seed if seed is not None else 0,
            tensor_parallel_size=tensor_parallel_size,
            max_model_len=max_model_len,
            limit_mm_per_prompt={"image": 2},  # pairwise prompts carry two images
        )
        return cls(llm, _load_processor(name_or_path), name=model_name(name_or_path))

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[str]:
        from vllm import SamplingParams

        # No per-request seed: a retry must draw a fresh sample, which a fixed seed would repeat. Explicit
        # params are used as given (top_k off), not merged with the checkpoint's generation_config.
        params = SamplingParams(
            temperature=sampling.temperature, top_p=sampling.top_p, max_tokens=sampling.max_new_tokens
        )
        requests = [
            {"prompt": _render(self.processor, p), "multi_modal_data": {"image": list(p.images)}} for p in prompts
        ]
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        return [o.outputs[0].text for o in outputs]


ENGINES = {"transformers": TransformersEngine, "vllm": VLLMEngine}


def load_engine(kind: str, name_or_path: str, **options: Any) -> Engine:
    """Load ``name_or_path`` with the engine called ``kind``; options left ``None`` keep the engine's defaults."""
    if kind not in ENGINES:
        raise ValueError(f"unknown engine {kind!r}; known: {', '.join(ENGINES)}")
    options = {k: v for k, v in options.items() if v is not None}
    known = inspect.signature(ENGINES[kind].load).parameters
    wrong = [f"--{k.replace('_', '-')}" for k in options if k not in known]
    if wrong:
        raise ValueError(f"{' '.join(wrong)}: not an option of --engine {kind}")
    return ENGINES[kind].load(name_or_path, **options)
