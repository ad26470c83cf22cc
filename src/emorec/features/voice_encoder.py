"""Frame states of a frozen, pretrained speaker encoder: a front end trained on thousands of voices.

The encoder is the GE2E d-vector network (Wan et al. 2018, "Generalized end-to-end loss for
speaker verification"): three LSTM layers of 256 over 40 power-mel bands at 100 frames per
second. Its weights ship inside the ``resemblyzer`` package (Apache-2.0, trained on LibriSpeech,
VoxCeleb 1 and 2: about 8 000 speakers). Why a speaker encoder for emotion: what it learned to
follow in a voice (pitch, timbre, voice quality, over many speakers, microphones and languages)
is what the emotion corpora, each a few dozen actors in one studio, cannot teach; and embeddings
of such encoders are known to carry emotion well (Pappagari et al. 2020, "x-vectors meet emotions").

``weights="resemblyzer"`` finds the file the package ships without importing the package (its
own import needs ``webrtcvad``, which emorec does not use): ``pip install --no-deps
resemblyzer==0.1.4`` is enough. A path to a ``.pt`` or ``.safetensors`` file with the same keys
(``lstm.*``) works too. Weights are read with ``torch.load(weights_only=True)``: never unpickled.

The output is one layer's hidden states, ``(T, 256)`` at ``100 / stride`` frames per second,
after the clip is trimmed (``trim_db``) and its level set to ``level_dbfs`` (RMS, up or down: a
corpus's recording level must not tell it apart). ``speed`` other than 1 plays the clip that much
faster first (tempo, pitch and formants together, as a tape played fast): a training view of the
same clip in another voice (``augment.speed_views``), never a model's own front end.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from emorec.corpora.base import file_sha256
from emorec.errors import ConfigError, EmorecError
from emorec.features import dsp
from emorec.features.base import FeatureExtractor, register_extractor

SAMPLE_RATE = 16000
N_FFT = 400  # 25 ms windows
HOP = 160  # 10 ms steps
N_MELS = 40
HIDDEN = 256
LAYERS = 3
#: (weights file, layer) -> that single LSTM layer; one load per process.
_ENCODERS: dict[tuple[str, int], Any] = {}


def packaged_weights() -> Path:
    """The encoder weights inside the installed ``resemblyzer`` package (not imported)."""
    spec = importlib.util.find_spec("resemblyzer")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / "pretrained.pt"
        if path.is_file():
            return path
    raise EmorecError(
        "the 'voice_encoder' extractor needs the encoder weights of the resemblyzer package: "
        "pip install --no-deps resemblyzer==0.1.4"
    )


def weights_path(weights: str) -> Path:
    path = packaged_weights() if weights == "resemblyzer" else Path(weights)
    if not path.is_file():
        raise ConfigError(f"voice_encoder: weights file {path} not found")
    return path


@functools.cache
def mel_basis() -> np.ndarray:
    """The encoder's 40 Slaney mel bands over the 201 bins of a 400-sample FFT: ``(40, 201)``."""
    return dsp.mel_filterbank(
        sample_rate=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=0.0, fmax=SAMPLE_RATE / 2
    )


