"""Evaluation plots, rendered headless (Agg) and written atomically.

Every function saves one figure to ``path`` through :func:`emorec.atomic.atomic_open` (a
temporary file in the same directory, then :func:`os.replace`), so a kill never leaves a
truncated PNG, and closes the figure afterwards. The image format follows the suffix of
``path`` (``.png`` by default).
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402

from emorec.atomic import atomic_open  # noqa: E402
from emorec.errors import BadInputError  # noqa: E402

__all__ = [
    "plot_confusion_matrix",
    "plot_fold_summary",
    "plot_history",
    "plot_reliability",
    "plot_robustness",
    "plot_roc_curves",
    "read_metrics_csv",
]


def _save(fig: Any, path: str | os.PathLike) -> Path:
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    try:
        with atomic_open(path, "wb") as handle:
            fig.savefig(handle, format=fmt, dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


# --------------------------------------------------------------------------- confusion matrix
def plot_confusion_matrix(
    cm: Any,
    class_names: Sequence[str],
    path: str | os.PathLike,
    normalize: bool = True,
    title: str | None = None,
) -> Path:
    """Heat map of ``cm`` (rows true, columns predicted), each cell annotated.

    With ``normalize`` the colour is the row-normalised share (recall for the diagonal) and a
    cell reads ``count`` over ``percent of its row``; without it, colour and text are counts.
    Rows of classes with no clips read ``0`` with no percentage.
    """
    cm = np.asarray(cm, dtype=np.float64)
    c = len(class_names)
    if cm.shape != (c, c):
        raise ValueError(f"confusion matrix shape {cm.shape} does not match {c} class names")
    row_sum = cm.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(row_sum > 0, cm / np.maximum(row_sum, 1), np.nan)
    colour = share if normalize else cm
    size = max(4.5, 0.75 * c + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    shown = np.nan_to_num(colour, nan=0.0)
    vmax = 1.0 if normalize else max(float(cm.max()), 1.0)
    image = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=vmax)
    fig.colorbar(
        image,
        ax=ax,
        fraction=0.046,
        pad=0.04,
        label="share of true class" if normalize else "clips",
    )
    fontsize = 9 if c <= 8 else 7
    for i in range(c):
        for j in range(c):
            count = int(round(cm[i, j]))
            text = str(count)
            if normalize and not math.isnan(share[i, j]):
                text += f"\n{100.0 * share[i, j]:.1f}%"
            dark = shown[i, j] > 0.5 * vmax
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=fontsize,
                color="white" if dark else "black",
            )
    ax.set_xticks(range(c), labels=list(class_names), rotation=45, ha="right")
    ax.set_yticks(range(c), labels=list(class_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(
        title or ("Confusion matrix (row-normalised)" if normalize else "Confusion matrix")
    )
    return _save(fig, path)


# --------------------------------------------------------------------------- ROC curves
def plot_roc_curves(
    roc: Mapping[str, Mapping[str, Any]], path: str | os.PathLike, title: str | None = None
) -> Path:
    """One-vs-rest ROC curve per class (``roc`` from :func:`classification_metrics`).

    Classes whose curve is undefined (no positives or no negatives) are listed in the legend
    as ``n/a`` without a curve.
    """
    fig, ax = plt.subplots(figsize=(6.5, 6.0))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
    colours = plt.get_cmap("tab10" if len(roc) <= 10 else "tab20")
    aucs = []
    for k, (name, curve) in enumerate(roc.items()):
        auc = curve.get("auc")
        if auc is None or not len(curve.get("fpr", [])):
            ax.plot([], [], color=colours(k % colours.N), label=f"{name} (AUC n/a)")
            continue
        aucs.append(auc)
        ax.plot(
            curve["fpr"],
            curve["tpr"],
            color=colours(k % colours.N),
            linewidth=1.5,
            label=f"{name} (AUC {auc:.3f})",
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    heading = title or "ROC curves (one-vs-rest)"
    if aucs:
        heading += f"\nmacro AUC {float(np.mean(aucs)):.3f}"
    ax.set_title(heading)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_reliability(
    curves: Mapping[str, Sequence[Mapping[str, Any]]],
    path: str | os.PathLike,
    title: str | None = None,
) -> Path:
    """Reliability diagram: accuracy against mean confidence per confidence bin, one line per
    ``curves`` entry (``{"before scaling (ECE 0.12)": reliability_bins(...), ...}``), with the
    share of clips in each bin as bars of the first curve. A calibrated model lies on the
    diagonal."""
    fig, ax = plt.subplots(figsize=(6.0, 6.0))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect calibration")
    first = next(iter(curves.values()), [])
    total = sum(b["count"] for b in first) or 1
    for b in first:
        ax.bar(
            (b["lower"] + b["upper"]) / 2,
            b["count"] / total,
            width=b["upper"] - b["lower"],
            color="lightgrey",
            edgecolor="white",
            zorder=0,
        )
    for k, (label, bins) in enumerate(curves.items()):
        used = [b for b in bins if b["count"]]
        ax.plot(
            [b["confidence"] for b in used],
            [b["accuracy"] for b in used],
            marker="o",
            linewidth=1.5,
            color=plt.get_cmap("tab10")(k),
            label=label,
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top-class probability)")
    ax.set_ylabel("accuracy (bars: share of clips)")
    ax.set_title(title or "reliability")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_robustness(
    result: Mapping[str, Any], path: str | os.PathLike, title: str | None = None
) -> Path:
    """Left: UA per recording condition with its 95 % CI and chance; right: the share of predictions
    each class takes under each condition (a cell above 40 % is outlined: a collapse onto that
    class)."""
    names = list(result["conditions"])
    classes = list(result["class_names"])
    scores = [result["conditions"][n] for n in names]
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(12.0, 0.45 * len(names) + 2.0), gridspec_kw={"width_ratios": [1.0, 1.3]}
    )
    ua = np.array([s["ua"] for s in scores]) * 100
    ci = [
        s["ci"]["ua"] if s.get("ci") and s["ci"].get("ua") else [s["ua"], s["ua"]] for s in scores
    ]
    err = np.array([[u - 100 * c[0], 100 * c[1] - u] for u, c in zip(ua, ci)]).T
    rows = np.arange(len(names))
    left.barh(rows, ua, xerr=err, color=["#4c72b0"] + ["#dd8452"] * (len(names) - 1), capsize=3)
    left.axvline(
        100 * result.get("chance_ua", 1 / max(1, len(classes))),
        color="grey",
        linestyle="--",
        label="chance",
    )
    for row, value, high in zip(rows, ua, err[1]):
        left.text(value + high + 1.5, row, f"{value:.1f}", va="center", fontsize=8)
    left.set_yticks(rows, names)
    left.invert_yaxis()
    left.set_xlim(0, 100)
    left.set_xlabel("UA % (95 % CI)")
    left.legend(loc="lower right", fontsize=8)
    share = np.array([[s["predicted_share"][c] for c in classes] for s in scores]) * 100
    right.imshow(share, cmap="Blues", vmin=0, vmax=100, aspect="auto")
    for (i, j), value in np.ndenumerate(share):
        right.text(
            j,
            i,
            f"{value:.0f}",
            ha="center",
            va="center",
            fontsize=8,
            color="white" if value > 55 else "black",
        )
        if value > 40:
            right.add_patch(
                plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2)
            )
    right.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    right.set_yticks(rows, [])
    right.set_title("predicted class share %", fontsize=10)
    part = "validation" if result.get("part") == "val" else "test"
    fig.suptitle(
        title
        or f"{result.get('source') or result.get('run', 'the run')}: recording conditions "
        f"({result.get('n_clips', '?')} {part} clips)"
    )
    return _save(fig, path)


# --------------------------------------------------------------------------- training history
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
    return _save(fig, path)


# --------------------------------------------------------------------------- folds
def plot_fold_summary(
    fold_table: Sequence[Mapping[str, Any]] | Mapping[str, Any],
    path: str | os.PathLike,
    metric: str = "ua",
    title: str | None = None,
) -> Path:
    """Bar chart of ``metric`` (UA by default) per fold with the mean as a line.

    ``fold_table`` is the ``folds`` list of :func:`summarise_folds` (or the summary itself).
    The shaded band is mean +- sample std when there are at least two folds.
    """
    rows = fold_table["folds"] if isinstance(fold_table, Mapping) else fold_table
    labels = [str(r.get("fold", i)) for i, r in enumerate(rows)]
    values = np.array([np.nan if r.get(metric) is None else float(r[metric]) for r in rows])
    fig, ax = plt.subplots(figsize=(max(5.0, 0.6 * len(rows) + 3.0), 4.5))
    x = np.arange(len(rows))
    bars = ax.bar(x, np.nan_to_num(values), color="tab:blue", alpha=0.8)
    for bar, v in zip(bars, values):
        if np.isfinite(v):
            ax.text(
                bar.get_x() + bar.get_width() / 2,
                v + 0.01,
                f"{100 * v:.1f}",
                ha="center",
                va="bottom",
                fontsize=8,
            )
    finite = values[np.isfinite(values)]
    if finite.size:
        mean = float(finite.mean())
        label = f"mean {100 * mean:.1f}%"
        if finite.size > 1:
            std = float(finite.std(ddof=1))
            ax.axhspan(mean - std, mean + std, color="tab:orange", alpha=0.15)
            label += f" ± {100 * std:.1f} (sample std)"
        ax.axhline(mean, color="tab:orange", linewidth=2, label=label)
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xticks(x, labels=labels, rotation=45 if len(rows) > 8 else 0)
    ax.set_xlabel("fold")
    ax.set_ylabel(metric.upper())
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title or f"{metric.upper()} per fold")
    return _save(fig, path)
