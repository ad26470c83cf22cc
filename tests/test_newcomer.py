"""What a newcomer hits first, run through the real CLI: bad values, run folders used from
elsewhere, saved splits, predictions of nothing."""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from emorec.corpora.synthetic import generate_synthetic_corpus
from cli_process import emorec

REPO = Path(__file__).resolve().parents[1]


def relative_recipe(root: Path) -> Path:
    """A seconds-long recipe whose manifest, cache and run folder are relative paths, as a user
    writes them."""
    config = {
        "base": str(REPO / "configs" / "base.yaml"),
        "data": {
            "manifest": "manifest.csv",
            "cache": "cache",
            "features": {"name": "logmel", "n_mels": 16},
        },
        "split": {"scheme": "speaker_kfold", "k": 3, "val_speakers": 1},
        "model": {
            "name": "attn_crnn",
            "channels": [4],
            "time_pool": [2],
            "freq_pool": [2],
            "gru_hidden": 8,
            "attention_dim": 8,
            "dense": 8,
        },
        "trainer": {"epochs": 2, "batch_size": 8},
        "run": {"dir": "runs", "name": "rel", "bootstrap": 20},
    }
    (root / "recipe.yaml").write_text(yaml.safe_dump(config))
    return root / "recipe.yaml"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A user's project folder: corpus, manifest and one trained fold, all made from inside it."""
    root = tmp_path_factory.mktemp("project")
    corpus = generate_synthetic_corpus(
        root / "corpus", speakers=6, clips_per_emotion=2, emotions=("happy", "sad", "angry")
    )
    emorec("prepare", "synthetic", "corpus", "--out", "manifest.csv", cwd=root)
    emorec("train", relative_recipe(root), "--quiet", cwd=root)
    run_dir = next((root / "runs").glob("rel-*"))
    return root, run_dir, corpus


def run_folders(root: Path) -> list[Path]:
    return (
        sorted(p for p in (root / "runs").glob("*") if p.is_dir())
        if (root / "runs").is_dir()
        else []
    )


@pytest.mark.parametrize(
    "override,key",
    [
        ("trainer.epochs=0", "trainer.epochs"),
        ("trainer.batch_size=0", "trainer.batch_size"),
        ("optim.lr=-1", "optim.lr"),
        ("optim.lr=.nan", "optim.lr"),
        ("model.foo=1", "model.foo"),
        ("trainer.monitor=test/ua", "trainer.monitor"),
        ("augment.modality_dropout=2", "augment.modality_dropout"),
        ("split.scheme=random", "split.scheme"),
        ("loss.label_smoothing=1", "loss.label_smoothing"),
        ("trainer.min_epochs=40", "trainer.min_epochs"),
        ("run.folds=one", "run.folds"),
        ("run.jobs=0", "run.jobs"),
        ("trainer.precision=8-bit", "trainer.precision"),
        ("optim.warmup_epochs=-1", "optim.warmup_epochs"),
        ("trainer.ema_half_life_epochs=-1", "trainer.ema_half_life_epochs"),
    ],
)
def test_every_impossible_value_is_refused_when_the_config_loads(override, key):
    from emorec.errors import ConfigError
    from emorec.training.config import load_config

    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(REPO / "configs" / "attn_crnn.yaml", [override])


@pytest.mark.parametrize(
    "args,key",
    [
        (["--epochs", "0"], "trainer.epochs"),
        (["--batch-size", "0"], "trainer.batch_size"),
        (["--set", "optim.lr=-1"], "optim.lr"),
        (["--set", "model.foo=1"], "model.foo"),
        (["--set", "trainer.accelerator=gpu"], "accelerator=gpu"),
    ],
)
def test_a_bad_value_is_one_line_and_leaves_no_run_folder(project, tmp_path, args, key):
    root, _, _ = project
    proc = emorec(
        "train",
        root / "recipe.yaml",
        "--quiet",
        "--run-dir",
        tmp_path / "runs",
        *args,
        cwd=root,
        check=False,
        fresh=True,
    )  # a fresh interpreter: its start-up notices would count as lines too
    assert proc.returncode == 2, proc.stderr
    assert key in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_yaml_syntax_error_names_line_and_column(tmp_path):
    (tmp_path / "bad.yaml").write_text("trainer:\n  epochs: 3\n  batch_size: [8\n")
    proc = emorec("train", tmp_path / "bad.yaml", cwd=tmp_path, check=False, fresh=True)
    assert proc.returncode == 2 and "line 4, column 1" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_the_run_stores_resolved_paths(project):
    root, run_dir, _ = project
    data = yaml.safe_load((run_dir / "config.yaml").read_text())["data"]
    assert (
        Path(data["manifest"]).is_absolute()
        and Path(data["manifest"]) == (root / "manifest.csv").resolve()
    )
    assert Path(data["cache"]).is_absolute()
    assert json.loads((run_dir / "run.json").read_text())["sessions"][0]["cwd"] == str(root)


