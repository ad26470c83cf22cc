"""Decoding and resampling. Audio through soundfile + soxr (torchaudio is not used).

Every failure is a :class:`~emorec.errors.BadInputError` naming the file and the reason, so
batch jobs can skip the file, list it and go on.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

from emorec.errors import BadInputError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
#: Peak amplitude under which a clip counts as silent (about -90 dBFS).
SILENCE_PEAK = 3e-5


@dataclass(frozen=True)
class AudioInfo:
    duration: float
    sample_rate: int
    channels: int
    content_hash: str


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Decode a file as stored. Returns ``(samples (n, channels) float32, sample_rate)``."""
    if not os.path.exists(path):
        raise BadInputError(path, "file not found")
    if os.path.getsize(path) == 0:
        raise BadInputError(path, "zero-length file")
    try:
        samples, rate = sf.read(path, dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises several types; the message is what matters
        raise BadInputError(path, f"unreadable audio ({_short(err)})") from None
    if samples.shape[0] == 0:
        raise BadInputError(path, "no audio samples")
    if not np.all(np.isfinite(samples)):
        raise BadInputError(path, "audio contains NaN or infinite samples")
    return samples, int(rate)


def check_not_silent(path: str | os.PathLike, mono: np.ndarray) -> None:
    if float(np.max(np.abs(mono))) < SILENCE_PEAK:
        raise BadInputError(path, "silent audio (peak below -90 dBFS)")


def load_audio(path: str | os.PathLike, sample_rate: int = 16000) -> np.ndarray:
    """Mono float32 waveform at ``sample_rate``: stereo is averaged, any rate is resampled.

    Returns ``wave : ndarray[n]``. Raises :class:`BadInputError` for unreadable, empty,
    NaN-containing or silent audio. Video files (``.mp4``, ``.flv``, ``.avi``, ``.mov``, ...)
    give their audio track through PyAV (:func:`emorec.video.load_video_audio`); one without
    an audio track raises :class:`emorec.video.NoAudioTrackError` (a ``BadInputError``).
    """
    from emorec.video import VIDEO_SUFFIXES, load_video_audio  # light: PyAV loads only when used

    if os.path.splitext(os.fspath(path))[1].lower() in VIDEO_SUFFIXES:
        return load_video_audio(path, sample_rate)
    samples, rate = read_audio(path)
    mono = samples.mean(axis=1)
    check_not_silent(path, mono)
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(mono, dtype=np.float32)


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Duration, rate, channels and a hash of the decoded samples (format-independent)."""
    samples, rate = read_audio(path)
    check_not_silent(path, samples.mean(axis=1))
    return AudioInfo(
        duration=samples.shape[0] / rate,
        sample_rate=rate,
        channels=samples.shape[1],
        content_hash=hash_samples(samples),
    )


def hash_samples(samples: np.ndarray) -> str:
    """sha256 of 16-bit-quantised samples, so WAV and FLAC copies of the same audio agree."""
    quantised = np.clip(np.round(samples * 32767.0), -32768, 32767).astype("<i2")
    digest = hashlib.sha256()
    digest.update(str(quantised.shape).encode())
    digest.update(quantised.tobytes())
    return digest.hexdigest()


def _short(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:160]
