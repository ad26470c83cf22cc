"""benchmarks/crossval.py: cross-validation of a recipe, and the classical baseline, on any manifest
and split scheme, in the committed results format (folds in parallel processes, merged)."""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

import numpy as np
import yaml
from cli_process import python_script
from conftest import tiny_recipe_config

from emorec.corpora import prepare_corpus
from emorec.corpora.synthetic import generate_synthetic_corpus
from emorec.corpora.manifest import write_manifest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_benchmark(*args, work: Path) -> subprocess.CompletedProcess:
    return python_script(
        BENCHMARKS / "crossval.py", *args, cwd=BENCHMARKS, EMOREC_BENCHMARK_WORK=work
    )


def test_crossval_benchmark_trains_folds_in_parallel_and_runs_the_baseline_on_the_same_folds(
    tmp_path,
):
    corpus = generate_synthetic_corpus(
        tmp_path / "corpus", speakers=6, clips_per_emotion=3, emotions=("happy", "sad", "angry")
    )
    write_manifest(
        prepare_corpus("synthetic", corpus, progress=False).clips, tmp_path / "manifest.csv"
    )
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe_config(tmp_path, "bench")))
    out = tmp_path / "results" / "synthetic_3fold.json"
    run_benchmark(
        "--manifest",
        tmp_path / "manifest.csv",
        "--corpus-name",
        "Synthetic",
        "--config",
        recipe,
        "--jobs",
        "2",
        "--out",
        out,
        work=tmp_path / "work",
    )
    result = json.loads(out.read_text())
    assert result["corpus"] == "Synthetic (54 clips, 6 actors, 3 classes)"
    assert result["protocol"].startswith("3 speaker-independent folds (speaker_kfold)")
    assert [f["fold"] for f in result["folds"]] == [1, 2, 3] and len(
        result["run_dir"]
    ) == 2  # two jobs, merged
    assert (
        0 <= result["mean_ua"] <= 1 and "wall_seconds" in result and "--jobs 2" in result["command"]
    )
    test_speakers = [s for f in result["folds"] for s in f["test_speakers"]]
    # each actor tested once
    assert sorted(test_speakers) == sorted(set(test_speakers)) and len(test_speakers) == 6
    with gzip.open(tmp_path / "results" / "predictions" / "synthetic_3fold.csv.gz", "rt") as handle:
        rows = handle.read().splitlines()
    assert len(rows) > 54  # validation and test rows of every fold
    # the corpus is described as trained: clips and classes kept
    two = tmp_path / "results" / "two_classes.json"
    run_benchmark(
        "--manifest",
        tmp_path / "manifest.csv",
        "--corpus-name",
        "Synthetic",
        "--config",
        recipe,
        "--folds",
        "1",
        "--set",
        "data.labels=[happy,sad]",
        "--no-predictions",
        "--out",
        two,
        work=tmp_path / "work",
    )
    assert json.loads(two.read_text())["corpus"] == "Synthetic (36 clips, 6 actors, 2 classes)"

    baseline = tmp_path / "results" / "baseline.json"
    run_benchmark(
        "--manifest",
        tmp_path / "manifest.csv",
        "--corpus-name",
        "Synthetic",
        "--baseline",
        "mfcc_stats",
        "--config",
        recipe,
        "--out",
        baseline,
        work=tmp_path / "work",
    )  # the recipe's folds
    base = json.loads(baseline.read_text())
    assert base["model"].startswith("logistic regression") and base["corpus"] == result["corpus"]
    assert [sorted(f["test_speakers"]) for f in base["folds"]] == [
        sorted(f["test_speakers"]) for f in result["folds"]
    ]


def corpus_named(root: Path, name: str, emotions: tuple[str, ...], seed: int) -> list:
    """A generated corpus whose clips, speakers and corpus column carry ``name`` (as RAVDESS's and
    CREMA-D's do)."""
    clips = prepare_corpus(
        "synthetic",
        generate_synthetic_corpus(
            root, speakers=4, clips_per_emotion=3, emotions=emotions, seed=seed
        ),
        progress=False,
    ).clips
    for clip in clips:
        clip.corpus, clip.clip_id, clip.speaker = (
            name,
            f"{name}/{clip.clip_id}",
            f"{name}/{clip.speaker}",
        )
        clip.performance = clip.clip_id  # two corpora share no recording
    return clips


