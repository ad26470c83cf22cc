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
    HEADLINE,
    breakdown,
    classification_metrics,
    fmt_pct,
    summarise_folds,
)
from emorec.evaluation.history_plot import plot_history
from emorec.evaluation.plots import (
    plot_confusion_matrix,
    plot_fold_summary,
    plot_reliability,
    plot_roc_curves,
)

SPEAKER_DEPENDENT_WARNING = (
    "speaker-dependent split: speakers appear in both training and test; "
    "results are not comparable to speaker-independent ones"
)

_LABELS = {
    "wa": "WA (accuracy)",
    "ua": "UA (unweighted avg. recall)",
    "macro_f1": "macro-F1",
    "macro_auc": "macro ROC-AUC",
}


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


def _pm(value: float | None, ci: Sequence[float] | None) -> str:
    text = f"{fmt_pct(value)}%"
    if ci:
        text += f" [{fmt_pct(ci[0])}, {fmt_pct(ci[1])}]"
    return text


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _md_table(
    header: Sequence[str], rows: Sequence[Sequence[Any]], align: Sequence[str] | None = None
) -> list[str]:
    align = align or ["---"] + ["---:"] * (len(header) - 1)
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return lines


def _speaker_lines(split: Mapping[str, Any] | None) -> list[str]:
    """The split provenance block of report.md, with the speaker-dependence warning."""
    if split is None:
        return ["Split: not recorded (speaker independence unknown).", ""]
    lines: list[str] = []
    if split.get("speaker_independent") is False:
        lines += [f"**WARNING: {SPEAKER_DEPENDENT_WARNING}.**", ""]
    flag = split.get("speaker_independent")
    lines.append(
        f"- speaker-independent: {'unknown' if flag is None else ('yes' if flag else 'no')}"
    )
    for key in ("name", "fold", "protocol", "seed"):
        if split.get(key) not in (None, ""):
            lines.append(f"- {key}: {split[key]}")
    for key in ("train_speakers", "val_speakers", "test_speakers"):
        if split.get(key) is not None:
            speakers = ", ".join(str(s) for s in split[key])
            lines.append(f"- {key.replace('_', ' ')}: {speakers or '(none)'}")
    for key in ("train", "val", "test"):
        value = split.get(key)
        if isinstance(value, (list, tuple)):
            lines.append(f"- {key} clips: {len(value)}")
    lines.append("")
    return lines


