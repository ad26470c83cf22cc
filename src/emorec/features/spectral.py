"""Log-mel spectrograms and MFCCs (the librosa definitions, computed by ``dsp.py``), in absolute dB
so loudness is kept.

Nothing here normalises per utterance: the output depends only on the waveform and the
constructor arguments, and normalisation statistics are computed later from training clips.
"""

from __future__ import annotations


import numpy as np

from emorec.errors import ConfigError
from emorec.features import dsp
from emorec.features.base import FeatureExtractor, register_extractor
from emorec.threads import numpy_blas_single_thread

#: Floor of the mel power before taking dB (-100 dB).
AMIN = 1e-10


class _MelBase(FeatureExtractor):
    """Shared STFT / mel settings. ``hop_ms`` and ``win_ms`` are converted to samples."""

    sample_rate: int
    n_mels: int
    n_fft: int
    hop_ms: float
    win_ms: float
    fmin: float
    fmax: float
    top_db: float | None
    deltas: bool
    trim_db: float | None
    trim_floor_db: float | None
    trim_to_sample: bool

    def _set_framing(
        self,
        *,
        sample_rate: int,
        n_mels: int,
        n_fft: int,
        hop_ms: float,
        win_ms: float,
        fmin: float,
        fmax: float,
        top_db: float | None,
        deltas: bool,
        trim_db: float | None,
        trim_floor_db: float | None = None,
        trim_to_sample: bool = False,
    ) -> None:
        """Store the shared constructor arguments (typed, as config() reports them) and check
        them."""
        self.sample_rate = int(sample_rate)
        self.n_mels = int(n_mels)
        self.n_fft = int(n_fft)
        self.hop_ms = float(hop_ms)
        self.win_ms = float(win_ms)
        self.fmin = float(fmin)
        self.fmax = float(fmax)
        self.top_db = None if top_db is None else float(top_db)
        self.deltas = bool(deltas)
        self.trim_db = None if trim_db is None else float(trim_db)
        self.trim_floor_db = None if trim_floor_db is None else float(trim_floor_db)
        self.trim_to_sample = bool(trim_to_sample)
        self._check()

    def config(self) -> dict:
        config = super().config()
        if config.get("trim_floor_db") is None:
            # Added later: unset, it leaves the cache key (and
            # every cache and model made before) as it was.
            config.pop("trim_floor_db", None)
        if not config.get("trim_to_sample"):
            config.pop("trim_to_sample", None)  # the same: added later, off by default
        return config

    def _check(self) -> None:
        if self.sample_rate <= 0 or self.n_mels <= 0 or self.n_fft <= 0:
            raise ConfigError(f"{self.name}: sample_rate, n_mels and n_fft must be positive")
        if not 0 < self.hop_length <= self.win_length <= self.n_fft:
            raise ConfigError(
                f"{self.name}: need 0 < hop ({self.hop_length}) <= win ({self.win_length}) "
                f"<= n_fft ({self.n_fft}) samples"
            )
        if not 0 <= self.fmin < self.fmax_hz:
            raise ConfigError(f"{self.name}: need 0 <= fmin < fmax (fmax is clipped to Nyquist)")
        if self.trim_floor_db is not None and (self.trim_db is None or self.trim_floor_db < 0):
            raise ConfigError(
                f"{self.name}: trim_floor_db needs trim_db and must be >= 0, "
                f"got {self.trim_floor_db}"
            )
        if self.trim_to_sample and self.trim_db is None:
            raise ConfigError(f"{self.name}: trim_to_sample needs trim_db")

    @property
    def hop_length(self) -> int:
        return max(1, int(round(self.sample_rate * self.hop_ms / 1000.0)))

    @property
    def win_length(self) -> int:
        return max(1, int(round(self.sample_rate * self.win_ms / 1000.0)))

    @property
    def fmax_hz(self) -> float:
        return float(min(self.fmax, self.sample_rate / 2.0))

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def planes(self) -> int:
        return 3 if self.deltas else 1

    def _log_mel(self, wave: np.ndarray) -> np.ndarray:
        """``wave : (n,)`` -> log-mel power ``(n_mels, T)`` in dB re a fixed 1.0 (NumPy only:
        ``dsp.py``)."""
        wave = np.asarray(wave, dtype=np.float32)
        if self.trim_db is not None:
            # Leading/trailing silence (about 1 s of each RAVDESS clip) carries no emotion.
            trimmed = dsp.trim(
                wave,
                top_db=self.trim_db,
                floor_db=self.trim_floor_db,
                to_sample=self.trim_to_sample,
            )
            wave = trimmed if trimmed.size else wave
        power = dsp.power_spectrogram(
            wave, n_fft=self.n_fft, hop_length=self.hop_length, win_length=self.win_length
        )  # (bins, T)
        mel = self._mel_basis() @ power  # (n_mels, T)
        return dsp.power_to_db(mel, ref=1.0, amin=AMIN, top_db=self.top_db)

    def _mel_basis(self) -> np.ndarray:
        basis = self.__dict__.get("_basis")
        if basis is None:
            basis = self.__dict__["_basis"] = dsp.mel_filterbank(
                sample_rate=self.sample_rate,
                n_fft=self.n_fft,
                n_mels=self.n_mels,
                fmin=self.fmin,
                fmax=self.fmax_hz,
            )
        return basis