def in_corpus_predictions(clips, out: Path) -> None:
    """A results JSON and its predictions file for two folds of ``clips`` (rows: fold, part, clip,
    true, probs)."""
    classes = ["neutral", "calm", "happy", "sad"]
    rng = np.random.default_rng(0)
    lines = ["fold,part,clip_id,true," + ",".join(f"prob_{c}" for c in classes)]
    for i, clip in enumerate(clips):
        probs = rng.dirichlet(np.ones(len(classes)))
        lines.append(
            f"{1 + i % 2},test,{clip.clip_id},{clip.emotion}," + ",".join(f"{p:.6f}" for p in probs)
        )
    (out.parent / "predictions").mkdir(parents=True, exist_ok=True)
    with gzip.open(out.parent / "predictions" / f"{out.stem}.csv.gz", "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    out.write_text(
        json.dumps(
            {
                "predictions": str((out.parent / "predictions" / f"{out.stem}.csv.gz").resolve()),
                "command": "crossval.py ...",
            }
        )
    )


def test_crosscorpus_matrix_reads_in_corpus_and_cross_corpus_predictions_on_the_shared_classes(
    tmp_path,
):
    """Train on all of one corpus and test on all of the other (split.scheme cross_corpus), then the
    matrix: the diagonal from the in-corpus folds without the unshared class, the cross cell
    pooled."""
    first = corpus_named(tmp_path / "a", "ravdess", ("neutral", "happy", "sad", "calm"), seed=1)
    second = corpus_named(tmp_path / "b", "crema-d", ("neutral", "happy", "sad"), seed=2)
    write_manifest(first + second, tmp_path / "both.csv")
    write_manifest(first, tmp_path / "first.csv")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe_config(tmp_path, "x", split={"k": 2})))
    results = tmp_path / "results"
    run_benchmark(
        "--manifest",
        tmp_path / "both.csv",
        "--config",
        recipe,
        "--set",
        "data.label_policy=intersection",
        "--set",
        "split.scheme=cross_corpus",
        "--set",
        "split.test_corpora=[crema-d]",
        "--out",
        results / "cross.json",
        work=tmp_path / "work",
    )
    cross = json.loads((results / "cross.json").read_text())
    assert cross["protocol"].startswith("cross-corpus: ravdess -> crema-d")
    assert sorted(cross["folds"][0]["test_speakers"]) == sorted({c.speaker for c in second})
    # the diagonal's cross-validation, as crossval.py writes it
    in_corpus_predictions(first, results / "in.json")
    proc = python_script(
        BENCHMARKS / "crosscorpus.py",
        "--cell",
        f"RAVDESS={results / 'in.json'}",
        "--cell",
        f"RAVDESS={results / 'cross.json'}",
        "--bootstrap",
        "50",
        "--out",
        results / "m.json",
        cwd=BENCHMARKS,
        timeout=300,
    )
    matrix = json.loads((results / "m.json").read_text())
    cells = {(c["train"], c["test"]): c for c in matrix["cells"]}
    assert set(cells) == {("RAVDESS", "RAVDESS"), ("RAVDESS", "CREMA-D")}
    diagonal, off = cells[("RAVDESS", "RAVDESS")], cells[("RAVDESS", "CREMA-D")]
    assert diagonal["classes"] == off["classes"] == ["neutral", "happy", "sad"]
    # every actor's clips but the calm ones
    assert diagonal["n"] == 4 * 3 * 3 and diagonal["folds"] == 2
    assert off["n"] == len(second) and off["folds"] == 1
    for cell in cells.values():
        assert cell["ci_ua"][0] <= cell["ua"] <= cell["ci_ua"][1]
        assert (
            cell["top_class"] in cell["classes"]
            and 1 / len(cell["classes"]) <= cell["top_share"] <= 1
        )
    assert "| RAVDESS |" in proc.stdout and (results / "m.png").stat().st_size > 0
    again = python_script(
        BENCHMARKS / "crosscorpus.py",
        "--cell",
        f"A={results / 'cross.json'}",
        "--cell",
        f"A={results / 'cross.json'}",
        "--out",
        results / "n.json",
        cwd=BENCHMARKS,
        check=False,
        timeout=300,
    )
    assert again.returncode != 0 and "same cell" in again.stderr


