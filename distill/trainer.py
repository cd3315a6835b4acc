"""The training loop: ``python -m distill train CONFIG`` (and ``torchrun ... -m distill train CONFIG``).

One step draws one batch of groups from every active source, runs the student once on all their images,
and sums ``source weight x loss weight x loss`` over sources and losses (each loss returns
``{"loss": ..., **parts}``; the loop never looks inside). AdamW, linear warm-up then cosine decay.

Run folder (``cfg.out``): ``config.yaml`` (resolved), ``metrics.jsonl`` (train and val lines),
``last.pt`` (resume: weights, optimizer, scheduler, step, RNG), ``best.pt`` (best ``val.best_metric``),
``final.pt`` (the export checkpoint: temperature and display calibration fitted on validation, teachers,
training data, seeds, data hashes, git commit).

Exact resume: batches are a pure function of (seed, source, step) (``distill.sources``), and ``last.pt``
holds the optimizer, scheduler and torch RNG states, so a resumed run repeats an unbroken one.
Ctrl-C stops at the end of the current step and writes ``last.pt`` (a second Ctrl-C aborts).

Multi-GPU: ``torchrun --nproc_per_node N -m distill train CONFIG``; each rank takes every N-th batch
(``index * N + rank``) and DDP averages gradients; rank 0 validates, logs and writes checkpoints.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from distill.config import LossConfig, SourceConfig, TrainConfig, dump_config
from distill.data import batch_loader
from distill.provenance import describe_data
from distill.sources import DataContext, GroupSource, TeacherGroups, TeacherLabeller, build_source
from distill.train_setup import (
    Dist,
    Progress,
    StopFlag,
    build_losses,
    git_commit,
    lr_factor,
    make_optimizer,
    pick_device,
    student_from_config,
)
from distill.validation import ValSets, evaluate, finalize

__all__ = ["Run", "train"]


# --- the run --------------------------------------------------------------------------------------


@dataclass
class State:
    """What a resume needs beyond the weights: step, counters and the best validation value."""

    step: int = 0
    best: float | None = None
    pairs_seen: dict[str, int] = field(default_factory=dict)
    stage_metrics: list[dict[str, Any]] = field(default_factory=list)


class Run:
    """One training run; :meth:`fit` trains to the end (or to Ctrl-C) and returns the final checkpoint."""

    def __init__(self, cfg: TrainConfig, *, resume: bool = False, ctx: DataContext | None = None) -> None:
        self.cfg, self.dist = cfg, Dist.from_env()
        self.out = Path(cfg.out)
        self.device = pick_device(cfg.device, self.dist)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed + self.dist.rank)
        self.model, self.train_tf, self.eval_tf = student_from_config(cfg)
        # channels_last cuts a CNN's CPU training cost 1.5-2.4x here (benchmarks/train_throughput.py); the
        # weights and exported graph are unchanged.
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.model.to(self.device, memory_format=self.memory_format)
        # ``ctx`` is given by tests (synthetic data); runs read the committed splits of the shared data.
        self.ctx = ctx or DataContext.from_config(cfg, self.model.spec)
        self.loss_fns = build_losses(cfg)
        for fn in self.loss_fns.values():
            if hasattr(fn, "bind"):  # a loss with parameters sized by the student (the feature map)
                fn.bind(self.model.utility_head.in_features)
        self.loss_fns.to(self.device)
        self.optimizer = make_optimizer(self.model, self.loss_fns, cfg)
        total, o = cfg.total_steps, cfg.optim
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, total=total, warmup=o.warmup_steps, min_ratio=o.min_lr_ratio)
        )
        self.net: torch.nn.Module = self.model
        if self.dist.world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,  # a stage may train without factor targets
            )
        self.state = State()
        self.val = ValSets.build(self.ctx, cfg) if self.dist.main else None
        self.sources: dict[str, GroupSource] = {}
        self.source_cfg: dict[str, SourceConfig] = {}
        self.losses: dict[str, LossConfig] = {}
        self.labellers: dict[str, TeacherLabeller] = {}
        self.loaders: dict[str, Iterator[dict[str, Any]]] = {}
        self.stage_index = -1
        self._evaluated: tuple[int, Any] = (-1, None)  # (step, evaluate() result) of the latest validation
        if resume:
            self.load_resume(self.out / "last.pt")
        if self.dist.main:
            self.out.mkdir(parents=True, exist_ok=True)
            dump_config(cfg, self.out / "config.yaml")

    # -- data --

    def enter_stage(self, index: int, stage: Any) -> None:
        """Build the sources, losses and loaders of a curriculum stage, starting at the current step."""
        self.loaders.clear()  # shuts the previous stage's workers down
        self.stage_index = index
        self.source_cfg, self.losses = self.cfg.stage_config(stage)
        for name, scfg in self.source_cfg.items():
            if name not in self.sources or self.sources[name].group_size != scfg.group_size:
                self.sources[name] = build_source(name, scfg, self.ctx, seed=self.cfg.seed)
            src = self.sources[name]
            src.groups, src.scale = scfg.groups, scfg.scale
            if name in self.labellers:
                self.labellers[name].scale = scfg.scale
            elif isinstance(src, TeacherGroups):
                self.labellers[name] = TeacherLabeller(
                    src.checkpoint,
                    factors=self.cfg.factors,
                    scale=scfg.scale,
                    use_factors=scfg.teacher_factors,
                    device=self.device,
                )
            self.loaders[name] = batch_loader(
                src,
                self.train_tf,
                start=self.state.step,
                num_workers=self.cfg.num_workers,
                rank=self.dist.rank,
                world=self.dist.world,
            )
        if self.dist.main and stage is not None:
            self.log({"kind": "stage", "step": self.state.step, "stage": stage.name, "sources": list(self.loaders)})

    def next_batches(self) -> dict[str, dict[str, Any]]:
        batches = {}
        for name, it in self.loaders.items():
            batch = next(it)
            if "teacher_images" in batch:
                batch = self.labellers[name](batch)
            batches[name] = {
                k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()
            }
        return batches

    # -- step --

    def compute_loss(self, batches: dict[str, dict[str, Any]]) -> tuple[torch.Tensor, dict[str, float]]:
        """One forward pass over every source's images; weighted sum of every loss on every source."""
        images = torch.cat([b["images"].flatten(0, 1) for b in batches.values()])
        images = images.contiguous(memory_format=self.memory_format)
        with_features = any(fn.dims == 0 for fn in self.loss_fns.values())
        utility, factors, *pooled = self.net(images, with_features=True) if with_features else self.net(images)
        total = utility.new_zeros(())
        parts: dict[str, float] = {}
        start = 0
        for name, b in batches.items():
            g, m = b["target"].shape
            u = utility[start : start + g * m].view(g, m)
            f = factors[start : start + g * m].view(g, m, -1)
            start += g * m
            scfg = self.source_cfg[name]
            for loss_name, lcfg in self.losses.items():
                w = scfg.weight * lcfg.weight * scfg.losses.get(loss_name, 1.0)
                if w == 0:
                    continue
                fn = self.loss_fns[loss_name]
                if fn.dims == 0:  # feature distillation: per image, on sources a teacher network labelled
                    if "teacher_features" not in b:
                        continue
                    feats = pooled[0][start - g * m : start]
                    per_image = (b["weight"][:, None] * b["mask"]).flatten()
                    out = fn(feats, b["teacher_features"].flatten(0, 1), weight=per_image)
                else:
                    # A loss over [G, M, K] (``dims == 3``) scores the factor heads, one over [G, M] the utility.
                    pred, target = (f, b["factor_target"]) if fn.dims == 3 else (u, b["target"])
                    out = fn(pred, target, weight=b["weight"], mask=b["mask"])
                total = total + w * out["loss"]
                parts[f"{name}/{loss_name}"] = float(out["loss"].detach())
                if "accuracy" in out and not torch.isnan(out["accuracy"]):
                    parts[f"{name}/{loss_name}.acc"] = float(out["accuracy"])
            self.state.pairs_seen[name] = self.state.pairs_seen.get(name, 0) + g * m * (m - 1) // 2 * self.dist.world
        return total, parts

    def step(self) -> dict[str, float]:
        self.net.train()
        if self.cfg.student.freeze_bn_stats:
            for module in self.model.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()
        batches = self.next_batches()
        loss, parts = self.compute_loss(batches)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.dist.world > 1:
            # DDP averages the student's gradients; loss parameters (the temperature) are averaged here.
            for p in self.loss_fns.parameters():
                if p.grad is not None:
                    torch.distributed.all_reduce(p.grad)
                    p.grad /= self.dist.world
        if self.cfg.optim.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.state.step += 1
        return {"loss": float(loss.detach()), **parts}

    # -- loop --

    def fit(self, *, until: int | None = None) -> Path | None:
        """Train to ``total_steps``; returns ``final.pt``. Stopping early (Ctrl-C, or step ``until`` for
        sessions shorter than the run) writes ``last.pt`` and returns None."""
        cfg, total = self.cfg, self.cfg.total_steps
        stop_at = total if until is None else min(until, total)
        bar = Progress(total, start=self.state.step, enabled=self.dist.main and sys.stderr.isatty())
        t0, seen = time.perf_counter(), 0
        with StopFlag() as flag:
            while self.state.step < stop_at and not flag.stop:
                index, stage = cfg.stage_at(self.state.step)
                if index != self.stage_index or not self.loaders:
                    self.enter_stage(index, stage)
                parts = self.step()
                step = self.state.step
                seen += 1
                stage_end = stage is not None and (step == total or cfg.stage_at(step)[0] != index)
                if self.dist.main and (step % cfg.log_every == 0 or step == total):
                    rate = seen / (time.perf_counter() - t0)
                    self.log(
                        {
                            "kind": "train",
                            "step": step,
                            "lr": self.scheduler.get_last_lr()[0],
                            "steps_per_s": round(rate, 4),
                            **parts,
                        }
                    )
                bar.update(step, parts["loss"])
                if step % cfg.val.every == 0 or step == total or stage_end:
                    self.validate(stage_end=stage_end, stage=stage)  # also writes last.pt
                elif self.dist.main and step % cfg.checkpoint_every == 0:
                    self.save("last.pt", resume=True)
        bar.close()
        self.loaders.clear()
        if self.state.step < total:
            if self.dist.main:
                self.save("last.pt", resume=True)
                print(
                    f"stopped at step {self.state.step}: resume with --resume ({self.out / 'last.pt'})", file=sys.stderr
                )
            return None
        return self.finish()

    def validate(self, *, stage_end: bool = False, stage: Any = None) -> dict[str, Any] | None:
        metrics = None
        if self.dist.main:
            assert self.val is not None
            metrics, raw = evaluate(self.model, self.eval_tf, self.val, self.cfg, device=self.device)
            self._evaluated = (self.state.step, (metrics, raw))
            self.log({"kind": "val", "step": self.state.step, **metrics})
            if stage_end:
                self.state.stage_metrics.append({"stage": stage.name, "step": self.state.step, **metrics})
            value = metrics.get(self.cfg.val.best_metric)
            better = (
                value is not None
                and not math.isnan(value)
                and (
                    self.state.best is None
                    or (value > self.state.best if self.cfg.val.best_mode == "max" else value < self.state.best)
                )
            )
            if better:
                self.state.best = value
                self.save("best.pt", metrics=metrics)
            self.save("last.pt", resume=True, metrics=metrics)
        self.dist.barrier()
        return metrics

    def finish(self) -> Path | None:
        """Fit temperature and display calibration on validation; write ``final.pt``."""
        self.dist.barrier()
        if not self.dist.main:
            return None
        assert self.val is not None
        step, evaluated = self._evaluated
        fields = finalize(
            self.model,
            self.eval_tf,
            self.val,
            self.cfg,
            device=self.device,
            evaluated=evaluated if step == self.state.step else None,
        )
        fields["metrics"]["stages"] = self.state.stage_metrics
        path = self.save("final.pt", **fields)
        (self.out / "final_metrics.json").write_text(json.dumps(fields["metrics"], indent=2) + "\n")
        return path

    # -- checkpoints and logs --

    def save(self, name: str, *, resume: bool = False, **extra: Any) -> Path:
        from distill.student import save_checkpoint

        fields: dict[str, Any] = {
            **describe_data(self.cfg, self.ctx, self.sources, self.state.pairs_seen),
            "config": dump_config(self.cfg),
            "seed": self.cfg.seed,
            "git_commit": git_commit(),
            "version": self.cfg.version,
            "step": self.state.step,
            **extra,
        }
        if resume:
            fields["optimizer"] = self.optimizer.state_dict()
            fields["scheduler"] = self.scheduler.state_dict()
            fields["rng"] = {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            }
            fields["trainer_state"] = self.state.__dict__
            fields["loss_state"] = self.loss_fns.state_dict()
        path = self.out / name
        save_checkpoint(path, self.model, **fields)
        return path

    def load_resume(self, path: Path) -> None:
        if not path.exists():
            raise FileNotFoundError(f"{path}: no checkpoint to resume from")
        from distill.student import load_checkpoint

        ckpt = load_checkpoint(path)
        self.model.load_state_dict(ckpt["state_dict"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if ckpt["rng"].get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
        self.loss_fns.load_state_dict(ckpt["loss_state"])
        self.state = State(**ckpt["trainer_state"])
        old = ckpt.get("config")
        if old is not None and old != dump_config(self.cfg):
            print(f"{path}: resuming with a config that differs from the checkpoint's", file=sys.stderr)

    def log(self, record: dict[str, Any]) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=float) + "\n")


def train(cfg: TrainConfig, *, resume: bool = False, until: int | None = None) -> Path | None:
    """Train ``cfg``; returns the final checkpoint (``None`` if stopped early or not rank 0)."""
    run = Run(cfg, resume=resume)
    try:
        return run.fit(until=until)
    finally:
        if run.dist.world > 1:
            torch.distributed.destroy_process_group()
