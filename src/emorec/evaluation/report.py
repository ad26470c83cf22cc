"""Evaluation reports: ``report.json``, ``report.md``, ``predictions.csv`` and plots.

:func:`write_report` evaluates one test set (one fold); :func:`write_cv_summary` combines the
reports of several folds. All files are written atomically with :mod:`emorec.atomic`.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emorec.version import __version__
from emorec.atomic import atomic_open, write_json, write_text
from emorec.evaluation.calibration import BINS, ece_of_bins, reliability_bins, uncalibrated
from emorec.evaluation.metrics import (
    breakdown,
    classification_metrics,
    summarise_folds,
)
from emorec.evaluation.history_plot import plot_history
from emorec.evaluation.report_markdown import report_markdown, summary_markdown
from emorec.evaluation.plots import (
    plot_confusion_matrix,
    plot_fold_summary,
    plot_reliability,
    plot_roc_curves,
)


def _split_info(split: Any) -> dict[str, Any] | None:
    """A JSON-able copy of the split description, always with a ``speaker_independent`` key."""
    if split is None:
        return None
    if dataclasses.is_dataclass(split) and not isinstance(split, type):
        split = dataclasses.asdict(split)
    elif hasattr(split, "to_dict"):
        split = split.to_dict()
    info = {str(k): _plain(v) for k, v in dict(split).items()}
    info.setdefault("speaker_independent", None)
    return info


def _plain(value: Any) -> Any:
    """Sets -> sorted lists, tuples -> lists, recursively (so the split is JSON-able)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted((_plain(v) for v in value), key=str)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _write_predictions(
    path: Path,
    clip_ids: Sequence[str],
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
) -> None:
    pred = probs.argmax(axis=1)
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["clip_id", "true", "predicted", *(f"prob_{n}" for n in class_names)])
        for cid, t, p, row in zip(clip_ids, y_true, pred, probs):
            writer.writerow(
                [cid, class_names[int(t)], class_names[int(p)], *(f"{float(v):.6g}" for v in row)]
            )


