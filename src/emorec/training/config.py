"""The training config: typed dataclasses are the schema; YAML recipes fill them in.

Unknown keys and wrong types are :class:`~emorec.errors.ConfigError` naming the key, so a
typo never silently falls back to a default. ``model`` and ``features`` are open sections:
their keys are checked against the chosen model's / extractor's own keyword arguments.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from emorec.errors import ConfigError
from emorec.features.packed import DTYPES as PACK_DTYPES
from emorec.corpora.labels import LABEL_POLICIES
from emorec.corpora.splits import SCHEMES as SPLIT_SCHEMES
from emorec.training.fields import choice, ranged
from emorec.training.recipe_files import yaml_problem
from emorec.training.typed import build_dataclass

NORMALIZATIONS = (
    "global",
    "utterance",
    "level",
    "speaker",
    "none",
)  # utterance, level: inductive; speaker: not
PACKS = (*PACK_DTYPES, "none")  # "none": every clip held in memory
SCHEDULES = ("plateau", "cosine")
LOSSES = ("ce", "focal")
CLASS_WEIGHTS = ("none", "balanced")
CHECKPOINTS = ("best", "last")
MONITORS = ("val/loss", "val/acc", "val/ua", "val/macro_f1")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
PRECISIONS = (
    "32-true",
    "32",
    "64-true",
    "64",
    "16-mixed",
    "16",
    "bf16-mixed",
    "bf16",
    "16-true",
    "bf16-true",
    "transformer-engine",
    "transformer-engine-float16",
)


@dataclass
class DataConfig:
    manifest: str = ""
    cache: str = ".cache/emorec"
    features: dict[str, Any] = field(default_factory=lambda: {"name": "logmel"})
    video_features: dict[str, Any] | None = None
    label_policy: str = choice("union", LABEL_POLICIES)
    labels: list[str] | None = None  # explicit class list; default: from the training clips
    normalization: str = choice("global", NORMALIZATIONS)
    # extraction processes (default: all cores)
    workers: int | None = ranged(
        None,
        low=0,
        what="0 (extract in this process) or more processes (or leave it out: all cores)",
    )
    # corpus -> N: each training clip of that corpus is drawn N times per
    # epoch (a smaller corpus oversampled in a merged manifest, so it keeps
    # its number of passes); validation and test clips are never repeated.
    corpus_repeats: dict[str, int] = field(default_factory=dict)
    # < 1: an epoch draws clips (with replacement) by corpus and speaker, each share
    # ∝ its clip count ** this (0: every corpus and every speaker in it alike; 1:
    # the plain shuffle, every clip once): see emorec.data.balanced_weights
    balance_power: float = ranged(1.0, low=0, high=1)
    epoch_draws: int = ranged(
        0, low=0, what="0 (as many as training clips) or more draws per epoch"
    )
    # the features of the manifest's clips packed into shards read clip by clip
    # (emorec.features.packed), so a run's memory does not grow with its corpus; float16 halves the
    # pack (log-mel dB values keep about 0.03 dB); "none": every clip held in memory as before packs
    pack: str = choice("float32", PACKS)


@dataclass
class SplitConfig:
    scheme: str = choice("auto", SPLIT_SCHEMES)  # see emorec.corpora.splits
    k: int = ranged(5, low=2, what="at least 2 folds")
    val_speakers: int = ranged(2, low=1, what="at least 1 validation speaker")
    test_size: float = ranged(0.2, low=0, high=1, low_open=True, high_open=True)
    seed: int = 0
    file: str = ""  # a splits.json from `emorec split --out`: used exactly, scheme ignored
    train_only_corpora: tuple[
        str, ...
    ] = ()  # corpora added whole to every fold's training side (never val/test)
    test_corpora: tuple[
        str, ...
    ] = ()  # scheme cross_corpus: test on all of these, train on the others


@dataclass
class OptimConfig:
    lr: float = ranged(1e-3, low=0, low_open=True, what="a learning rate > 0")
    betas: tuple[float, float] = ranged((0.9, 0.999), low=0, high=1, high_open=True)
    weight_decay: float = ranged(0.0, low=0)
    # "plateau" (ReduceLROnPlateau on val/loss) or "cosine"
    schedule: str = choice("plateau", SCHEDULES)
    # plateau: factor and patience
    lr_factor: float = ranged(0.5, low=0, high=1, low_open=True, high_open=True)
    lr_patience: int = ranged(2, low=0)
    warmup_epochs: int = ranged(
        0,
        low=0,
        # past trainer.epochs: the rate only warms up; cosine:
        # linear warm-up, then cosine decay to 0 at trainer.epochs
    )


@dataclass
class LossConfig:
    name: str = choice("ce", LOSSES)
    gamma: float = ranged(2.0, low=0)  # focal loss
    class_weights: str = choice("none", CLASS_WEIGHTS)  # "none" or "balanced" (inverse frequency)
    label_smoothing: float = ranged(0.0, low=0, high=1, high_open=True)
    # Each training clip's softmax over only the classes its corpus has (union of corpora
    # with different label sets): a CREMA-D clip then never pushes calm or surprised
    # down, so "sounds like RAVDESS" cannot become evidence for RAVDESS-only classes.
    corpus_classes: bool = False
    # > 0: a corpus classifier on the embedding behind a gradient
    # reversal, its loss weighted by this (emorec.training.adversary): the
    # encoder learns features that do not tell the training corpora apart
    corpus_adversary: float = ranged(0.0, low=0)


@dataclass
class AugmentConfig:
    enabled: bool = True
    noise: float = ranged(0.0, low=0)  # Gaussian sigma added to (normalised) features
    mixup: float = ranged(0.0, low=0)  # MixUp alpha; 0 disables
    spec_time_masks: int = ranged(0, low=0)  # SpecAugment-style masks per clip (train only)
    spec_freq_masks: int = ranged(0, low=0)
    spec_time_width: int = ranged(20, low=1)
    spec_freq_width: int = ranged(8, low=1)
    freq_shift: int = ranged(0, low=0)  # max feature-bin shift per clip (VTLP-like, audio only)
    # max relative speed change per batch (0.1 = +-10%)
    time_stretch: float = ranged(0.0, low=0, high=1, high_open=True)
    # share of AV clips trained with one modality removed
    modality_dropout: float = ranged(0.0, low=0, high=1)
    # Recording conditions simulated on log-mel features
    # before normalisation (features/conditions.py):
    gain_db: float = ranged(0.0, low=0)  # gain uniform in +-gain_db dB on every clip
    # share of clips through a random telephone-like band (~300-3400 Hz)
    band_limit: float = ranged(0.0, low=0, high=1)
    # share of clips with white/pink/brown noise at an SNR in snr_db
    additive_noise: float = ranged(0.0, low=0, high=1)
    snr_db: tuple[float, float] = (5.0, 30.0)
    # share of clips with late reverberation (RT60 0.2-1.0 s)
    reverb: float = ranged(0.0, low=0, high=1)
    # Waveform speed factors (e.g. [0.9, 1.1]: tempo, pitch and formants together,
    # so each is another voice) whose features are extracted and cached beside the
    # originals; each training draw reads the original or one of them, alike. For
    # front ends that cannot be perturbed after extraction (voice_encoder has a
    # ``speed`` option); validation, test and the exported model see speed 1.
    speed_views: tuple[float, ...] = ranged((), low=0.5, high=2.0)


@dataclass
class TrainerConfig:
    epochs: int = ranged(30, low=1, what="at least 1 epoch")
    batch_size: int = ranged(32, low=1, what="at least 1 clip per batch")
    patience: int = ranged(6, low=1, what="at least 1 epoch")
    min_epochs: int = 0  # early stopping cannot end training before this
    # checkpoint + early stopping metric (validation only)
    monitor: str = choice("val/ua", MONITORS)
    # "best" (by monitor, early stopping) or "last" (fixed budget)
    checkpoint: str = choice("best", CHECKPOINTS)
    seed: int = 0
    bucketing: bool = True
    accelerator: str = choice("auto", ACCELERATORS)
    devices: int | str = 1  # a count (-1: all), "auto" or a list like "0,1"
    num_nodes: int = ranged(1, low=1, what="at least 1 machine")
    precision: str = choice("32-true", PRECISIONS)
    deterministic: bool = True
    num_workers: int = ranged(0, low=0)
    # torch intra-op threads (default: torch's choice)
    threads: int | None = ranged(None, low=1, what="at least 1 thread (or leave it out)")
    ema_decay: float = ranged(
        0.0, low=0, high=1, high_open=True, what="0 (off) or a decay in (0, 1)"
    )  # >0: validate, checkpoint and export an EMA of the weights
    # (and of BatchNorm statistics: see recalibrate_bn)
    # >0: the same EMA, its horizon in epochs (a step's weight halves
    ema_half_life_epochs: float = ranged(0.0, low=0, what="0 (off) or a half-life in epochs > 0")
    # after this many epochs; the same on any corpus size); not with ema_decay
    recalibrate_bn: bool = (
        False  # recompute BatchNorm statistics of the kept weights on training clips
    )


@dataclass
class RunConfig:
    dir: str = "runs"
    name: str = ""
    folds: str = "1"  # "all", "1", "1,3,5"
    # folds trained side by side in this many processes
    jobs: int = ranged(1, low=1, what="at least 1 process")
    bootstrap: int = ranged(1000, low=0)


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    model: dict[str, Any] = field(default_factory=lambda: {"name": "attn_crnn"})
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """The typed config of ``data``; unknown keys, wrong types and impossible values are a
    :class:`ConfigError` (see :mod:`emorec.training.validate`)."""
    from emorec.training.validate import validate_config

    config = build_dataclass(TrainConfig, data or {}, "")
    validate_config(config)
    return config


def _path_fields(config: TrainConfig) -> list[tuple[object, str]]:
    """The (section, attribute) pairs that hold file paths."""
    return [(config.data, "manifest"), (config.data, "cache"), (config.split, "file")]


def resolve_paths(config: TrainConfig) -> TrainConfig:
    """Make the config's relative file paths absolute against the current directory, so a run
    folder's ``config.yaml`` works from anywhere."""
    root = Path.cwd()
    for section, name in _path_fields(config):
        value = getattr(section, name)
        if value and not Path(value).expanduser().is_absolute():
            setattr(section, name, str((root / Path(value)).resolve()))
        elif value:
            setattr(section, name, str(Path(value).expanduser()))
    return config


