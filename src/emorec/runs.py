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
best per-epoch value of a recipe that keeps another epoch. :func:`kept_summary` says in words how
the kept weights were made; :func:`epoch_table` turns Lightning's raw CSV rows into the one row
per epoch (numbered from 1) of ``metrics.csv``.
"""

from __future__ import annotations

import json
import math
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
    meta: dict[str, Any] = field(default_factory=dict)   # model.json: the kept (exported) model
    keeps: str = "best"                      # trainer.checkpoint: which epoch the recipe keeps

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
            return latest if latest is not None else _number(self.summary.get("final_metrics", {}).get("val/ua"))
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
        finished = [f.train_seconds for f in self.folds if f.status == "finished" and f.train_seconds]
        hb = current.heartbeat
        per_fold = statistics.mean(finished) if finished else (
            float(hb.get("median_epoch_seconds") or 0) * float(hb.get("max_epochs") or 0))
        return left + per_fold * len(waiting)


def fold_number(fold_dir: str | os.PathLike) -> int:
    """``K`` of a fold directory ``fold_K``."""
    return int(Path(fold_dir).name.split("_")[-1])


def fold_view(fold_dir: Path, *, now: float | None = None, this_host: str | None = None,
              keeps: str = "best") -> FoldView:
    now = time.time() if now is None else now
    this_host = this_host or socket.gethostname()
    number = fold_number(fold_dir)
    heartbeat = read_json(fold_dir / "heartbeat.json") or {}
    summary = read_json(fold_dir / "train_summary.json") or {}
    report = read_json(fold_dir / "report" / "report.json") or {}
    meta = read_json(fold_dir / "model.json") or {}
    view = FoldView(number, fold_dir, "not started", heartbeat=heartbeat, summary=summary, report=report, meta=meta,
                    keeps=str(meta.get("checkpoint") or keeps))
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


def is_run_dir(path: Path) -> bool:
    return (path / "config.yaml").is_file() and ((path / "splits.json").is_file() or any(path.glob("fold_*")))


def run_view(run_dir: str | os.PathLike, *, now: float | None = None) -> RunView:
    run_dir = Path(run_dir)
    now = time.time() if now is None else now
    this_host = socket.gethostname()
    config = read_yaml(run_dir / "config.yaml")
    run_json = read_json(run_dir / "run.json") or {}
    summary = read_json(run_dir / "summary.json") or {}
    keeps = str((config.get("trainer") or {}).get("checkpoint") or "best")
    folds = sorted((fold_view(p, now=now, this_host=this_host, keeps=keeps) for p in run_dir.glob("fold_*")
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
    return RunView(run_dir, run_dir.name, model, features, status, reason, folds, planned, host, pid, same_host,
                   run_json, summary, duration, now)


def last_sign_of_life(run_dir: Path, folds: list[FoldView], run_json: dict[str, Any]) -> float | None:
    """The latest moment a run's files show it alive: heartbeat times (written inside the files,
    so they survive a copy) and the modification times of ``train.log`` and the heartbeats."""
    times = [_number(run_json.get("time"))] + [_number(f.heartbeat.get("time")) for f in folds]
    for path in [run_dir / "train.log", *(f.path / "heartbeat.json" for f in folds)]:
        try:
            times.append(path.stat().st_mtime)
        except OSError:
            pass
    times = [t for t in times if t is not None]
    return max(times) if times else None


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


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# --------------------------------------------------------------------------- metrics.csv
def epoch_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Lightning's raw CSV rows as one row per epoch, epochs numbered from 1.

    Lightning logs an epoch's training and its validation metrics on separate rows (epoch counted
    from 0), and the learning-rate monitor's row, at the start of an epoch, with no epoch at all:
    such a row belongs to the epoch after the last one seen. Columns: ``epoch``, ``train/*``,
    ``val/*``, then the rest (the learning rate); ``step`` is dropped. Only epochs with a training
    or validation metric appear (an epoch that has just started has its learning rate only).
    """
    merged: dict[int, dict[str, float]] = {}
    upcoming = 0
    for row in rows:
        raw = _number(row.get("epoch"))
        if raw is None:
            epoch = upcoming
        else:
            epoch = int(raw)
            upcoming = epoch + 1
        values = merged.setdefault(epoch, {})
        for key, value in row.items():
            number = _number(value)  # blank cells of the CSV read as None
            if key not in ("epoch", "step") and number is not None:
                values[key] = number
    return [{"epoch": e + 1, **merged[e]} for e in sorted(merged) if any("/" in k for k in merged[e])]


