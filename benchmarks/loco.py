"""Leave-one-corpus-out (LOCO): what to expect on recordings from a corpus a model never heard.

    python benchmarks/loco.py --config configs/loco_attn_crnn_v2_balanced.yaml --jobs 2
    python benchmarks/loco.py --config ... --corpora ravdess,crema-d,tess,emovo,urdu --hold-out tess,urdu
    python benchmarks/loco.py --summarise results/loco_attn_crnn_v2_balanced.json   # re-read the cells
    python benchmarks/loco.py --ensemble loco_NAME=loco_A,loco_B   # equal-weight mean of trained cells

For each held-out corpus one model trains on all the other corpora (``split.scheme cross_corpus``:
validation speakers drawn from each training corpus, never from the held-out one) and reads every
clip of the held-out corpus once, over the classes it shares with the model (a 6-class model on
URDU's 4 classes predicts the most probable of those 4). Each cell reports UA with a 95 %
percentile-bootstrap CI, WA, the confusion matrix and the distribution of predicted classes (its
top class and that class's share: a model that calls most of a corpus one thing shows here).

Corpora come prepared from the shared data (RAVDESS speech, CREMA-D) and from copies fetched beside
the checkout, ``../corpora/NAME`` or ``$EMOREC_CORPORA_DIR/NAME`` (docs/CORPORA.md says how to fetch
each); ``--corpus NAME=FOLDER`` points at another copy. Every cell is one ``crossval.py`` run,
written to ``results/loco/<recipe>/<held-out>.json`` with its per-clip predictions, and a cell whose
file exists is not trained again, so an interrupted run resumes. ``--jobs N`` trains N cells side by
side, one thread each. The summary (JSON, a PNG of the confusion matrices and a markdown table) is
rebuilt from the cells; nothing in it selects anything on test clips.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from common import REPO, RESULTS, WORK, command_line, data_dir

#: name -> (emorec prepare kind, where its copy lies: "shared:<folder>" or "corpora:<folder>")
SOURCES: dict[str, tuple[str, str]] = {
    "ravdess": ("ravdess", "shared:ravdess-speech-16k"),
    "crema-d": ("crema-d", "shared:crema-d-audio"),
    "tess": ("tess", "corpora:TESS"),
    "emovo": ("emovo", "corpora:EMOVO"),
    "urdu": ("urdu", "corpora:URDU"),
}
NAMES = {"ravdess": "RAVDESS", "crema-d": "CREMA-D", "tess": "TESS", "emovo": "EMOVO", "urdu": "URDU"}
DEFAULT_CORPORA = ("ravdess", "crema-d", "tess", "emovo", "urdu")


def corpora_dir() -> Path:
    env = os.environ.get("EMOREC_CORPORA_DIR")
    return Path(env) if env else REPO.parent / "corpora"


def corpus_folder(name: str, given: dict[str, str]) -> Path:
    if name in given:
        return Path(given[name])
    place, _, folder = SOURCES[name][1].partition(":")
    path = (data_dir() if place == "shared" else corpora_dir()) / folder
    if not path.is_dir():
        sys.exit(f"{path}: copy of {NAMES.get(name, name)} not found (docs/CORPORA.md says how to fetch it; "
                 f"or give --corpus {name}=FOLDER)")
    return path


def corpus_manifest(name: str, given: dict[str, str]) -> Path:
    """Prepare (once) one corpus's manifest under the benchmark work folder."""
    from emorec.corpora import prepare_corpus
    from emorec.corpora.manifest import write_manifest

    path = WORK / "loco" / name / "manifest.csv"
    if not path.is_file():
        result = prepare_corpus(SOURCES[name][0], corpus_folder(name, given))
        for skipped in result.skipped:
            print(f"skipped {skipped.path}: {skipped.reason}")
        write_manifest(result.clips, path)
    return path


def merged_manifest(names: list[str], given: dict[str, str]) -> Path:
    from emorec.corpora.manifest import merge_manifests, write_manifest

    path = WORK / "loco" / "+".join(names) / "manifest.csv"
    if not path.is_file():
        write_manifest(merge_manifests([corpus_manifest(n, given) for n in names]), path)
    return path


