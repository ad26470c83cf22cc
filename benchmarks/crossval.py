"""Speaker-independent cross-validation of a recipe on any corpus, in the committed results format.

    python benchmarks/crossval.py --corpus crema-d --config ../configs/RECIPE.yaml [--jobs 2] [--out results/X.json]
    python benchmarks/crossval.py --corpus crema-d --baseline egemaps [--out results/X.json]
    python benchmarks/crossval.py --manifest my.csv --corpus-name "My corpus" --config ... [--set split.scheme=speaker_kfold]

The corpus is prepared once from ``../shared/data`` (``--corpus ravdess|crema-d``, its folder from
``--data``, default the shared layout) or read from ``--manifest``. The folds are the recipe's
split (``split.scheme: auto`` gives the fixed RAVDESS or CREMA-D folds); every fold's validation
speakers come from its training speakers and its test speakers are read once, by the kept model.
``--jobs N`` trains the folds in N single-thread processes and merges them; every fold's
validation and test probabilities go to ``results/predictions/<out name>.csv.gz``.

``--baseline egemaps`` (or ``mfcc_stats``) is the classical baseline on the same folds (those of
``--config`` when given, else of ``configs/base.yaml``, with ``--set``): clip
functionals + logistic regression whose C is chosen on each fold's validation speakers, then
refitted on training + validation speakers and read once on the test speakers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import REPO, RESULTS, WORK, command_line, data_dir, run_to_result, summarise_folds

#: corpus -> (its folder under the shared data, how results name it)
CORPORA = {
    "ravdess": ("ravdess-speech-16k", "RAVDESS speech (audio-only"),
    "crema-d": ("crema-d-audio", "CREMA-D"),
    "ravdess+crema-d": (None, "RAVDESS speech + CREMA-D (Opus-coded copy"),  # the two manifests merged
}
C_GRID = (0.001, 0.01, 0.1, 1.0)


def corpus_manifest(corpus: str, data: str | None = None) -> Path:
    """Prepare (once) the manifest of a corpus from the shared data."""
    from emorec.corpora import prepare_corpus
    from emorec.corpora.manifest import write_manifest

    path = WORK / corpus / "manifest.csv"
    if path.is_file():
        return path
    if "+" in corpus:
        from emorec.corpora.manifest import merge_manifests

        clips = merge_manifests([corpus_manifest(part) for part in corpus.split("+")])
    else:
        clips = prepare_corpus(corpus, data_dir() / (data or CORPORA[corpus][0])).clips
    write_manifest(clips, path)
    return path


def describe(clips, corpus: str | None, name: str | None) -> str:
    """"CREMA-D (Opus-coded copy, 7442 clips, 91 actors, 6 classes)", from the manifest."""
    speakers, classes = {c.speaker for c in clips}, {c.emotion for c in clips}
    if name is None:
        name = CORPORA.get(corpus, (None, corpus or "corpus"))[1]
    if corpus == "crema-d" and clips and all(c.path.endswith(".opus") for c in clips):
        name += " (Opus-coded copy"
    counts = f"{len(clips)} clips, {len(speakers)} actors, {len(classes)} classes"
    return f"{name}, {counts})" if "(" in name else f"{name} ({counts})"


def protocol(splits) -> str:
    scheme = splits[0].scheme if splits else ""
    named = {"ravdess6": "standard 6 speaker-independent folds", "crema5": "the 5 fixed CREMA-D speaker-independent folds",
             "cross_corpus": f"cross-corpus: {splits[0].name if splits else ''} (train on all of one, test on all of the other)"}
    return f"{named.get(scheme, f'{len(splits)} speaker-independent folds ({scheme})')}; validation speakers from training actors"


def main(default_corpus: str | None = None, default_config: str | None = None, default_out: str | None = None,
         argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=default_corpus, choices=sorted(CORPORA))
    parser.add_argument("--data", default=None, help="the corpus folder under the shared data")
    parser.add_argument("--manifest", default=None, help="a manifest of any corpus instead of --corpus")
    parser.add_argument("--corpus-name", default=None, help="how results name a --manifest corpus")
    parser.add_argument("--config", default=default_config)
    parser.add_argument("--baseline", choices=("egemaps", "mfcc_stats"), default=None)
    parser.add_argument("--speaker-norm", action="store_true")
    parser.add_argument("--folds", default="all")
    parser.add_argument("--out", default=default_out, help="results JSON")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--jobs", type=int, default=1, help="parallel single-thread training processes")
    parser.add_argument("--no-predictions", dest="predictions", action="store_false",
                        help="skip writing per-clip probabilities to results/predictions/ (fold jobs of --jobs)")
    parser.add_argument("--resummarise", default=None, metavar="RESULT.json",
                        help="rebuild a result's fold rows from its run directories (same runs, current fields)")
    args = parser.parse_args(argv)
    args.command = command_line()  # what the user typed, also when a wrapper passes argv
    if args.resummarise:
        return resummarise(Path(args.resummarise))
    if not (args.manifest or args.corpus):
        parser.error("give --corpus or --manifest (or --resummarise RESULT.json)")
    if not (args.config or args.baseline):
        parser.error("give --config RECIPE or --baseline")
    manifest = Path(args.manifest) if args.manifest else corpus_manifest(args.corpus, args.data)
    out = Path(args.out) if args.out else RESULTS / f"{args.corpus or 'corpus'}_crossval.json"
    if args.baseline:
        result = baseline(args, manifest)
    elif args.jobs > 1:
        from emorec.training.experiment import prepare_experiment

        started = time.time()
        experiment = prepare_experiment(benchmark_config(args, manifest), views=True)  # every core; jobs find the cache
        result = run_parallel(args, manifest, len(experiment.splits))
        result["wall_seconds"] = round(time.time() - started, 1)
    else:
        result = train_here(args, manifest)
    if args.predictions and not args.baseline:
        from predictions import export_predictions, predictions_path

        dirs = result["run_dir"] if isinstance(result["run_dir"], list) else [result["run_dir"]]
        result["predictions"] = export_predictions([REPO / d for d in dirs], predictions_path(out))
    from emorec.atomic import write_json

    write_json(out, result)
    print(f"mean UA {result['mean_ua']:.3f} ± {result['std_ua']:.3f} -> {out}")


def resummarise(path: Path) -> None:
    """The fold rows of ``path`` recomputed from the run directories it names (for fields added to
    the results format after it was made: e.g. test calibration); its command and protocol stay."""
    from emorec.atomic import write_json

    old = json.loads(path.read_text())
    dirs = old["run_dir"] if isinstance(old["run_dir"], list) else [old["run_dir"]]
    folds = [f for d in dirs for f in run_to_result(REPO / d, corpus=old["corpus"], features=old["features"],
                                                     model=old["model"], command=old["command"])["folds"]]
    new = summarise_folds(folds, corpus=old["corpus"], features=old["features"], model=old["model"], command=old["command"],
                          speaker_norm=old.get("speaker_norm", False), run_dir=old["run_dir"])
    for key in ("protocol", "wall_seconds", "predictions"):
        if key in old:
            new[key] = old[key]
    if [round(f["ua"], 9) for f in new["folds"]] != [round(f["ua"], 9) for f in old["folds"]]:
        raise SystemExit(f"{path}: its run directories no longer give its fold UAs; not rewritten")
    write_json(path, new)
    print(f"{path}: {len(new['folds'])} folds resummarised")


def benchmark_config(args: argparse.Namespace, manifest: Path):
    """The recipe with the benchmark's manifest, cache, run directory, folds and overrides."""
    from emorec.training.config import load_config

    overrides = [f"data.manifest={manifest}", f"data.cache={WORK / 'cache'}", f"run.dir={WORK / 'runs'}",
                 f"run.folds={args.folds}", *args.overrides]
    if args.speaker_norm:
        overrides.append("data.normalization=speaker")
    return load_config(args.config, overrides)


