"""The markdown of a fold's ``report.md`` and of a run's ``summary.md``, from the report and
summary dicts that :mod:`emorec.evaluation.report` writes as JSON beside them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from emorec.evaluation.metrics import HEADLINE, fmt_pct

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


def report_markdown(report: Mapping[str, Any]) -> str:
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


def summary_markdown(summary: Mapping[str, Any]) -> str:
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