def write_report(
    out_dir: str | os.PathLike,
    *,
    y_true: Any,
    probs: Any,
    class_names: Sequence[str],
    clip_ids: Sequence[str],
    title: str,
    split: Mapping[str, Any] | None = None,
    history_csv: str | os.PathLike | Mapping[str, Sequence[float]] | None = None,
    extra: Mapping[str, Any] | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    kept: Mapping[str, Any] | None = None,
    temperature: float | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """Evaluate one test set and write the report files into ``out_dir``.

    Writes ``report.json``: every key of :func:`classification_metrics` at the top level
    (``wa``, ``ua``, ``macro_f1``, ``ci``, ``per_class``, ...) plus ``title``, ``fold`` (the
    split's ``fold`` or ``name``, else ``None``), ``created``, ``emorec_version``, ``split`` (a
    JSON-able copy of the split -- a dict, a dataclass or an object with ``to_dict`` -- always
    with ``speaker_independent``, ``None`` when not stated), ``extra`` and ``files``;
    ``report.md``, ``predictions.csv`` (``clip_id, true, predicted, prob_<class>...``),
    ``confusion_matrix.png``, ``roc_curves.png`` and, when ``history_csv`` (a run's
    ``metrics.csv`` or a ``{metric: values}`` dict) is given, ``history.png``. ``kept``
    describes the evaluated model (``summary``: how its weights were made and its validation
    score, in words; ``epoch``, ``monitor``, ``score``): report.json's ``kept``, a section of
    report.md and the kept epoch marked on ``history.png``.
    ``temperature``: the scaling the probabilities were calibrated with (fitted on validation
    clips); report.json's ``calibration`` then gives the expected calibration error (15 bins)
    before and after it, and ``reliability.png`` shows both. ``groups`` (``{"gender": [one value per
    clip], ...}``) gives report.json's ``breakdown``: UA and WA per group (:func:`breakdown`).
    Returns the dict stored in ``report.json``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    class_names = [str(n) for n in class_names]
    y = np.asarray(y_true)
    p = np.asarray(probs, dtype=np.float64)
    clip_ids = [str(c) for c in clip_ids]
    metrics = classification_metrics(y, p, class_names, bootstrap=bootstrap, seed=seed)
    if len(clip_ids) != metrics["n"]:
        raise ValueError(f"{len(clip_ids)} clip ids for {metrics['n']} predictions")

    files = {
        "json": "report.json",
        "markdown": "report.md",
        "predictions": "predictions.csv",
        "confusion_matrix": "confusion_matrix.png",
        "roc_curves": "roc_curves.png",
    }
    _write_predictions(out / files["predictions"], clip_ids, y.astype(np.int64), p, class_names)
    plot_confusion_matrix(
        metrics["confusion_matrix"],
        class_names,
        out / files["confusion_matrix"],
        title=f"{title}\nconfusion matrix (row-normalised)",
    )
    plot_roc_curves(metrics["roc"], out / files["roc_curves"], title=f"{title}\nROC (one-vs-rest)")
    if history_csv is not None:
        files["history"] = "history.png"
        plot_history(history_csv, out / files["history"], title=title, kept=kept)
    calibration = None
    if metrics["n"]:
        t = 1.0 if temperature is None else float(temperature)
        labelled = y >= 0
        before_bins = reliability_bins(uncalibrated(p[labelled], t), y[labelled])
        after_bins = reliability_bins(p[labelled], y[labelled])
        calibration = {
            "temperature": t,
            "fitted_on": "validation clips" if temperature is not None else None,
            "bins": BINS,
            "ece_before": ece_of_bins(before_bins),
            "ece_after": ece_of_bins(after_bins),
            "reliability_before": before_bins,
            "reliability_after": after_bins,
        }
        curves = {f"after scaling, T = {t:.2f} (ECE {calibration['ece_after']:.3f})": after_bins}
        if temperature is not None:
            curves = {
                f"before scaling (ECE {calibration['ece_before']:.3f})": before_bins,
                **curves,
            }
        files["reliability"] = "reliability.png"
        plot_reliability(
            curves, out / files["reliability"], title=f"{title}\nreliability (15 bins)"
        )

    split_info = _split_info(split)
    fold = None
    if split_info:
        fold = next(
            (str(split_info[k]) for k in ("fold", "name") if split_info.get(k) not in (None, "")),
            None,
        )
    report: dict[str, Any] = {
        "title": title,
        "fold": fold,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "emorec_version": __version__,
        "split": split_info,
        **metrics,
        "kept": dict(kept) if kept else None,
        "calibration": calibration,
        "breakdown": breakdown(y, p, class_names, groups) if groups and metrics["n"] else {},
        "extra": dict(extra) if extra else {},
        "files": files,
    }
    if history_csv is not None and isinstance(history_csv, (str, os.PathLike)):
        report["history_csv"] = str(history_csv)
    write_text(out / files["markdown"], report_markdown(report))
    write_json(out / files["json"], report)
    return report


def write_cv_summary(
    out_dir: str | os.PathLike,
    fold_reports: Sequence[Mapping[str, Any]],
    *,
    title: str,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Combine per-fold reports (from :func:`write_report`) into ``summary.json``,
    ``summary.md`` and ``folds_ua.png``; returns the summary dict.

    ``speaker_independent`` is ``False`` if any fold's split says so, ``True`` if every fold's
    says so, ``None`` otherwise.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise_folds(fold_reports)
    flags = [(r.get("split") or {}).get("speaker_independent") for r in fold_reports]
    if any(f is False for f in flags):
        independent: bool | None = False
    elif flags and all(f is True for f in flags):
        independent = True
    else:
        independent = None
    summary = {
        "title": title,
        "speaker_independent": independent,
        **summary,
        "extra": dict(extra) if extra else {},
        "files": {"json": "summary.json", "markdown": "summary.md", "folds_ua": "folds_ua.png"},
    }
    plot_fold_summary(summary["folds"], out / "folds_ua.png", title=f"{title}\nUA per fold")
    write_text(out / "summary.md", summary_markdown(summary))
    write_json(out / "summary.json", summary)
    return summary
