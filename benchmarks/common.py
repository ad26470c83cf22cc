"""Shared plumbing for the benchmark scripts: where the real data is, the RAVDESS manifest."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Run folders, caches and prepared manifests; tests point it elsewhere (EMOREC_BENCHMARK_WORK)
WORK = Path(os.environ.get("EMOREC_BENCHMARK_WORK") or REPO / "benchmarks" / "work")
RESULTS = REPO / "benchmarks" / "results"
# the headline by the rules in ravdess_ensemble.py; make_readme.py and models_ravdess_6fold.py both show it
HEADLINE_ENSEMBLE = RESULTS / "ravdess_6fold_ensemble_deltas5" / "ensemble.json"


def data_dir() -> Path:
    env = os.environ.get("EMOREC_DATA_DIR")
    path = Path(env) if env else REPO.parent / "shared" / "data"
    if not path.is_dir():
        sys.exit(f"real data not found at {path}; set EMOREC_DATA_DIR")
    return path


def ravdess_manifest() -> Path:
    """Prepare (once) the manifest of all RAVDESS speech audio (1440 clips, 24 actors)."""
    from emorec.corpora import prepare_corpus
    from emorec.corpora.manifest import write_manifest

    path = WORK / "ravdess" / "manifest.csv"
    if not path.is_file():
        result = prepare_corpus("ravdess", data_dir() / "ravdess-speech-16k")
        write_manifest(result.clips, path)
    return path


def command_line() -> str:
    """The command as run from the repository root: paths inside the checkout are written relative to it,
    so a result names no machine's folders (a wrapper such as loco.py passes absolute ones)."""
    root = str(REPO) + os.sep

    def portable(arg: str) -> str:
        return arg.replace(root, "") if root in arg else arg

    return "python " + " ".join(shlex.quote(portable(a)) for a in sys.argv)


def recipe_of(command: str) -> str | None:
    """The recipe a benchmark command trained (``--config ../configs/x.yaml`` -> ``configs/x.yaml``), if it names one."""
    words = command.split()
    return next((w.removeprefix("../") for w, prev in zip(words[1:], words) if prev == "--config"), None)


def device_name(hardware: dict) -> str | None:
    """``train_summary.json``'s hardware -> "NVIDIA H100 80GB HBM3" or "cpu (2 cores)"; None if unrecorded."""
    if not hardware:
        return None
    if hardware.get("gpus") and hardware.get("accelerator") == "cuda":
        return ", ".join(hardware["gpus"])
    return f"cpu ({hardware.get('cpu_count')} cores)"


def run_to_result(run_dir: Path, *, corpus: str, features: str, model: str, command: str,
                  speaker_norm: bool = False) -> dict:
    """A cross-validation run directory -> the committed results format."""
    import json

    from emorec.runs.folder import fold_number

    folds = []
    for fold_dir in sorted(run_dir.glob("fold_*"), key=fold_number):
        if not (fold_dir / "report" / "report.json").is_file():
            continue  # a fold another job trained
        report = json.loads((fold_dir / "report" / "report.json").read_text())
        meta = json.loads((fold_dir / "model.json").read_text())
        extra = report.get("extra", report)
        summary_path = fold_dir / "train_summary.json"
        hardware = json.loads(summary_path.read_text()).get("hardware", {}) if summary_path.is_file() else {}
        folds.append({"fold": fold_number(fold_dir), "test_speakers": extra.get("test_speakers"),
                      "ua": report["ua"], "wa": report["wa"], "macro_f1": report["macro_f1"],
                      "epochs": meta.get("best_epoch"), "epochs_run": meta.get("epochs_run"),
                      "val_monitor": meta.get("monitor"), "val_best": meta.get("best_score"),
                      "train_seconds": meta.get("train_seconds"), "device": device_name(hardware),
                      **calibration_of(report)})
    return summarise_folds(folds, corpus=corpus, features=features, model=model, command=command,
                           speaker_norm=speaker_norm,
                           run_dir=str(run_dir.relative_to(REPO)) if run_dir.is_relative_to(REPO) else str(run_dir))


def calibration_of(report: dict) -> dict:
    """A fold report's test ECE before and after its temperature (fitted on validation clips), if any."""
    calibration = report.get("calibration") or {}
    if "ece_after" not in calibration:
        return {}
    return {"temperature": calibration.get("temperature"), "test_ece_before": calibration.get("ece_before"),
            "test_ece_after": calibration["ece_after"]}


def summarise_folds(folds: list[dict], *, corpus: str, features: str, model: str, command: str,
                    speaker_norm: bool, run_dir: str | list[str]) -> dict:
    """Per-fold rows -> the committed results format (mean ± sample std over folds)."""
    import numpy as np

    folds = sorted(folds, key=lambda f: f["fold"])
    ua = np.array([f["ua"] for f in folds])
    return {
        "corpus": corpus, "features": features, "model": model,
        "protocol": "standard 6 speaker-independent folds; validation speakers from training actors",
        "speaker_norm": speaker_norm,
        "folds": folds,
        "mean_ua": float(ua.mean()), "std_ua": float(ua.std(ddof=1)) if len(ua) > 1 else 0.0,
        "mean_wa": float(np.mean([f["wa"] for f in folds])),
        "mean_macro_f1": float(np.mean([f["macro_f1"] for f in folds])),
        "val_monitor": folds[0].get("val_monitor") if folds else None,
        "mean_val_best": float(np.mean([f["val_best"] for f in folds if f.get("val_best") is not None] or [float("nan")])),
        "mean_train_seconds_per_fold": float(np.mean([f["train_seconds"] or 0 for f in folds])),
        **({"mean_test_ece_before": float(np.mean([f["test_ece_before"] for f in folds])),
            "mean_test_ece_after": float(np.mean([f["test_ece_after"] for f in folds]))}
           if folds and all("test_ece_after" in f for f in folds) else {}),
        "run_dir": run_dir,
        "command": command,
    }
