#!/usr/bin/env python3
"""Compare two photos and explain the answer by factor.

    python examples/explain.py before.jpg after.jpg
    python examples/explain.py a.jpg b.jpg --model permissive --width 30

Prints which photo is preferred, the probability that it is the better one, the utility delta
(b minus a), and each factor delta f(b) - f(a) as a text bar: bars right of the axis favour b, left
favour a. Factors explain a difference; they need not add up to the delta. Exit status: 0 done;
2 a photo cannot be read or the model is unusable.
"""

from __future__ import annotations

import argparse
import sys

import redaes_lite
from redaes_lite import Comparison, RedaesError


def bar(value: float, *, scale: float, width: int) -> str:
    """A bar of ``width`` cells each side of a ``|`` axis; ``scale`` is the value of a full bar."""
    cells = round(abs(value) / scale * width) if scale > 0 else 0
    left = ("#" * cells if value < 0 else "").rjust(width)
    right = ("#" * cells if value > 0 else "").ljust(width)
    return f"{left}|{right}"


def sentence(c: Comparison, *, top: int = 2) -> str:
    """One sentence naming the largest factor differences and which photo ("a" or "b") each favours."""
    head = f"{c.preferred} is preferred (p = {c.probability:.2f})"
    named = list(c.factors.items())[:top]  # already ordered by absolute size
    if not named:
        return f"{head}; the model reports no factors."
    parts = [f"{name} (favours {'b' if d > 0 else 'a'})" for name, d in named]
    return f"{head}; the largest factor differences are " + " and ".join(parts) + "."


def report(c: Comparison, a: str, b: str, *, width: int) -> str:
    name_width = max((len(n) for n in c.factors), default=6)
    scale = max((abs(d) for d in c.factors.values()), default=0.0)
    lines = [
        f"a: {a}",
        f"b: {b}",
        f"preferred: {c.preferred}  probability: {c.probability:.3f}  delta (b - a): {c.delta:+.3f}",
        "",
        f"{'factor':<{name_width}}  {'f(b)-f(a)':>9}  {'favours a'.rjust(width)}|favours b",
    ]
    lines += [
        f"{n:<{name_width}}  {d:+9.3f}  {bar(d, scale=scale, width=width)}".rstrip() for n, d in c.factors.items()
    ]
    lines += ["", sentence(c)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compare two photos and explain the answer by factor.")
    parser.add_argument("a", help="first photo")
    parser.add_argument("b", help="second photo (delta > 0: b is better)")
    parser.add_argument("--model", default="default", help="'default', 'permissive' or a model file (default: default)")
    parser.add_argument("--width", type=int, default=20, help="bar cells each side of the axis (default: 20)")
    args = parser.parse_args(argv)
    try:
        comparison = redaes_lite.load(args.model).compare(args.a, args.b)
    except RedaesError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report(comparison, args.a, args.b, width=max(args.width, 1)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
