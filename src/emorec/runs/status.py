"""What a run directory says about itself: status, progress, best and test scores.

Reads only files (``run.json``, ``config.yaml``, ``fold_K/heartbeat.json``,
``fold_K/train_summary.json``, ``fold_K/report/report.json``, ``summary.json``), so it works on
a run directory copied from another machine; the process check (is the training pid still
alive?) is made only when the run's host is this host.

Status of a fold: ``finished``, ``running``, ``stalled`` (its heartbeat is older than
``max(3 × median epoch duration, 10 min)`` while it says running, or its process is gone on
this host), ``failed``, ``interrupted``, ``not started``. A run is ``finished`` / ``failed`` /
``interrupted`` from ``run.json``, else the status of its current fold.

Scores: a fold's validation score is the *kept* model's (``model.json``'s ``val_metrics`` /
``best_score``: after weight averaging and BatchNorm recalibration, at the kept epoch), never the
best per-epoch value of a recipe that keeps another epoch (:mod:`emorec.runs.kept` says how the kept
weights were made).

The files themselves, and how training writes ``run.json``, are :mod:`emorec.runs.folder`'s.
"""

from __future__ import annotations

import os
import socket
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emorec.runs.epochs import number as _number
from emorec.runs.folder import RUN_STATUS, file_times, fold_number, is_run_dir, read_json, read_yaml
from emorec.runs.kept import kept_summary
from emorec.inference.model_files import ModelMeta

MIN_STALL_SECONDS = 600.0


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
    age: float | None = None  # seconds since the last heartbeat
    meta: dict[str, Any] = field(default_factory=dict)  # model.json: the kept (exported) model
    keeps: str = "best"  # trainer.checkpoint: which epoch the recipe keeps

    @property
    def val_ua(self) -> float | None:
        """The kept model's validation UA; while a fold trains, what it would keep now."""
        kept = _number((self.meta.get("val_metrics") or {}).get("val/ua"))
        if kept is None and self.meta.get("monitor") == "val/ua":
            kept = _number(self.meta.get("best_score"))
        if kept is not None or self.meta:
            return kept
        if self.keeps == "last":  # the best epoch is not what such a recipe keeps: the latest is
            latest = _number((self.heartbeat.get("val") or {}).get("val/ua"))
            return (
                latest
                if latest is not None
                else _number(self.summary.get("final_metrics", {}).get("val/ua"))
            )
        if self.summary.get("monitor") == "val/ua" and self.summary.get("best_score") is not None:
            return float(self.summary["best_score"])
        if self.heartbeat.get("monitor") == "val/ua" and self.heartbeat.get("best") is not None:
            return float(self.heartbeat["best"])
        return _number(self.summary.get("metrics_at_best", {}).get("val/ua"))

    @property
    def kept(self) -> str | None:
        """How the kept weights were made and their validation score, once exported."""
        return kept_summary(self.meta) if self.meta else None

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
    def val_ua(self) -> float | None:
        """Mean over folds of :attr:`FoldView.val_ua` (the kept models' validation UA)."""
        values = [f.val_ua for f in self.folds if f.val_ua is not None]
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
        finished = [
            f.train_seconds for f in self.folds if f.status == "finished" and f.train_seconds
        ]
        hb = current.heartbeat
        per_fold = (
            statistics.mean(finished)
            if finished
            else (float(hb.get("median_epoch_seconds") or 0) * float(hb.get("max_epochs") or 0))
        )
        return left + per_fold * len(waiting)


def fold_view(
    fold_dir: Path, *, now: float | None = None, this_host: str | None = None, keeps: str = "best"
) -> FoldView:
    now = time.time() if now is None else now
    this_host = this_host or socket.gethostname()
    number = fold_number(fold_dir)
    heartbeat = read_json(fold_dir / "heartbeat.json") or {}
    summary = read_json(fold_dir / "train_summary.json") or {}
    report = read_json(fold_dir / "report" / "report.json") or {}
    meta = ModelMeta.peek(fold_dir)
    view = FoldView(
        number,
        fold_dir,
        "not started",
        heartbeat=heartbeat,
        summary=summary,
        report=report,
        meta=meta,
        keeps=str(meta.get("checkpoint") or keeps),
    )
    if not heartbeat:
        if summary or report or meta:
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


def run_view(run_dir: str | os.PathLike, *, now: float | None = None) -> RunView:
    run_dir = Path(run_dir)
    now = time.time() if now is None else now
    this_host = socket.gethostname()
    config = read_yaml(run_dir / "config.yaml")
    run_json = read_json(run_dir / RUN_STATUS) or {}
    summary = read_json(run_dir / "summary.json") or {}
    keeps = str((config.get("trainer") or {}).get("checkpoint") or "best")
    folds = sorted(
        (
            fold_view(p, now=now, this_host=this_host, keeps=keeps)
            for p in run_dir.glob("fold_*")
            if p.is_dir() and p.name.split("_")[-1].isdigit()
        ),
        key=lambda f: f.number,
    )
    planned = list(run_json.get("folds") or [])
    if not planned:
        splits = read_json(run_dir / "splits.json") or {}
        n = len(splits.get("splits", [])) or len(folds)
        spec = str(config.get("run", {}).get("folds", "1"))
        planned = (
            list(range(1, n + 1))
            if spec.strip().lower() == "all"
            else [int(k) for k in spec.split(",") if k.strip().isdigit()]
        )
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
            end = session.get("ended")
            if not end and session is sessions[-1]:
                # A session that never recorded its end was killed (or is still going): it lasted
                # until now while running, else until its last sign of life.
                end = now if status == "running" else last_sign_of_life(run_dir, folds, run_json)
            end = end or run_json.get("time")
            if end and session.get("started"):
                duration += max(0.0, float(end) - float(session["started"]))
    elif folds:
        seconds = [f.train_seconds for f in folds if f.train_seconds]
        duration = sum(seconds) if seconds else None
    return RunView(
        run_dir,
        run_dir.name,
        model,
        features,
        status,
        reason,
        folds,
        planned,
        host,
        pid,
        same_host,
        run_json,
        summary,
        duration,
        now,
    )


def last_sign_of_life(
    run_dir: Path, folds: list[FoldView], run_json: dict[str, Any]
) -> float | None:
    """The latest moment a run's files show it alive: heartbeat times (written inside the files,
    so they survive a copy) and the modification times of ``train.log`` and the heartbeats."""
    times = [_number(run_json.get("time"))] + [_number(f.heartbeat.get("time")) for f in folds]
    times = [t for t in times if t is not None] + file_times(run_dir)
    return max(times) if times else None


def _run_status(
    run_json: dict, folds: list[FoldView], planned: list[int], same_host: bool, now: float
) -> tuple[str, str]:
    recorded = run_json.get("status")
    if recorded in ("finished", "failed", "interrupted"):
        return recorded, run_json.get("error", "")
    active = [f for f in folds if f.status in ("running", "stalled")]
    if recorded == "running":
        if same_host and not pid_alive(run_json.get("pid")):
            return "stalled", f"process {run_json.get('pid')} is gone"
        if active:
            return active[-1].status, active[-1].reason
        beats = [f.heartbeat.get("time", 0) for f in folds if f.heartbeat] + [
            run_json.get("time", 0)
        ]
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
    dirs = (
        sorted((p for p in root.iterdir() if p.is_dir() and is_run_dir(p)), key=lambda p: p.name)
        if root.is_dir()
        else []
    )
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
