"""Classification metrics for emotion recognition, with bootstrap confidence intervals.

Definitions (every number is a plain Python value, so the result is JSON-able):

* ``wa`` -- weighted accuracy: the fraction of clips whose arg-max class is the true class.
* ``ua`` -- unweighted average recall (a.k.a. UAR, balanced accuracy): the mean of the
  per-class recalls over the classes **present in** ``y_true``. A class with no test clips has
  no recall, so it is left out of the average rather than counted as 0 (this matches
  :func:`sklearn.metrics.balanced_accuracy_score`). ``ua_classes`` lists the classes averaged.
* ``macro_f1`` -- the mean F1 over the same present classes. A present class that is never
  predicted has precision 0 by convention (scikit-learn's ``zero_division=0``), hence F1 0.
* ``per_class[name]`` -- ``precision``, ``recall``, ``f1``, ``support``, ``auc``. For a class
  absent from ``y_true``: ``recall`` and ``f1`` are ``None``; ``precision`` is 0.0 when the
  model predicted it (every such prediction is wrong) and ``None`` when it did not.
* ``confusion_matrix`` -- ``C x C`` counts, rows = true class, columns = predicted class.
* ``roc[name]`` -- one-vs-rest ROC curve of ``probs[:, c]`` (``fpr``, ``tpr``, ``auc``). When a
  class has no positives or no negatives in ``y_true`` the curve is undefined: ``fpr`` and
  ``tpr`` are empty lists and ``auc`` is ``None``. ``macro_auc`` is the mean over the classes
  whose AUC is defined (``None`` if there is none).
* ``ci[metric]`` -- ``[low, high]`` percentile bootstrap interval for ``wa``, ``ua`` and
  ``macro_f1``: clips are resampled with replacement ``bootstrap`` times (seeded); within a
  resample UA and macro-F1 average over the classes present in that resample. ``None`` when
  ``bootstrap == 0``. Resampling clips treats them as independent; clips of one speaker are
  not, so the interval is optimistic -- the spread over speaker folds
  (:func:`summarise_folds`) is the more honest error bar.

``probs`` may be probabilities or any scores (logits): only the arg-max and the ranking
within each column are used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

#: Metrics that get a bootstrap interval and a cross-fold mean/std.
HEADLINE = ("wa", "ua", "macro_f1")

# Elements (resamples x clips) processed per bootstrap chunk; bounds memory to ~100 MB.
_CHUNK_ELEMENTS = 4_000_000


def _validate(y_true: Any, probs: Any, class_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    p = np.asarray(probs, dtype=np.float64)
    if y.ndim != 1:
        raise ValueError(f"y_true must be 1-D, got shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError("y_true must hold integer class indices")
    y = y.astype(np.int64)
    c = len(class_names)
    if p.ndim != 2 or p.shape != (y.size, c):
        raise ValueError(f"probs must have shape (N, C) = ({y.size}, {c}), got {p.shape}")
    if y.size == 0:
        raise ValueError("no clips to evaluate (y_true is empty)")
    if c < 2:
        raise ValueError("need at least 2 classes")
    if y.min() < 0 or y.max() >= c:
        raise ValueError(f"y_true holds class indices outside 0..{c - 1}")
    if not np.all(np.isfinite(p)):
        raise ValueError("probs holds NaN or infinite values")
    return y, p


def _confusion(y: np.ndarray, pred: np.ndarray, c: int) -> np.ndarray:
    return np.bincount(y * c + pred, minlength=c * c).reshape(c, c)


def _summary_from_counts(
    tp: np.ndarray, support: np.ndarray, predicted: np.ndarray, n: np.ndarray | int
) -> dict[str, np.ndarray]:
    """WA, UA and macro-F1 from per-class counts; works on ``(C,)`` or batched ``(B, C)``."""
    present = support > 0
    n_present = present.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(present, tp / np.maximum(support, 1), 0.0)
        # F1 = 2TP / (2TP + FP + FN) = 2TP / (support + predicted); > 0 denominator when present.
        f1 = np.where(present, 2.0 * tp / np.maximum(support + predicted, 1), 0.0)
    return {
        "wa": tp.sum(axis=-1) / n,
        "ua": recall.sum(axis=-1) / n_present,
        "macro_f1": f1.sum(axis=-1) / n_present,
    }


def bootstrap_ci(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    n_classes: int,
    *,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, list[float]]:
    """Percentile bootstrap intervals of WA, UA and macro-F1, resampling clips (vectorised)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    y = np.asarray(y_true, dtype=np.int64)
    pred = np.asarray(y_pred, dtype=np.int64)
    n, c = y.size, n_classes
    rng = np.random.default_rng(seed)
    correct = (y == pred).astype(np.float64)
    values = {name: np.empty(resamples) for name in HEADLINE}
    chunk = max(1, _CHUNK_ELEMENTS // max(n, 1))
    for start in range(0, resamples, chunk):
        b = min(chunk, resamples - start)
        idx = rng.integers(0, n, size=(b, n))
        offset = (np.arange(b, dtype=np.int64) * c)[:, None]
        yt = (y[idx] + offset).ravel()
        yp = (pred[idx] + offset).ravel()
        support = np.bincount(yt, minlength=b * c).reshape(b, c)
        predicted = np.bincount(yp, minlength=b * c).reshape(b, c)
        tp = np.bincount(yt, weights=correct[idx].ravel(), minlength=b * c).reshape(b, c)
        for name, vals in _summary_from_counts(tp, support, predicted, n).items():
            values[name][start : start + b] = vals
    alpha = (1.0 - confidence) / 2.0
    return {
        name: [float(v) for v in np.quantile(vals, [alpha, 1.0 - alpha])]
        for name, vals in values.items()
    }


def _roc(y: np.ndarray, p: np.ndarray, class_names: Sequence[str]) -> dict[str, dict[str, Any]]:
    roc: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(class_names):
        positives = y == k
        if positives.all() or not positives.any():
            roc[name] = {"fpr": [], "tpr": [], "auc": None}
            continue
        fpr, tpr, _ = roc_curve(positives, p[:, k])
        roc[name] = {
            "fpr": [float(v) for v in fpr],
            "tpr": [float(v) for v in tpr],
            "auc": float(roc_auc_score(positives, p[:, k])),
        }
    return roc


def classification_metrics(
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    *,
    bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """All headline and per-class metrics for ``y_true`` (N,) and ``probs`` (N, C).

    See the module docstring for the exact definitions (UA and macro-F1 average over the
    classes present in ``y_true``).
    """
    class_names = [str(name) for name in class_names]
    if len(set(class_names)) != len(class_names):
        raise ValueError(f"duplicate class names: {class_names}")
    y, p = _validate(y_true, probs, class_names)
    c = len(class_names)
    pred = p.argmax(axis=1)
    cm = _confusion(y, pred, c)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    headline = _summary_from_counts(tp, support, predicted, y.size)
    roc = _roc(y, p, class_names)

    per_class: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(class_names):
        if support[k] > 0:
            precision = tp[k] / predicted[k] if predicted[k] > 0 else 0.0
            recall = tp[k] / support[k]
            f1 = 2 * tp[k] / (support[k] + predicted[k])
        else:
            precision = 0.0 if predicted[k] > 0 else None
            recall = f1 = None
        per_class[name] = {
            "precision": None if precision is None else float(precision),
            "recall": None if recall is None else float(recall),
            "f1": None if f1 is None else float(f1),
            "support": int(support[k]),
            "predicted": int(predicted[k]),
            "auc": roc[name]["auc"],
        }
    aucs = [r["auc"] for r in roc.values() if r["auc"] is not None]

    if bootstrap and bootstrap > 0:
        ci: dict[str, list[float] | None] = dict(
            bootstrap_ci(y, pred, c, resamples=int(bootstrap), seed=seed, confidence=confidence)
        )
    else:
        ci = {name: None for name in HEADLINE}

    return {
        "n": int(y.size),
        "class_names": class_names,
        "wa": float(headline["wa"]),
        "ua": float(headline["ua"]),
        "macro_f1": float(headline["macro_f1"]),
        "macro_auc": float(np.mean(aucs)) if aucs else None,
        "ua_classes": [name for k, name in enumerate(class_names) if support[k] > 0],
        "per_class": per_class,
        "confusion_matrix": cm.astype(int).tolist(),
        "roc": roc,
        "ci": ci,
        "bootstrap": {
            "resamples": int(bootstrap or 0),
            "confidence": float(confidence),
            "seed": int(seed),
            "method": "percentile bootstrap over clips (resampled with replacement)",
        },
    }


def _fold_metrics(entry: Mapping[str, Any]) -> Mapping[str, Any]:
    """The metrics of one fold: the entry itself, or ``entry["metrics"]`` when nested."""
    return entry["metrics"] if isinstance(entry.get("metrics"), Mapping) else entry


def _fold_label(entry: Mapping[str, Any], index: int) -> str:
    if entry.get("fold") not in (None, ""):
        return str(entry["fold"])
    split = entry.get("split") or {}
    for key in ("fold", "name"):
        if split.get(key) not in (None, ""):
            return str(split[key])
    return str(index + 1)


def summarise_folds(fold_metrics: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation of WA, UA, macro-F1 (and macro-AUC) over folds.

    Each entry is a :func:`classification_metrics` dict or a report dict from
    :func:`emorec.evaluation.report.write_report` (flat metrics plus ``fold`` and ``split``).

    Returns ``n_folds``, ``n_clips``, ``mean``, ``std``, ``min``, ``max`` (each
    ``{wa, ua, macro_f1, macro_auc}``) and ``folds``, the per-fold table. ``std`` is the
    **sample** standard deviation (``ddof=1``) when at least two folds have the metric and
    ``None`` for a single fold (undefined). ``macro_auc`` is summarised over the folds where it
    is defined. A ``folds`` row holds ``fold`` (the report's fold/split name, else the 1-based
    position), ``n``, ``wa``, ``ua``, ``macro_f1``, ``macro_auc`` and, when the report's split
    info has them, ``test_speakers`` and ``speaker_independent``.
    """
    if not fold_metrics:
        raise ValueError("no folds to summarise")
    rows: list[dict[str, Any]] = []
    for i, entry in enumerate(fold_metrics):
        m = _fold_metrics(entry)
        row: dict[str, Any] = {"fold": _fold_label(entry, i), "n": int(m["n"])}
        for key in (*HEADLINE, "macro_auc"):
            value = m.get(key)
            row[key] = None if value is None else float(value)
        split = entry.get("split") or {}
        if split.get("test_speakers") is not None:
            row["test_speakers"] = [str(s) for s in split["test_speakers"]]
        if "speaker_independent" in split:
            row["speaker_independent"] = split["speaker_independent"]
        rows.append(row)

    summary: dict[str, Any] = {
        "n_folds": len(rows),
        "n_clips": int(sum(r["n"] for r in rows)),
        "mean": {},
        "std": {},
        "min": {},
        "max": {},
        "std_note": "sample standard deviation over folds (ddof=1); None for a single fold",
    }
    for key in (*HEADLINE, "macro_auc"):
        vals = np.array([r[key] for r in rows if r[key] is not None], dtype=np.float64)
        empty = vals.size == 0
        summary["mean"][key] = None if empty else float(vals.mean())
        summary["std"][key] = float(np.std(vals, ddof=1)) if vals.size > 1 else None
        summary["min"][key] = None if empty else float(vals.min())
        summary["max"][key] = None if empty else float(vals.max())
    summary["folds"] = rows
    return summary


def age_group(age: int) -> str:
    """A speaker's age in decades ("20-29"), or "" when it is unknown (0)."""
    return f"{10 * (age // 10)}-{10 * (age // 10) + 9}" if age > 0 else ""


def breakdown(
    y_true: Any, probs: Any, class_names: Sequence[str], groups: Mapping[str, Sequence[str]]
) -> dict[str, dict[str, dict[str, Any]]]:
    """UA and WA of each group of clips: ``{kind: {value: {"n", "ua", "wa"}}}`` for each kind of
    ``groups`` (``{"gender": [one value per clip], ...}``) that has at least two known values
    (``""`` is unknown), so a model that fails one group of speakers shows it."""
    y = np.asarray(y_true)
    p = np.asarray(probs, dtype=np.float64)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for kind, values in groups.items():
        values = np.asarray([str(v) for v in values], dtype=object)
        if len(values) != len(y):
            raise ValueError(f"breakdown {kind!r}: {len(values)} values for {len(y)} clips")
        known = sorted({v for v in values if v})
        if len(known) < 2:
            continue
        out[kind] = {}
        for value in known:
            inside = values == value
            m = classification_metrics(y[inside], p[inside], class_names, bootstrap=0)
            out[kind][value] = {"n": int(inside.sum()), "ua": m["ua"], "wa": m["wa"]}
    return out


def fmt_pct(value: float | None, digits: int = 1) -> str:
    """``0.7134 -> '71.3'``; ``None``/NaN -> ``'n/a'``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100.0 * value:.{digits}f}"
