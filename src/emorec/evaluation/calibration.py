"""Calibrated probabilities: temperature scaling (Guo et al. 2017) and expected calibration error.

One scalar ``T`` divides the logits before the softmax; it is fitted by minimising the negative
log-likelihood on the validation speakers' clips (never the test clips) when a fold's model is
exported, stored in ``model.json`` (``calibration.temperature``) and applied by every
prediction. Dividing by ``T`` keeps each clip's ranking of classes, so accuracy and UA do not
change; the probabilities do. Numbers only (NumPy/SciPy): training imports it too.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "BINS",
    "ece_of_bins",
    "expected_calibration_error",
    "fit_temperature",
    "reliability_bins",
    "softmax",
    "uncalibrated",
]

BINS = 15  # equal-width confidence bins, the usual choice for ECE
T_RANGE = (0.05, 20.0)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(log_norm - z[np.arange(len(labels)), labels]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The ``T`` in :data:`T_RANGE` minimising the mean NLL of ``softmax(logits / T)``.

    ``logits : (N, C)``, ``labels : (N,)`` (integers; ``-1`` rows are ignored). The NLL is convex
    in ``1 / T``, so a bounded search over ``log T`` finds the optimum. Returns 1.0 (no scaling)
    when fewer than two labelled clips are given.
    """
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    keep = labels >= 0
    logits, labels = logits[keep], labels[keep]
    if len(labels) < 2 or not np.isfinite(logits).all():
        return 1.0
    low, high = np.log(T_RANGE[0]), np.log(T_RANGE[1])
    found = minimize_scalar(
        lambda log_t: _nll(logits, labels, float(np.exp(log_t))),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(found.x))


def uncalibrated(probs: np.ndarray, temperature: float) -> np.ndarray:
    """The probabilities before scaling, from calibrated ``probs = softmax(z / T)``: ``softmax(T log
    p)`` (exact: ``T log p = z + const`` per row)."""
    with np.errstate(divide="ignore"):
        return softmax(temperature * np.log(np.asarray(probs, dtype=np.float64)))


def reliability_bins(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> list[dict]:
    """Per equal-width bin of top-label confidence: ``lower, upper, count, confidence,
    accuracy``."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    # (lower, upper] bins
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    for b in range(bins):
        inside = which == b
        n = int(inside.sum())
        rows.append(
            {
                "lower": float(edges[b]),
                "upper": float(edges[b + 1]),
                "count": n,
                "confidence": float(confidence[inside].mean()) if n else None,
                "accuracy": float(correct[inside].mean()) if n else None,
            }
        )
    return rows


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float:
    """``sum_b n_b / N * |accuracy_b - confidence_b|`` over :func:`reliability_bins`."""
    return ece_of_bins(reliability_bins(probs, labels, bins))


def ece_of_bins(rows: list[dict]) -> float:
    """The expected calibration error of rows from :func:`reliability_bins`."""
    total = sum(r["count"] for r in rows)
    if total == 0:
        return float("nan")
    return float(
        sum(r["count"] / total * abs(r["accuracy"] - r["confidence"]) for r in rows if r["count"])
    )
