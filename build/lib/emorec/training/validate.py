"""Value checks of a typed :class:`~emorec.training.config.TrainConfig`: choices and ranges.

They run when a config is loaded (``config_from_dict``), so a bad value is a one-line
:class:`~emorec.errors.ConfigError` naming the key before any run folder exists, never a
traceback from deep inside Lightning or PyTorch after one was made.
"""

from __future__ import annotations

import math
from typing import Any

from emorec.errors import ConfigError

NORMALIZATIONS = ("global", "utterance", "level", "speaker", "none")
PACKS = ("float32", "float16", "none")
SPLIT_SCHEMES = ("auto", "ravdess6", "crema5", "speaker_kfold", "stratified", "cross_corpus", "release")
SCHEDULES = ("plateau", "cosine")
LOSSES = ("ce", "focal")
CLASS_WEIGHTS = ("none", "balanced")
CHECKPOINTS = ("best", "last")
MONITORS = ("val/loss", "val/acc", "val/ua", "val/macro_f1")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
PRECISIONS = ("32-true", "32", "64-true", "64", "16-mixed", "16", "bf16-mixed", "bf16", "16-true", "bf16-true",
              "transformer-engine", "transformer-engine-float16")


def _choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{key}: expected one of {', '.join(choices)}, got {value!r}")


def _range(key: str, value: float | None, *, low: float | None = None, high: float | None = None,
           low_open: bool = False, high_open: bool = False, what: str = "") -> None:
    """``value`` within ``[low, high]`` (``(low`` / ``high)`` when open); ``None`` passes."""
    if value is None:
        return
    bad = isinstance(value, float) and not math.isfinite(value)
    if low is not None:
        bad = bad or (value <= low if low_open else value < low)
    if high is not None:
        bad = bad or (value >= high if high_open else value > high)
    if bad:
        if not what:
            left = "(" if low_open else "["
            right = ")" if high_open else "]"
            what = f"a value in {left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        raise ConfigError(f"{key}: expected {what}, got {value!r}")


