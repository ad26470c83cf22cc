"""The cross-corpus matrix: rows are what a model was trained on (RAVDESS, CREMA-D, both), columns the
corpus it is tested on, each cell UA on the 6 classes the corpora share, with a 95 % bootstrap CI.

Every cell comes from the committed per-clip test probabilities of a result (``crossval.py``), grouped
by the test clip's corpus, so the diagonal is the in-corpus cross-validation itself on the shared
classes (an 8-class RAVDESS model's calm and surprised clips are left out and its prediction is the
most probable of the 6 shared classes). The cross cells train on all of one corpus (validation
actors drawn from it) and test on all of the other:

    python crossval.py --corpus ravdess+crema-d --config ../configs/ravdess_attn_crnn_v2_ema_bn_deltas.yaml \\
        --set data.label_policy=intersection --set split.scheme=cross_corpus --set "split.test_corpora=[crema-d]" \\
        --out results/crosscorpus_ravdess_to_crema_d.json
    python crosscorpus.py --cell RAVDESS=results/ravdess_6fold.json --cell RAVDESS=results/crosscorpus_ravdess_to_crema_d.json \\
        --cell CREMA-D=... --out results/crosscorpus.json      # + crosscorpus.png and a markdown table

Nothing here trains or selects: it reads test predictions that their runs made once.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from common import REPO, command_line
from predictions import load_predictions

SHARED = ("neutral", "happy", "sad", "angry", "fearful", "disgust")
CORPUS_NAMES = {"ravdess": "RAVDESS", "crema-d": "CREMA-D"}


def cells_of(train: str, result_path: Path, bootstrap: int) -> list[dict]:
    """One cell per test corpus in the result's test predictions: pooled UA over its folds' test
    clips on the shared classes (and, with several folds, the mean of the folds' UAs)."""
    from emorec.evaluation.metrics import classification_metrics

    result = json.loads(result_path.read_text())
    parts = {fold: part for (fold, kind), part in load_predictions(REPO / result["predictions"]).items() if kind == "test"}
    names = next(iter(parts.values())).class_names
    columns = [names.index(c) for c in SHARED if c in names]
    shared = [names[i] for i in columns]
    rows_by_corpus: dict[str, list[tuple[int, int, np.ndarray]]] = defaultdict(list)
    for fold, part in sorted(parts.items()):
        for clip_id, label, probs in zip(part.clip_ids, part.labels, part.probs):
            if names[label] in shared:
                rows_by_corpus[clip_id.split("/", 1)[0]].append((fold, shared.index(names[label]), probs[columns]))
    cells = []
    for corpus, rows in sorted(rows_by_corpus.items()):
        folds = np.array([r[0] for r in rows])
        y = np.array([r[1] for r in rows])
        probs = np.stack([r[2] for r in rows])
        probs = probs / probs.sum(axis=1, keepdims=True)
        metrics = classification_metrics(y, probs, shared, bootstrap=bootstrap)
        per_fold = [classification_metrics(y[folds == f], probs[folds == f], shared, bootstrap=0)["ua"]
                    for f in sorted(set(folds))]
        shares = np.bincount(probs.argmax(axis=1), minlength=len(shared)) / len(y)  # a collapse onto one class shows here
        cells.append({"train": train, "test": CORPUS_NAMES.get(corpus, corpus), "ua": metrics["ua"], "wa": metrics["wa"],
                      "top_class": shared[int(shares.argmax())], "top_share": float(shares.max()),
                      "ci_ua": metrics["ci"]["ua"], "n": int(y.size), "folds": len(per_fold),
                      "mean_fold_ua": float(np.mean(per_fold)), "classes": shared,
                      "source": str(result_path.resolve().relative_to(REPO)) if result_path.resolve().is_relative_to(REPO)
                      else str(result_path), "source_command": result.get("command")})
    return cells


def markdown(cells: list[dict]) -> str:
    trains = list(dict.fromkeys(c["train"] for c in cells))
    tests = list(dict.fromkeys(c["test"] for c in cells))
    by = {(c["train"], c["test"]): c for c in cells}
    # each cell: UA [95 % CI] (the class predicted most often, its share of the predictions)
    lines = ["| trained on \\ tested on | " + " | ".join(tests) + " |", "|---|" + "---:|" * len(tests)]
    for train in trains:
        row = []
        for test in tests:
            c = by.get((train, test))
            row.append("not run" if c is None else f"{100 * c['ua']:.1f} [{100 * c['ci_ua'][0]:.1f}, {100 * c['ci_ua'][1]:.1f}]"
                       f" ({c['top_class']} {100 * c['top_share']:.0f} %)")
        lines.append(f"| {train} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot(cells: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from emorec.atomic import atomic_open

    trains = list(dict.fromkeys(c["train"] for c in cells))
    tests = list(dict.fromkeys(c["test"] for c in cells))
    grid = np.full((len(trains), len(tests)), np.nan)
    for c in cells:
        grid[trains.index(c["train"]), tests.index(c["test"])] = 100 * c["ua"]
    fig, ax = plt.subplots(figsize=(1.9 * len(tests) + 2.5, 1.1 * len(trains) + 1.6))
    ax.imshow(grid, cmap="viridis", vmin=100 / len(SHARED), vmax=100, aspect="auto")
    for c in cells:
        i, j = trains.index(c["train"]), tests.index(c["test"])
        ax.text(j, i, f"{100 * c['ua']:.1f}\n[{100 * c['ci_ua'][0]:.1f}, {100 * c['ci_ua'][1]:.1f}]", ha="center",
                va="center", color="white" if c["ua"] < 0.6 else "black", fontsize=9)
    for (i, j), value in np.ndenumerate(grid):
        if np.isnan(value):
            ax.text(j, i, "not run", ha="center", va="center", color="grey", fontsize=9)
    ax.set_xticks(range(len(tests)), [f"test: {t}" for t in tests])
    ax.set_yticks(range(len(trains)), [f"train: {t}" for t in trains])
    ax.set_title(f"UA % on the {len(SHARED)} shared classes [95 % CI] (chance {100 / len(SHARED):.1f})", fontsize=10)
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", action="append", required=True, metavar="TRAIN=RESULT.json",
                        help="a result with predictions and the name of what it trained on (repeat)")
    parser.add_argument("--out", required=True, help="results JSON (a PNG heatmap is written beside it)")
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args(argv)
    cells = []
    for spec in args.cell:
        train, _, path = spec.partition("=")
        if not path:
            parser.error(f"--cell {spec!r}: expected TRAIN=RESULT.json")
        cells += cells_of(train, Path(path), args.bootstrap)
    seen = defaultdict(list)
    for c in cells:
        seen[(c["train"], c["test"])].append(c["source"])
    repeated = {k: v for k, v in seen.items() if len(v) > 1}
    if repeated:
        parser.error(f"two results give the same cell: {repeated}")
    from emorec.atomic import write_json

    out = Path(args.out)
    table = markdown(cells)
    write_json(out, {"classes": list(SHARED), "metric": "UA on the shared classes, clips pooled over test folds, "
                     "95 % percentile bootstrap CI", "cells": cells, "table": table, "command": command_line()})
    plot(cells, out.with_suffix(".png"))
    print(table)


if __name__ == "__main__":
    main()
