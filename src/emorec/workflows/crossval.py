"""``emorec train``: train the folds a config asks for into one run folder, evaluate each on its
test clips, and summarise them; or continue such a run (:func:`resume`). A workflow above both
training (:func:`~emorec.training.fold.train_fold`) and evaluation
(:func:`~emorec.evaluation.run_eval.evaluate_fold`).

Run directory::

    RUN/config.yaml       resolved config (absolute paths)   RUN/splits.json  every fold's clip ids
    RUN/fold_K/           one fold (see emorec.training.fold)
    RUN/fold_K/report/    report.json/.md + PNGs (test fold, after training)
    RUN/summary.json/.md  mean ± std over folds (cross-validation)
    RUN/run.json          status (running / finished / failed), pid, host, sessions
    RUN/train.log         our messages and Lightning's, one line each

The test clips of a fold are read once, after ``fit``, by the weights that validation kept.

Distributed (``trainer.devices × trainer.num_nodes > 1``): Lightning's launcher re-runs the
same command line in one subprocess per extra device; the run directory reaches them through
``$EMOREC_RUN_DIR`` (set it yourself for multi-node runs so every node agrees). Side-by-side
fold processes instead (``run.jobs``): :mod:`emorec.training.fold_jobs`.

Resume: ``emorec train --resume RUN`` reads the run's own ``config.yaml`` and ``splits.json``
(never re-splits), keeps evaluated folds, evaluates exported ones, continues an interrupted fold
from its ``last.ckpt`` and trains folds never started.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime
from pathlib import Path

import lightning as L
from rich.console import Console

from emorec.errors import ConfigError, EmorecError
from emorec.training.experiment import Experiment, prepare_experiment, select_folds
from emorec.features.skipped import write_skipped
from emorec.runs.folder import fold_state, write_run_status
from emorec.corpora.splits import load_splits, save_splits
from emorec.training.config import TrainConfig, load_run_config, save_config
from emorec.training.fold import is_global_zero, train_fold, trainer_options
from emorec.training.validate import validate_config

console = Console(stderr=True)
log = logging.getLogger("emorec")

RUN_DIR_ENV = "EMOREC_RUN_DIR"
HARDWARE_KEYS = ("accelerator", "devices", "num_nodes", "precision")

__all__ = ["RUN_DIR_ENV", "is_global_zero", "resume", "train"]


def train(config: TrainConfig, *, progress: bool = True) -> Path:
    """Train the folds ``config.run.folds`` asks for; returns the run directory.

    The run directory is new (``run.dir/NAME-TIMESTAMP``) unless ``$EMOREC_RUN_DIR`` names one
    (DDP subprocesses, multi-node and spot jobs); that folder must not hold a run already.
    """
    rank_zero = is_global_zero()
    env_dir = os.environ.get(RUN_DIR_ENV, "").strip()
    if rank_zero and env_dir and (Path(env_dir) / "config.yaml").is_file():
        raise EmorecError(
            f"{env_dir} already holds a run (${RUN_DIR_ENV}); continue it with "
            f"`emorec train --resume {env_dir}`"
        )
    splits = None
    if env_dir and not rank_zero and (Path(env_dir) / "splits.json").is_file():
        splits = load_splits(Path(env_dir) / "splits.json")  # rank 0 wrote them: never re-split
    check_hardware(config)
    experiment = prepare_experiment(
        config, progress=progress and rank_zero, splits=splits, views=True
    )
    folds = select_folds(config.run.folds, len(experiment.splits))
    if rank_zero:
        if env_dir:
            run_dir = Path(env_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
        else:
            run_dir = new_run_dir(config)
        # first: config.yaml marks a resumable run
        save_splits(experiment.splits, run_dir / "splits.json")
        save_config(config, run_dir / "config.yaml")
        write_skipped(experiment.skipped, run_dir / "skipped.csv")
        if experiment.skipped:
            console.print(
                f"[yellow]{len(experiment.skipped)} file(s) skipped; see {run_dir / 'skipped.csv'}"
            )
        console.print(f"run directory: {run_dir}")
    else:  # a DDP worker: rank 0 owns the folder (nothing is written here without $EMOREC_RUN_DIR)
        run_dir = (
            Path(env_dir) if env_dir else Path(config.run.dir) / f".rank-{os.getpid()}-unshared"
        )
    return _train_folds(experiment, run_dir, folds, progress=progress, resume=False)


def resume(
    run_dir: str | os.PathLike, *, progress: bool = True, hardware: dict | None = None
) -> Path:
    """Continue a run directory after a crash, a kill or a preemption; returns it.

    Reads ``RUN/config.yaml`` and ``RUN/splits.json``; folds with a report are kept, folds with
    an exported model are only evaluated, an interrupted fold continues from its
    ``checkpoints/last.ckpt`` (the state after its last complete epoch: no epoch is lost or run
    twice, and ``metrics.csv`` is rebuilt from the rows stored in that checkpoint), folds never
    started are trained. ``hardware`` may change ``accelerator``, ``devices``, ``num_nodes``
    and ``precision`` (a spot job recovered on another instance type); nothing else.

    Security: the only checkpoint loaded is ``RUN/fold_K/checkpoints/last.ckpt`` (and
    ``best.ckpt``) of this run, with ``torch.load(weights_only=True)``.
    """
    run_dir = Path(run_dir).resolve()
    if not (run_dir / "config.yaml").is_file() or not (run_dir / "splits.json").is_file():
        raise EmorecError(f"{run_dir}: not a run directory (needs config.yaml and splits.json)")
    config = load_run_config(run_dir)
    for key, value in (hardware or {}).items():
        if key not in HARDWARE_KEYS:
            raise ConfigError(f"--resume can change {', '.join(HARDWARE_KEYS)} only, not {key!r}")
        if value is not None:
            setattr(config.trainer, key, value)
    if hardware:
        validate_config(config)
    check_hardware(config)
    rank_zero = is_global_zero()
    experiment = prepare_experiment(
        config,
        progress=progress and rank_zero,
        splits=load_splits(run_dir / "splits.json"),
        views=True,
    )
    folds = select_folds(config.run.folds, len(experiment.splits))
    if rank_zero:
        console.print(f"resuming run directory: {run_dir}")
    return _train_folds(experiment, run_dir, folds, progress=progress, resume=True)


def new_run_dir(config: TrainConfig) -> Path:
    name = config.run.name or str(config.model.get("name", "run"))
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(config.run.dir) / f"{name}-{stamp}"
    suffix = 1
    while run_dir.exists():
        suffix += 1
        run_dir = Path(config.run.dir) / f"{name}-{stamp}-{suffix}"
    run_dir.mkdir(parents=True)
    return run_dir


def check_hardware(config: TrainConfig) -> None:
    """A :class:`ConfigError` now, before a run folder exists, if Lightning cannot set up the
    requested accelerator, devices and precision on this machine (a Trainer is built and
    dropped)."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    t = config.trainer
    lightning_log = logging.getLogger("lightning.pytorch")
    level = lightning_log.level
    # its "GPU available" lines are printed by the real Trainer
    lightning_log.setLevel(logging.WARNING)
    try:
        L.Trainer(
            **trainer_options(config),
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
    except (MisconfigurationException, ValueError, RuntimeError) as error:
        raise ConfigError(
            f"trainer (accelerator={t.accelerator}, devices={t.devices}, num_nodes={t.num_nodes}, "
            f"precision={t.precision}): {str(error).splitlines()[0]}"
        ) from None
    finally:
        lightning_log.setLevel(level)


def _train_folds(
    experiment: Experiment, run_dir: Path, folds: list[int], *, progress: bool, resume: bool
) -> Path:
    from emorec.evaluation.run_eval import evaluate_fold, write_run_summary
    from emorec.training.callbacks import attach_log_file, detach_log_file

    rank_zero = is_global_zero()
    given, run_dir = run_dir, Path(run_dir).absolute()
    previous_env = os.environ.get(RUN_DIR_ENV)
    os.environ[RUN_DIR_ENV] = str(run_dir)  # DDP subprocesses started during fit() inherit it
    handler = attach_log_file(run_dir / "train.log") if rank_zero else None
    # Every rank decides from the same files, before any of them trains: the same folds train.
    states = {k: fold_state(run_dir / f"fold_{k}") if resume else "new" for k in folds}
    if rank_zero:
        write_run_status(run_dir, "running", folds, resumed=resume)
        log.info(
            "%s %s: folds %s%s",
            "resuming" if resume else "starting",
            run_dir,
            folds,
            f" ({', '.join(f'fold {k} {v}' for k, v in states.items())})" if resume else "",
        )
    reports = []
    try:
        pending = [k for k in folds if states[k] in ("new", "checkpoint")]
        if rank_zero and experiment.config.run.jobs > 1 and len(pending) > 1:
            from emorec.training.fold_jobs import run_fold_jobs

            run_fold_jobs(run_dir, pending, experiment.config.run.jobs)
            states.update({k: fold_state(run_dir / f"fold_{k}") for k in pending})
        for fold in folds:
            split = experiment.splits[fold - 1]
            fold_dir = run_dir / f"fold_{fold}"
            state = states[fold]
            if state == "evaluated":
                if rank_zero:
                    log.info("fold %d: already finished and evaluated; kept", fold)
                    reports.append(json.loads((fold_dir / "report" / "report.json").read_text()))
                continue
            if state in ("new", "checkpoint"):
                train_fold(
                    experiment, split, fold_dir, progress=progress, resume=state == "checkpoint"
                )
            if rank_zero and not split.test:
                log.info(
                    "fold %d: no test speakers (a release fold): its accuracy is its "
                    "recipe's cross-validation",
                    fold,
                )
            elif rank_zero:
                reports.append(evaluate_fold(fold_dir, experiment=experiment, split=split))
                log.info(
                    "fold %d: test UA %.4f  WA %.4f  macro-F1 %.4f",
                    fold,
                    reports[-1]["ua"],
                    reports[-1]["wa"],
                    reports[-1]["macro_f1"],
                )
        if rank_zero and len(reports) > 1:
            write_run_summary(run_dir, reports)
        if rank_zero:
            write_run_status(run_dir, "finished", folds)
            log.info("run finished")
    except BaseException as error:
        if rank_zero:
            status = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
            log.error("run %s: %s: %s", status, type(error).__name__, error)
            write_run_status(run_dir, status, folds, error=f"{type(error).__name__}: {error}"[:500])
        raise
    finally:
        if handler is not None:
            detach_log_file(handler)
        if previous_env is None:
            os.environ.pop(RUN_DIR_ENV, None)
        else:
            os.environ[RUN_DIR_ENV] = previous_env
    return given
