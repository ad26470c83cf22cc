"""Evaluation plots, rendered headless (Agg) and written atomically.

Every function saves one figure to ``path`` through :func:`emorec.atomic.atomic_open` (a
temporary file in the same directory, then :func:`os.replace`), so a kill never leaves a
truncated PNG, and closes the figure afterwards. The image format follows the suffix of
``path`` (``.png`` by default).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from emorec.atomic import atomic_open  # noqa: E402

__all__ = [
    "plot_confusion_matrix",
    "plot_fold_summary",
    "plot_reliability",
    "plot_robustness",
    "plot_roc_curves",
]


def save_figure(fig: Any, path: str | os.PathLike) -> Path:
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
    return save_figure(fig, path)


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
    return save_figure(fig, path)


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
    return save_figure(fig, path)


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
    return save_figure(fig, path)


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
    return save_figure(fig, path)