def add_deltas(features: np.ndarray) -> np.ndarray:
    """``(F, T)`` -> ``(3F, T)``: features, delta and delta-delta (works for any T >= 1)."""
    frames = features.shape[1]
    if frames >= 9:
        d1 = dsp.delta(features, width=9, order=1, mode="interp")
        d2 = dsp.delta(features, width=9, order=2, mode="interp")
    elif frames >= 3:  # short clip: a narrower window, edges repeated
        d1 = dsp.delta(features, width=3, order=1, mode="nearest")
        d2 = dsp.delta(features, width=3, order=2, mode="nearest")
    else:
        d1 = d2 = np.zeros_like(features)
    return np.concatenate([features, d1, d2], axis=0)


@register_extractor
class LogMel(_MelBase):
    """Log-mel power spectrogram in dB re a fixed 1.0 (no per-clip reference):
    ``(T, n_mels)``, or ``(T, 3 * n_mels)`` with ``deltas``.
    ``T = 1 + n_samples // hop`` (centred frames, 100 per second by default).

    ``trim_db`` (e.g. 40) first trims leading and trailing audio quieter than that many dB
    below the clip's peak; ``trim_floor_db`` (e.g. 6) also trims what is less than that many dB
    above the clip's noise floor (``dsp.trim``: the noise before and after speech in a noisy
    recording); ``trim_to_sample`` finds the edges per sample, so the answer does not depend on how
    much silence precedes the speech (``dsp.trim``).
    ``top_db`` clips values more than that many dB below the clip's loudest bin (``None`` disables
    it); values are otherwise absolute, so loud and quiet clips differ.
    """

    name = "logmel"

    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        n_mels: int = 64,
        n_fft: int = 512,
        hop_ms: float = 10.0,
        win_ms: float = 25.0,
        fmin: float = 50.0,
        fmax: float = 8000.0,
        top_db: float | None = 80.0,
        deltas: bool = False,
        trim_db: float | None = None,
        trim_floor_db: float | None = None,
        trim_to_sample: bool = False,
    ):
        self._set_framing(
            sample_rate=sample_rate,
            n_mels=n_mels,
            n_fft=n_fft,
            hop_ms=hop_ms,
            win_ms=win_ms,
            fmin=fmin,
            fmax=fmax,
            top_db=top_db,
            deltas=deltas,
            trim_db=trim_db,
            trim_floor_db=trim_floor_db,
            trim_to_sample=trim_to_sample,
        )

    @property
    def n_features(self) -> int:
        return self.n_mels * self.planes

    def extract(self, wave: np.ndarray) -> np.ndarray:
        """``wave : (n,)`` mono at ``sample_rate`` -> ``(T, n_features)`` float32 dB."""
        # the same numbers on every path (cache, predict), and faster
        with numpy_blas_single_thread():
            mel = self._log_mel(wave)
            if self.deltas:
                mel = add_deltas(mel)
        return np.ascontiguousarray(mel.T, dtype=np.float32)


@register_extractor
class MFCC(_MelBase):
    """MFCCs (DCT-II, ortho) of the dB log-mel spectrogram: ``(T, n_mfcc)``, or
    ``(T, 3 * n_mfcc)`` with ``deltas``. Same framing as :class:`LogMel`."""

    name = "mfcc"

    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        n_mfcc: int = 40,
        n_mels: int = 64,
        n_fft: int = 512,
        hop_ms: float = 10.0,
        win_ms: float = 25.0,
        fmin: float = 50.0,
        fmax: float = 8000.0,
        top_db: float | None = 80.0,
        deltas: bool = False,
        trim_db: float | None = None,
        trim_floor_db: float | None = None,
        trim_to_sample: bool = False,
    ):
        self.n_mfcc = int(n_mfcc)
        self._set_framing(
            sample_rate=sample_rate,
            n_mels=n_mels,
            n_fft=n_fft,
            hop_ms=hop_ms,
            win_ms=win_ms,
            fmin=fmin,
            fmax=fmax,
            top_db=top_db,
            deltas=deltas,
            trim_db=trim_db,
            trim_floor_db=trim_floor_db,
            trim_to_sample=trim_to_sample,
        )
        if not 0 < self.n_mfcc <= self.n_mels:
            raise ConfigError("mfcc: need 0 < n_mfcc <= n_mels")

    @property
    def n_features(self) -> int:
        return self.n_mfcc * self.planes

    def extract(self, wave: np.ndarray) -> np.ndarray:
        """``wave : (n,)`` mono at ``sample_rate`` -> ``(T, n_features)`` float32."""
        with numpy_blas_single_thread():
            mfcc = dsp.dct_matrix(self.n_mfcc, self.n_mels) @ self._log_mel(wave)  # (n_mfcc, T)
            if self.deltas:
                mfcc = add_deltas(mfcc)
        return np.ascontiguousarray(mfcc.T, dtype=np.float32)