def load_state(path: Path) -> dict[str, Any]:
    """The ``lstm.*`` tensors of a weights file, without unpickling anything."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        import torch

        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any reason the file cannot be read is the same error
            reason = next(
                (line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__
            )
            raise EmorecError(f"{path}: not a readable weights file ({reason})") from None
        state = loaded.get("model_state", loaded) if isinstance(loaded, dict) else {}
    lstm = {key[len("lstm.") :]: value for key, value in state.items() if key.startswith("lstm.")}
    if not lstm:
        raise EmorecError(f"{path}: no lstm.* weights (not a GE2E voice encoder)")
    return lstm


def encoder(path: Path, layer: int) -> Any:
    """LSTM layer ``layer`` (1-3) of the encoder, frozen, in eval mode."""
    key = (str(path), layer)
    if key not in _ENCODERS:
        import torch

        state = load_state(path)
        model = torch.nn.LSTM(N_MELS if layer == 1 else HIDDEN, HIDDEN, 1, batch_first=True)
        source = {name: name.replace("_l0", f"_l{layer - 1}") for name in model.state_dict()}
        missing = [f"lstm.{key}" for key in source.values() if key not in state]
        if missing:
            raise EmorecError(f"{path}: encoder weights lack {', '.join(missing)}")
        wanted = {name: state[key] for name, key in source.items()}
        try:
            model.load_state_dict(wanted)
        except RuntimeError as err:
            raise EmorecError(
                f"{path}: encoder weights do not fit a {LAYERS}-layer LSTM of {HIDDEN} "
                f"over {N_MELS} mels ({str(err).splitlines()[-1].strip()})"
            ) from None
        _ENCODERS[key] = model.eval().requires_grad_(False)
    return _ENCODERS[key]


@register_extractor
class VoiceEncoder(FeatureExtractor):
    """Hidden states of layer ``layer`` (1-3) of the GE2E voice encoder: ``(T, 256)``; ``"all"``
    concatenates the three layers, first to last: ``(T, 768)``.

    ``stride`` keeps every stride-th frame (2: 50 per second); the LSTM itself runs at 100 per
    second over the whole clip. ``trim_to_sample`` finds the trim's edges per sample (``dsp.trim``),
    so the same speech behind more or less silence gives the same states. :meth:`config` holds
    ``weights_fingerprint`` (sha256 of the weights file), so the cache key changes with the weights
    and a stored config checks them.
    """

    name = "voice_encoder"
    parallel: ClassVar[bool] = True
    bundled: ClassVar[tuple[str, ...]] = ("weights",)
    BUNDLED_FILE: ClassVar[str] = "voice_encoder.safetensors"

    def __init__(
        self,
        *,
        weights: str = "resemblyzer",
        layer: int | str = 3,
        stride: int = 2,
        trim_db: float | None = 40.0,
        level_dbfs: float | None = -30.0,
        trim_to_sample: bool = False,
        speed: float = 1.0,
        weights_fingerprint: str | None = None,
    ):
        if layer != "all" and (not str(layer).isdigit() or int(layer) not in range(1, LAYERS + 1)):
            raise ConfigError(f"voice_encoder: layer must be 1-{LAYERS} or 'all', got {layer!r}")
        if int(stride) < 1:
            raise ConfigError(f"voice_encoder: stride must be >= 1, got {stride}")
        if not 0.5 <= float(speed) <= 2.0:
            raise ConfigError(f"voice_encoder: speed must lie in [0.5, 2], got {speed}")
        self.weights = str(weights)
        self.layer: int | str = "all" if layer == "all" else int(layer)
        self.stride = int(stride)
        self.trim_db = None if trim_db is None else float(trim_db)
        self.level_dbfs = None if level_dbfs is None else float(level_dbfs)
        self.trim_to_sample = bool(trim_to_sample)
        self.speed = float(speed)
        self.sample_rate = SAMPLE_RATE
        self._expected_fingerprint = weights_fingerprint
        self._fingerprint: str | None = None
        self._path: Path | None = None

    def config(self) -> dict[str, Any]:
        config = super().config()
        if not config["trim_to_sample"]:
            config.pop("trim_to_sample")  # added later, off by default: the earlier cache keys stay
        if config["speed"] == 1.0:
            config.pop("speed")  # likewise
        return config

    @property
    def weights_fingerprint(self) -> str:
        """sha256 of the weights file; a stored config (a trained model's) must find the same
        weights."""
        if self._fingerprint is None:
            path = weights_path(self.weights)
            found = file_sha256(path)[:16]
            if self._expected_fingerprint and found != self._expected_fingerprint:
                raise ConfigError(
                    f"voice_encoder: weights {path} have changed (fingerprint {found}, "
                    f"expected {self._expected_fingerprint})"
                )
            self._fingerprint = found
        return self._fingerprint

    def bundle(self, folder: Path) -> dict[str, str]:
        """The encoder's LSTM tensors (5 MB, not the 17 MB training checkpoint) as safetensors in
        ``folder``."""
        from safetensors.torch import save_file

        from emorec.atomic import publish

        tmp = folder / f".{self.BUNDLED_FILE}.tmp"
        state = load_state(weights_path(self.weights))
        save_file({f"lstm.{k}": v.contiguous() for k, v in state.items()}, str(tmp))
        publish(tmp, folder / self.BUNDLED_FILE)
        return {"weights": self.BUNDLED_FILE}

    @property
    def frames_per_second(self) -> float:
        return SAMPLE_RATE / HOP / self.stride

    def mel(self, wave: np.ndarray) -> np.ndarray:
        """``wave : (n,)`` -> power mel ``(T, 40)`` float32, as the encoder was trained on (not
        log)."""
        wave = np.asarray(wave, dtype=np.float32)
        if self.speed != 1.0:  # n samples -> n / speed at the same rate
            import soxr

            wave = soxr.resample(wave, SAMPLE_RATE * self.speed, SAMPLE_RATE).astype(np.float32)
        if self.trim_db is not None:
            trimmed = dsp.trim(wave, top_db=self.trim_db, to_sample=self.trim_to_sample)
            wave = trimmed if trimmed.size else wave
        if self.level_dbfs is not None:
            rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64))))
            if rms > 0:
                wave = wave * np.float32(10 ** (self.level_dbfs / 20) / rms)
        # (201, T)
        power = dsp.power_spectrogram(wave, n_fft=N_FFT, hop_length=HOP, win_length=N_FFT)
        return np.ascontiguousarray((mel_basis() @ power).T, dtype=np.float32)  # (T, 40)

    def extract(self, wave: np.ndarray) -> np.ndarray:
        import torch

        if self._path is None:  # found once, not per clip
            self._path = weights_path(self.weights)
        path = self._path
        layers = range(1, LAYERS + 1) if self.layer == "all" else (self.layer,)
        with torch.inference_mode():
            x = torch.from_numpy(self.mel(wave))[None]  # (1, T, 40)
            states = []
            # layer by layer: the same weights as one stacked LSTM
            for layer in range(1, max(layers) + 1):
                x, _ = encoder(path, layer)(x)  # (1, T, 256)
                if layer in layers:
                    states.append(x[0, :: self.stride])
        return torch.cat(states, dim=-1).numpy()
