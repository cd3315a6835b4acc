"""Training throughput of student backbones: forward + backward + AdamW step, in pairs per second.

A pair is two images (a group of M = 2) scored by the student and trained with the ``relative`` and
``ranking`` losses, as in distillation. Pixels are random: this measures the network, not decoding.

    nice -n 10 python benchmarks/train_throughput.py --threads 2 [--channels-last] \
        timm:mobilevitv2_050 timm:vit_tiny_patch16_224 timm:tf_efficientnet_lite0

Steps are timed one by one and the median is reported: on a shared machine, look at the load too.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch


def measure(backbone: str, *, size: int, pairs: int, steps: int, warmup: int, channels_last: bool) -> dict[str, object]:
    """Median seconds per training step of ``pairs`` pairs at ``size`` px, and pairs/s from it."""
    from distill.losses import RankingLoss, RelativeLoss
    from distill.student import create_student

    student, _, _ = create_student(backbone, factors=["exposure"], img_size=size)
    student.train()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    student.to(memory_format=memory_format)
    opt = torch.optim.AdamW(student.parameters(), lr=1e-4)
    relative, ranking = RelativeLoss(), RankingLoss()
    gen = torch.Generator().manual_seed(0)
    pixels = torch.randn(2 * pairs, 3, size, size, generator=gen).contiguous(memory_format=memory_format)
    target = torch.randn(pairs, 2, generator=gen)
    times, cpu = [], []
    for step in range(warmup + steps):
        start, start_cpu = time.perf_counter(), time.process_time()
        utility, _ = student(pixels)
        pred = utility.view(pairs, 2)
        loss = relative(pred, target)["loss"] + ranking(pred, target)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step >= warmup:
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    median = sorted(times)[len(times) // 2]
    # The machine's load while measuring: other processes' share of the cores skews the result.
    return {
        "backbone": backbone,
        "size": size,
        "pairs_per_step": pairs,
        "params": student.info()["params"],
        "step_s": round(median, 3),
        "pairs_per_s": round(pairs / median, 2),
        # CPU seconds per pair, all threads: less sensitive to other processes than wall time.
        "cpu_s_per_pair": round(sorted(cpu)[len(cpu) // 2] / pairs, 3),
        "threads": torch.get_num_threads(),
        "channels_last": channels_last,
        "load_1m": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backbones", nargs="+", help="backbone strings, e.g. timm:mobilevitv2_050")
    parser.add_argument("--size", type=int, default=224, help="input side in pixels")
    parser.add_argument("--pairs", type=int, default=16, help="pairs per step (2x images)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--channels-last", action="store_true", help="NHWC tensors (much faster for CNNs on CPU)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for backbone in args.backbones:
        result = measure(
            backbone,
            size=args.size,
            pairs=args.pairs,
            steps=args.steps,
            warmup=args.warmup,
            channels_last=args.channels_last,
        )
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
