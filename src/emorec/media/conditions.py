"""Recording conditions applied to a waveform: gain, telephone band, additive noise at an SNR,
reverberation and codec round-trips. The robustness suite (``emorec robustness``) scores a model
under each of them; they are reproducible (a condition's randomness comes from the seed it is
given).

A condition is named by a short string, ``kind[:argument]``::

    clean  gain:+12  gain:-12  band:300-3400  noise:10  noise:10:white  reverb:0.6  opus  mp3

Each maps ``(wave (n,) float32 mono, sample_rate) -> (n,)`` float32 of the same length. Nothing is
clipped: a gain of +12 dB may take samples past 1.0, as a float pipeline would keep them.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import soundfile as sf
from scipy import fft, signal

from emorec.errors import ConfigError

#: The evaluation suite of ``emorec robustness`` (the
#: issue's conditions plus reverberation and MP3).
DEFAULT_SUITE = (
    "clean",
    "gain:+12",
    "gain:-12",
    "band:300-3400",
    "noise:20",
    "noise:10",
    "noise:5",
    "reverb:0.6",
    "opus",
    "mp3",
)


def gain(wave: np.ndarray, db: float) -> np.ndarray:
    return (wave * np.float32(10.0 ** (db / 20.0))).astype(np.float32)


def band_limit(
    wave: np.ndarray, sample_rate: int, low: float = 300.0, high: float = 3400.0
) -> np.ndarray:
    """A telephone channel: 4th-order Butterworth band-pass (causal, as a line filters)."""
    high = min(high, 0.45 * sample_rate)
    sos = signal.butter(4, [low, high], btype="bandpass", fs=sample_rate, output="sos")
    return signal.sosfilt(sos, wave).astype(np.float32)


def active_power(wave: np.ndarray, sample_rate: int) -> float:
    """Mean square of the speech: over 20 ms frames within 40 dB of the loudest one, so that the
    silence around a clip does not lower its level (and the noise's with it)."""
    frame = max(1, sample_rate // 50)
    n = len(wave) // frame
    if n == 0:
        return float(np.mean(np.square(wave, dtype=np.float64))) if len(wave) else 0.0
    power = np.mean(np.square(wave[: n * frame].reshape(n, frame), dtype=np.float64), axis=1)
    loud = power[power >= power.max() * 1e-4]
    return float(loud.mean()) if loud.size else 0.0


def coloured_noise(
    n: int, rng: np.random.Generator, colour: str = "pink", sample_rate: int = 16000
) -> np.ndarray:
    """Unit-power Gaussian noise with a ``1/f^alpha`` power spectrum above 50 Hz and flat below it:
    white (0), pink (1), brown (2). Without the 50 Hz corner most of a pink or brown noise's power
    would sit in the few lowest bins, below anything a microphone or a speech feature keeps."""
    alpha = {"white": 0.0, "pink": 1.0, "brown": 2.0}.get(colour)
    if alpha is None:
        raise ConfigError(f"noise colour must be white, pink or brown, got {colour!r}")
    size = fft.next_fast_len(max(n, 2), real=True)  # a clip's own length may be a large prime
    spectrum = np.fft.rfft(rng.standard_normal(size))
    freqs = np.maximum(np.fft.rfftfreq(size, 1.0 / sample_rate), 50.0)
    noise = np.fft.irfft(spectrum / freqs ** (alpha / 2.0), n=size)[:n]
    return (noise / max(np.sqrt(np.mean(noise**2)), 1e-12)).astype(np.float32)


def add_noise(
    wave: np.ndarray,
    sample_rate: int,
    snr_db: float,
    rng: np.random.Generator,
    colour: str = "pink",
) -> np.ndarray:
    """``wave`` plus noise whose power is ``snr_db`` below the speech's active power."""
    power = active_power(wave, sample_rate)
    noise = coloured_noise(len(wave), rng, colour, sample_rate) * np.float32(
        np.sqrt(power / 10.0 ** (snr_db / 10.0))
    )
    return (wave + noise).astype(np.float32)


def reverberate(
    wave: np.ndarray, sample_rate: int, rt60: float, rng: np.random.Generator
) -> np.ndarray:
    """Convolution with a synthetic room response: the direct path, then exponentially decaying
    Gaussian noise (60 dB down after ``rt60`` seconds); the clip's active level is kept."""
    length = max(2, int(rt60 * sample_rate))
    t = np.arange(length) / sample_rate
    response = rng.standard_normal(length) * 10.0 ** (-3.0 * t / rt60)
    response[0] = 0.0
    # reverberant energy a quarter of the direct path's
    response *= 0.5 / max(np.sqrt(np.sum(response**2)), 1e-12)
    response[0] = 1.0
    wet = signal.fftconvolve(wave.astype(np.float64), response)[: len(wave)]
    before, after = active_power(wave, sample_rate), active_power(wet, sample_rate)
    return (wet * np.sqrt(before / after) if after > 0 else wet).astype(np.float32)


_CODECS = {"opus": ("OGG", "OPUS"), "mp3": ("MP3", "MPEG_LAYER_III"), "vorbis": ("OGG", "VORBIS")}


def codec_roundtrip(wave: np.ndarray, sample_rate: int, codec: str) -> np.ndarray:
    """Encode with libsndfile's encoder at its default quality, decode, and keep the input's
    length."""
    container, subtype = _CODECS[codec]
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(wave, -1.0, 1.0), sample_rate, format=container, subtype=subtype)
    buffer.seek(0)
    decoded, rate = sf.read(buffer, dtype="float32")
    if rate != sample_rate:
        raise ConfigError(f"{codec} round-trip changed the sample rate {sample_rate} -> {rate}")
    if decoded.ndim > 1:
        decoded = decoded.mean(axis=1)
    out = np.zeros(len(wave), np.float32)
    out[: min(len(wave), len(decoded))] = decoded[: len(wave)]
    return out


@dataclass(frozen=True)
class Condition:
    """A named recording condition; ``apply(wave, sample_rate, seed)`` is deterministic."""

    name: str
    transform: Callable[[np.ndarray, int, np.random.Generator], np.ndarray]

    def apply(self, wave: np.ndarray, sample_rate: int, seed: str | int = 0) -> np.ndarray:
        digest = hashlib.sha256(f"{self.name}|{seed}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        return self.transform(np.asarray(wave, np.float32), sample_rate, rng)


def parse_condition(name: str) -> Condition:
    """``"noise:10:white"`` -> a :class:`Condition`; a :class:`ConfigError` names what is wrong."""
    kind, _, argument = name.strip().partition(":")
    try:
        if kind == "clean" and not argument:
            return Condition(name, lambda w, sr, rng: w)
        if kind == "gain":
            db = float(argument)
            return Condition(name, lambda w, sr, rng: gain(w, db))
        if kind == "band":
            low, _, high = (argument or "300-3400").partition("-")
            lo, hi = float(low), float(high)
            if not 0 < lo < hi:
                raise ValueError("need 0 < low < high")
            return Condition(name, lambda w, sr, rng: band_limit(w, sr, lo, hi))
        if kind == "noise":
            snr, _, colour = argument.partition(":")
            snr_db, colour = float(snr), colour or "pink"
            coloured_noise(2, np.random.default_rng(0), colour)  # checks the colour now
            return Condition(name, lambda w, sr, rng: add_noise(w, sr, snr_db, rng, colour))
        if kind == "reverb":
            rt60 = float(argument or 0.6)
            if rt60 <= 0:
                raise ValueError("rt60 must be positive")
            return Condition(name, lambda w, sr, rng: reverberate(w, sr, rt60, rng))
        if kind in _CODECS and not argument:
            return Condition(name, lambda w, sr, rng: codec_roundtrip(w, sr, kind))
    except ValueError as err:
        raise ConfigError(f"condition {name!r}: {err}") from None
    raise ConfigError(
        f"unknown condition {name!r}; known: clean, gain:DB, band:LOW-HIGH, "
        "noise:SNR[:white|pink|brown], "
        f"reverb:RT60, {', '.join(_CODECS)}"
    )
