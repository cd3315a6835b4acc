"""The multimodal-LLM teacher: a RED-Aes / Aes-R1 style model judges how much better image b is than a.

Two modes (``prompts.py`` holds the wording):

- ``pairwise`` (the RED-Aes way): one prompt shows a (source) then b (edited) and asks for the signed
  change, reasoning first; ``delta`` is the answer.
- ``pointwise`` (Aes-R1 style): each image is rated on its own; ``delta`` = rating(b) - rating(a). A rating
  is reused for every pair that shows the same image (edit pairs share their source).

Each item (a pair, or an image in pointwise mode) is sampled ``samples`` times (K) and averaged, with the K
values and their standard deviation recorded (as RAPO does). A malformed answer is replaced by a fresh
sample, up to ``retries`` times per requested answer; an item that runs out of retries, or whose image
cannot be read, becomes a ``status="failed"`` record with the reason — never dropped, never guessed.
"""

from __future__ import annotations

import math
import statistics
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from PIL import Image

from redaes_lite.errors import ImageError
from redaes_lite.pairs import PairLabel, pair_id
from redaes_lite.preprocess import PreprocessSpec, load_image

from .base import ImageRefs, PairRequest
from .engines import ENGINES, Engine, Prompt, Sampling, load_engine
from .parsing import Answer, MalformedAnswer, parse_answer
from .prompts import DEFAULT_PROMPT, PromptTemplate, get_prompt

__all__ = ["DEFAULT_IMAGE_MAX_PIXELS", "MLLMTeacher"]

#: Pixels an image is shrunk to before the model sees it: 512 x 512, the budget Aes-R1 was trained with.
DEFAULT_IMAGE_MAX_PIXELS = 512 * 512
_DEFAULT_SAMPLING = Sampling()
_SCORE_CACHE = 4096  # pointwise ratings kept for reuse (edit pairs of one source arrive together)


@dataclass
class _Job:
    """One thing to ask the model about K times: a pair (pairwise) or one image (pointwise)."""

    prompt: Prompt
    answers: list[Answer] = field(default_factory=list)
    malformed: int = 0
    error: str | None = None


@dataclass(frozen=True)
class _Rating:
    """A finished pointwise job without its pixels, kept so later pairs showing the same image reuse it."""

    answers: tuple[Answer, ...]
    error: str | None


def _checked_prompt(
    mode: str = "pairwise",
    prompt: str | None = None,
    samples: int = 1,
    retries: int = 2,
    batch_size: int = 8,
    image_max_pixels: int = DEFAULT_IMAGE_MAX_PIXELS,
) -> PromptTemplate:
    """The prompt for ``mode`` (``prompt`` or the mode's default), once the numeric options are sane."""
    if mode not in DEFAULT_PROMPT:
        raise ValueError(f"mode must be one of {tuple(DEFAULT_PROMPT)}, got {mode!r}")
    template = get_prompt(prompt or DEFAULT_PROMPT[mode])
    if template.mode != mode:
        raise ValueError(f"prompt {template.name} is {template.mode}, not {mode}")
    if samples < 1 or retries < 0 or batch_size < 1 or image_max_pixels < 28 * 28:
        raise ValueError("samples and batch_size must be >= 1, retries >= 0, image_max_pixels >= 784")
    return template


