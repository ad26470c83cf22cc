"""``emorec monitor RUN`` and ``emorec runs DIR``: the seeds' monitor/download scripts as views.

``monitor`` shows a run's status (running / finished / failed / stalled), epoch x of y, latest
train and validation metrics, the best validation score so far and its epoch while a fold trains,
the kept model (how its weights were made, its own validation score) once a fold is exported,
the estimated time to finish (from epoch durations), GPU utilisation and memory (NVML through
``pynvml`` when it is installed and a GPU is present, else the plain line ``no GPU``) and the
last lines of ``RUN/train.log``; ``--follow`` redraws it live. ``runs`` lists run directories
side by side: one row each when the table fits the width, else each run's name on a line of its
own over its details (the name is never cut). Both read files only (see :mod:`emorec.runs.status`),
so a run directory copied back from a cloud machine (``sky rsync-down``, a bucket) is shown the same
way.
"""

from __future__ import annotations

import socket
import time
from collections import deque
from pathlib import Path
from typing import Any

from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.measure import Measurement
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from emorec.errors import EmorecError
from emorec.runs.folder import is_run_dir
from emorec.runs.status import (
    FoldView,
    RunView,
    eta_seconds,
    format_seconds,
    list_runs,
    run_view,
)

STATUS_STYLE = {
    "running": "green",
    "finished": "bold blue",
    "failed": "bold red",
    "interrupted": "red",
    "stalled": "bold yellow",
    "not started": "dim",
    "incomplete": "yellow",
}