def recipe_name(config: str) -> str:
    return Path(config).stem


def cell_path(recipe: str, held_out: str) -> Path:
    return RESULTS / "loco" / recipe / f"{held_out}.json"


def train_cells(args: argparse.Namespace, manifest: Path, held_out: list[str]) -> None:
    """Each missing cell as a ``crossval.py`` child, ``args.jobs`` at a time, one thread each."""
    recipe = recipe_name(args.config)
    todo = [h for h in held_out if not cell_path(recipe, h).is_file()]
    if not todo:
        return
    from emorec.training.experiment import prepare_experiment
    from emorec.training.config import load_config

    # features once, with every core, before the single-thread cells find them in the cache
    prepare_experiment(load_config(args.config, [f"data.manifest={manifest}", f"data.cache={WORK / 'cache'}",
                                                 f"split.test_corpora=[{todo[0]}]", *args.overrides]), views=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    running: list[tuple[str, subprocess.Popen]] = []
    failed = []
    for name in todo:
        out = cell_path(recipe, name)
        cmd = [sys.executable, str(Path(__file__).with_name("crossval.py")), "--manifest", str(manifest),
               "--corpus-name", f"LOCO: {', '.join(NAMES.get(c, c) for c in args.corpora if c != name)} -> "
                                f"{NAMES.get(name, name)}",
               "--config", str(Path(args.config).resolve()), "--out", str(out),
               "--set", "split.scheme=cross_corpus", "--set", f"split.test_corpora=[{name}]", "--set", "trainer.threads=1",
               *[a for o in args.overrides for a in ("--set", o)]]
        while len(running) >= args.jobs:
            failed += _reap(running)
        print(f"training the cell held out {name} -> {out.relative_to(REPO)}")
        running.append((name, subprocess.Popen(cmd, env=env)))
    while running:
        failed += _reap(running)
    if failed:
        sys.exit(f"cell(s) {', '.join(failed)} failed; see their output above (finished cells are kept)")


def ensemble_cells(name: str, members: list[str], held_out: list[str]) -> None:
    """Each held-out corpus's cell of an equal-weight ensemble of recipes' cells, from their per-clip
    probabilities: validation and test clips averaged alike, validation UA read from the average."""
    from emorec.atomic import write_json
    from emorec.evaluation.metrics import classification_metrics

    from predictions import average_members, load_predictions, write_parts

    for corpus in held_out:
        sources = [cell_path(m, corpus) for m in members]
        missing = [str(s.relative_to(REPO)) for s in sources if not s.is_file()]
        if missing:
            sys.exit(f"ensemble {name}: member cell(s) {', '.join(missing)} not trained yet")
        results = [json.loads(s.read_text()) for s in sources]
        averaged = average_members([load_predictions(REPO / r["predictions"]) for r in results], [str(s) for s in sources])
        parts = {key: mean for key, (mean, _) in averaged.items()}
        (val,) = [part for (_, kind), part in parts.items() if kind == "val"]
        val_ua = classification_metrics(val.labels, val.probs, list(val.class_names), bootstrap=0)["ua"]
        out = cell_path(name, corpus)
        predictions = write_parts(parts, out.parent / "predictions" / f"{corpus}.csv.gz")
        write_json(out, {
            "corpus": results[0]["corpus"], "model": f"equal-weight ensemble of {', '.join(members)}",
            "members": [str(s.relative_to(REPO)) for s in sources], "predictions": predictions,
            "folds": [{"fold": 1, "val_best": float(val_ua), "train_seconds": sum(
                r["folds"][0].get("train_seconds") or 0 for r in results)}],
            "command": command_line()})


def _reap(running: list) -> list[str]:
    """Wait for the first child of ``running`` to end; its name if it failed."""
    import time

    while True:
        for i, (name, child) in enumerate(running):
            if child.poll() is not None:
                running.pop(i)
                return [name] if child.returncode else []
        time.sleep(5)


def shared_classes(names: list[str], labels: list[str]) -> tuple[list[str], list[int], np.ndarray, np.ndarray]:
    """The classes a held-out corpus shares with a model of classes ``names``, for its clips labelled
    ``labels``: ``(shared, their columns in the model's output, which clips (N,) keep, their label
    indices into shared)``. A clip of a class the model lacks is left out, not counted wrong."""
    from emorec.corpora.labels import canonical_order

    shared = canonical_order(set(labels) & set(names))
    keep = np.array([label in shared for label in labels])
    y = np.array([shared.index(label) for label, k in zip(labels, keep) if k])
    return shared, [names.index(c) for c in shared], keep, y


def cell_of(held_out: str, path: Path, bootstrap: int) -> dict:
    """One held-out corpus: metrics of every test clip over the classes it shares with the model."""
    from emorec.evaluation.metrics import classification_metrics

    from predictions import load_predictions

    result = json.loads(path.read_text())
    (part,) = [p for (fold, kind), p in load_predictions(REPO / result["predictions"]).items() if kind == "test"]
    names = list(part.class_names)
    shared, columns, keep, y = shared_classes(names, [names[i] for i in part.labels])
    probs = part.probs[keep][:, columns]
    probs = probs / probs.sum(axis=1, keepdims=True)
    metrics = classification_metrics(y, probs, shared, bootstrap=bootstrap)
    shares = np.bincount(probs.argmax(axis=1), minlength=len(shared)) / len(y)
    fold = result["folds"][0]
    return {
        "held_out": NAMES.get(held_out, held_out), "corpus": held_out, "classes": shared, "n": int(y.size),
        "ua": metrics["ua"], "ci_ua": metrics["ci"]["ua"], "wa": metrics["wa"], "macro_f1": metrics["macro_f1"],
        "recall": {c: metrics["per_class"][c]["recall"] for c in shared},
        "confusion_matrix": metrics["confusion_matrix"],
        "predicted_share": {c: float(s) for c, s in zip(shared, shares)},
        "top_class": shared[int(shares.argmax())], "top_share": float(shares.max()),
        "val_ua": fold.get("val_best"), "train_seconds": fold.get("train_seconds"), "device": fold.get("device"),
        "model_classes": names, "trained_on": result["corpus"], "members": result.get("members", []),
        "source": str(path.resolve().relative_to(REPO)), "source_command": result.get("command"),
    }


def summary(cells: list[dict], recipe: str, command: str) -> dict:
    """``recipe``: a recipe's name, or an ensemble's, whose members its cells name."""
    ua = [c["ua"] for c in cells]
    members = sorted({f"configs/{Path(m).parent.name}.yaml" for c in cells for m in c.get("members", [])})
    return {
        "recipe": recipe if members else f"configs/{recipe}.yaml", "members": members, "metric": "UA over the classes each held-out corpus shares with the model, "
        "every clip of it read once, 95 % percentile bootstrap CI", "cells": cells,
        "mean_ua": float(np.mean(ua)), "min_ua": float(np.min(ua)), "max_top_share": max(c["top_share"] for c in cells),
        "mean_val_ua": float(np.mean([c["val_ua"] for c in cells if c["val_ua"] is not None] or [np.nan])),
        "table": markdown(cells), "command": command,
    }


def markdown(cells: list[dict]) -> str:
    lines = ["| held out | clips | classes | UA [95 % CI] | WA | most predicted (share) | validation UA |",
             "|---|---:|---:|---:|---:|---|---:|"]
    for c in cells:
        lines.append(f"| {c['held_out']} | {c['n']} | {len(c['classes'])} | {100 * c['ua']:.1f} "
                     f"[{100 * c['ci_ua'][0]:.1f}, {100 * c['ci_ua'][1]:.1f}] | {100 * c['wa']:.1f} | "
                     f"{c['top_class']} ({100 * c['top_share']:.0f} %) | "
                     + (f"{100 * c['val_ua']:.1f} |" if c["val_ua"] is not None else "- |"))
    mean = np.mean([c["ua"] for c in cells])
    lines.append(f"| **mean** | | | **{100 * mean:.1f}** | {100 * np.mean([c['wa'] for c in cells]):.1f} | "
                 f"max {100 * max(c['top_share'] for c in cells):.0f} % | |")
    return "\n".join(lines)


def plot(cells: list[dict], path: Path) -> None:
    """One row-normalised confusion matrix per held-out corpus, its UA and CI in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from emorec.atomic import atomic_open

    fig, axes = plt.subplots(1, len(cells), figsize=(3.3 * len(cells), 3.6), squeeze=False)
    for ax, c in zip(axes[0], cells):
        cm = np.array(c["confusion_matrix"], dtype=float)
        rows = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
        for (i, j), value in np.ndenumerate(rows):
            ax.text(j, i, f"{100 * value:.0f}", ha="center", va="center", fontsize=7,
                    color="white" if value > 0.5 else "black")
        ticks = [name[:4] for name in c["classes"]]
        ax.set_xticks(range(len(ticks)), ticks, rotation=90, fontsize=7)
        ax.set_yticks(range(len(ticks)), ticks, fontsize=7)
        ax.set_xlabel("predicted", fontsize=7)
        ax.set_title(f"{c['held_out']}: UA {100 * c['ua']:.1f}\n[{100 * c['ci_ua'][0]:.1f}, {100 * c['ci_ua'][1]:.1f}]"
                     f" chance {100 / len(c['classes']):.0f}", fontsize=8)
    axes[0][0].set_ylabel("true (row %)", fontsize=7)
    fig.suptitle("Leave one corpus out: trained on the others, tested on all of it", fontsize=9)
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def write_summary(cells: list[dict], recipe: str, out: Path, command: str) -> dict:
    from emorec.atomic import write_json

    result = summary(cells, recipe, command)
    write_json(out, result)
    plot(cells, out.with_suffix(".png"))
    print(result["table"])
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="the recipe every cell trains")
    parser.add_argument("--corpora", default=",".join(DEFAULT_CORPORA), help="comma-separated corpora of the benchmark")
    parser.add_argument("--hold-out", default=None, help="the cells to run (default: every corpus)")
    parser.add_argument("--corpus", action="append", default=[], metavar="NAME=FOLDER", help="another copy of a corpus")
    parser.add_argument("--jobs", type=int, default=1, help="cells trained side by side (one thread each)")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--out", default=None, help="summary JSON (default results/<recipe>.json, named loco_...; PNG beside it)")
    parser.add_argument("--ensemble", default=None, metavar="NAME=RECIPE,RECIPE",
                        help="average trained recipes' cells, equal weights, into the cells of NAME")
    parser.add_argument("--summarise", default=None, metavar="SUMMARY.json", help="rebuild a summary from its cells")
    args = parser.parse_args(argv)
    if args.summarise:
        old = json.loads(Path(args.summarise).read_text())
        cells = [cell_of(c["corpus"], REPO / c["source"], args.bootstrap) for c in old["cells"]]
        write_summary(cells, Path(old["recipe"]).stem, Path(args.summarise), old["command"])
        return
    if not args.config and not args.ensemble:
        parser.error("give --config RECIPE, --ensemble NAME=RECIPE,RECIPE or --summarise SUMMARY.json")
    args.corpora = [c.strip() for c in args.corpora.split(",") if c.strip()]
    unknown = [c for c in args.corpora if c not in SOURCES]
    if unknown or len(args.corpora) < 2:
        parser.error(f"--corpora: need two or more of {', '.join(SOURCES)}; got {args.corpora}")
    held_out = [c.strip() for c in (args.hold_out or ",".join(args.corpora)).split(",") if c.strip()]
    if any(h not in args.corpora for h in held_out):
        parser.error(f"--hold-out {held_out}: each must be one of --corpora {args.corpora}")
    given = dict(spec.split("=", 1) for spec in args.corpus)
    command = command_line()
    manifest = merged_manifest(args.corpora, given)
    if args.ensemble:
        recipe, _, members = args.ensemble.partition("=")
        ensemble_cells(recipe, [recipe_name(m) for m in members.split(",")], held_out)
    else:
        train_cells(args, manifest, held_out)
        recipe = recipe_name(args.config)
    cells = [cell_of(h, cell_path(recipe, h), args.bootstrap) for h in held_out]
    default = RESULTS / (f"{recipe}.json" if recipe.startswith("loco") else f"loco_{recipe}.json")
    write_summary(cells, recipe, Path(args.out) if args.out else default, command)


if __name__ == "__main__":
    main()