def validate_config(config) -> None:
    """Raise :class:`ConfigError` for the first impossible value of ``config``."""
    d, s, o, loss, a, t, r = (config.data, config.split, config.optim, config.loss, config.augment,
                              config.trainer, config.run)
    from emorec.labels import LABEL_POLICIES

    _choice("data.label_policy", d.label_policy, LABEL_POLICIES)
    _choice("data.normalization", d.normalization, NORMALIZATIONS)
    _choice("data.pack", d.pack, PACKS)
    _range("data.workers", d.workers, low=0, what="0 (extract in this process) or more processes (or leave it out: all cores)")
    for key, spec in (("data.features", d.features), ("data.video_features", d.video_features)):
        if spec is not None and not spec.get("name"):
            raise ConfigError(f"{key}: needs a 'name' (e.g. logmel)")
    _range("data.balance_power", d.balance_power, low=0, high=1)
    _range("data.epoch_draws", d.epoch_draws, low=0, what="0 (as many as training clips) or more draws per epoch")
    if d.labels is not None and len(set(d.labels)) < 2:
        raise ConfigError(f"data.labels: need at least two distinct classes, got {d.labels}")

    _choice("split.scheme", s.scheme, SPLIT_SCHEMES)
    _range("split.k", s.k, low=2, what="at least 2 folds")
    _range("split.val_speakers", s.val_speakers, low=1, what="at least 1 validation speaker")
    _range("split.test_size", s.test_size, low=0, high=1, low_open=True, high_open=True)

    _range("optim.lr", o.lr, low=0, low_open=True, what="a learning rate > 0")
    for i, beta in enumerate(o.betas):
        _range(f"optim.betas[{i}]", beta, low=0, high=1, high_open=True)
    _range("optim.weight_decay", o.weight_decay, low=0)
    _choice("optim.schedule", o.schedule, SCHEDULES)
    _range("optim.lr_factor", o.lr_factor, low=0, high=1, low_open=True, high_open=True)
    _range("optim.lr_patience", o.lr_patience, low=0)
    _range("optim.warmup_epochs", o.warmup_epochs, low=0)  # past trainer.epochs: the rate only warms up

    _choice("loss.name", loss.name, LOSSES)
    _range("loss.gamma", loss.gamma, low=0)
    _choice("loss.class_weights", loss.class_weights, CLASS_WEIGHTS)
    _range("loss.label_smoothing", loss.label_smoothing, low=0, high=1, high_open=True)
    _range("loss.corpus_adversary", loss.corpus_adversary, low=0)

    for key in ("noise", "mixup", "spec_time_masks", "spec_freq_masks", "freq_shift"):
        _range(f"augment.{key}", getattr(a, key), low=0)
    for key in ("spec_time_width", "spec_freq_width"):
        _range(f"augment.{key}", getattr(a, key), low=1)
    _range("augment.time_stretch", a.time_stretch, low=0, high=1, high_open=True)
    _range("augment.modality_dropout", a.modality_dropout, low=0, high=1)
    _range("augment.gain_db", a.gain_db, low=0)
    for key in ("band_limit", "additive_noise", "reverb"):
        _range(f"augment.{key}", getattr(a, key), low=0, high=1)
    if not a.snr_db[0] <= a.snr_db[1]:
        raise ConfigError(f"augment.snr_db: need low <= high, got {list(a.snr_db)}")

    _range("trainer.epochs", t.epochs, low=1, what="at least 1 epoch")
    _range("trainer.batch_size", t.batch_size, low=1, what="at least 1 clip per batch")
    _range("trainer.patience", t.patience, low=1, what="at least 1 epoch")
    _range("trainer.min_epochs", t.min_epochs, low=0, high=t.epochs,
           what=f"0 to trainer.epochs ({t.epochs})")
    _choice("trainer.monitor", t.monitor, MONITORS)
    _choice("trainer.checkpoint", t.checkpoint, CHECKPOINTS)
    _choice("trainer.accelerator", t.accelerator, ACCELERATORS)
    _choice("trainer.precision", str(t.precision), PRECISIONS)
    if isinstance(t.devices, int):
        _range("trainer.devices", t.devices, low=-1, what="a device count (-1: all), 'auto' or a list like '0,1'")
        if t.devices == 0:
            raise ConfigError("trainer.devices: expected a device count (-1: all), 'auto' or a list like '0,1', got 0")
    _range("trainer.num_nodes", t.num_nodes, low=1, what="at least 1 machine")
    _range("trainer.num_workers", t.num_workers, low=0)
    _range("trainer.threads", t.threads, low=1, what="at least 1 thread (or leave it out)")
    _range("trainer.ema_decay", t.ema_decay, low=0, high=1, high_open=True,
           what="0 (off) or a decay in (0, 1)")
    _range("trainer.ema_half_life_epochs", t.ema_half_life_epochs, low=0,
           what="0 (off) or a half-life in epochs > 0")
    if t.ema_decay and t.ema_half_life_epochs:
        raise ConfigError("trainer.ema_decay and trainer.ema_half_life_epochs both set: keep one (the half-life "
                          "means the same average on any corpus size; ema_decay is per optimisation step)")
    _range("run.bootstrap", r.bootstrap, low=0)
    _range("run.jobs", r.jobs, low=1, what="at least 1 process")
    if r.jobs > 1 and ((isinstance(t.devices, int) and t.devices * t.num_nodes > 1) or t.num_nodes > 1):
        raise ConfigError("run.jobs: fold processes side by side and DDP over several devices don't mix; choose one")
    _validate_folds(r.folds)
    _validate_model(config.model)


def _validate_folds(folds: str) -> None:
    if folds.strip().lower() == "all":
        return
    parts = [p.strip() for p in folds.split(",") if p.strip()]
    if not parts or not all(p.isdigit() and int(p) >= 1 for p in parts):
        raise ConfigError(f"run.folds: expected 'all' or fold numbers like '1,3', got {folds!r}")


def _validate_model(model: dict[str, Any]) -> None:
    from emorec.models.registry import model_arguments

    name = model.get("name", "attn_crnn")
    known = model_arguments(name)  # ConfigError for an unknown model
    unknown = sorted(set(model) - set(known) - {"name"})
    if unknown:
        raise ConfigError(f"model.{unknown[0]}: model {name!r} has no such argument; it takes "
                          f"{', '.join(sorted(known))}")
