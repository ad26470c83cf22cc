"""Classical baseline on the standard RAVDESS 6 speaker-independent folds.

eGeMAPS functionals (88 per clip, opensmile) + logistic regression. The regularisation C is
chosen on each fold's validation speakers (drawn from its training speakers); the test
actors are predicted once, by the model refitted on train+val with that C.

    python benchmarks/ravdess_6fold_baseline.py [--features egemaps|mfcc_stats]
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from common import RESULTS, WORK, command_line, ravdess_manifest
from emorec.atomic import write_json
from emorec.features.base import create_extractor
from emorec.features.extract import extract_features
from emorec.features.store import FeatureStore
from emorec.manifest import read_manifest
from emorec.splits import make_splits

C_GRID = (0.001, 0.01, 0.1, 1.0)


def clip_vectors(clips, features: str) -> dict[str, np.ndarray]:
    if features == "egemaps":
        extractor = create_extractor("egemaps", level="functionals")
    else:
        extractor = create_extractor("mfcc", n_mfcc=40)
    extract_features(clips, extractor, WORK / "cache")
    store = FeatureStore.for_extractor(WORK / "cache", extractor)
    vectors = {}
    for clip in clips:
        array = store.get(clip)
        if array is None:
            continue
        vectors[clip.clip_id] = array[0] if features == "egemaps" else np.concatenate([array.mean(0), array.std(0)])
    return vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--features", choices=("egemaps", "mfcc_stats"), default="egemaps")
    args = parser.parse_args()
    clips = read_manifest(ravdess_manifest())
    vectors = clip_vectors(clips, args.features)
    labels = {c.clip_id: c.emotion for c in clips}
    classes = sorted({c.emotion for c in clips})
    folds = []
    for split in make_splits(clips, "ravdess6", val_speakers=2):
        def xy(ids):
            ids = [i for i in ids if i in vectors]
            return np.stack([vectors[i] for i in ids]), np.array([classes.index(labels[i]) for i in ids])
        x_tr, y_tr = xy(split.train)
        x_va, y_va = xy(split.val)
        x_te, y_te = xy(split.test)
        def fit(c, x, y):
            return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000)).fit(x, y)
        val_ua = {c: balanced_accuracy_score(y_va, fit(c, x_tr, y_tr).predict(x_va)) for c in C_GRID}
        best_c = max(val_ua, key=val_ua.get)
        pred = fit(best_c, np.concatenate([x_tr, x_va]), np.concatenate([y_tr, y_va])).predict(x_te)
        folds.append({"fold": split.name, "test_speakers": split.test_speakers,
                      "ua": float(balanced_accuracy_score(y_te, pred)), "wa": float(accuracy_score(y_te, pred)),
                      "macro_f1": float(f1_score(y_te, pred, average="macro")), "epochs": None, "C": best_c})
        print(f"{split.name}: C={best_c} UA {folds[-1]['ua']:.3f}")
    ua = np.array([f["ua"] for f in folds])
    result = {
        "corpus": "RAVDESS speech (audio-only, 1440 clips, 24 actors, 8 classes)",
        "features": "eGeMAPSv02 functionals (opensmile)" if args.features == "egemaps" else "MFCC-40 mean+std",
        "model": "logistic regression (C chosen on validation speakers)",
        "protocol": "standard 6 speaker-independent folds; inductive",
        "speaker_norm": False,
        "folds": folds, "mean_ua": float(ua.mean()), "std_ua": float(ua.std(ddof=1)),
        "mean_wa": float(np.mean([f["wa"] for f in folds])),
        "mean_macro_f1": float(np.mean([f["macro_f1"] for f in folds])),
        "command": command_line(),
    }
    write_json(RESULTS / "ravdess_6fold_baseline.json", result)
    print(f"mean UA {result['mean_ua']:.3f} ± {result['std_ua']:.3f}")


if __name__ == "__main__":
    main()
