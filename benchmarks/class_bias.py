"""Per-class biases fitted on validation speakers, added to a LOCO model's log-probabilities: do
they keep one class from taking over a corpus the model never heard?

    python benchmarks/class_bias.py results/loco_voice_encoder_all_layers_speed.json

Why: on held-out corpora a single class can take far more than its share of the answers (46 % on
TESS for the released recipe). A bias per class, ``argmax(log p + b)``, is the cheapest correction
a released model could carry; the calibration temperature is already fitted the same way.

The plan, fixed before any test figure of it was read:

* ``b`` maximises UA on a set of clips by coordinate ascent: each class's bias in turn over a grid
  of -2..2 in steps of 0.05 (``b`` starts at 0; three sweeps; ties keep the smaller change).
* Evidence, validation only: the cell's validation speakers (all from its training corpora) are
  split in two halves by sorted speaker id, alternating; ``b`` fitted on one half is scored on the
  other, both ways. The idea is kept if the mean over cells of that cross-fitted validation UA
  beats the mean of the plain validation UA on the same halves.
* The test figure uses ``b`` fitted on all the cell's validation clips, over the classes the
  held-out corpus shares with the model (as ``loco.py`` scores a cell), and is reported either way.

Reads the cells' committed per-clip predictions and the benchmark manifest (for speakers; made by
``loco.py`` under ``benchmarks/work/loco/``); trains nothing. Writes ``results/class_bias_<recipe>.json``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
from pathlib import Path

import numpy as np

from common import REPO, RESULTS, WORK, command_line
from loco import shared_classes

GRID = np.round(np.arange(-2.0, 2.0001, 0.05), 2)


def ua(y: np.ndarray, pred: np.ndarray, classes: int) -> float:
    recalls = [np.mean(pred[y == c] == c) for c in range(classes) if np.any(y == c)]
    return float(np.mean(recalls))


def fit_bias(logp: np.ndarray, y: np.ndarray, sweeps: int = 3) -> np.ndarray:
    """The per-class bias ``[C]`` that maximises UA of ``argmax(logp + b)`` on these clips."""
    c = logp.shape[1]
    b = np.zeros(c)
    best = ua(y, (logp + b).argmax(1), c)
    for _ in range(sweeps):
        for k in range(c):
            for value in sorted(GRID, key=lambda v: abs(v - b[k])):
                trial = b.copy()
                trial[k] = value
                score = ua(y, (logp + trial).argmax(1), c)
                if score > best + 1e-12:
                    best, b = score, trial
    return b


def read_cell_predictions(path: Path) -> dict[str, dict]:
    """``{"val"|"test": {"ids", "y", "logp", "classes"}}`` from a cell's predictions file."""
    with gzip.open(path, "rt", newline="") as handle:
        rows = list(csv.DictReader(handle))
    classes = [k.removeprefix("prob_") for k in rows[0] if k.startswith("prob_")]
    parts = {}
    for part in ("val", "test"):
        chosen = [r for r in rows if r["part"] == part]
        probs = np.array([[float(r[f"prob_{c}"]) for c in classes] for r in chosen])
        parts[part] = {"ids": [r["clip_id"] for r in chosen], "labels": [r["true"] for r in chosen],
                       "logp": np.log(np.clip(probs, 1e-12, 1.0)), "classes": classes}
    return parts


def speakers_of(manifest: Path) -> dict[str, str]:
    with open(manifest, newline="") as handle:
        return {row["clip_id"]: row["speaker"] for row in csv.DictReader(handle)}


def shared_test(part: dict) -> tuple[np.ndarray, np.ndarray, list[str], list[int]]:
    """Test clips over the classes the held-out corpus shares with the model (as loco.py)."""
    shared, columns, keep, y = shared_classes(part["classes"], part["labels"])
    return part["logp"][keep][:, columns], y, shared, columns


def cell(held_out: str, source: Path, speakers: dict[str, str]) -> dict:
    result = json.loads(source.read_text())
    parts = read_cell_predictions(REPO / result["predictions"])
    val, classes = parts["val"], parts["val"]["classes"]
    y_val = np.array([classes.index(label) for label in val["labels"]])
    ids = sorted({speakers[i] for i in val["ids"]})
    half = np.array([ids.index(speakers[i]) % 2 for i in val["ids"]])  # (N_val,) which half
    crossed, plain = [], []
    for fit_on in (0, 1):
        fit, score = half == fit_on, half != fit_on
        b = fit_bias(val["logp"][fit], y_val[fit])
        crossed.append(ua(y_val[score], (val["logp"][score] + b).argmax(1), len(classes)))
        plain.append(ua(y_val[score], val["logp"][score].argmax(1), len(classes)))
    bias = fit_bias(val["logp"], y_val)
    logp, y, shared, columns = shared_test(parts["test"])
    before, after = logp.argmax(1), (logp + bias[columns]).argmax(1)
    share = lambda pred: np.bincount(pred, minlength=len(shared)) / len(pred)  # noqa: E731
    return {"held_out": held_out, "classes": shared, "bias": dict(zip(classes, np.round(bias, 2).tolist())),
            "val_ua_plain_halves": float(np.mean(plain)), "val_ua_crossfit_halves": float(np.mean(crossed)),
            "test_ua_before": ua(y, before, len(shared)), "test_ua_after": ua(y, after, len(shared)),
            "top_share_before": float(share(before).max()), "top_share_after": float(share(after).max()),
            "top_class_after": shared[int(share(after).argmax())]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("summary", help="a LOCO summary (results/loco_*.json)")
    parser.add_argument("--manifest", default=str(WORK / "loco" / "ravdess+crema-d+tess+emovo+urdu" / "manifest.csv"))
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    summary = json.loads((REPO / "benchmarks" / args.summary).read_text()
                         if not Path(args.summary).is_file() else Path(args.summary).read_text())
    speakers = speakers_of(Path(args.manifest))
    cells = [cell(c["held_out"], REPO / c["source"], speakers) for c in summary["cells"]]
    mean = lambda key: float(np.mean([c[key] for c in cells]))  # noqa: E731
    kept = mean("val_ua_crossfit_halves") > mean("val_ua_plain_halves")
    out = {"recipe": summary["recipe"], "cells": cells, "kept": kept,
           **{f"mean_{k}": mean(k) for k in ("val_ua_plain_halves", "val_ua_crossfit_halves", "test_ua_before",
                                             "test_ua_after")},
           "min_test_ua_after": min(c["test_ua_after"] for c in cells),
           "max_top_share_after": max(c["top_share_after"] for c in cells), "command": command_line()}
    from emorec.atomic import write_json

    name = Path(summary["recipe"]).stem
    write_json(Path(args.out) if args.out else RESULTS / f"class_bias_{name}.json", out)
    for c in cells:
        print(f"{c['held_out']:8s} val halves {100 * c['val_ua_plain_halves']:.1f} -> {100 * c['val_ua_crossfit_halves']:.1f}"
              f"   test {100 * c['test_ua_before']:.1f} -> {100 * c['test_ua_after']:.1f}"
              f"   top share {100 * c['top_share_before']:.0f} -> {100 * c['top_share_after']:.0f} %")
    print(f"kept: {kept} (cross-fitted validation {100 * out['mean_val_ua_crossfit_halves']:.1f} against "
          f"{100 * out['mean_val_ua_plain_halves']:.1f})")


if __name__ == "__main__":
    main()