def train_here(args: argparse.Namespace, manifest: Path) -> dict:
    from emorec.workflows.crossval import train
    from emorec.training.experiment import prepare_experiment

    config = benchmark_config(args, manifest)
    run_dir = train(config)
    experiment = prepare_experiment(config, extract=False, progress=False)  # the clips and classes under the label policy
    splits = experiment.splits
    features = ", ".join(f"{k}={v}" for k, v in config.data.features.items())
    result = run_to_result(run_dir, corpus=describe(experiment.clips, args.corpus, args.corpus_name),
                           features=features, model=config.model["name"], command=args.command,
                           speaker_norm=config.data.normalization == "speaker")
    result["protocol"] = protocol(splits)
    return result


def run_parallel(args: argparse.Namespace, manifest: Path, n_folds: int) -> dict:
    """Folds dealt round-robin to ``args.jobs`` child runs of this script; their folds merged."""
    folds = list(range(1, n_folds + 1)) if args.folds == "all" else [int(f) for f in args.folds.split(",")]
    groups = [folds[i::args.jobs] for i in range(args.jobs) if folds[i::args.jobs]]
    parts = [WORK / f"part_{os.getpid()}_{i}.json" for i in range(len(groups))]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    source = ["--manifest", str(manifest)] + (["--corpus", args.corpus] if args.corpus else [])
    source += ["--corpus-name", args.corpus_name] if args.corpus_name else []
    children = []
    for group, part in zip(groups, parts):
        cmd = [sys.executable, str(Path(__file__).resolve()), *source, "--config", args.config, "--folds",
               ",".join(map(str, group)), "--out", str(part), "--no-predictions", "--set", "trainer.threads=1",
               *[a for o in args.overrides for a in ("--set", o)]]
        if args.speaker_norm:
            cmd.append("--speaker-norm")
        children.append(subprocess.Popen(cmd, env=env))
    if any(child.wait() != 0 for child in children):
        sys.exit("a fold job failed; see its output above")
    results = [json.loads(part.read_text()) for part in parts]
    first = results[0]
    merged = summarise_folds([f for r in results for f in r["folds"]], corpus=first["corpus"], features=first["features"],
                             model=first["model"], command=args.command, speaker_norm=any(r["speaker_norm"] for r in results),
                             run_dir=[r["run_dir"] for r in results])
    merged["protocol"] = first.get("protocol", merged["protocol"])
    return merged


