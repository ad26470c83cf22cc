"""Resume: a training process really killed with SIGKILL mid-epoch, then ``emorec train --resume``.

The killed run is compared with an uninterrupted run of the same recipe: every epoch appears
exactly once in ``metrics.csv`` and the resumed run is bit-identical (metrics and weights),
because the checkpoint is taken after a complete epoch and carries the random states. Run
three times: plain, and with an exponential moving average of the weights, set per step
(``trainer.ema_decay``) or in epochs (``trainer.ema_half_life_epochs``), whose average and raw
weights both travel in the checkpoint.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from emorec.runs.status import run_view
from emorec.training.checkpoints import AtomicCheckpointIO, load_checkpoint, repair_best
import cli_process
from conftest import tiny_recipe_config

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 6


def _env(**extra) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", **extra)
    env.pop("EMOREC_RUN_DIR", None)
    return env


def emorec(*args, cwd: Path, check: bool = True, **env) -> subprocess.CompletedProcess:
    return cli_process.emorec(
        *args, cwd=cwd, check=check, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", **env
    )


def epoch_rows(metrics_csv: Path) -> tuple[list[int], list[int]]:
    """Epoch numbers of the rows with validation metrics and of those with training metrics, in
    file order (metrics.csv has one row per epoch, from 1, holding both)."""
    val, train = [], []
    for row in csv.DictReader(open(metrics_csv)):
        if row.get("val/ua"):
            val.append(int(row["epoch"]))
        if row.get("train/loss"):
            train.append(int(row["epoch"]))
    return val, train


@pytest.fixture(
    scope="module",
    params=[{"ema_decay": 0.0}, {"ema_decay": 0.9}, {"ema_half_life_epochs": 0.5}],
    ids=["plain", "ema", "ema_half_life"],
)
def killed_and_resumed(request, tmp_path_factory):
    from emorec.corpora.synthetic import generate_synthetic_corpus

    root = tmp_path_factory.mktemp("resume")
    corpus = generate_synthetic_corpus(
        root / "corpus", speakers=6, clips_per_emotion=3, emotions=("happy", "sad", "angry")
    )
    emorec("prepare", "synthetic", corpus, "--out", root / "manifest.csv", cwd=root)
    config = tiny_recipe_config(
        root,
        "r",
        model={"channels": [8], "gru_hidden": 32},
        augment={"noise": 0.01, "mixup": 0.2},  # random draws, so the RNG state matters
        trainer={"epochs": EPOCHS, "patience": 20, **request.param},
    )
    del config["run"]["dir"]  # every run of this file names its own --run-dir
    (root / "recipe.yaml").write_text(yaml.safe_dump(config))

    # 1. start training, watch the heartbeat, SIGKILL it in the middle of epoch 3
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emorec",
            "train",
            root / "recipe.yaml",
            "--quiet",
            "--run-dir",
            root / "killed",
        ],
        cwd=root,
        env=_env(EMOREC_HEARTBEAT_SECONDS="0"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = None
    deadline = time.time() + 600
    try:
        while time.time() < deadline and proc.poll() is None:
            beats = list((root / "killed").glob("*/fold_1/heartbeat.json"))
            try:
                seen = json.loads(beats[0].read_text()) if beats else None
            except ValueError:
                seen = None
            if (
                seen
                and seen["status"] == "running"
                and seen["epoch"] >= 2
                and seen["phase"] == "train"
                and seen["batch"] >= 1
            ):
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.01)
    finally:
        if proc.poll() is None and (seen is None or seen["epoch"] < 2):
            proc.kill()
    rc = proc.wait(timeout=60)
    assert rc == -signal.SIGKILL, (
        f"training ended by itself ({rc}) before the kill:\n{proc.stderr.read()[-3000:]}"
    )
    run_dir = next((root / "killed").iterdir())
    killed_ckpt = load_checkpoint(run_dir / "fold_1" / "checkpoints" / "last.ckpt")
    raw = killed_ckpt.get("current_model_state")
    at_kill = {
        "average_differs_from_raw": None
        if raw is None
        else any(
            not torch.equal(raw[k], v)
            for k, v in killed_ckpt["state_dict"].items()
            if v.is_floating_point()
        ),
        "heartbeat": json.loads((run_dir / "fold_1" / "heartbeat.json").read_text()),
        "ckpt_epoch": killed_ckpt["epoch"],
        "val_rows": epoch_rows(run_dir / "fold_1" / "metrics.csv")[0],
        "files": sorted(p.name for p in (root / "killed").iterdir()),
        "monitor": run_view(run_dir),
    }

    # 2. resume it
    resumed = emorec("train", "--resume", run_dir, "--quiet", cwd=root)
    # 3. the same recipe, never interrupted
    emorec("train", root / "recipe.yaml", "--quiet", "--run-dir", root / "straight", cwd=root)
    straight = next((root / "straight").iterdir())
    return root, run_dir, straight, at_kill, resumed


def test_the_process_was_killed_mid_epoch_after_two_complete_epochs(killed_and_resumed):
    _, _, _, at_kill, _ = killed_and_resumed
    hb = at_kill["heartbeat"]
    assert hb["status"] == "running", "SIGKILL leaves no chance to write 'finished' or 'failed'"
    assert 2 <= hb["epoch"] < EPOCHS and hb["batch"] >= 1
    assert at_kill["ckpt_epoch"] == hb["epoch"], "last.ckpt holds every complete epoch"
    view = at_kill["monitor"]  # what `emorec monitor` said about the killed run
    assert (
        view.status == "stalled"
        and "is gone" in view.reason
        and view.current.heartbeat["epoch"] == hb["epoch"]
    )


def test_resume_continues_in_the_same_run_directory(killed_and_resumed):
    root, run_dir, _, at_kill, resumed = killed_and_resumed
    assert at_kill["files"] == [run_dir.name] == sorted(p.name for p in (root / "killed").iterdir())
    assert "fold_1: UA" in resumed.stdout
    status = json.loads((run_dir / "run.json").read_text())
    assert status["status"] == "finished" and len(status["sessions"]) == 2
    killed, again = status["sessions"]
    assert killed["status"] == "lost", (
        "the killed session never ended cleanly: its end is its last sign of life"
    )
    assert killed["started"] < killed["ended"] <= again["started"] and again["status"] == "finished"
    summary = json.loads((run_dir / "fold_1" / "train_summary.json").read_text())
    assert (
        summary["epochs_run"] == EPOCHS
        and summary["sessions"] == 2
        and len(summary["epoch_seconds"]) == EPOCHS
    )
    log = (run_dir / "train.log").read_text()
    assert "resuming after epoch" in log and log.count("fold1 epoch 1/") == 1
    for name in (
        "model.safetensors",
        "model.json",
        "report/report.json",
        "history.npz",
        "checkpoints/best.ckpt",
    ):
        assert (run_dir / "fold_1" / name).is_file(), name


def test_every_epoch_appears_exactly_once_in_the_metrics(killed_and_resumed):
    _, run_dir, _, _, _ = killed_and_resumed
    val, train = epoch_rows(run_dir / "fold_1" / "metrics.csv")
    assert val == list(range(1, EPOCHS + 1)) and train == list(range(1, EPOCHS + 1))
    from emorec.runs.epochs import read_epoch_metrics

    assert read_epoch_metrics(run_dir / "fold_1" / "metrics.csv")["epoch"] == [
        float(e) for e in range(1, EPOCHS + 1)
    ]


def test_the_resumed_run_equals_an_uninterrupted_one(killed_and_resumed):
    _, run_dir, straight, _, _ = killed_and_resumed
    assert (run_dir / "fold_1" / "metrics.csv").read_text() == (
        straight / "fold_1" / "metrics.csv"
    ).read_text()
    assert (run_dir / "fold_1" / "model.safetensors").read_bytes() == (
        straight / "fold_1" / "model.safetensors"
    ).read_bytes()
    a = json.loads((run_dir / "fold_1" / "report" / "report.json").read_text())
    b = json.loads((straight / "fold_1" / "report" / "report.json").read_text())
    assert a["confusion_matrix"] == b["confusion_matrix"] and a["ua"] == b["ua"]


def test_the_export_holds_the_chosen_checkpoints_weights_the_average_with_ema(killed_and_resumed):
    from safetensors.torch import load_file

    root, run_dir, _, at_kill, _ = killed_and_resumed
    trainer = yaml.safe_load((root / "recipe.yaml").read_text())["trainer"]
    ema = trainer.get("ema_decay") or trainer.get("ema_half_life_epochs")
    # the recipe keeps the best epoch
    chosen = load_checkpoint(run_dir / "fold_1" / "checkpoints" / "best.ckpt")
    exported = load_file(run_dir / "fold_1" / "model.safetensors")
    assert exported.keys() and all(
        torch.equal(v, chosen["state_dict"][f"model.{k}"]) for k, v in exported.items()
    )
    last = load_checkpoint(run_dir / "fold_1" / "checkpoints" / "last.ckpt")
    if ema:  # every optimiser step went into the average, across the kill
        assert int(last["averaging_state"]["n_averaged"]) == last["global_step"]
        assert at_kill["average_differs_from_raw"], (
            "mid-run, state_dict holds the average, not the raw weights"
        )
        # the resumed session averaged with the same per-step decay
        if trainer.get("ema_half_life_epochs"):
            steps = last["global_step"] // EPOCHS
            meta = json.loads((run_dir / "fold_1" / "model.json").read_text())
            assert meta["ema"]["decay_per_step"] == pytest.approx(
                0.5 ** (1 / (trainer["ema_half_life_epochs"] * steps))
            )
    else:
        assert "current_model_state" not in last and at_kill["average_differs_from_raw"] is None


def test_resuming_a_finished_run_keeps_every_fold(killed_and_resumed):
    root, run_dir, _, _, _ = killed_and_resumed
    weights = run_dir / "fold_1" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    emorec("train", "--resume", run_dir, "--quiet", cwd=root)
    assert weights.stat().st_mtime_ns == stamp
    assert "already finished and evaluated; kept" in (run_dir / "train.log").read_text()
    assert epoch_rows(run_dir / "fold_1" / "metrics.csv")[0] == list(range(1, EPOCHS + 1))


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--resume", "RUN", "--epochs", "3"], "drop --epochs"),
        (["recipe.yaml", "--resume", "RUN"], "drop CONFIG"),
        (["--resume", "/no/such/run"], "/no/such/run"),
        ([], "--resume RUN_DIR"),
    ],
)
def test_resume_requests_that_cannot_work_get_a_one_line_error(
    args, needle, tmp_path, monkeypatch, capsys
):
    from emorec.cli import main

    (tmp_path / "RUN").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["emorec", "train", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    assert needle in err and len(err.strip().splitlines()) == 1


def test_a_kill_while_writing_a_checkpoint_leaves_the_previous_one_whole(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"epoch": 1, "state_dict": {"w": torch.ones(3)}}, path)

    def killed(*_):
        raise KeyboardInterrupt  # stands in for the kill, after the temp file was written

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"epoch": 2, "state_dict": {"w": torch.zeros(3)}}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"], "no temp file left behind"


def test_best_checkpoint_is_repaired_when_the_kill_came_between_last_and_best(tmp_path):
    io = AtomicCheckpointIO()
    state = {
        "epoch": 3,
        "callbacks": {"EpochCheckpoint": {"best_epoch": 3}},
        "state_dict": {"w": torch.full((2,), 3.0)},
    }
    io.save_checkpoint(state, tmp_path / "last.ckpt")
    io.save_checkpoint({"epoch": 1, "state_dict": {"w": torch.ones(2)}}, tmp_path / "best.ckpt")
    repair_best(tmp_path, state)
    assert load_checkpoint(tmp_path / "best.ckpt")["epoch"] == 3
    io.save_checkpoint(
        {**state, "callbacks": {"EpochCheckpoint": {"best_epoch": 2}}}, tmp_path / "last.ckpt"
    )
    io.save_checkpoint({"epoch": 2, "state_dict": {"w": torch.ones(2)}}, tmp_path / "best.ckpt")
    repair_best(tmp_path, load_checkpoint(tmp_path / "last.ckpt"))
    assert load_checkpoint(tmp_path / "best.ckpt")["epoch"] == 2, (
        "an older best epoch is left alone"
    )
