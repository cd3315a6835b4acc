"""Pieces of a training run that are not the loop: processes and device, optimizer and schedule, losses,
the student, the git commit, Ctrl-C handling and the progress bar (``distill.trainer`` uses them)."""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from distill.config import ConfigError, TrainConfig

__all__ = [
    "Dist",
    "Progress",
    "StopFlag",
    "build_losses",
    "git_commit",
    "lr_factor",
    "make_optimizer",
    "pick_device",
    "student_from_config",
]


@dataclass
class Dist:
    """torchrun's environment, or a single process."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Dist:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        import torch.distributed as td

        td.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        return cls(td.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0")))

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def pick_device(name: str, dist: Dist) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and dist.world > 1:
        name = f"cuda:{dist.local_rank}"
    device = torch.device(name)
    if device.type == "cuda":
        if device.index is None:  # torch 2.11's set_device wants an index
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
        # Input shapes are fixed within a stage: let cuDNN pick the fastest convolution once per shape.
        torch.backends.cudnn.benchmark = True
    return device


def lr_factor(step: int, *, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine from 1 to ``min_ratio`` at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(model: torch.nn.Module, losses: torch.nn.ModuleDict, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases, norms and loss parameters (the learned temperature);
    ``backbone_lr`` for the (pretrained) trunk when set."""
    o = cfg.optim
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault((name.startswith("trunk."), p.ndim > 1), []).append(p)
    params = [
        {
            "params": ps,
            "weight_decay": o.weight_decay if decay else 0.0,
            "lr": o.backbone_lr if trunk and o.backbone_lr is not None else o.lr,
        }
        for (trunk, decay), ps in sorted(groups.items())
    ]
    if any(True for _ in losses.parameters()):
        params.append({"params": list(losses.parameters()), "weight_decay": 0.0, "lr": o.lr})
    return torch.optim.AdamW(params, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)


def build_losses(cfg: TrainConfig) -> torch.nn.ModuleDict:
    """Every loss any stage uses, built once (a learned temperature lives on across stages)."""
    from distill.losses import LOSSES

    options: dict[str, dict[str, Any]] = {}
    for stage in [None, *cfg.stages]:
        for name, lcfg in cfg.stage_config(stage)[1].items():
            if options.setdefault(name, lcfg.options) != lcfg.options:
                raise ConfigError(f"loss {name!r}: options may not change between stages (weights may)")
    try:
        return torch.nn.ModuleDict({name: LOSSES.get(name)(**opts) for name, opts in options.items()})
    except KeyError as e:
        raise ConfigError(str(e).strip("\"'")) from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"losses: {e}") from None


def student_from_config(cfg: TrainConfig) -> tuple[torch.nn.Module, Any, Any]:
    """A new student, its train and eval transforms, as ``cfg.student`` and ``cfg.factors`` describe it."""
    from distill.student import create_student

    s = cfg.student
    return create_student(
        s.backbone,
        factors=cfg.factors,
        pretrained=s.pretrained,
        img_size=list(s.input_size),
        resize=s.resize,
        interpolation=s.interpolation,
        **s.overrides,
    )


def git_commit() -> str:
    """HEAD of the repository holding this file, ``+dirty`` when distill/ or redaes_lite/ differ from it
    (``$REDAES_GIT_COMMIT`` where set)."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    if os.environ.get("REDAES_GIT_COMMIT"):
        # A copied working tree (a lent GPU machine) may carry a stale .git: the launcher knows better.
        return os.environ["REDAES_GIT_COMMIT"]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        diff = ["git", "diff", "--quiet", "HEAD", "--", "distill", "redaes_lite"]
        dirty = subprocess.run(diff, cwd=root, check=False).returncode
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty else "")


class StopFlag:
    """First Ctrl-C asks the loop to stop after the current step; a second one aborts."""

    def __init__(self) -> None:
        self.stop = False
        self._old: Any = None

    def __enter__(self) -> StopFlag:
        self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.stop:
            raise KeyboardInterrupt
        self.stop = True
        print("\nstopping after this step (Ctrl-C again to abort)", file=sys.stderr, flush=True)

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._old)


class Progress:
    """A one-line progress bar on stderr, only when stderr is a terminal (logs stay clean)."""

    def __init__(self, total: int, *, start: int, enabled: bool) -> None:
        self.total, self.start, self.enabled, self.t0 = total, start, enabled, time.perf_counter()

    def update(self, step: int, loss: float) -> None:
        if self.enabled:
            rate = (step - self.start) / max(time.perf_counter() - self.t0, 1e-9)
            sys.stderr.write(f"\rstep {step}/{self.total}  loss {loss:.4f}  {rate:.2f} it/s ")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