class MLLMTeacher(ImageRefs):
    """Labels pairs with an :class:`~distill.teachers.engines.Engine`; ``id`` is ``<model>@<prompt name>``."""

    def __init__(
        self,
        engine: Engine,
        *,
        root: str | Path = ".",
        mode: str = "pairwise",
        prompt: str | None = None,
        samples: int = 1,
        retries: int = 2,
        sampling: Sampling = _DEFAULT_SAMPLING,
        batch_size: int = 8,
        image_max_pixels: int = DEFAULT_IMAGE_MAX_PIXELS,
        name: str | None = None,
    ) -> None:
        self.prompt = _checked_prompt(mode, prompt, samples, retries, batch_size, image_max_pixels)
        self.engine = engine
        self.root = Path(root)
        self.mode = mode
        self.samples = samples
        self.retries = retries
        self.sampling = sampling
        self.batch_size = batch_size
        self.image_max_pixels = image_max_pixels
        self.id = f"{name or engine.name}@{self.prompt.name}"
        # JPEG draft so both sides decode >= sqrt(max_pixels): enough to shrink from, far less than 12 MP.
        side = math.ceil(math.sqrt(image_max_pixels) / 2)
        self._decode_spec = PreprocessSpec(size=(side, side))
        self._hashes: dict[str, str] = {}
        self._ratings: OrderedDict[str, _Rating] = OrderedDict()

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        *,
        engine: str = "transformers",
        batch_size: int | None = None,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        engine_options: dict[str, Any] | None = None,
        **options: Any,
    ) -> MLLMTeacher:
        """Load a checkpoint folder or hub id with ``engine``; ``options`` are this class's keywords.

        ``engine_options`` go to the engine's ``load`` (``device``, ``dtype``, ``seed``,
        ``tensor_parallel_size``, ...); ``None`` values everywhere keep the defaults.
        """
        given = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p}
        sampling = Sampling(**{k: v for k, v in given.items() if v is not None})
        options = {k: v for k, v in options.items() if v is not None}
        batch_size = batch_size or ENGINES[engine].default_batch_size
        # Refuse bad options before a multi-gigabyte checkpoint loads, not after.
        keys = ("mode", "prompt", "samples", "retries", "image_max_pixels")
        _checked_prompt(batch_size=batch_size, **{k: options[k] for k in keys if k in options})
        loaded = load_engine(engine, name_or_path, **(engine_options or {}))
        return cls(loaded, sampling=sampling, batch_size=batch_size, **options)

    # -- keys ---------------------------------------------------------------------------------------
    def key(self, req: PairRequest) -> str:
        """The record id this teacher writes for ``req``: both images' content + teacher id + prompt version."""
        return pair_id(self.image_key(req.a), self.image_key(req.b), self.id, self.prompt.version)

    # -- labelling ----------------------------------------------------------------------------------
    def label(self, pairs: Iterable[PairRequest]) -> Iterator[PairLabel]:
        """One record per request, in order, ``batch_size`` requests per round of generation."""
        it = iter(pairs)
        while batch := list(islice(it, self.batch_size)):
            if self.mode == "pairwise":
                yield from self._label_pairwise(batch)
            else:
                yield from self._label_pointwise(batch)

    def _label_pairwise(self, batch: list[PairRequest]) -> Iterator[PairLabel]:
        jobs: dict[int, _Job] = {}
        broken: dict[int, str] = {}
        for i, req in enumerate(batch):
            try:
                jobs[i] = _Job(self._prompt(req.a, req.b))
            except ImageError as e:
                broken[i] = str(e)
        self._collect(list(jobs.values()))
        for i, req in enumerate(batch):
            job = jobs.get(i)
            if job is None or job.error:
                yield self._failed(req, broken[i] if job is None else str(job.error))
            else:
                yield self._ok(req, [a.value for a in job.answers], job.answers[0].rationale)

    def _label_pointwise(self, batch: list[PairRequest]) -> Iterator[PairLabel]:
        ratings: dict[str, _Rating] = {}
        todo: dict[str, _Job] = {}
        for ref in dict.fromkeys(r for req in batch for r in (req.a, req.b)):
            key = self.image_key(ref)
            if key in ratings or key in todo:
                continue
            if key in self._ratings:
                self._ratings.move_to_end(key)
                ratings[key] = self._ratings[key]
                continue
            try:
                todo[key] = _Job(self._prompt(ref))
            except ImageError as e:
                ratings[key] = _Rating((), str(e))
        self._collect(list(todo.values()))
        for key, job in todo.items():
            ratings[key] = _Rating(tuple(job.answers), job.error)
            self._remember(key, ratings[key])
        for req in batch:
            ra, rb = ratings[self.image_key(req.a)], ratings[self.image_key(req.b)]
            errors = [f"{side}: {r.error}" for side, r in (("a", ra), ("b", rb)) if r.error]
            if errors:
                yield self._failed(req, "; ".join(errors))
                continue
            values = [b.value - a.value for a, b in zip(ra.answers, rb.answers)]
            yield self._ok(req, values, f"a: {ra.answers[0].rationale or ''}\n\nb: {rb.answers[0].rationale or ''}")

    def _collect(self, jobs: list[_Job]) -> None:
        """Give every job K well-formed answers, drawing fresh samples for malformed ones while retries last."""
        budget = self.samples * self.retries
        pending = jobs
        while pending:
            asks = [job for job in pending for _ in range(self.samples - len(job.answers))]
            texts = self.engine.generate([job.prompt for job in asks], self.sampling)
            for job, text in zip(asks, texts, strict=True):
                if job.error:
                    continue
                try:
                    job.answers.append(parse_answer(text, answer_range=self.prompt.answer_range))
                except MalformedAnswer as e:
                    job.malformed += 1
                    if job.malformed > budget:
                        tries = f"{job.malformed} {'try' if job.malformed == 1 else 'tries'}"
                        job.error = f"malformed answer after {tries} ({e}); last: {_excerpt(text)!r}"
            pending = [j for j in pending if j.error is None and len(j.answers) < self.samples]

    # -- helpers ------------------------------------------------------------------------------------
    def _remember(self, key: str, rating: _Rating) -> None:
        self._ratings[key] = rating
        while len(self._ratings) > _SCORE_CACHE:
            self._ratings.popitem(last=False)

    def _prompt(self, *refs: str) -> Prompt:
        return Prompt(self.prompt.messages(), tuple(self._image(r) for r in refs))

    def _image(self, ref: str) -> Image.Image:
        """Decode ``ref`` (EXIF applied, RGB) and shrink it to ``image_max_pixels``, keeping its aspect."""
        im = load_image(self._read(ref), self._decode_spec)
        w, h = im.size
        if w * h > self.image_max_pixels:
            s = math.sqrt(self.image_max_pixels / (w * h))
            im = im.resize((max(1, int(w * s)), max(1, int(h * s))), Image.Resampling.BICUBIC)
        return im

    def _ok(self, req: PairRequest, values: list[float], rationale: str | None) -> PairLabel:
        many = len(values) > 1
        return self._record(
            req,
            delta=statistics.fmean(values),
            rationale=rationale,
            samples=values if many else None,
            spread=statistics.pstdev(values) if many else None,
        )

    def _failed(self, req: PairRequest, error: str) -> PairLabel:
        return self._record(req, delta=None, status="failed", error=error)

    def _record(self, req: PairRequest, **fields) -> PairLabel:
        return PairLabel(
            id=self.key(req),
            a=req.a,
            b=req.b,
            source="mllm",
            teacher=self.id,
            group=req.group,
            recipe=list(req.recipe) if req.recipe else None,
            **fields,
        )


def _excerpt(text: str, n: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else "…" + text[-(n - 1) :]
