"""The weights a fold keeps: loaded from the best or last checkpoint, BatchNorm recalibrated if the
recipe asks, scored again on validation, given a temperature fitted on the validation clips, and
exported with ``model.json`` saying how they were made. The test clips are never read here."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from emorec.corpora.splits import Split
from emorec.data import BucketBatchSampler, ClipDataset, Normalizer, pad_collate
from emorec.runs.epochs import best_epoch, read_epoch_metrics, write_history
from emorec.training.experiment import Experiment

log = logging.getLogger("emorec")


def keep_and_export(
    experiment: Experiment,
    split: Split,
    fold_dir: Path,
    module,
    trainer,
    checkpoint,
    train_set: ClipDataset,
    val_set: ClipDataset,
    normalizers: dict[str, Normalizer],
    *,
    steps_per_epoch: int,
    seconds: float,
    rewrite_metrics: bool,
) -> None:
    """Load the kept weights (best or last epoch), recalibrate BatchNorm if asked, measure their own
    validation scores, and export them with ``model.json`` saying how they were made."""
    from emorec.inference.predictor import export_model
    from emorec.runs.kept import ema_record, kept_summary
    from emorec.runs.folder import read_json
    from emorec.training.checkpoints import BEST, LAST, load_checkpoint

    cfg = experiment.config
    ckpt_dir, monitor = fold_dir / "checkpoints", cfg.trainer.monitor
    if rewrite_metrics:
        trainer.loggers[0].experiment._write()  # metrics.csv from the checkpoint's rows
    keep_last = cfg.trainer.checkpoint == "last" or not (ckpt_dir / BEST).is_file()
    module.load_state_dict(load_checkpoint(ckpt_dir / (LAST if keep_last else BEST))["state_dict"])
    summary = read_json(fold_dir / "train_summary.json") or {}
    history = read_epoch_metrics(fold_dir / "metrics.csv")
    if cfg.trainer.checkpoint == "last":
        kept_epoch = int(summary.get("epochs_run") or trainer.current_epoch)
    else:
        kept_epoch = best_epoch(fold_dir / "metrics.csv", monitor)
    # The kept model's own validation metrics: the logged epoch's (the average, with EMA),
    # or measured again after BatchNorm recalibration changed the weights' statistics.
    epochs = history["epoch"]
    row = (
        epochs.index(float(kept_epoch))
        if kept_epoch is not None and float(kept_epoch) in epochs
        else None
    )
    val_metrics = {
        k: v[row] for k, v in history.items() if k.startswith("val/") and row is not None
    }
    # the kept weights' own statistics; the checkpoints keep the trained ones
    if cfg.trainer.recalibrate_bn:
        from emorec.training.batch_norm import recalibrate_batch_norm

        recalibrate_batch_norm(
            module.model, train_set, batch_size=cfg.trainer.batch_size, seed=cfg.trainer.seed
        )
    logits, labels = validation_logits(module, val_set, batch_size=cfg.trainer.batch_size)
    if cfg.trainer.recalibrate_bn:
        val_metrics = validation_metrics(module, logits, labels, experiment.class_names)
    score = val_metrics.get(
        monitor, checkpoint.best_score if cfg.trainer.checkpoint == "best" else None
    )
    # per rank, as the average counted them
    steps = summary.get("train_batches_per_epoch") or steps_per_epoch
    extra = {
        "fold": split.name,
        "best_epoch": kept_epoch,
        "epochs_run": summary.get("epochs_run", trainer.current_epoch),
        "train_seconds": round(summary.get("train_seconds") or seconds, 2),
        "train_clips": len(train_set),
        "monitor": monitor,  # draws per epoch (with data.corpus_repeats)
        "best_score": float(score if score is not None else float("nan")),
        "val_metrics": {k: float(v) for k, v in val_metrics.items()},
        "checkpoint": cfg.trainer.checkpoint,
        "bn_recalibrated": cfg.trainer.recalibrate_bn,
        "ema": ema_record(vars(cfg.trainer), steps),
        "world_size": trainer.world_size,
        "calibration": temperature_record(logits, labels),
    }
    export_model(
        module,
        fold_dir,
        class_names=experiment.class_names,
        feature_specs=experiment.feature_specs,
        normalizers=normalizers,
        speaker_norm=cfg.data.normalization == "speaker",
        extra=extra,
    )
    log.info("%s kept: %s", split.name, kept_summary(extra))
    write_history(fold_dir / "metrics.csv", fold_dir / "history.npz")


def validation_logits(
    module, val_set: ClipDataset, *, batch_size: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits (N, C), labels (N,))`` of ``module`` as it is now (eval mode) on every validation
    clip, in this process (the training loader is sharded under DDP)."""
    from torch.utils.data import DataLoader

    val_loader = DataLoader(
        val_set,
        collate_fn=pad_collate,
        batch_sampler=BucketBatchSampler(
            val_set.lengths(val_set.modalities[0]), batch_size, shuffle=False
        ),
    )
    module.eval()
    logits, labels = [], []
    with torch.no_grad():
        for batch in val_loader:
            logits.append(module.model(batch).float())
            labels.append(batch["label"])
    return torch.cat(logits), torch.cat(labels)


def validation_metrics(
    module, logits: torch.Tensor, labels: torch.Tensor, class_names
) -> dict[str, float]:
    """``val/loss``, ``val/acc``, ``val/ua``, ``val/macro_f1`` of validation ``logits``, for weights
    changed after the last logged validation (BatchNorm recalibration)."""
    from emorec.evaluation.metrics import classification_metrics

    metrics = classification_metrics(
        labels.numpy(), logits.softmax(-1).numpy(), list(class_names), bootstrap=0
    )
    return {
        "val/loss": float(module.eval_loss_fn(logits, labels)),
        "val/acc": metrics["wa"],
        "val/ua": metrics["ua"],
        "val/macro_f1": metrics["macro_f1"],
    }


def temperature_record(logits: torch.Tensor, labels: torch.Tensor) -> dict:
    """Temperature scaling fitted on the validation clips' logits, and their calibration error
    before and after it (``model.json``'s ``calibration``; prediction divides logits by it)."""
    from emorec.evaluation.calibration import (
        BINS,
        expected_calibration_error,
        fit_temperature,
        softmax,
    )

    z, y = logits.double().numpy(), labels.numpy()
    temperature = fit_temperature(z, y)
    return {
        "temperature": temperature,
        "fitted_on": "validation clips",
        "bins": BINS,
        "val_clips": int(len(y)),
        "val_ece_before": expected_calibration_error(softmax(z), y),
        "val_ece_after": expected_calibration_error(softmax(z / temperature), y),
    }