def _merge(base: dict, overlay: dict) -> dict:
    out = dict(base)
    for key, value in overlay.items():
        if (
            isinstance(value, dict)
            and isinstance(out.get(key), dict)
            and key not in ("model", "features")
        ):
            out[key] = _merge(out[key], value)
        elif (
            isinstance(value, dict)
            and isinstance(out.get(key), dict)
            and out[key].get("name") == value.get("name", out[key].get("name"))
        ):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def load_config(
    path: str | os.PathLike | None,
    overrides: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> TrainConfig:
    """Read a YAML recipe (which may name a ``base:`` YAML to overlay), apply overrides.

    ``overrides`` are ``section.key=value`` strings (value parsed as YAML); ``extra`` is a
    nested dict of already-typed values (the CLI's flags). Relative paths (``data.manifest``,
    ``data.cache``, ``split.file``) are resolved against the current directory.
    """
    data: dict[str, Any] = {}
    if path is not None:
        data = _read_yaml(Path(path))
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected section.key=value")
        dotted, raw = item.split("=", 1)
        node = data
        keys = dotted.strip().split(".")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {key} is not a section")
        try:
            node[keys[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: {yaml_problem(err)}") from None
    if extra:
        data = _merge(data, extra)
    return resolve_paths(config_from_dict(data))


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: {yaml_problem(err)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping")
    base = data.pop("base", None)
    if base:
        data = _merge(_read_yaml((path.parent / base).resolve()), data)
    return data


def load_run_config(run_dir: str | os.PathLike) -> TrainConfig:
    """A run folder's ``config.yaml``, its file paths made to work from here.

    Runs store absolute paths; older runs stored them relative to the directory training
    started in, which ``run.json`` records (or, in runs older still, which ``run.dir`` implies).
    A path that is missing where it was, as after copying a run back from another machine, is
    looked for at the same place relative to the current directory.
    """
    import json

    run_dir = Path(run_dir).absolute()
    config = config_from_dict(_read_yaml(run_dir / "config.yaml"))
    origins: list[Path] = []
    try:
        sessions = json.loads((run_dir / "run.json").read_text()).get("sessions", [])
        origins += [Path(s["cwd"]) for s in sessions if s.get("cwd")]
    except (OSError, ValueError, AttributeError, TypeError):
        pass
    run_parent = Path(os.path.normpath(config.run.dir)) if config.run.dir else None
    if run_parent is not None and not run_parent.is_absolute():
        depth = len([part for part in run_parent.parts if part not in (".", "")])
        origins.append(run_dir.parents[depth] if depth < len(run_dir.parents) else run_dir.parent)
    for section, name in _path_fields(config):
        value = getattr(section, name)
        if value:
            setattr(section, name, str(_locate(Path(value).expanduser(), origins)))
    return config


def _locate(path: Path, origins: list[Path]) -> Path:
    if path.is_absolute():
        if path.exists():
            return path
        moved = [Path.cwd() / path.relative_to(o) for o in origins if path.is_relative_to(o)]
        return next((p for p in moved if p.exists()), path)
    candidates = [o / path for o in origins] + [Path.cwd() / path]
    return next((p for p in candidates if p.exists()), candidates[0]).resolve()


def save_config(config: TrainConfig, path: str | os.PathLike) -> None:
    from emorec.atomic import write_text

    write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