def test_evaluate_from_another_directory_and_after_moving_the_run(project, tmp_path):
    root, run_dir, _ = project
    before = json.loads((run_dir / "fold_1" / "report" / "report.json").read_text())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    emorec("evaluate", run_dir, "--quiet", cwd=elsewhere)
    moved = tmp_path / "archive" / run_dir.name
    shutil.copytree(run_dir, moved)
    proc = emorec("evaluate", moved, "--quiet", cwd=elsewhere)
    after = json.loads((moved / "fold_1" / "report" / "report.json").read_text())
    assert (
        after["ua"] == pytest.approx(before["ua"])
        and str(moved / "fold_1" / "report") in proc.stdout
    )


def test_an_old_run_with_relative_paths_resolves_them_where_it_was_trained(project, tmp_path):
    """Runs written before paths were stored resolved: relative to the folder that held
    ``runs/``."""
    root, run_dir, _ = project
    old = root / "runs" / "old-relative"
    shutil.copytree(run_dir, old)
    config = yaml.safe_load((old / "config.yaml").read_text())
    config["data"]["manifest"], config["data"]["cache"] = "manifest.csv", "cache"
    (old / "config.yaml").write_text(yaml.safe_dump(config))
    status = json.loads((old / "run.json").read_text())
    for session in status["sessions"]:
        session.pop("cwd", None)  # as older runs wrote it
    (old / "run.json").write_text(json.dumps(status))
    try:
        emorec("evaluate", old, "--quiet", cwd=tmp_path)
    finally:
        shutil.rmtree(old)


def test_resume_from_another_directory_after_moving_the_run(project, tmp_path):
    """A run copied elsewhere (as back from a cloud machine) and resumed from another folder."""
    root, run_dir, _ = project
    moved = tmp_path / "copied" / run_dir.name
    shutil.copytree(run_dir, moved)
    shutil.rmtree(moved / "fold_1" / "report")
    (moved / "fold_1" / "model.json").unlink()  # trained up to its checkpoint, not exported
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = emorec("train", "--resume", moved, "--quiet", cwd=elsewhere)
    assert (moved / "fold_1" / "report" / "report.json").is_file(), proc.stderr
    assert json.loads((moved / "run.json").read_text())["status"] == "finished"


def test_split_file_is_used_exactly_by_train(project, tmp_path):
    root, _, _ = project
    emorec(
        "split",
        "manifest.csv",
        "--scheme",
        "speaker_kfold",
        "--k",
        "3",
        "--val-speakers",
        "1",
        "--seed",
        "7",
        "--out",
        tmp_path / "folds.json",
        cwd=root,
    )
    saved = json.loads((tmp_path / "folds.json").read_text())
    emorec(
        "train",
        "recipe.yaml",
        "--quiet",
        "--splits",
        tmp_path / "folds.json",
        "--run-dir",
        tmp_path / "runs",
        "--epochs",
        "1",
        cwd=root,
    )
    used = json.loads((next((tmp_path / "runs").glob("rel-*")) / "splits.json").read_text())
    assert used["splits"] == saved["splits"]
    default = json.loads((run_folders(root)[0] / "splits.json").read_text())  # seed 0 of the recipe
    assert [s["val"] for s in default["splits"]] != [s["val"] for s in saved["splits"]]


