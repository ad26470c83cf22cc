"""Every audio-capable model of the family on RAVDESS, the standard 6 speaker-independent folds.

Each model trains with its own seed recipe (``configs/<model>.yaml``: its epochs, patience,
loss, optimiser and augmentation) on the same features as the headline benchmark (log-mel, 64
bands, silence trimmed at 40 dB) and the same folds and validation actors. Two settings are
added for 100 frames/s log-mel where a recipe runs recurrent layers over raw frames:
``cnn_lstm.time_pool=4`` and ``bilstm_attention.audio_time_pool=4`` (their recipes say so).
A row already in the results file is kept unless ``--models`` names its model (``attn_crnn``'s is
the first headline recipe's run, 60 cosine epochs). The current headline, an ensemble of ATTN-CRNN v2
runs chosen by the rules in ``ravdess_ensemble.py`` (``common.HEADLINE_ENSEMBLE``), is read in as a row of its
own (its folds' training seconds are its members' summed: they train one after another).

    python benchmarks/models_ravdess_6fold.py [--models cnn_pooling,hybrid_tcn,...] [--jobs 2]
    python benchmarks/models_ravdess_6fold.py --models ''   # only re-read the rows read from other results

Results: ``benchmarks/results/models_ravdess_6fold.json``, a list of entries in the format of a
``ravdess_6fold.py`` result plus ``recipe`` and the training seconds of every fold.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from common import HEADLINE_ENSEMBLE, REPO, RESULTS, WORK, command_line, recipe_of
from emorec.atomic import write_json

FEATURES = "{name: logmel, n_mels: 64, trim_db: 40}"
MODELS = ("cnn_pooling", "hybrid_tcn", "bilstm_attention", "cnn_lstm", "attn_crnn_v2")
EXTRA = {"cnn_lstm": ["model.time_pool=4"], "bilstm_attention": ["model.audio_time_pool=4"]}
HEADLINE_KEY = "attn_crnn_v2, headline ensemble"


def headline_entry(path: Path) -> dict:
    """The headline ensemble as a row of the table, each fold's training seconds summed over its members."""
    entry = json.loads(path.read_text())
    members = [json.loads((RESULTS.parent / m["results"]).read_text()) for m in entry["members"]]
    recipes = sorted({recipe_of(m["command"]) for m in entry["members"]})
    folds = [{**fold, "train_seconds": sum(next(f["train_seconds"] for f in m["folds"] if f["fold"] == fold["fold"])
                                           for m in members)} for fold in entry["folds"]]
    return {**entry, "model": HEADLINE_KEY, "folds": folds,
            "recipe": f"{len(members)} runs of {', '.join(recipes)} averaged ({path.name})",
            "train_seconds_per_fold": [f["train_seconds"] for f in folds]}


def save(out: Path, entries: dict[str, dict]) -> None:
    write_json(out, sorted(entries.values(), key=lambda e: -e["mean_ua"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--folds", default="all")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="for every model")
    parser.add_argument("--out", default=str(RESULTS / "models_ravdess_6fold.json"))
    args = parser.parse_args()
    out = Path(args.out)
    entries = {e["model"]: e for e in (json.loads(out.read_text()) if out.is_file() else [])}
    if HEADLINE_ENSEMBLE.is_file():
        entries[HEADLINE_KEY] = headline_entry(HEADLINE_ENSEMBLE)
    for model in filter(None, args.models.split(",")):
        part = WORK / f"models_{model}.json"
        overrides = [f"data.features={FEATURES}", "split.scheme=ravdess6", "split.val_speakers=2",
                     f"run.name=models_{model}", *EXTRA.get(model, []), *args.overrides]
        cmd = [sys.executable, str(REPO / "benchmarks" / "ravdess_6fold.py"), "--config",
               str(REPO / "configs" / f"{model}.yaml"), "--jobs", str(args.jobs), "--folds", args.folds, "--out", str(part),
               *[a for o in overrides for a in ("--set", o)]]
        if subprocess.call(cmd) != 0:
            sys.exit(f"{model}: training failed")
        entry = json.loads(part.read_text())
        entry["recipe"] = f"configs/{model}.yaml" + (f" with {', '.join(EXTRA[model])}" if model in EXTRA else "")
        entry["train_seconds_per_fold"] = [f.get("train_seconds") for f in entry["folds"]]
        entry["command"] = command_line()
        entries[model] = entry
        save(out, entries)  # after each model: nothing lost
        print(f"{model}: mean UA {entry['mean_ua']:.3f} ± {entry['std_ua']:.3f}")
    save(out, entries)  # the rows read from other results, when no model was trained
    print(f"-> {out}")


if __name__ == "__main__":
    main()
