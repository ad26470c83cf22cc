"""What a run directory says about itself: status, progress, best and test scores.

Reads only files (``run.json``, ``config.yaml``, ``fold_K/heartbeat.json``,
``fold_K/train_summary.json``, ``fold_K/report/report.json``, ``summary.json``), so it works on
a run directory copied from another machine; the process check (is the training pid still
alive?) is made only when the run's host is this host.

Status of a fold: ``finished``, ``running``, ``stalled`` (its heartbeat is older than
``max(3 × median epoch duration, 10 min)`` while it says running, or its process is gone on
this host), ``failed``, ``interrupted``, ``not started``. A run is ``finished`` / ``failed`` /
``interrupted`` from ``run.json``, else the status of its current fold.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MIN_STALL_SECONDS = 600.0


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


def pid_alive(pid: int | None) -> bool:
    """Whether ``pid`` is a live (not zombie) process on this machine."""
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    try:  # a killed child that its parent has not reaped yet is a zombie: dead for us
        stat = Path(f"/proc/{int(pid)}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def stall_seconds(heartbeat: dict[str, Any]) -> float:
    median = heartbeat.get("median_epoch_seconds")
    return max(3.0 * float(median), MIN_STALL_SECONDS) if median else MIN_STALL_SECONDS


def eta_seconds(heartbeat: dict[str, Any]) -> float | None:
    """Time left for this fold at the median epoch duration (until ``max_epochs``)."""
    median = heartbeat.get("median_epoch_seconds")
    if not median or heartbeat.get("status") != "running":
        return None
    left = max(0, int(heartbeat.get("max_epochs") or 0) - int(heartbeat.get("epoch") or 0))
    batch, batches = heartbeat.get("batch") or 0, heartbeat.get("batches")
    if batches and heartbeat.get("phase") == "train" and left:
        left -= min(1.0, batch / batches) * 0.999
    return max(0.0, left * float(median))


@dataclass
class FoldView:
    number: int
    path: Path
    status: str
    reason: str = ""
    heartbeat: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    age: float | None = None                 # seconds since the last heartbeat

    @property
    def best_val_ua(self) -> float | None:
        if self.summary.get("monitor") == "val/ua" and self.summary.get("best_score") is not None:
            return float(self.summary["best_score"])
        if self.heartbeat.get("monitor") == "val/ua" and self.heartbeat.get("best") is not None:
            return float(self.heartbeat["best"])
        value = self.summary.get("metrics_at_best", {}).get("val/ua")
        return float(value) if value is not None else None

    @property
    def test_ua(self) -> float | None:
        return float(self.report["ua"]) if "ua" in self.report else None

    @property
    def train_seconds(self) -> float | None:
        for source in (self.summary, self.heartbeat):
            if source.get("train_seconds") is not None:
                return float(source["train_seconds"])
        return None


@dataclass
class RunView:
    path: Path
    name: str
    model: str
    features: str
    status: str
    reason: str
    folds: list[FoldView]
    planned: list[int]
    host: str | None
    pid: int | None
    same_host: bool
    run_json: dict[str, Any]
    summary: dict[str, Any]
    duration: float | None
    now: float

    @property
    def done(self) -> int:
        return sum(1 for f in self.folds if f.status == "finished" and (f.report or f.summary))

    @property
    def current(self) -> FoldView | None:
        active = [f for f in self.folds if f.status in ("running", "stalled")]
        if active:
            return active[-1]
        started = [f for f in self.folds if f.heartbeat]
        return started[-1] if started else None

    @property
    def best_val_ua(self) -> float | None:
        values = [f.best_val_ua for f in self.folds if f.best_val_ua is not None]
        return float(sum(values) / len(values)) if values else None

    @property
    def test_ua(self) -> float | None:
        mean = self.summary.get("mean", {}).get("ua") if self.summary else None
        if mean is not None:
            return float(mean)
        values = [f.test_ua for f in self.folds if f.test_ua is not None]
        return float(sum(values) / len(values)) if values else None

    def eta(self) -> float | None:
        """Time left for the whole run: the current fold, then the folds not started."""
        current = self.current
        if self.status not in ("running",) or current is None:
            return None
        left = eta_seconds(current.heartbeat)
        if left is None:
            return None
        started = {f.number for f in self.folds if f.heartbeat or f.report}
        waiting = [k for k in self.planned if k not in started]
        finished = [f.train_seconds for f in self.folds if f.status == "finished" and f.train_seconds]
        hb = current.heartbeat
        per_fold = statistics.mean(finished) if finished else (
            float(hb.get("median_epoch_seconds") or 0) * float(hb.get("max_epochs") or 0))
        return left + per_fold * len(waiting)


def fold_number(fold_dir: str | os.PathLike) -> int:
    """``K`` of a fold directory ``fold_K``."""
    return int(Path(fold_dir).name.split("_")[-1])


def fold_view(fold_dir: Path, *, now: float | None = None, this_host: str | None = None) -> FoldView:
    now = time.time() if now is None else now
    this_host = this_host or socket.gethostname()
    number = fold_number(fold_dir)
    heartbeat = read_json(fold_dir / "heartbeat.json") or {}
    summary = read_json(fold_dir / "train_summary.json") or {}
    report = read_json(fold_dir / "report" / "report.json") or {}
    view = FoldView(number, fold_dir, "not started", heartbeat=heartbeat, summary=summary, report=report)
    if not heartbeat:
        if summary or report or (fold_dir / "model.json").is_file():
            view.status = "finished"
        return view
    view.age = max(0.0, now - float(heartbeat.get("time", now)))
    status = heartbeat.get("status", "running")
    if status != "running":
        view.status = status
        view.reason = heartbeat.get("error", "")
        return view
    if heartbeat.get("host") == this_host and not pid_alive(heartbeat.get("pid")):
        view.status, view.reason = "stalled", f"process {heartbeat.get('pid')} is gone"
    elif view.age > stall_seconds(heartbeat):
        view.status, view.reason = "stalled", f"no heartbeat for {format_seconds(view.age)}"
    else:
        view.status = "running"
    return view


def is_run_dir(path: Path) -> bool:
    return (path / "config.yaml").is_file() and ((path / "splits.json").is_file() or any(path.glob("fold_*")))


def run_view(run_dir: str | os.PathLike, *, now: float | None = None) -> RunView:
    run_dir = Path(run_dir)
    now = time.time() if now is None else now
    this_host = socket.gethostname()
    config = read_yaml(run_dir / "config.yaml")
    run_json = read_json(run_dir / "run.json") or {}
    summary = read_json(run_dir / "summary.json") or {}
    folds = sorted((fold_view(p, now=now, this_host=this_host) for p in run_dir.glob("fold_*")
                    if p.is_dir() and p.name.split("_")[-1].isdigit()), key=lambda f: f.number)
    planned = list(run_json.get("folds") or [])
    if not planned:
        splits = read_json(run_dir / "splits.json") or {}
        n = len(splits.get("splits", [])) or len(folds)
        spec = str(config.get("run", {}).get("folds", "1"))
        planned = list(range(1, n + 1)) if spec.strip().lower() == "all" else \
            [int(k) for k in spec.split(",") if k.strip().isdigit()]
    host, pid = run_json.get("host"), run_json.get("pid")
    same_host = host == this_host
    status, reason = _run_status(run_json, folds, planned, same_host, now)
    model = str((config.get("model") or {}).get("name", "?"))
    features = str((config.get("data", {}).get("features") or {}).get("name", "?"))
    duration = None
    sessions = run_json.get("sessions") or []
    if sessions:
        duration = 0.0
        for session in sessions:
            end = session.get("ended") or (now if status == "running" and session is sessions[-1] else run_json.get("time"))
            if end and session.get("started"):
                duration += max(0.0, float(end) - float(session["started"]))
    elif folds:
        seconds = [f.train_seconds for f in folds if f.train_seconds]
        duration = sum(seconds) if seconds else None
    return RunView(run_dir, run_dir.name, model, features, status, reason, folds, planned, host, pid, same_host,
                   run_json, summary, duration, now)


def _run_status(run_json: dict, folds: list[FoldView], planned: list[int], same_host: bool, now: float) -> tuple[str, str]:
    recorded = run_json.get("status")
    if recorded in ("finished", "failed", "interrupted"):
        return recorded, run_json.get("error", "")
    active = [f for f in folds if f.status in ("running", "stalled")]
    if recorded == "running":
        if same_host and not pid_alive(run_json.get("pid")):
            return "stalled", f"process {run_json.get('pid')} is gone"
        if active:
            return active[-1].status, active[-1].reason
        beats = [f.heartbeat.get("time", 0) for f in folds if f.heartbeat] + [run_json.get("time", 0)]
        age = now - max(beats)
        if not same_host and age > MIN_STALL_SECONDS * 3:
            return "stalled", f"no activity for {format_seconds(age)}"
        return "running", "between folds (evaluating or starting the next)"
    # no run.json (an older run): judge by the folds
    if active:
        return active[-1].status, active[-1].reason
    failed = [f for f in folds if f.status in ("failed", "interrupted")]
    if failed:
        return failed[-1].status, failed[-1].reason
    done = {f.number for f in folds if f.status == "finished"}
    if planned and set(planned) <= done:
        return "finished", ""
    return ("finished", "") if folds and not planned else ("incomplete", "")


def list_runs(root: str | os.PathLike) -> list[RunView]:
    root = Path(root)
    if is_run_dir(root):
        return [run_view(root)]
    dirs = sorted((p for p in root.iterdir() if p.is_dir() and is_run_dir(p)), key=lambda p: p.name) if root.is_dir() else []
    return [run_view(p) for p in dirs]


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f} s"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
