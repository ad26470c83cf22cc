"""RAVDESS speech, 8 classes, the standard 6 speaker-independent folds: log-mel + Attention CRNN.

Inductive: normalisation statistics come from each fold's training actors, checkpoints are
chosen on validation actors drawn from the training actors, the 4 test actors are read once.

    python benchmarks/ravdess_6fold.py [--config configs/ravdess_attn_crnn_cosine.yaml] [--speaker-norm] [--jobs 2]

The default recipe is the headline's; results go to ``results/ravdess_6fold.json`` unless ``--out``,
and every fold's validation and test probabilities to ``results/predictions/<out name>.csv.gz``
(what ``ravdess_ensemble.py`` averages once the run directories are gone).

``--jobs N`` trains the folds in N processes of one thread each (on a 2-core machine two
single-thread processes train ~1.4x faster than one two-thread process) and merges their folds.
On a GPU machine the processes share the GPU: on one H100 with 16 cores, ``--jobs 6`` for two
recipes at once (12 processes) trained each 60-epoch fold in about 4 minutes (``train_seconds``
in ``results/search/*.json``), against about 20 minutes per fold on the 2-core CPU.

``--speaker-norm`` (per-speaker standardisation, which reads the test actors' unlabelled clips)
is transductive; its result goes to a separate file and is never the headline.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from common import REPO, RESULTS, WORK, command_line, ravdess_manifest, run_to_result, summarise_folds
from emorec.atomic import write_json
from emorec.training.config import TrainConfig, load_config
from emorec.crossval import train
from emorec.experiment import prepare_experiment
from predictions import export_predictions, predictions_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default=str(REPO / "configs" / "ravdess_attn_crnn_cosine.yaml"))
    parser.add_argument("--speaker-norm", action="store_true")
    parser.add_argument("--folds", default="all")
    parser.add_argument("--out", default=None, help="results JSON (default by model)")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--jobs", type=int, default=1, help="parallel single-thread training processes")
    parser.add_argument("--no-predictions", dest="predictions", action="store_false",
                        help="skip writing per-clip probabilities to results/predictions/ (fold jobs of --jobs)")
    args = parser.parse_args()
    manifest = ravdess_manifest()
    default = "ravdess_6fold_speaker_norm.json" if args.speaker_norm else "ravdess_6fold.json"
    out = Path(args.out) if args.out else RESULTS / default
    if args.jobs > 1:
        # Extract once here with every core; the fold jobs then all find the cache filled.
        prepare_experiment(benchmark_config(args, manifest))
        result = run_parallel(args, command_line())
        result["predictions"] = export_predictions([REPO / d for d in result["run_dir"]], predictions_path(out))
        write_json(out, result)
        print(f"mean UA {result['mean_ua']:.3f} ± {result['std_ua']:.3f} -> {out}")
        return
    config = benchmark_config(args, manifest)
    run_dir = train(config)
    features = ", ".join(f"{k}={v}" for k, v in config.data.features.items())
    result = run_to_result(run_dir, corpus="RAVDESS speech (audio-only, 1440 clips, 24 actors, 8 classes)",
                           features=features, model=config.model["name"], command=command_line(),
                           speaker_norm=config.data.normalization == "speaker")
    if args.predictions:
        result["predictions"] = export_predictions([run_dir], predictions_path(out))
    write_json(out, result)
    print(f"mean UA {result['mean_ua']:.3f} ± {result['std_ua']:.3f} -> {out}")


def benchmark_config(args: argparse.Namespace, manifest: Path) -> TrainConfig:
    """The recipe with the benchmark's manifest, cache, run directory, folds and overrides."""
    overrides = [f"data.manifest={manifest}", f"data.cache={WORK / 'cache'}", f"run.dir={WORK / 'runs'}",
                 f"run.folds={args.folds}", *args.overrides]
    if args.speaker_norm:
        overrides.append("data.normalization=speaker")
    return load_config(args.config, overrides)


def run_parallel(args: argparse.Namespace, command: str) -> dict:
    """Folds dealt round-robin to ``args.jobs`` child runs of this script; their folds merged."""
    folds = list(range(1, 7)) if args.folds == "all" else [int(f) for f in args.folds.split(",")]
    groups = [folds[i::args.jobs] for i in range(args.jobs) if folds[i::args.jobs]]
    parts = [WORK / f"part_{os.getpid()}_{i}.json" for i in range(len(groups))]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    children = []
    for group, part in zip(groups, parts):
        cmd = [sys.executable, __file__, "--config", args.config, "--folds", ",".join(map(str, group)),
               "--out", str(part), "--no-predictions", "--set", "trainer.threads=1", *[a for o in args.overrides for a in ("--set", o)]]
        if args.speaker_norm:
            cmd.append("--speaker-norm")
        children.append(subprocess.Popen(cmd, env=env))
    if any(child.wait() != 0 for child in children):
        sys.exit("a fold job failed; see its output above")
    results = [json.loads(part.read_text()) for part in parts]
    first = results[0]
    return summarise_folds([f for r in results for f in r["folds"]], corpus=first["corpus"],
                           features=first["features"], model=first["model"], command=command,
                           speaker_norm=any(r["speaker_norm"] for r in results), run_dir=[r["run_dir"] for r in results])


if __name__ == "__main__":
    main()