def gpu_lines() -> list[str]:
    """One line per GPU from NVML, or ``["no GPU"]``."""
    try:
        import pynvml
    except ImportError:
        return ["no GPU"]
    try:
        pynvml.nvmlInit()
    except Exception:
        return ["no GPU"]
    lines = []
    try:
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            name = name.decode() if isinstance(name, bytes) else name
            util = pynvml.nvmlDeviceGetUtilizationRates(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            lines.append(
                f"GPU {index} {name}: {util.gpu}% busy, memory {memory.used / 2**30:.1f} / "
                f"{memory.total / 2**30:.1f} GiB ({util.memory}% bandwidth)"
            )
    except Exception as error:  # a driver hiccup is not a monitor failure
        lines.append(f"NVML error: {error}")
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass
    return lines or ["no GPU"]


def tail(path: Path, n: int = 10) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return [line.rstrip("\n") for line in deque(handle, maxlen=n)]
    except OSError:
        return []


def _metrics(values: dict[str, Any]) -> str:
    return (
        "  ".join(
            f"{k.split('/', 1)[-1]} {v:.4f}"
            for k, v in values.items()
            if isinstance(v, (int, float))
        )
        or "-"
    )


def _status(view_status: str, reason: str = "") -> Text:
    text = Text(view_status, style=STATUS_STYLE.get(view_status, ""))
    if reason:
        text.append(f" ({reason})", style="dim")
    return text


def _gpu_section(view: RunView, fold: FoldView | None) -> list[str]:
    if view.same_host or not view.host:
        return gpu_lines()
    recorded = (fold.heartbeat.get("gpu") if fold else None) or []
    if recorded:
        return [
            f"GPU {g['index']} {g['name']} on {view.host} at the last heartbeat: memory "
            f"{g['memory_used_mb'] / 1024:.1f} / {g['memory_total_mb'] / 1024:.1f} GiB"
            for g in recorded
        ]
    return ["no GPU" + (f" (run on {view.host}; none recorded)" if view.host else "")]


def render(run_dir: str | Path, *, log_lines: int = 12) -> Group:
    view = run_view(run_dir)
    fold = view.current
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("run", f"{view.path}")
    table.add_row("model", f"{view.model} on {view.features}")
    table.add_row("status", _status(view.status, view.reason))
    where = f"{view.host or '?'} pid {view.pid or '?'}" + (
        ""
        if view.same_host or not view.host
        else f"  (not this machine, {socket.gethostname()}: no process check)"
    )
    table.add_row("host", where)
    table.add_row(
        "folds",
        f"{view.done} of {len(view.planned) or len(view.folds)} done"
        + (f"; now {fold.path.name}" if fold and view.status in ("running", "stalled") else ""),
    )
    if fold and fold.heartbeat:
        hb = fold.heartbeat
        epoch = f"{hb.get('epoch', 0)} of {hb.get('max_epochs', '?')} complete"
        if fold.status in ("running", "stalled") and hb.get("batches"):
            epoch += (
                f"; epoch {hb.get('current_epoch') or int(hb.get('epoch', 0)) + 1}: "
                f"{hb.get('phase')}"
                f" batch {hb.get('batch', 0)}/{hb['batches']}"
            )
        table.add_row(f"{fold.path.name} epoch", epoch)
        latest = f"epoch {hb['epoch']} " if hb.get("epoch") else ""
        table.add_row(f"{latest}train", _metrics(hb.get("train", {})))
        table.add_row(f"{latest}validation", _metrics(hb.get("val", {})))
        if fold.kept:
            # exported: the kept weights' own score, not the best epoch's (another epoch, or
            # before averaging / BatchNorm recalibration)
            table.add_row("kept model", fold.kept)
        elif hb.get("best") is not None:
            best = f"{hb['monitor']} {hb['best']:.4f} at epoch {hb.get('best_epoch')}"
            if fold.keeps == "last":
                best += "  (the recipe keeps the last epoch, not this one)"
            elif (
                hb.get("patience")
                and hb.get("early_stop_wait") is not None
                and fold.status in ("running", "stalled")
            ):
                best += (
                    f"  (early stop after {max(0, hb['patience'] - hb['early_stop_wait'])} "
                    "more epoch(s) without improvement)"
                )
            table.add_row("best so far" if fold.keeps != "last" else "best epoch so far", best)
        seconds = hb.get("epoch_seconds") or []
        if seconds:
            table.add_row(
                "epoch time",
                f"median {format_seconds(hb.get('median_epoch_seconds'))}, last "
                f"{format_seconds(seconds[-1])}, trained {format_seconds(sum(seconds))}",
            )
        if fold.status == "running":
            fold_eta, run_eta = eta_seconds(hb), view.eta()
            eta = (
                f"{format_seconds(fold_eta)} for this fold (at most, {hb.get('max_epochs')} epochs)"
            )
            if run_eta is not None and run_eta - (fold_eta or 0) > 1:
                eta += f"; {format_seconds(run_eta)} for the run"
            table.add_row("ETA", eta)
        table.add_row(
            "heartbeat", f"{format_seconds(fold.age)} ago" if fold.age is not None else "-"
        )
    elif view.status == "finished" and view.test_ua is not None:
        pass
    kept = [f.val_ua for f in view.folds if f.meta and f.val_ua is not None]
    if kept:
        table.add_row(
            "val UA",
            f"{sum(kept) / len(kept):.4f} (kept model"
            + (f"s, mean over {len(kept)} folds)" if len(kept) > 1 else ")"),
        )
    if view.test_ua is not None:
        table.add_row(
            "test UA", f"{view.test_ua:.4f}" + (" (mean over folds)" if len(view.folds) > 1 else "")
        )
    if view.duration is not None:
        table.add_row("duration", format_seconds(view.duration))
    gpu = Panel("\n".join(_gpu_section(view, fold)), title="GPU", expand=True)
    lines = tail(view.path / "train.log", log_lines)
    logs = Panel(
        Text("\n".join(lines) if lines else "(no train.log yet)"),
        title=f"last {log_lines} lines of train.log",
    )
    return Group(Panel(table, title=f"emorec monitor — {view.name}"), gpu, logs)


def _resolve(run_dir: Path) -> Path:
    if not run_dir.exists():
        raise EmorecError(f"{run_dir}: no such run directory")
    if (
        not is_run_dir(run_dir)
        and is_run_dir(run_dir.parent)
        and (run_dir / "heartbeat.json").exists()
    ):
        return run_dir.parent  # a fold directory was given
    if not is_run_dir(run_dir):
        raise EmorecError(f"{run_dir}: not a run directory (no config.yaml)")
    return run_dir


def monitor(
    run_dir: str | Path,
    *,
    follow: bool = False,
    interval: float = 5.0,
    log_lines: int = 12,
    console: Console | None = None,
) -> str:
    """Print (or, with ``follow``, keep redrawing until the run ends) the run's status; returns
    it."""
    console = console or Console()
    run_dir = _resolve(Path(run_dir))
    if not follow:
        console.print(render(run_dir, log_lines=log_lines))
        return run_view(run_dir).status
    from rich.live import Live

    with Live(
        render(run_dir, log_lines=log_lines),
        console=console,
        refresh_per_second=4,
        auto_refresh=False,
    ) as live:
        while True:
            status = run_view(run_dir).status
            live.update(render(run_dir, log_lines=log_lines), refresh=True)
            if status not in ("running",):
                return status
            time.sleep(max(0.2, interval))


RUN_COLUMNS = ("run", "model", "features", "folds", "status", "val UA", "test UA", "duration")
RIGHT = ("folds", "val UA", "test UA", "duration")
RUNS_CAPTION = "val UA: the kept models' validation UA (while training: what would be kept now)"


class RunsTable:
    """``emorec runs``: one row per run when that fits the console, else each run's name on a
    line of its own (whole: it is the key) over its details, in columns aligned across runs."""

    def __init__(self, root: str | Path, views: list[RunView]):
        self.root = root
        self.rows = [
            (
                view.name,
                view.model,
                view.features,
                f"{view.done}/{len(view.planned) or len(view.folds)}",
                _status(view.status),
                f"{view.val_ua:.3f}" if view.val_ua is not None else "-",
                f"{view.test_ua:.3f}" if view.test_ua is not None else "-",
                format_seconds(view.duration),
            )
            for view in views
        ]

    def wide(self) -> Table:
        table = Table(title=f"runs in {self.root}", caption=RUNS_CAPTION)
        for column in RUN_COLUMNS:
            table.add_column(
                column,
                justify="right" if column in RIGHT else "left",
                no_wrap=column == "run",
                overflow="fold",
            )
        for row in self.rows:
            table.add_row(*row)
        return table

    def stacked(self) -> list:
        columns = RUN_COLUMNS[1:]
        widths = [
            max(
                [len(column)]
                + [Text(c).cell_len if isinstance(c, str) else c.cell_len for c in cells]
            )
            for column, cells in zip(columns, zip(*(row[1:] for row in self.rows)))
        ]

        def grid(header: bool) -> Table:
            # the same fixed widths in every run's grid line them up under one header
            table = Table(
                box=None, show_header=header, show_edge=False, pad_edge=False, padding=(0, 1)
            )
            table.add_column("", width=1)  # indents the details under their run's name
            for column, width in zip(columns, widths):
                table.add_column(
                    column,
                    width=width,
                    justify="right" if column in RIGHT else "left",
                    overflow="fold",
                )
            return table

        parts: list = [Text(f"runs in {self.root}", style="italic", justify="center"), grid(True)]
        for name, *details in self.rows:
            row = grid(False)
            row.add_row("", *details)
            parts += [Text(name, style="bold", overflow="fold"), row]
        return parts + [Text(RUNS_CAPTION, style="dim italic")]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        wide = self.wide()
        natural = Measurement.get(
            console, options.update(max_width=10_000), wide
        ).maximum  # unwrapped
        if natural <= options.max_width:
            yield wide
        else:
            yield from self.stacked()


def runs_table(root: str | Path) -> RunsTable:
    views = list_runs(root)
    if not views:
        raise EmorecError(f"{root}: no run directories (folders with config.yaml) here")
    return RunsTable(root, views)