def test_a_split_file_with_leakage_is_refused(project, tmp_path):
    root, _, _ = project
    emorec(
        "split",
        "manifest.csv",
        "--scheme",
        "speaker_kfold",
        "--k",
        "3",
        "--val-speakers",
        "1",
        "--out",
        tmp_path / "folds.json",
        cwd=root,
    )
    data = json.loads((tmp_path / "folds.json").read_text())
    data["splits"][0]["train"].append(data["splits"][0]["test"][0])  # a test clip also in training
    (tmp_path / "folds.json").write_text(json.dumps(data))
    proc = emorec(
        "train",
        "recipe.yaml",
        "--quiet",
        "--splits",
        tmp_path / "folds.json",
        "--run-dir",
        tmp_path / "runs",
        cwd=root,
        check=False,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "runs").exists()


def test_predicting_nothing_fails_and_some_succeeds(project, tmp_path):
    root, run_dir, corpus = project
    notes = tmp_path / "notes.txt"
    notes.write_text("not audio")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    proc = emorec("predict", run_dir / "fold_1", notes, empty, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "notes.txt" in proc.stderr and "empty.wav" in proc.stderr, (
        proc.stderr
    )
    assert "no input could be predicted" in proc.stderr
    good = next(corpus.rglob("*.wav"))
    proc = emorec("predict", run_dir / "fold_1", notes, good, cwd=tmp_path)
    assert "notes.txt" in proc.stderr and good.name in proc.stdout


def test_predict_table_keeps_file_names_at_80_columns(project, tmp_path):
    root, run_dir, corpus = project
    good = sorted(corpus.rglob("*.wav"))[:2]
    proc = emorec("predict", run_dir / "fold_1", *good, cwd=tmp_path, timeout=300, COLUMNS="80")
    assert all(path.name in proc.stdout for path in good), proc.stdout
    assert max(len(line) for line in proc.stdout.splitlines()) <= 80


def test_version(tmp_path):
    from emorec import __version__

    proc = emorec("--version", cwd=tmp_path)
    assert proc.stdout.strip() == f"emorec {__version__}"


def test_exported_weights_have_the_mode_of_every_other_file(project):
    _, run_dir, _ = project
    fold = run_dir / "fold_1"
    assert (fold / "model.safetensors").stat().st_mode & 0o777 == (
        fold / "model.json"
    ).stat().st_mode & 0o777


def test_folds_in_parallel_jobs_make_one_run_with_one_summary(project, tmp_path):
    root, _, _ = project
    proc = emorec(
        "train",
        "recipe.yaml",
        "--quiet",
        "--folds",
        "all",
        "--jobs",
        "2",
        "--epochs",
        "1",
        "--run-dir",
        tmp_path / "runs",
        cwd=root,
    )
    (run_dir,) = list((tmp_path / "runs").iterdir())
    assert sorted(
        p.name for p in run_dir.glob("fold_*/report/report.json") for p in [p.parents[1]]
    ) == ["fold_1", "fold_2", "fold_3"], proc.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (
        summary["n_folds"] == 3
        and json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    )
    log = (run_dir / "train.log").read_text()
    assert "training in process" in log and all(
        (run_dir / f"fold_{k}" / "train.log").is_file() for k in (1, 2, 3)
    )


def test_quiet_training_prints_no_library_notices(project, tmp_path):
    root, _, _ = project
    proc = emorec(
        "train",
        "recipe.yaml",
        "--quiet",
        "--epochs",
        "1",
        "--run-dir",
        tmp_path / "runs",
        cwd=root,
        fresh=True,
    )  # import-time notices too
    noise = [
        line
        for line in proc.stderr.splitlines()
        if "Tip" in line or "deprecated" in line.lower() or "GPU available" in line
    ]
    assert not noise, proc.stderr
    log = (next((tmp_path / "runs").iterdir()) / "train.log").read_text()
    assert "GPU available" in log  # Lightning's own lines still reach the run's log


def test_resuming_a_run_with_an_impossible_value_is_one_line(project, tmp_path):
    """A run folder left by an older version with ``epochs: 0``: --resume explains, no traceback."""
    root, run_dir, _ = project
    broken = tmp_path / run_dir.name
    shutil.copytree(run_dir, broken)
    config = yaml.safe_load((broken / "config.yaml").read_text())
    config["trainer"]["epochs"] = 0
    (broken / "config.yaml").write_text(yaml.safe_dump(config))
    proc = emorec("train", "--resume", broken, "--quiet", cwd=tmp_path, check=False, fresh=True)
    assert (
        proc.returncode == 2 and "trainer.epochs" in proc.stderr and "Traceback" not in proc.stderr
    )