def _report_markdown(report: Mapping[str, Any]) -> str:
    m = report
    names = m["class_names"]
    ci = m["ci"]
    lines = [f"# {report['title']}", ""]
    lines += _speaker_lines(report.get("split"))
    conf = int(round(100 * m["bootstrap"]["confidence"]))
    lines += ["## Headline", ""]
    ci_note = (
        f"{conf}% percentile bootstrap CI over {m['bootstrap']['resamples']} clip "
        "resamples in brackets"
        if m["bootstrap"]["resamples"]
        else "no bootstrap CI"
    )
    lines += _md_table(
        ["metric", f"value % ({ci_note})"],
        [[_LABELS[k], _pm(m[k], ci.get(k))] for k in HEADLINE]
        + [[_LABELS["macro_auc"], _num(m["macro_auc"])]],
    )
    lines += [
        "",
        f"{m['n']} clips. UA and macro-F1 average over the {len(m['ua_classes'])} "
        f"classes present in the test set ({', '.join(m['ua_classes'])}).",
        "",
    ]
    kept = report.get("kept") or {}
    if kept.get("summary"):
        lines += ["## Kept model", "", f"- kept: {kept['summary']}", ""]
    absent = [n for n in names if n not in m["ua_classes"]]
    if absent:
        lines += [
            f"Classes with no test clips (left out of UA and macro-F1): {', '.join(absent)}.",
            "",
        ]

    calibration = report.get("calibration")
    if calibration:
        lines += ["## Calibration", ""]
        if calibration.get("fitted_on"):
            lines += [
                f"Temperature scaling, T = {calibration['temperature']:.3f}, fitted on the "
                f"{calibration['fitted_on']} "
                "(never the test clips); it changes probabilities, not predictions.",
                "",
            ]
            lines += _md_table(
                ["expected calibration error (15 bins)", "test"],
                [
                    ["before scaling", _num(calibration["ece_before"])],
                    ["after scaling", _num(calibration["ece_after"])],
                ],
            )
        else:
            lines += [
                f"No temperature was fitted for this model; expected calibration error (15 bins): "
                f"{_num(calibration['ece_after'])}."
            ]
        lines += ["", "Reliability diagram: `reliability.png`.", ""]

    if report.get("breakdown"):
        lines += ["## Breakdown by speaker group", ""]
        lines += _md_table(
            ["group", "value", "clips", "UA %", "WA %"],
            [
                [kind, value, row["n"], fmt_pct(row["ua"]), fmt_pct(row["wa"])]
                for kind, rows in report["breakdown"].items()
                for value, row in rows.items()
            ],
        )
        lines += [""]

    lines += ["## Classification report", ""]
    rows = []
    for name in names:
        pc = m["per_class"][name]
        rows.append(
            [
                name,
                _num(pc["precision"]),
                _num(pc["recall"]),
                _num(pc["f1"]),
                pc["support"],
                _num(pc["auc"]),
            ]
        )
    present = [m["per_class"][n] for n in m["ua_classes"]]
    macro_p = float(np.mean([pc["precision"] for pc in present])) if present else None
    rows.append(
        [
            "**macro avg (present classes)**",
            _num(macro_p),
            _num(m["ua"]),
            _num(m["macro_f1"]),
            sum(pc["support"] for pc in present),
            _num(m["macro_auc"]),
        ]
    )
    rows.append(["**accuracy (WA)**", "", "", _num(m["wa"]), m["n"], ""])
    lines += _md_table(["class", "precision", "recall", "F1", "support", "ROC-AUC"], rows)

    lines += [
        "",
        "## Confusion matrix",
        "",
        "Rows: true class; columns: predicted class (counts).",
        "",
    ]
    cm = m["confusion_matrix"]
    lines += _md_table(
        ["true \\ predicted", *names, "total"],
        [[name, *cm[i], sum(cm[i])] for i, name in enumerate(names)],
    )

    lines += ["", "## Per-class ROC-AUC (one-vs-rest)", ""]
    lines += _md_table(
        ["class", "AUC"],
        [[n, _num(m["per_class"][n]["auc"])] for n in names]
        + [["**macro (defined classes)**", _num(m["macro_auc"])]],
    )
    if any(m["per_class"][n]["auc"] is None for n in names):
        lines += ["", "AUC n/a: the class has no positives (or no negatives) in the test set."]

    if report.get("extra"):
        lines += ["", "## Extra", ""]
        extra = report["extra"]
        for key, value in extra.items():
            if key == "epochs" and value is not None and extra.get("epochs_run") is not None:
                lines.append(f"- epochs: kept epoch {value} of {extra['epochs_run']} run")
            elif key == "epochs_run" and extra.get("epochs") is not None:
                continue  # said on the epochs line
            else:
                lines.append(f"- {key}: {value}")
    files = report.get("files") or {}
    if files:
        lines += ["", "## Files", ""]
        lines += [f"- {key}: `{value}`" for key, value in files.items()]
    return "\n".join(lines) + "\n"


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
    write_text(out / files["markdown"], _report_markdown(report))
    write_json(out / files["json"], report)
    return report


def _summary_markdown(summary: Mapping[str, Any]) -> str:
    lines = [f"# {summary['title']}", ""]
    flag = summary["speaker_independent"]
    if flag is False:
        lines += [f"**WARNING: {SPEAKER_DEPENDENT_WARNING}.**", ""]
    lines += [
        f"- folds: {summary['n_folds']}, test clips in total: {summary['n_clips']}",
        f"- speaker-independent: {'unknown' if flag is None else ('yes' if flag else 'no')}",
        "- mean ± sample standard deviation over folds (ddof=1)",
        "",
    ]
    rows = []
    for key in (*HEADLINE, "macro_auc"):
        mean, sd = summary["mean"][key], summary["std"][key]
        if mean is None:
            rows.append([_LABELS[key], "n/a", "", ""])
            continue
        scale, unit, digits = (100.0, "%", 1) if key != "macro_auc" else (1.0, "", 3)
        std = "n/a" if sd is None else f"{scale * sd:.{digits}f}"
        rows.append(
            [
                _LABELS[key],
                f"{scale * mean:.{digits}f}{unit} ± {std}",
                f"{scale * summary['min'][key]:.{digits}f}",
                f"{scale * summary['max'][key]:.{digits}f}",
            ]
        )
    lines += _md_table(["metric", "mean ± std", "min", "max"], rows)

    lines += ["", "## Per fold", ""]
    with_speakers = any("test_speakers" in r for r in summary["folds"])
    header = ["fold", "clips", "WA %", "UA %", "macro-F1 %", "macro-AUC"]
    if with_speakers:
        header.append("test speakers")
    rows = []
    for r in summary["folds"]:
        row = [
            r["fold"],
            r["n"],
            fmt_pct(r["wa"]),
            fmt_pct(r["ua"]),
            fmt_pct(r["macro_f1"]),
            _num(r.get("macro_auc")),
        ]
        if with_speakers:
            row.append(", ".join(r.get("test_speakers", [])) or "-")
        rows.append(row)
    lines += _md_table(header, rows)
    if summary.get("extra"):
        lines += ["", "## Extra", ""]
        lines += [f"- {key}: {value}" for key, value in summary["extra"].items()]
    return "\n".join(lines) + "\n"


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
    write_text(out / "summary.md", _summary_markdown(summary))
    write_json(out / "summary.json", summary)
    return summary
