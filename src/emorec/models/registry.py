"""Model registry in the style of timm: ``@register_model``, ``create_model``, ``list_models``.

A registered model is its ``nn.Module`` class: ``num_classes``, the feature sizes of the
modalities it reads (``audio_dim``, ``video_dim``) and its own typed keyword arguments, which
are the model's config schema, written once in its ``__init__``. :func:`create_model` passes a
feature size only to a class that takes it, refuses ``None`` where the class needs a size, and
gives tuple arguments from a YAML list as tuples.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch.nn as nn

from emorec.errors import ConfigError


@dataclass(frozen=True)
class ModelInfo:
    name: str
    factory: Callable[..., nn.Module]  # the model class (or any callable with its signature)
    modalities: tuple[
        str, ...
    ]  # the batch keys the model can read: ("audio",), ("audio", "video"), ...
    seed: str  # the seed document it comes from, e.g. "000"
    summary: str


_MODELS: dict[str, ModelInfo] = {}
DIMS = ("audio_dim", "video_dim")


def register_model(
    name: str, *, modalities: tuple[str, ...], seed: str, summary: str = ""
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _MODELS[name] = ModelInfo(
            name,
            factory,
            modalities,
            seed,
            summary or (factory.__doc__ or "").strip().split("\n")[0],
        )
        return factory

    return decorator


#: The modules that register the built-in architectures, imported on first use of the registry
#: (by name, so this module imports none of the architectures that import it).
BUILTIN_MODEL_MODULES = (
    "attn_crnn",
    "attn_crnn_v2",
    "bilstm_attention",
    "cnn_lstm",
    "fusion",
    "hybrid_tcn",
)


def _load_builtin_models() -> None:
    for module in BUILTIN_MODEL_MODULES:
        importlib.import_module(f"emorec.models.{module}")


def list_models() -> list[str]:
    _load_builtin_models()
    return sorted(_MODELS)


def model_info(name: str) -> ModelInfo:
    _load_builtin_models()
    if name not in _MODELS:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(sorted(_MODELS))}")
    return _MODELS[name]


def model_arguments(name: str) -> dict[str, Any]:
    """The model-specific keyword arguments with their defaults (the config schema)."""
    params = inspect.signature(model_info(name).factory).parameters
    return {
        key: p.default
        for key, p in params.items()
        if key not in (*DIMS, "num_classes") and p.kind == p.KEYWORD_ONLY
    }


def create_model(
    name: str,
    *,
    num_classes: int,
    audio_dim: int | None = None,
    video_dim: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    info = model_info(name)
    unknown = set(kwargs) - set(model_arguments(name))
    if unknown:
        raise ConfigError(
            f"model {name!r} has no argument(s) {sorted(unknown)}; it takes "
            f"{sorted(model_arguments(name))}"
        )
    params = inspect.signature(info.factory).parameters
    given = {"audio_dim": audio_dim, "video_dim": video_dim}
    for key, value in given.items():
        if key in params and value is None and "None" not in str(params[key].annotation):
            modality = key.removesuffix("_dim")
            raise ConfigError(f"{name} reads the {modality} modality: {key} is required")
    arguments = {k: v for k, v in given.items() if k in params}
    for key, value in kwargs.items():  # YAML has lists only: a tuple-typed argument gets its tuple
        is_tuple = str(params[key].annotation).startswith(("tuple", "Tuple"))
        arguments[key] = tuple(value) if is_tuple and isinstance(value, list) else value
    return info.factory(num_classes=num_classes, **arguments)


def describe_models() -> list[dict[str, Any]]:
    """One row per registered model: name, modalities, parameter count, seed, summary.

    Parameters are counted on an instance built with ``num_classes=8``, ``audio_dim=64`` and
    ``video_dim=32`` (for the modalities the model reads) and its default arguments.
    """
    rows = []
    for name in list_models():
        info = _MODELS[name]
        model = create_model(
            name,
            num_classes=8,
            audio_dim=64 if "audio" in info.modalities else None,
            video_dim=32 if "video" in info.modalities else None,
        )
        rows.append(
            {
                "name": name,
                "modalities": info.modalities,
                "parameters": sum(p.numel() for p in model.parameters()),
                "seed": info.seed,
                "summary": info.summary,
            }
        )
    return rows
