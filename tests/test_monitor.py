"""``emorec monitor`` / ``emorec runs`` on run directories written by hand: every status
(running, finished, failed, stalled by age, stalled because the process is gone, a copy from
another host with no process check), ETA from epoch durations, NVML or "no GPU", the log tail,
``--follow`` ending when the run ends; and the append-free train.log handler."""

import json
import logging
import socket
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pytest
import yaml

from emorec.runs.monitor import gpu_lines, monitor, render, runs_table
from emorec.runs.status import MIN_STALL_SECONDS, eta_seconds, list_runs, run_view, stall_seconds
from emorec.training.callbacks import AtomicLogHandler

HOST = socket.gethostname()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def make_run(
    root: Path,
    name: str,
    *,
    status: str = "running",
    fold_status: str = "running",
    pid: int | None = None,
    host: str = HOST,
    age: float = 5.0,
    epoch: int = 3,
    max_epochs: int = 10,
    seconds: float = 60.0,
    folds: int = 1,
    finished_folds: int = 0,
    log: str = "",
) -> Path:
    run = root / name
    now = time.time()
    pid = pid if pid is not None else __import__("os").getpid()
    (run).mkdir(parents=True)
    (run / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "model": {"name": "attn_crnn"},
                "data": {"features": {"name": "logmel"}},
                "run": {"folds": "all" if folds > 1 else "1"},
            }
        )
    )
    (run / "splits.json").write_text(
        json.dumps({"splits": [{"name": f"fold{k}"} for k in range(1, folds + 1)]})
    )
    (run / "run.json").write_text(
        json.dumps(
            {
                "status": status,
                "pid": pid,
                "host": host,
                "time": now - age,
                "started": now - 1000,
                "folds": list(range(1, folds + 1)),
                "sessions": [{"pid": pid, "host": host, "started": now - 1000}],
            }
        )
    )
    for k in range(1, finished_folds + 1):
        fold = run / f"fold_{k}"
        (fold / "report").mkdir(parents=True)
        (fold / "report" / "report.json").write_text(
            json.dumps({"ua": 0.5 + k / 10, "wa": 0.5, "macro_f1": 0.5})
        )
        (fold / "train_summary.json").write_text(
            json.dumps(
                {
                    "monitor": "val/ua",
                    "best_score": 0.6,
                    "train_seconds": 600.0,
                    "epochs_run": max_epochs,
                }
            )
        )
        (fold / "heartbeat.json").write_text(
            json.dumps(
                {
                    "status": "finished",
                    "time": now - 900,
                    "pid": pid,
                    "host": host,
                    "epoch": max_epochs,
                    "max_epochs": max_epochs,
                }
            )
        )
    k = finished_folds + 1
    if k <= folds:
        fold = run / f"fold_{k}"
        fold.mkdir(parents=True, exist_ok=True)
        (fold / "heartbeat.json").write_text(
            json.dumps(
                {
                    "status": fold_status,
                    "phase": "train",
                    "fold": f"fold{k}",
                    "pid": pid,
                    "host": host,
                    "time": now - age,
                    "epoch": epoch,
                    "max_epochs": max_epochs,
                    "current_epoch": epoch + 1,
                    "batch": 5,
                    "batches": 10,
                    "monitor": "val/ua",
                    "mode": "max",
                    "best": 0.71,
                    "best_epoch": 2,
                    "patience": 6,
                    "early_stop_wait": 1,
                    "train": {"train/loss": 0.9, "train/acc": 0.6},
                    "val": {"val/loss": 1.0, "val/ua": 0.65},
                    "epoch_seconds": [seconds] * epoch,
                    "median_epoch_seconds": seconds,
                    "train_seconds": seconds * epoch,
                    "gpu": [
                        {
                            "index": 0,
                            "name": "Tesla T4",
                            "memory_used_mb": 3072,
                            "memory_total_mb": 15360,
                        }
                    ],
                    "error": "RuntimeError: boom" if fold_status == "failed" else None,
                }
            )
        )
    if log:
        (run / "train.log").write_text(log)
    return run


def test_a_fresh_heartbeat_of_a_live_process_is_running_with_an_eta(tmp_path):
    view = run_view(make_run(tmp_path, "a", epoch=3, max_epochs=10, seconds=60))
    assert view.status == "running" and view.current.number == 1
    # 7 epochs left, half of the current one done, 60 s each
    assert eta_seconds(view.current.heartbeat) == pytest.approx(6.5 * 60, abs=1)
    assert view.val_ua == 0.71


def test_run_eta_adds_the_folds_not_started_at_the_finished_folds_pace(tmp_path):
    view = run_view(
        make_run(tmp_path, "cv", folds=3, finished_folds=1, epoch=0, max_epochs=10, seconds=30)
    )
    assert view.status == "running" and view.current.number == 2
    assert view.eta() == pytest.approx(eta_seconds(view.current.heartbeat) + 600.0, abs=1)
    assert view.done == 1 and view.test_ua == pytest.approx(0.6)


