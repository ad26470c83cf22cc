"""The training history of a fold: its ``metrics.csv`` read as per-epoch series and drawn as
loss and score curves, with the kept epoch marked."""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from emorec.evaluation.plots import save_figure  # first: it selects the headless Agg backend

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402

from emorec.errors import BadInputError  # noqa: E402

__all__ = ["plot_history", "read_metrics_csv"]


def read_metrics_csv(path: str | os.PathLike) -> dict[str, list[float]]:
    """Per-epoch series from a run's ``metrics.csv``, epochs numbered from 1.

    ``metrics.csv`` holds one row per epoch. A run written before that holds Lightning's raw
    ``CSVLogger`` rows (a ``step`` column; train and validation metrics of one epoch on separate
    rows, epochs from 0, the learning rate on a row with no epoch at the start of an epoch):
    those are merged into one row per epoch by :func:`emorec.runs.epochs.epoch_table`.
    Returns ``{"epoch": [...], column: [...]}`` with NaN where an epoch has no value; columns
    with no value at all and ``step`` are dropped.
    """
    from emorec.runs.epochs import epoch_columns, read_epoch_table

    path = Path(path)
    if not path.is_file():
        raise BadInputError(path, "metrics CSV not found")
    with path.open(newline="", encoding="utf-8") as handle:
        fields = csv.DictReader(handle).fieldnames
    if not fields or "epoch" not in fields:
        raise BadInputError(path, "not a metrics.csv (no 'epoch' column)")
    table = read_epoch_table(path)
    history: dict[str, list[float]] = {"epoch": [float(r["epoch"]) for r in table]}
    for name in epoch_columns(table)[1:]:
        history[name] = [float(r.get(name, math.nan)) for r in table]
    return history


_TOKEN = re.compile(r"[/_\-.\s]+")
_SCORE_TOKENS = {"acc", "accuracy", "ua", "uar", "wa", "f1", "recall", "bacc", "balanced"}


def _kind(name: str) -> str | None:
    tokens = [t for t in _TOKEN.split(name.lower()) if t]
    if any("loss" in t for t in tokens):
        return "loss"
    if any(t in _SCORE_TOKENS for t in tokens):
        return "score"
    return None


def plot_history(
    history: Mapping[str, Sequence[float]] | str | os.PathLike,
    path: str | os.PathLike,
    title: str | None = None,
    kept: Mapping[str, Any] | None = None,
) -> Path:
    """Loss curves (left) and accuracy/UA/F1 curves (right) per epoch (numbered from 1).

    ``history`` is ``{metric: values per epoch}`` (an optional ``"epoch"`` entry gives the
    x values, else epochs 1, 2, ...) or the path of a run's ``metrics.csv`` (see
    :func:`read_metrics_csv`). Columns are put in a panel by name: anything with ``loss`` on
    the left; ``acc``, ``ua``, ``uar``, ``wa``, ``f1``, ``recall`` on the right; others
    (``lr-Adam``) are not drawn. ``kept`` (``epoch``, and optionally ``monitor``, ``score`` and
    ``label``) marks the kept model: a vertical line at its epoch in both panels and, in the
    monitor's panel, its own validation score, which differs from the curve when its weights
    were changed after that epoch was logged (BatchNorm statistics recomputed).
    """
    if isinstance(history, (str, os.PathLike)):
        history = read_metrics_csv(history)
    epochs = history.get("epoch")
    fig, (ax_loss, ax_score) = plt.subplots(1, 2, figsize=(12, 4.5))
    drawn = {"loss": 0, "score": 0}
    for name, values in history.items():
        if name in ("epoch", "step"):
            continue
        kind = _kind(name)
        if kind is None:
            continue
        y = np.asarray(values, dtype=np.float64).ravel()
        if y.size == 0:
            continue
        if epochs is not None and len(epochs) == y.size:
            x = np.asarray(epochs, dtype=np.float64)
        else:
            x = np.arange(1, y.size + 1, dtype=np.float64)
        ok = np.isfinite(y)
        if not ok.any():
            continue
        ax = ax_loss if kind == "loss" else ax_score
        style = "--" if name.lower().startswith(("train", "trn")) else "-"
        ax.plot(
            x[ok], y[ok], style, marker="o" if ok.sum() < 30 else None, markersize=3, label=name
        )
        drawn[kind] += 1
    if kept and kept.get("epoch") is not None:
        label = str(kept.get("label") or f"kept: epoch {kept['epoch']}")
        for ax in (ax_loss, ax_score):
            ax.axvline(
                float(kept["epoch"]),
                color="black",
                linestyle=":",
                linewidth=1.2,
                label=label if ax is ax_score else None,
            )
        score, monitor = kept.get("score"), str(kept.get("monitor") or "")
        if score is not None and np.isfinite(float(score)) and _kind(monitor):
            ax = ax_loss if _kind(monitor) == "loss" else ax_score
            ax.plot(
                [float(kept["epoch"])],
                [float(score)],
                marker="*",
                markersize=12,
                color="black",
                linestyle="none",
                label=f"kept model: {monitor} {float(score):.3f}",
            )
            drawn[_kind(monitor)] += 1
        drawn["score"] += 1
    for ax, kind, label in ((ax_loss, "loss", "loss"), (ax_score, "score", "score")):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if drawn[kind]:
            ax.legend(fontsize=8)
        else:
            ax.text(
                0.5,
                0.5,
                f"no {label} columns",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="grey",
            )
    ax_loss.set_title("Loss")
    ax_score.set_title("Accuracy / UA")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


# --------------------------------------------------------------------------- folds
