"""The files of a run folder: ``run.json`` (its status and the sessions that worked on it, kept
by :func:`write_run_status`), the ``fold_K`` directories and how far each got
(:func:`fold_state`), and the small readers that tolerate a file half copied or missing.
:mod:`emorec.runs.status` builds the views of ``emorec monitor`` and ``emorec runs`` on them."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from emorec.atomic import write_json
from emorec.inference.model_files import MODEL_META

RUN_STATUS = "run.json"


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def fold_number(fold_dir: str | os.PathLike) -> int:
    """``K`` of a fold directory ``fold_K``."""
    return int(Path(fold_dir).name.split("_")[-1])


def is_run_dir(path: Path) -> bool:
    return (path / "config.yaml").is_file() and (
        (path / "splits.json").is_file() or any(path.glob("fold_*"))
    )


def file_times(run_dir: Path) -> list[float]:
    """Modification times of the files a living run keeps touching: ``train.log`` and every
    fold's ``heartbeat.json``."""
    times = []
    for path in [run_dir / "train.log", *run_dir.glob("fold_*/heartbeat.json")]:
        try:
            times.append(path.stat().st_mtime)
        except OSError:
            pass
    return times


def fold_state(fold_dir: Path) -> str:
    """``evaluated``, ``exported`` (trained, not evaluated), ``checkpoint`` (interrupted) or
    ``new``."""
    if (fold_dir / MODEL_META).is_file():
        return "evaluated" if (fold_dir / "report" / "report.json").is_file() else "exported"
    return "checkpoint" if (fold_dir / "checkpoints" / "last.ckpt").is_file() else "new"


def write_run_status(run_dir: Path, status: str, folds: list[int], **extra) -> None:
    """``run.json``: ``status`` (running, finished, failed, interrupted) and the sessions that
    worked on the run (pid, host, argv, working directory, start, end); a session that vanished is
    "lost"."""
    path = run_dir / RUN_STATUS
    previous: dict = {}
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    sessions = list(previous.get("sessions", []))
    now = time.time()
    if status == "running" and sessions and not sessions[-1].get("ended"):
        # the previous session vanished (SIGKILL, preemption): it ended at its last sign of life
        ended = max(file_times(run_dir), default=sessions[-1].get("started", now))
        sessions[-1] = {**sessions[-1], "ended": ended, "status": "lost"}
    if status == "running":
        sessions.append(
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": now,
                "argv": sys.argv,
                "cwd": os.getcwd(),
            }
        )
    elif sessions:
        sessions[-1] = {**sessions[-1], "ended": now, "status": status}
    write_json(
        path,
        {
            "status": status,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "time": now,
            "started": previous.get("started", now),
            "folds": folds,
            "sessions": sessions,
            **extra,
        },
    )
