"""Run folders: ``monitor`` one run live, list ``runs`` side by side."""

from __future__ import annotations

from pathlib import Path

import typer

from emorec.cli.app import app, out


@app.command()
def monitor(
    run_dir: Path = typer.Argument(
        ..., help="a run directory (local, or copied back from a cloud machine)"
    ),
    follow: bool = typer.Option(
        False, "--follow", "-f", help="keep redrawing until the run stops running"
    ),
    interval: float = typer.Option(5.0, help="seconds between redraws with --follow"),
    lines: int = typer.Option(12, help="last lines of train.log to show"),
) -> None:
    """Status, epoch x of y, latest metrics, best so far, ETA, GPU, last log lines of a run."""
    from emorec.runs.monitor import monitor as show

    show(run_dir, follow=follow, interval=interval, log_lines=lines, console=out)


@app.command()
def runs(
    directory: Path = typer.Argument(
        Path("runs"), help="folder of run directories (default: runs)"
    ),
) -> None:
    """List runs side by side: model, folds done, status, best validation UA, test UA, duration."""
    from emorec.runs.monitor import runs_table

    out.print(runs_table(directory))