def test_an_old_heartbeat_is_stalled_after_three_median_epochs_or_ten_minutes(tmp_path):
    assert stall_seconds({"median_epoch_seconds": 30}) == MIN_STALL_SECONDS
    assert stall_seconds({"median_epoch_seconds": 400}) == 1200
    assert (
        run_view(make_run(tmp_path, "young", age=MIN_STALL_SECONDS - 30, seconds=30)).status
        == "running"
    )
    old = run_view(make_run(tmp_path, "old", age=1300, seconds=400))
    assert old.status == "stalled" and "no heartbeat for" in old.reason
    assert run_view(make_run(tmp_path, "slow", age=1100, seconds=400)).status == "running"


def test_a_vanished_process_on_this_host_is_stalled_at_once(tmp_path):
    view = run_view(make_run(tmp_path, "dead", pid=dead_pid(), age=1))
    assert view.status == "stalled" and "is gone" in view.reason


def test_a_copy_from_another_host_gets_no_process_check(tmp_path):
    view = run_view(make_run(tmp_path, "remote", pid=dead_pid(), host="ip-10-0-0-7", age=30))
    assert view.status == "running" and not view.same_host
    text = render_text(view.path)
    assert "no process check" in text and "Tesla T4" in text and "at the last heartbeat" in text


def test_finished_and_failed_runs(tmp_path):
    finished = make_run(
        tmp_path, "fin", status="finished", fold_status="finished", folds=2, finished_folds=2
    )
    assert run_view(finished).status == "finished"
    failed = make_run(tmp_path, "bad", status="failed", fold_status="failed")
    assert run_view(failed).status == "failed"


def render_text(run_dir: Path, **kwargs) -> str:
    from rich.console import Console

    console = Console(width=160, record=True, file=open("/dev/null", "w"))
    console.print(render(run_dir, **kwargs))
    return console.export_text()


