"""Evaluation: agreement metrics (numpy only), data-set readers and the ``redaes-lite eval`` commands."""

from __future__ import annotations

from .metrics import (
    expected_calibration_error,
    krcc,
    pair_accuracy,
    plcc,
    plcc_logistic,
    score_metrics,
    srcc,
)

__all__ = [
    "expected_calibration_error",
    "krcc",
    "pair_accuracy",
    "plcc",
    "plcc_logistic",
    "score_metrics",
    "srcc",
]