def test_release_trains_on_every_speaker_but_validation_and_ships_the_weights_it_made(tmp_path):
    """benchmarks/release.py: a `release` fold (no test speakers), its model copied with a card that
    names the licences, the command and the SHA-256 of exactly the weights trained."""
    import hashlib

    first = corpus_named(tmp_path / "a", "ravdess", ("neutral", "happy", "sad", "calm"), seed=1)
    second = corpus_named(tmp_path / "b", "crema-d", ("neutral", "happy", "sad"), seed=2)
    write_manifest(first + second, tmp_path / "both.csv")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        yaml.safe_dump(
            tiny_recipe_config(tmp_path, "rel", split={"scheme": "release", "val_speakers": 2})
        )
    )
    work = {"EMOREC_BENCHMARK_WORK": tmp_path / "work"}
    python_script(
        BENCHMARKS / "release.py",
        "--config",
        recipe,
        "--manifest",
        tmp_path / "both.csv",
        "--name",
        "tiny",
        "--dest",
        tmp_path / "released",
        "--out",
        tmp_path / "release.json",
        cwd=BENCHMARKS,
        **work,
    )
    shipped = tmp_path / "released" / "tiny"
    record = json.loads((tmp_path / "release.json").read_text())
    digest = hashlib.sha256((shipped / "model.safetensors").read_bytes()).hexdigest()
    assert record["weights_sha256"] == digest
    run_dir = (
        Path(record["run_dir"])
        if Path(record["run_dir"]).is_absolute()
        else BENCHMARKS.parent / record["run_dir"]
    )
    assert (
        hashlib.sha256((run_dir / "fold_1" / "model.safetensors").read_bytes()).hexdigest()
        == digest
    )
    splits = json.loads((run_dir / "splits.json").read_text())
    fold = splits[0] if isinstance(splits, list) else splits["splits"][0]
    assert fold["test"] == [] and {s.split("/")[0] for s in fold["val_speakers"]} == {
        "ravdess",
        "crema-d",
    }
    assert record["training_clips"] == {
        "crema-d": {"clips": 27, "speakers": 3},
        "ravdess": {"clips": 36, "speakers": 3},
    }
    card = (shipped / "MODEL_CARD.md").read_text()
    assert (
        "non-commercial" in card
        and "CC BY-NC-SA 4.0" in card
        and digest in card
        and "release.py" in card
    )
    meta = json.loads((shipped / "model.json").read_text())
    assert (
        meta["model_id"] == "tiny" and meta["weights_sha256"] == digest and meta["parameters"] > 0
    )
    import emorec

    rec = emorec.load(shipped)
    assert rec.model_id == "tiny" and rec.classes == meta["class_names"]
    # an inference-only front-end setting laid over the shipped
    # model later: weights kept, record and card say so
    python_script(
        BENCHMARKS / "release.py",
        "--card-only",
        "--name",
        "tiny",
        "--dest",
        tmp_path / "released",
        "--out",
        tmp_path / "release.json",
        "--front-end",
        "trim_db=40",
        "--front-end",
        "trim_to_sample=true",
        cwd=BENCHMARKS,
        timeout=300,
        **work,
    )
    meta = json.loads((shipped / "model.json").read_text())
    assert (
        meta["features"]["audio"] | {"trim_db": 40, "trim_to_sample": True}
        == meta["features"]["audio"]
    )
    assert json.loads((tmp_path / "release.json").read_text())["front_end_after_training"] == {
        "trim_db": 40,
        "trim_to_sample": True,
    }
    assert hashlib.sha256((shipped / "model.safetensors").read_bytes()).hexdigest() == digest
    assert '"trim_to_sample": true' in (shipped / "MODEL_CARD.md").read_text()
    assert emorec.load(shipped).backend._front_end()[0]["audio"].trim_to_sample
    bad = python_script(
        BENCHMARKS / "release.py",
        "--card-only",
        "--name",
        "tiny",
        "--dest",
        tmp_path / "released",
        "--out",
        tmp_path / "release.json",
        "--front-end",
        "trim_to_sampel=true",
        cwd=BENCHMARKS,
        check=False,
        timeout=300,
        **work,
    )
    assert bad.returncode != 0 and "trim_to_sampel" in bad.stderr
