"""Value checks of a typed :class:`~emorec.training.config.TrainConfig`: choices and ranges.

They run when a config is loaded (``config_from_dict``), so a bad value is a one-line
:class:`~emorec.errors.ConfigError` naming the key before any run folder exists, never a
traceback from deep inside Lightning or PyTorch after one was made.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from emorec.errors import ConfigError
from emorec.training.fields import check_fields, check_range


def validate_config(config) -> None:
    """Raise :class:`ConfigError` for the first impossible value of ``config``: each field against
    the choices or range it declares (:mod:`emorec.training.fields`), then what ties fields
    together."""
    for section in dataclasses.fields(config):
        value = getattr(config, section.name)
        # the typed sections; model is an open mapping, checked below
        if dataclasses.is_dataclass(value):
            check_fields(value, section.name)
    d, a, t, r = config.data, config.augment, config.trainer, config.run
    for key, spec in (("data.features", d.features), ("data.video_features", d.video_features)):
        if spec is not None and not spec.get("name"):
            raise ConfigError(f"{key}: needs a 'name' (e.g. logmel)")
    if d.labels is not None and len(set(d.labels)) < 2:
        raise ConfigError(f"data.labels: need at least two distinct classes, got {d.labels}")
    if not a.snr_db[0] <= a.snr_db[1]:
        raise ConfigError(f"augment.snr_db: need low <= high, got {list(a.snr_db)}")
    check_range(
        "trainer.min_epochs",
        t.min_epochs,
        low=0,
        high=t.epochs,
        what=f"0 to trainer.epochs ({t.epochs})",
    )
    if isinstance(t.devices, int):
        check_range(
            "trainer.devices",
            t.devices,
            low=-1,
            what="a device count (-1: all), 'auto' or a list like '0,1'",
        )
        if t.devices == 0:
            raise ConfigError(
                "trainer.devices: expected a device count (-1: all), 'auto' or "
                "a list like '0,1', got 0"
            )
    if t.ema_decay and t.ema_half_life_epochs:
        raise ConfigError(
            "trainer.ema_decay and trainer.ema_half_life_epochs both set: keep one (the half-life "
            "means the same average on any corpus size; ema_decay is per optimisation step)"
        )
    if r.jobs > 1 and (
        (isinstance(t.devices, int) and t.devices * t.num_nodes > 1) or t.num_nodes > 1
    ):
        raise ConfigError(
            "run.jobs: fold processes side by side and DDP over several "
            "devices don't mix; choose one"
        )
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
        raise ConfigError(
            f"model.{unknown[0]}: model {name!r} has no such argument; it takes "
            f"{', '.join(sorted(known))}"
        )
