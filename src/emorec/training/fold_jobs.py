"""Train the folds of one run in side-by-side processes (``run.jobs`` / ``emorec train --jobs N``).

A small model on a CPU uses few cores well, so N single-fold processes finish a
cross-validation about N times sooner than one process with N threads. Each job is this module
run as ``python -m emorec.training.fold_jobs RUN_DIR FOLDS``: it reads the run's own
``config.yaml`` and ``splits.json`` (exactly what the parent wrote), trains its folds into
``RUN/fold_K`` (log in ``RUN/fold_K/train.log``) and exports them. The parent then evaluates
every fold and writes the one summary of the run. A job dies with its parent (Linux), so a
killed run leaves no training process behind; ``--resume`` continues each fold as usual.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from emorec.errors import EmorecError

log = logging.getLogger("emorec")
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def deal(folds: list[int], jobs: int) -> list[list[int]]:
    """Folds dealt round-robin to at most ``jobs`` groups, none empty."""
    return [folds[i::jobs] for i in range(jobs) if folds[i::jobs]]


def run_fold_jobs(run_dir: Path, folds: list[int], jobs: int) -> None:
    """Train ``folds`` of ``run_dir`` in ``jobs`` processes; returns when all have finished."""
    groups = deal(folds, jobs)
    threads = str(max(1, (os.cpu_count() or 1) // len(groups)))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    preexec = _die_with_parent if sys.platform.startswith("linux") else None
    children = []
    try:
        for group in groups:
            command = [
                sys.executable,
                "-m",
                "emorec.training.fold_jobs",
                str(run_dir),
                ",".join(map(str, group)),
            ]
            child = subprocess.Popen(
                command,
                env=env,
                preexec_fn=preexec,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            children.append((group, child))
            log.info(
                "folds %s: training in process %d (%s thread(s)); log in fold_K/train.log",
                group,
                child.pid,
                threads,
            )
        failed = []
        for group, child in children:
            _, errors = child.communicate()
            if child.returncode != 0:
                last = (errors or "").strip().splitlines()[-1:] or [f"exit code {child.returncode}"]
                failed.append(f"folds {','.join(map(str, group))}: {last[0]}")
        if failed:
            raise EmorecError(
                f"{run_dir}: a fold job failed ({'; '.join(failed)[:400]}); "
                f"see its fold_K/train.log, then `emorec train --resume {run_dir}`"
            )
    finally:
        for _, child in children:
            if child.poll() is None:
                child.terminate()
                child.wait()


def main(argv: list[str]) -> None:
    """One job: train the given folds of a run directory (no evaluation: the parent does it)."""
    from emorec.training.experiment import prepare_experiment
    from emorec.runs.folder import fold_state
    from emorec.corpora.splits import load_splits
    from emorec.training.callbacks import attach_log_file, detach_log_file
    from emorec.training.config import load_run_config
    from emorec.training.fold import train_fold

    run_dir, folds = Path(argv[0]), [int(k) for k in argv[1].split(",")]
    config = load_run_config(run_dir)
    if not config.trainer.threads:
        config.trainer.threads = int(os.environ.get("OMP_NUM_THREADS") or 1)
    experiment = prepare_experiment(
        config, extract=False, progress=False, splits=load_splits(run_dir / "splits.json")
    )
    for fold in folds:
        fold_dir = run_dir / f"fold_{fold}"
        state = fold_state(fold_dir)
        if state in ("evaluated", "exported"):
            continue
        fold_dir.mkdir(parents=True, exist_ok=True)
        handler = attach_log_file(fold_dir / "train.log")
        try:
            train_fold(
                experiment,
                experiment.splits[fold - 1],
                fold_dir,
                progress=False,
                resume=state == "checkpoint",
            )
        finally:
            detach_log_file(handler)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except EmorecError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