def baseline(args: argparse.Namespace, manifest: Path) -> dict:
    """Clip functionals + logistic regression on the folds of ``split.scheme`` (auto by default)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from emorec.features.base import create_extractor
    from emorec.features.extract import extract_features
    from emorec.features.store import FeatureStore
    from emorec.corpora.manifest import read_manifest
    from emorec.corpora.splits import make_splits

    clips = read_manifest(manifest)
    extractor = create_extractor("egemaps", level="functionals") if args.baseline == "egemaps" else create_extractor("mfcc", n_mfcc=40)
    extract_features(clips, extractor, WORK / "cache")
    store = FeatureStore.for_extractor(WORK / "cache", extractor)
    vectors = {}
    for clip in clips:
        array = store.get(clip)
        if array is not None:
            vectors[clip.clip_id] = array[0] if args.baseline == "egemaps" else np.concatenate([array.mean(0), array.std(0)])
    labels = {c.clip_id: c.emotion for c in clips}
    classes = sorted({c.emotion for c in clips})
    from emorec.training.config import load_config

    # the folds of the recipe when one is given (its split section and --set), else base.yaml's
    split = load_config(args.config or REPO / "configs" / "base.yaml", [f"data.manifest={manifest}", *args.overrides]).split
    splits = make_splits(clips, split.scheme, k=split.k, val_speakers=split.val_speakers, test_size=split.test_size,
                         seed=split.seed)

    def xy(ids):
        ids = [i for i in ids if i in vectors]
        return np.stack([vectors[i] for i in ids]), np.array([classes.index(labels[i]) for i in ids])

    def fit(c, x, y):
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000)).fit(x, y)

    folds = []
    for number, split in enumerate(splits, start=1):
        (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = xy(split.train), xy(split.val), xy(split.test)
        val_ua = {c: balanced_accuracy_score(y_va, fit(c, x_tr, y_tr).predict(x_va)) for c in C_GRID}
        best_c = max(val_ua, key=val_ua.get)
        pred = fit(best_c, np.concatenate([x_tr, x_va]), np.concatenate([y_tr, y_va])).predict(x_te)
        folds.append({"fold": number, "test_speakers": split.test_speakers, "ua": float(balanced_accuracy_score(y_te, pred)),
                      "wa": float(accuracy_score(y_te, pred)), "macro_f1": float(f1_score(y_te, pred, average="macro")),
                      "epochs": None, "C": best_c, "val_best": float(val_ua[best_c]), "train_seconds": None})
        print(f"{split.name}: C={best_c} UA {folds[-1]['ua']:.3f}")
    features = "eGeMAPSv02 functionals (opensmile)" if args.baseline == "egemaps" else "MFCC-40 mean+std"
    result = summarise_folds(folds, corpus=describe(clips, args.corpus, args.corpus_name), features=features,
                             model="logistic regression (C chosen on validation speakers)", command=args.command,
                             speaker_norm=False, run_dir=[])
    result["protocol"] = protocol(splits) + "; inductive"
    return result


if __name__ == "__main__":
    main()