def test_monitor_shows_progress_metrics_best_eta_gpu_and_log_tail(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # no NVML here
    log = "".join(f"line {i}\n" for i in range(30))
    text = render_text(make_run(tmp_path, "m", log=log), log_lines=5)
    for needle in (
        "running",
        "3 of 10 complete",
        "batch 5/10",
        "loss 0.9000",
        "ua 0.6500",
        "val/ua 0.7100 at epoch 2",
        "early stop after 5 more",
        "ETA",
        "no GPU",
        "line 29",
        "line 25",
    ):
        assert needle in text, needle
    assert "line 24" not in text


def test_gpu_lines_read_nvml(monkeypatch):
    fake = types.SimpleNamespace(
        nvmlInit=lambda: None,
        nvmlShutdown=lambda: None,
        nvmlDeviceGetCount=lambda: 1,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetName=lambda h: b"NVIDIA T4",
        nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=87, memory=40),
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(used=6 * 2**30, total=16 * 2**30),
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert gpu_lines() == ["GPU 0 NVIDIA T4: 87% busy, memory 6.0 / 16.0 GiB (40% bandwidth)"]
    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert gpu_lines() == ["no GPU"]


def test_follow_redraws_until_the_run_stops(tmp_path):
    from rich.console import Console

    run = make_run(tmp_path, "f")

    def finish():
        time.sleep(1.0)
        data = json.loads((run / "run.json").read_text())
        (run / "run.json").write_text(json.dumps({**data, "status": "finished"}))

    threading.Thread(target=finish).start()
    started = time.time()
    status = monitor(run, follow=True, interval=0.2, console=Console(file=open("/dev/null", "w")))
    assert status == "finished" and time.time() - started < 30


def test_runs_lists_runs_side_by_side(tmp_path):
    make_run(tmp_path, "one", status="finished", fold_status="finished", folds=2, finished_folds=2)
    make_run(tmp_path, "two", pid=dead_pid())
    (tmp_path / "not-a-run").mkdir()
    views = {v.name: v for v in list_runs(tmp_path)}
    assert set(views) == {"one", "two"}
    assert (
        views["one"].status == "finished"
        and views["one"].done == 2
        and views["two"].status == "stalled"
    )
    from rich.console import Console

    console = Console(width=200, record=True, file=open("/dev/null", "w"))
    console.print(runs_table(tmp_path))
    text = console.export_text()
    assert (
        "one" in text and "two" in text and "2/2" in text and "0.650" in text and "stalled" in text
    )


def test_cli_monitor_and_runs(tmp_path, monkeypatch, capsys):
    from emorec.cli import main

    run = make_run(tmp_path, "c", status="finished", fold_status="finished", finished_folds=1)
    for argv in (["monitor", str(run)], ["monitor", str(run / "fold_1")], ["runs", str(tmp_path)]):
        monkeypatch.setattr(sys, "argv", ["emorec", *argv])
        try:
            main()
        except SystemExit as exit_:
            assert exit_.code in (0, None), capsys.readouterr()
        assert "finished" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", ["emorec", "monitor", str(tmp_path / "nope")])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2 and "no such run directory" in capsys.readouterr().err


def test_train_log_handler_never_appends_and_keeps_earlier_sessions(tmp_path):
    path = tmp_path / "train.log"
    logger = logging.getLogger("emorec.test-monitor")
    logger.setLevel(logging.INFO)
    for session in (1, 2):
        handler = AtomicLogHandler(path, interval=3600)
        logger.addHandler(handler)
        logger.info("session %d first", session)
        logger.info("session %d second", session)
        logger.removeHandler(handler)
        handler.close()
    lines = path.read_text().splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == [
        "session 1 first",
        "session 1 second",
        "session 2 first",
        "session 2 second",
    ]


def test_a_killed_run_lasted_until_its_last_sign_of_life(tmp_path):
    """SIGKILL leaves run.json saying "running" with no end: the run lasted from its start to the
    last heartbeat / train.log write (70 s here), not 0 s (run.json's own time) nor until now."""
    import os

    run = make_run(tmp_path, "killed", pid=dead_pid(), log="started\n")
    data = json.loads((run / "run.json").read_text())
    started = data["sessions"][0]["started"]
    # written once, at the start
    (run / "run.json").write_text(json.dumps({**data, "time": started}))
    beat = json.loads((run / "fold_1" / "heartbeat.json").read_text())
    (run / "fold_1" / "heartbeat.json").write_text(json.dumps({**beat, "time": started + 65}))
    for path in (run / "train.log", run / "fold_1" / "heartbeat.json"):
        os.utime(path, (started + 70, started + 70))
    view = run_view(run)
    assert view.status == "stalled"
    assert view.duration == pytest.approx(70, abs=0.5)
    assert "1 min 10 s" in render_text(run)


def test_runs_table_keeps_each_run_name_whole_on_one_line_at_80_columns(tmp_path):
    from rich.console import Console

    long_name = "ravdess_attn_crnn_v2_ema_bn_deltas-20261201-182125"
    make_run(
        tmp_path, long_name, status="finished", fold_status="finished", folds=2, finished_folds=2
    )
    make_run(tmp_path, "short", pid=dead_pid())
    # the width when not in a terminal
    console = Console(width=80, record=True, file=open("/dev/null", "w"))
    console.print(runs_table(tmp_path))
    lines = console.export_text().splitlines()
    assert any(line.strip() == long_name for line in lines), "\n".join(lines)
    assert all(len(line) <= 80 for line in lines)
    header = next(line for line in lines if "val UA" in line and "test UA" in line)
    row = lines[
        [line.strip() for line in lines].index(long_name) + 1
    ]  # the run's details, below its name
    assert row.split()[:4] == ["attn_crnn", "logmel", "2/2", "finished"] and "0.650" in row.split()
    for column, value in (
        ("status", "finished"),
        ("test UA", "0.650"),
    ):  # each value under its header
        start, end = header.index(column), header.index(column) + len(column)
        assert row.index(value) < end and row.index(value) + len(value) > start, f"{header}\n{row}"
    wide = Console(width=200, record=True, file=open("/dev/null", "w"))
    wide.print(runs_table(tmp_path))
    assert any(
        long_name in line and "finished" in line and "0.650" in line
        for line in wide.export_text().splitlines()
    )


def _exported(run: Path, *, checkpoint: str, kept_score: float) -> None:
    """A finished fold's model.json: the kept model (last epoch, EMA, BatchNorm recomputed)."""
    (run / "fold_1" / "model.json").write_text(
        json.dumps(
            {
                "best_epoch": 10,
                "epochs_run": 10,
                "monitor": "val/ua",
                "best_score": kept_score,
                "checkpoint": checkpoint,
                "bn_recalibrated": True,
                "val_metrics": {"val/ua": kept_score},
                "ema": {
                    "set_as": "ema_half_life_epochs",
                    "half_life_epochs": 2.0,
                    "steps_per_epoch": 10,
                    "decay_per_step": 0.97,
                },
            }
        )
    )


def test_runs_and_monitor_show_the_kept_models_validation_score_not_the_best_epochs(tmp_path):
    # the heartbeat's best epoch (0.71 at epoch 2) is not the model a last-epoch recipe keeps
    run = make_run(
        tmp_path, "kept", status="finished", fold_status="finished", epoch=10, max_epochs=10
    )
    _exported(run, checkpoint="last", kept_score=0.477)
    view = run_view(run)
    assert view.val_ua == pytest.approx(0.477)
    text = render_text(run)
    assert "best so far" not in text and "0.7100" not in text
    assert (
        "last epoch (10 of 10), EMA of weights (half-life 2 epochs), "
        "BatchNorm statistics recomputed" in text
    )
    assert "its validation UA 0.477" in text and "0.4770 (kept model)" in text
    from rich.console import Console

    console = Console(width=200, record=True, file=open("/dev/null", "w"))
    console.print(runs_table(tmp_path))
    row = next(
        line for line in console.export_text().splitlines() if "kept" in line and "finished" in line
    )
    assert "0.477" in row and "0.710" not in row


def test_a_last_epoch_recipe_in_training_shows_its_latest_validation_not_its_best(tmp_path):
    run = make_run(tmp_path, "training")
    config = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump({**config, "trainer": {"checkpoint": "last"}}))
    # the latest epoch's, not the best epoch's 0.71
    assert run_view(run).val_ua == pytest.approx(0.65)
    text = render_text(run)
    assert "best epoch so far" in text and "keeps the last epoch" in text