def epoch_columns(table: list[dict[str, Any]]) -> list[str]:
    """``epoch``, then training metrics, validation metrics and the rest, for one row per epoch."""
    keys = {k for row in table for k in row} - {"epoch"}

    def order(key: str) -> tuple[int, str]:
        return (0 if key.startswith("train/") else 1 if key.startswith("val/") else 2, key)
    return ["epoch", *sorted(keys, key=order)]


def read_epoch_table(metrics_csv: str | os.PathLike) -> list[dict[str, Any]]:
    """``metrics.csv`` as one dict per epoch (from 1); a run written before ``metrics.csv`` held
    one row per epoch (Lightning's raw rows, with a ``step`` column) is merged the same way."""
    import csv

    with open(metrics_csv, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        fields = reader.fieldnames or []
    if "step" in fields:
        return epoch_table(rows)
    table = []
    for row in rows:
        epoch = _number(row.get("epoch"))
        if epoch is not None:
            table.append({"epoch": int(epoch), **{k: _number(v) for k, v in row.items()
                                                   if k != "epoch" and _number(v) is not None}})
    return table


# --------------------------------------------------------------------------- the kept model
_METRIC_WORDS = {"val/ua": "validation UA", "val/acc": "validation accuracy (WA)", "val/loss": "validation loss",
                 "val/macro_f1": "validation macro-F1"}


def metric_words(monitor: str) -> str:
    return _METRIC_WORDS.get(monitor, monitor)


def ema_half_life_epochs(decay: float, steps_per_epoch: float) -> float:
    """The horizon of a per-step decay in epochs: after it, a step's weight in the average halves."""
    return math.log(0.5) / math.log(decay) / steps_per_epoch


def ema_decay_per_step(half_life_epochs: float, steps_per_epoch: float) -> float:
    """The per-step decay whose average halves a step's weight after ``half_life_epochs`` epochs
    of ``steps_per_epoch`` optimisation steps: ``0.5 ** (1 / (half_life_epochs * steps_per_epoch))``."""
    if half_life_epochs <= 0 or steps_per_epoch <= 0:
        raise ValueError(f"half-life {half_life_epochs} epochs of {steps_per_epoch} steps: both must be > 0")
    return 0.5 ** (1.0 / (half_life_epochs * steps_per_epoch))


def ema_record(trainer: dict[str, Any], steps_per_epoch: int | None) -> dict[str, Any] | None:
    """What ``model.json`` records about the weight average of a run's ``trainer`` section."""
    decay, half_life = float(trainer.get("ema_decay") or 0.0), float(trainer.get("ema_half_life_epochs") or 0.0)
    if not decay and not half_life:
        return None
    if half_life:
        return {"set_as": "ema_half_life_epochs", "half_life_epochs": half_life, "steps_per_epoch": steps_per_epoch,
                "decay_per_step": ema_decay_per_step(half_life, steps_per_epoch) if steps_per_epoch else None}
    return {"set_as": "ema_decay", "decay_per_step": decay, "steps_per_epoch": steps_per_epoch,
            "half_life_epochs": ema_half_life_epochs(decay, steps_per_epoch) if steps_per_epoch else None}


def kept_summary(meta: dict[str, Any], *, ema: dict[str, Any] | None = None) -> str:
    """How the kept weights were made, in words, from ``model.json``: e.g. ``last epoch (30 of 30),
    EMA of weights (half-life 2 epochs), BatchNorm statistics recomputed on training clips; its
    validation UA 0.477``. ``ema`` stands in for a ``model.json`` written before it recorded one."""
    epoch, run = meta.get("best_epoch"), meta.get("epochs_run")
    of = f" of {run}" if run is not None else ""
    monitor = str(meta.get("monitor") or "val/ua")
    if meta.get("checkpoint") == "last":
        parts = [f"last epoch ({epoch}{of})"]
    else:
        parts = [f"epoch {epoch}{of}, the best {metric_words(monitor)}"]
    ema = meta.get("ema", ema)
    if ema:
        if ema.get("set_as") == "ema_half_life_epochs":
            half_life = float(ema["half_life_epochs"])
            parts.append(f"EMA of weights (half-life {half_life:g} epoch{'' if half_life == 1 else 's'})")
        elif ema.get("half_life_epochs"):
            parts.append(f"EMA of weights (decay {ema['decay_per_step']:g} per step: half-life "
                         f"{ema['half_life_epochs']:.1f} epochs of {ema['steps_per_epoch']} steps)")
        else:
            parts.append(f"EMA of weights (decay {ema['decay_per_step']:g} per step)")
    if meta.get("bn_recalibrated"):
        parts.append("BatchNorm statistics recomputed on training clips")
    score = _number(meta.get("best_score"))
    digits = 4 if monitor.endswith("loss") else 3
    return ", ".join(parts) + (f"; its {metric_words(monitor)} {score:.{digits}f}" if score is not None else "")
