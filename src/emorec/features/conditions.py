"""Recording conditions simulated on cached log-mel features, for training: gain, a telephone-like
band, additive noise at an SNR and reverberation, computed in the mel power domain before
normalisation, so every epoch sees new conditions without decoding audio again.

Why the mel domain: a waveform pipeline (``emorec.media.conditions``) would decode and re-extract
every clip every epoch, several times the cost of a training step on a CPU. Each operation here is
the waveform operation's expected effect on mel power (a filter multiplies it by ``|H(f)|^2``, noise
adds its power with the fluctuation of a periodogram, late reverberation adds an exponentially
decaying sum of the past frames). The robustness suite checks the result on real perturbed audio.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

from emorec.errors import ConfigError
from emorec.features import dsp


@dataclass
class MelConditions:
    """``__call__(features (T, F) dB, rng) -> (T, F)``: each condition applied with its own
    probability.

    ``mel_basis (n_mels, bins)`` and ``sample_rate``/``hop_length`` describe the features; with
    ``planes == 3`` the features are values, delta and delta-delta, and the deltas are recomputed
    from the perturbed values.
    """

    mel_basis: np.ndarray
    sample_rate: int
    hop_length: int
    planes: int = 1
    top_db: float | None = 80.0
    gain_db: float = 0.0  # gain uniform in +-gain_db on every clip
    band_limit: float = 0.0  # share of clips through a random telephone-like band
    additive_noise: float = 0.0  # share of clips with white / pink / brown noise
    snr_db: tuple[float, float] = (5.0, 30.0)
    reverb: float = 0.0  # share of clips with late reverberation (RT60 0.2-1.0 s)

    def __post_init__(self) -> None:
        n_mels, bins = self.mel_basis.shape
        freqs = np.linspace(0.0, self.sample_rate / 2.0, bins)
        weight = self.mel_basis.sum(axis=1)
        self.centres = (self.mel_basis @ freqs) / np.maximum(weight, 1e-12)  # (n_mels,) Hz
        # A periodogram bin of Gaussian noise is exponential; a filter's weighted sum of them is
        # close to a gamma with this shape: the effective number of bins it averages, over the Hann
        # window's equivalent noise bandwidth (1.5 bins: neighbouring bins are correlated).
        effective = weight**2 / np.maximum((self.mel_basis**2).sum(axis=1), 1e-24) / 1.5
        self.noise_shape = np.maximum(effective, 1.0)
        # mel power -> share of the waveform's power: each filter stands for the bins it covers.
        edges = np.concatenate(
            [[0.0], (self.centres[1:] + self.centres[:-1]) / 2, [self.sample_rate / 2.0]]
        )
        self.power_weight = (
            np.diff(edges) / (self.sample_rate / 2.0 / (bins - 1)) / np.maximum(weight, 1e-12)
        )

    @classmethod
    def for_extractor(cls, extractor, **settings) -> "MelConditions":
        if getattr(extractor, "name", None) != "logmel":
            raise ConfigError(
                "augment: recording conditions are simulated on logmel "
                f"features, not {extractor.name!r}"
            )
        return cls(
            mel_basis=extractor._mel_basis(),
            sample_rate=extractor.sample_rate,
            hop_length=extractor.hop_length,
            planes=extractor.planes,
            top_db=extractor.top_db,
            **settings,
        )

    @property
    def active(self) -> bool:
        return bool(self.gain_db or self.band_limit or self.additive_noise or self.reverb)

    def __call__(self, features: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n_mels = self.mel_basis.shape[0]
        if features.shape[1] != n_mels * self.planes:
            raise ValueError(
                f"features have {features.shape[1]} columns, expected "
                f"{n_mels} x {self.planes} planes"
            )
        power = 10.0 ** (features[:, :n_mels].astype(np.float64) / 10.0)  # (T, n_mels)
        if rng.random() < self.reverb:
            power = self._reverberate(power, rng)
        if rng.random() < self.additive_noise:
            power = self._add_noise(power, rng)
        if rng.random() < self.band_limit:
            power = power * self._band_response(rng)[None, :]
        db = dsp.power_to_db(power.T, ref=1.0, amin=1e-10, top_db=self.top_db).T  # (T, n_mels)
        if self.gain_db:
            db = db + rng.uniform(-self.gain_db, self.gain_db)
        if self.planes == 1:
            return db.astype(np.float32)
        from emorec.features.spectral import add_deltas

        return np.ascontiguousarray(add_deltas(db.T).T, dtype=np.float32)

    def _active_power(self, power: np.ndarray) -> float:
        """The waveform-power equivalent of the frames within 40 dB of the loudest (the speech)."""
        frame_power = power @ self.power_weight  # (T,)
        loud = frame_power[frame_power >= frame_power.max() * 1e-4]
        return float(loud.mean()) if loud.size else 0.0

    def _add_noise(self, power: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        alpha = float(rng.choice([0.0, 1.0, 2.0]))  # white, pink, brown
        shape = np.maximum(self.centres, 50.0) ** -alpha  # (n_mels,) PSD per filter, relative
        mel_noise = shape * (self.mel_basis.sum(axis=1))  # a flat PSD gives each filter its weight
        snr = rng.uniform(*self.snr_db)
        scale = (
            self._active_power(power)
            / 10.0 ** (snr / 10.0)
            / max(float(mel_noise @ self.power_weight), 1e-30)
        )
        # mean 1
        fluctuation = rng.gamma(self.noise_shape, 1.0 / self.noise_shape, size=power.shape)
        return power + scale * mel_noise[None, :] * fluctuation

    def _band_response(self, rng: np.random.Generator) -> np.ndarray:
        """``|H(f)|^2`` at the filter centres of a 4th-order Butterworth band-pass, low 200-600 Hz,
        high 2800-4000 Hz (the telephone band, 300-3400 Hz, in the middle)."""
        low, high = (
            rng.uniform(200.0, 600.0),
            min(rng.uniform(2800.0, 4000.0), 0.45 * self.sample_rate),
        )
        sos = signal.butter(4, [low, high], btype="bandpass", fs=self.sample_rate, output="sos")
        _, response = signal.sosfreqz(sos, worN=self.centres, fs=self.sample_rate)
        return np.maximum(np.abs(response) ** 2, 1e-12)

    def _reverberate(self, power: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Late reverberation: each frame adds ``c a^k`` of frame ``t - k`` (``a``: 60 dB decay per
        RT60), its energy 0.1-0.5 of the direct sound's; the active level is kept."""
        rt60 = rng.uniform(0.2, 1.0)
        ratio = rng.uniform(0.1, 0.5)
        decay = 10.0 ** (-6.0 * self.hop_length / self.sample_rate / rt60)
        tail = signal.lfilter([0.0, ratio * (1.0 - decay)], [1.0, -decay], power, axis=0)
        wet = power + tail
        before, after = self._active_power(power), self._active_power(wet)
        return wet * (before / after) if after > 0 else wet
