"""Self-supervised speech representations (wav2vec2, HuBERT, WavLM) through transformers.

``model`` is a local directory written by ``save_pretrained`` or a Hugging Face hub name
(downloaded by transformers when the machine can). The model is loaded once per process and
cached; extraction runs in the calling process by default (see ``parallel``).
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from emorec.errors import ConfigError, EmorecError
from emorec.features.base import FeatureExtractor, register_extractor

LAYER_MODES = ("all", "mean")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack")
_EDGE = 1 << 20  # bytes hashed at each end of a weights file
#: (model, device) -> (torch model, do_normalize, sample_rate); one load per process.
_MODELS: dict[tuple[str, str], tuple[Any, bool, int]] = {}


def _import_transformers() -> Any:
    try:
        import transformers
    except ImportError as err:
        raise EmorecError(
            f"the 'ssl' extractor needs transformers ({err}); "
            "install it with `pip install emorec[ssl]`"
        ) from None
    return transformers


def dir_fingerprint(path: Path) -> str:
    """sha256 over the JSON configs and, per weights file, its name, size and first/last MiB.

    Content-based (not mtime), so copying a model keeps the key and retraining changes it.
    """
    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = item.relative_to(path).as_posix()
        if item.suffix == ".json":
            digest.update(f"{rel}\0".encode())
            digest.update(item.read_bytes())
        elif item.suffix in _WEIGHT_SUFFIXES:
            size = item.stat().st_size
            digest.update(f"{rel}\0{size}\0".encode())
            with open(item, "rb") as handle:
                digest.update(handle.read(_EDGE))
                if size > 2 * _EDGE:
                    handle.seek(-_EDGE, os.SEEK_END)
                    digest.update(handle.read(_EDGE))
    return digest.hexdigest()[:16]


def model_fingerprint(model: str) -> str | None:
    """Fingerprint of a local model directory, ``hub:<commit>`` for a cached hub model,
    ``None`` when a hub model is not in the local cache yet."""
    path = Path(model).expanduser()
    if path.is_dir():
        return dir_fingerprint(path)
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model, "config.json")
    except Exception:  # not a valid repo id, or huggingface_hub missing
        found = None
    if isinstance(found, str):  # .../snapshots/<commit>/config.json
        return f"hub:{Path(found).parent.name}"
    return None


def _receptive_field(config: Any) -> tuple[int, int]:
    """(receptive field, hop) in samples of the convolutional feature encoder."""
    field, jump = 1, 1
    for kernel, stride in zip(config.conv_kernel, config.conv_stride):
        field += (kernel - 1) * jump
        jump *= stride
    return field, jump


@register_extractor
class SSL(FeatureExtractor):
    """Hidden states of a wav2vec2-family model: ``(T, H)``, T about 50 per second.

    ``layer``: an int indexes ``hidden_states`` (0 = the feature projection fed to the
    transformer, 1..L = transformer layers, -1 = the last); ``"all"`` concatenates all L+1
    states along features, ``(T, (L+1) * H)``, state 0 first; ``"mean"`` averages them, ``(T, H)``.

    The waveform is zero-mean/unit-variance normalised when the model's preprocessor config
    says ``do_normalize`` (else when its ``feat_extract_norm`` is ``"layer"``). Audio longer
    than ``max_seconds`` is cut into equal chunks run separately and concatenated in time.
    :meth:`config` adds ``weights_fingerprint`` so the cache key changes with the weights;
    passing it back (``create_extractor("ssl", **config)``) checks the weights are the same.
    """

    name = "ssl"
    parallel: ClassVar[bool] = False  # a big model: extract in-process unless told otherwise

    def __init__(
        self,
        *,
        model: str,
        layer: int | str = -1,
        device: str = "cpu",
        max_seconds: float = 30.0,
        sample_rate: int = 16000,
        weights_fingerprint: str | None = None,
        trust_pickled_weights: bool = False,
    ):
        if not model:
            raise ConfigError("ssl: `model` (a local directory or hub name) is required")
        self.model = str(model)
        self.layer = _parse_layer(layer)
        self.device = str(device)
        self.max_seconds = float(max_seconds)
        if self.max_seconds <= 0:
            raise ConfigError("ssl: max_seconds must be positive")
        self.sample_rate = int(sample_rate)
        self._expected_fingerprint = weights_fingerprint
        # Pickled weights (pytorch_model.bin) can run code when loaded: only safetensors unless
        # the user opts in for a model they trust.
        self.trust_pickled_weights = bool(trust_pickled_weights)
        self._fingerprint: str | None = None
        self._fps: float | None = None

    # -- configuration -------------------------------------------------------------------
    @property
    def weights_fingerprint(self) -> str:
        if self._fingerprint is None:
            found = model_fingerprint(self.model)
            if found is None:  # a hub model not cached yet: loading downloads it
                self._load()
                found = model_fingerprint(self.model) or f"hub:{self.model}"
            if self._expected_fingerprint and found != self._expected_fingerprint:
                raise ConfigError(
                    f"ssl: model {self.model!r} has changed (weights fingerprint {found}, "
                    f"expected {self._expected_fingerprint})"
                )
            self._fingerprint = found
        return self._fingerprint

    def config(self) -> dict[str, Any]:
        """Constructor arguments that define the output: ``device`` is left out (same output)."""
        config = super().config()
        config.pop("device", None)
        config.pop("trust_pickled_weights", None)
        return config

    @property
    def frames_per_second(self) -> float:
        if self._fps is None:
            transformers = _import_transformers()
            config = transformers.AutoConfig.from_pretrained(self.model)
            self._fps = self.sample_rate / _receptive_field(config)[1]
        return self._fps

    # -- extraction ----------------------------------------------------------------------
    def _load(self) -> tuple[Any, bool, int]:
        key = (self.model, self.device)
        if key not in _MODELS:
            transformers = _import_transformers()
            local = Path(self.model).expanduser()
            if (
                local.is_dir()
                and not self.trust_pickled_weights
                and not any(local.glob("*.safetensors"))
                and any(local.glob("*.bin"))
            ):
                raise ConfigError(
                    f"ssl: {self.model}: only pickled weights (.bin), which can run code when "
                    "loaded; convert them to safetensors, or pass trust_pickled_weights=true "
                    "for a model you trust"
                )
            try:
                net = transformers.AutoModel.from_pretrained(
                    self.model, use_safetensors=None if self.trust_pickled_weights else True
                )
            except Exception as err:
                raise EmorecError(
                    f"ssl: cannot load model {self.model!r}: "
                    f"{str(err).strip().splitlines()[0][:200]}"
                ) from None
            do_normalize = getattr(net.config, "feat_extract_norm", "") == "layer"
            rate = self.sample_rate
            try:
                pre = transformers.AutoFeatureExtractor.from_pretrained(self.model)
                do_normalize = bool(getattr(pre, "do_normalize", do_normalize))
                rate = int(getattr(pre, "sampling_rate", rate) or rate)
            except Exception:  # no preprocessor_config.json: fall back to the model config
                pass
            _MODELS[key] = (net.to(self.device).eval(), do_normalize, rate)
        net, do_normalize, rate = _MODELS[key]
        if rate != self.sample_rate:
            raise ConfigError(
                f"ssl: model {self.model!r} expects {rate} Hz audio, "
                f"extractor sample_rate is {self.sample_rate}"
            )
        return _MODELS[key]

    def extract(self, wave: np.ndarray) -> np.ndarray:
        """``wave : (n,)`` mono at ``sample_rate`` -> ``(T, H)`` or ``(T, (L+1) * H)``."""
        import torch

        net, do_normalize, _ = self._load()
        wave = np.asarray(wave, dtype=np.float32)
        if do_normalize:
            wave = (wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)
        field, _ = _receptive_field(net.config)
        if wave.size < field:  # shorter than one frame: pad with zeros to get one
            wave = np.pad(wave, (0, field - wave.size))
        max_samples = max(field, int(self.max_seconds * self.sample_rate))
        chunks = np.array_split(wave, math.ceil(wave.size / max_samples))
        pieces = []
        with torch.inference_mode():
            for chunk in chunks:
                inputs = torch.from_numpy(np.ascontiguousarray(chunk))[None].to(self.device)
                states = net(inputs, output_hidden_states=True).hidden_states
                pieces.append(self._select(states)[0].float().cpu().numpy())
        return np.concatenate(pieces, axis=0).astype(np.float32, copy=False)

    def _select(self, states: tuple[Any, ...]) -> Any:
        import torch

        if self.layer == "all":
            return torch.cat(list(states), dim=-1)
        if self.layer == "mean":
            return torch.stack(list(states), dim=0).mean(dim=0)
        if not -len(states) <= int(self.layer) < len(states):
            raise ConfigError(
                f"ssl: layer {self.layer} out of range for {self.model!r} "
                f"({len(states)} hidden states: 0..{len(states) - 1})"
            )
        return states[int(self.layer)]


def _parse_layer(layer: int | str) -> int | str:
    if isinstance(layer, bool):
        raise ConfigError("ssl: layer must be an int, 'all' or 'mean'")
    if isinstance(layer, int):
        return layer
    text = str(layer).strip().lower()
    if text in LAYER_MODES:
        return text
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"ssl: layer must be an int, 'all' or 'mean', not {layer!r}") from None
