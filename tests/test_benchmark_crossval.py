"""benchmarks/crossval.py: cross-validation of a recipe, and the classical baseline, on any manifest
and split scheme, in the committed results format (folds in parallel processes, merged)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import tiny_recipe_config

from emorec.corpora import prepare_corpus
from emorec.corpora.synthetic import generate_synthetic_corpus
from emorec.manifest import write_manifest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_benchmark(*args, work: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, EMOREC_BENCHMARK_WORK=str(work))
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "crossval.py"), *map(str, args)], cwd=BENCHMARKS, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_crossval_benchmark_trains_folds_in_parallel_and_runs_the_baseline_on_the_same_folds(tmp_path):
    corpus = generate_synthetic_corpus(tmp_path / "corpus", speakers=6, clips_per_emotion=3, emotions=("happy", "sad", "angry"))
    write_manifest(prepare_corpus("synthetic", corpus, progress=False).clips, tmp_path / "manifest.csv")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe_config(tmp_path, "bench")))
    out = tmp_path / "results" / "synthetic_3fold.json"
    run_benchmark("--manifest", tmp_path / "manifest.csv", "--corpus-name", "Synthetic", "--config", recipe,
                  "--jobs", "2", "--out", out, work=tmp_path / "work")
    result = json.loads(out.read_text())
    assert result["corpus"] == "Synthetic (54 clips, 6 actors, 3 classes)"
    assert result["protocol"].startswith("3 speaker-independent folds (speaker_kfold)")
    assert [f["fold"] for f in result["folds"]] == [1, 2, 3] and len(result["run_dir"]) == 2  # two jobs, merged
    assert 0 <= result["mean_ua"] <= 1 and "wall_seconds" in result and "--jobs 2" in result["command"]
    test_speakers = [s for f in result["folds"] for s in f["test_speakers"]]
    assert sorted(test_speakers) == sorted(set(test_speakers)) and len(test_speakers) == 6  # each actor tested once
    with gzip.open(tmp_path / "results" / "predictions" / "synthetic_3fold.csv.gz", "rt") as handle:
        rows = handle.read().splitlines()
    assert len(rows) > 54  # validation and test rows of every fold

    baseline = tmp_path / "results" / "baseline.json"
    run_benchmark("--manifest", tmp_path / "manifest.csv", "--corpus-name", "Synthetic", "--baseline", "mfcc_stats",
                  "--config", recipe, "--out", baseline, work=tmp_path / "work")  # the recipe's folds
    base = json.loads(baseline.read_text())
    assert base["model"].startswith("logistic regression") and base["corpus"] == result["corpus"]
    assert [sorted(f["test_speakers"]) for f in base["folds"]] == [sorted(f["test_speakers"]) for f in result["folds"]]
