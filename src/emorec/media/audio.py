"""Decoding and resampling. Audio through soundfile + soxr (torchaudio is not used).

Every failure is a :class:`~emorec.errors.BadInputError` naming the file and the reason, so
batch jobs can skip the file, list it and go on.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

from emorec.errors import BadInputError
from emorec.media.silence import check_not_silent

#: Ogg Opus (``.opus``) too: libsndfile decodes it,
#: and it is how CREMA-D's audio is shared compactly.
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif")


@dataclass(frozen=True)
class AudioInfo:
    duration: float
    sample_rate: int
    channels: int
    content_hash: str
    frames: int = 0  # decoded sample frames
    declared_frames: int = 0  # what the file's header promises (0: it does not say, or not checked)

    @property
    def truncation(self) -> str:
        """A one-line warning when the header promises more audio than decodes, else ``""``."""
        if self.declared_frames <= self.frames or self.sample_rate <= 0:
            return ""
        rate = self.sample_rate
        return (
            f"header says {self.declared_frames} frames "
            f"({self.declared_frames / rate:.2f} s) but only "
            f"{self.frames} ({self.frames / rate:.2f} s) decode: truncated file, "
            "kept at its decodable length"
        )


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


def load_audio(path: str | os.PathLike, sample_rate: int = 16000) -> np.ndarray:
    """Mono float32 waveform at ``sample_rate``: stereo is averaged, any rate is resampled.

    Returns ``wave : ndarray[n]``. Raises :class:`BadInputError` for unreadable, empty,
    NaN-containing or silent audio. Video files (``.mp4``, ``.flv``, ``.avi``, ``.mov``, ...)
    give their audio track through PyAV (:func:`emorec.media.video.load_video_audio`); one without
    an audio track raises :class:`emorec.media.video.NoAudioTrackError` (a ``BadInputError``).
    """
    from emorec.media.video import (
        VIDEO_SUFFIXES,
        load_video_audio,
    )  # light: PyAV loads only when used

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
        frames=samples.shape[0],
        declared_frames=declared_frames(path),
    )


def stream_audio(
    path: str | os.PathLike | bytes,
    sample_rate: int = 16000,
    block_seconds: float = 20.0,
    *,
    name: str = "<upload>",
) -> Iterator[np.ndarray]:
    """A file (or the bytes of one: an upload, never written to disk) as consecutive mono float32
    blocks at ``sample_rate`` (about ``block_seconds`` each), decoded and resampled as it is read:
    memory stays bounded however long the recording is. Video files, and bytes libsndfile cannot
    read (WebM from a browser, MP4), stream their audio track through PyAV."""
    from emorec.media.video import VIDEO_SUFFIXES

    if isinstance(path, (bytes, bytearray, memoryview)):
        if not len(path):
            raise BadInputError(name, "zero-length upload")
        try:
            handle = sf.SoundFile(io.BytesIO(path))
        except Exception:  # noqa: BLE001 - not a libsndfile format: try the container demuxer
            yield from _stream_video_audio(io.BytesIO(path), sample_rate, name=name)
            return
        path = name
    else:
        if not os.path.exists(path):
            raise BadInputError(path, "file not found")
        if os.path.getsize(path) == 0:
            raise BadInputError(path, "zero-length file")
        if os.path.splitext(os.fspath(path))[1].lower() in VIDEO_SUFFIXES:
            yield from _stream_video_audio(path, sample_rate)
            return
        try:
            handle = sf.SoundFile(os.fspath(path))
        except Exception as err:  # noqa: BLE001 - soundfile raises several types
            raise BadInputError(path, f"unreadable audio ({_short(err)})") from None
    with handle:
        resampler = (
            None
            if handle.samplerate == sample_rate
            else soxr.ResampleStream(
                handle.samplerate, sample_rate, 1, dtype="float32", quality="HQ"
            )
        )
        block = max(1, int(block_seconds * handle.samplerate))
        while True:
            try:
                samples = handle.read(block, dtype="float32", always_2d=True)
            except Exception as err:  # noqa: BLE001 - a corrupt stretch mid-file
                raise BadInputError(
                    path,
                    f"undecodable audio after {handle.tell() / handle.samplerate:.1f} s "
                    f"({_short(err)})",
                ) from None
            last = samples.shape[0] < block
            mono = samples.mean(axis=1)
            if not np.all(np.isfinite(mono)):
                raise BadInputError(path, "audio contains NaN or infinite samples")
            out = mono if resampler is None else resampler.resample_chunk(mono, last=last)
            if out.size:
                yield np.ascontiguousarray(out, dtype=np.float32)
            if last:
                return


def _stream_video_audio(path, sample_rate: int, name: str | None = None) -> Iterator[np.ndarray]:
    import av

    label = name or path
    try:
        with av.open(path if isinstance(path, io.IOBase) else os.fspath(path)) as container:
            if not container.streams.audio:
                raise BadInputError(label, "no audio track")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            for frame in container.decode(container.streams.audio[0]):
                for out in resampler.resample(frame):
                    yield out.to_ndarray().reshape(-1).astype(np.float32)
            for out in resampler.resample(None):
                yield out.to_ndarray().reshape(-1).astype(np.float32)
    except BadInputError:
        raise
    except Exception as err:  # noqa: BLE001 - PyAV raises many kinds
        raise BadInputError(label, f"undecodable media ({_short(err)})") from None


def probe_duration(path: str | os.PathLike | bytes) -> float | None:
    """Seconds of audio a file (or the bytes of one) holds, read from its header without decoding it
    (``None`` when the format does not say): lets a caller refuse an hour-long upload before it
    fills memory."""
    from emorec.media.video import VIDEO_SUFFIXES

    in_memory = isinstance(path, (bytes, bytearray, memoryview))
    if not in_memory and not os.path.exists(path):
        raise BadInputError(path, "file not found")
    source = io.BytesIO(path) if in_memory else os.fspath(path)
    if in_memory or os.path.splitext(source)[1].lower() not in VIDEO_SUFFIXES:
        try:
            info = sf.info(source)
            return (
                info.frames / info.samplerate if info.frames > 0 and info.samplerate > 0 else None
            )
        except Exception:  # noqa: BLE001 - not a libsndfile format
            if not in_memory:
                return None  # unreadable: decoding names the reason
            source = io.BytesIO(path)
    try:
        import av

        with av.open(source) as container:
            return None if container.duration is None else container.duration / 1_000_000
    except Exception:  # noqa: BLE001 - PyAV raises many kinds; decoding later names the reason
        return None


def declared_frames(path: str | os.PathLike) -> int:
    """The sample frames a WAV or FLAC header promises; 0 for other formats or an open length.

    libsndfile silently clamps a WAV's length to the bytes present, so a file cut short (a
    copy interrupted mid-way) would decode at its shorter length without a word: the RIFF
    ``data`` chunk size is read here to tell. FLAC's STREAMINFO total is exact when set."""
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    try:
        if suffix == ".wav":
            return _wav_data_frames(path)
        if suffix == ".flac":
            return max(0, int(sf.info(os.fspath(path)).frames))
    except (OSError, RuntimeError, ValueError):
        return 0
    return 0


def _wav_data_frames(path: str | os.PathLike) -> int:
    with open(path, "rb") as handle:
        return wav_declared_frames(handle)


def wav_declared_frames(handle) -> int:
    """The sample frames a RIFF/WAVE header (read from the binary ``handle``) promises; 0 when it
    is not a WAV, or leaves its length open."""
    head = handle.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return 0  # RF64 and others: sizes live elsewhere; not checked
    block_align = 0
    while True:
        chunk = handle.read(8)
        if len(chunk) < 8:
            return 0
        kind, size = chunk[:4], int.from_bytes(chunk[4:], "little")
        if kind == b"fmt ":
            fmt = handle.read(size)
            if len(fmt) < 14:
                return 0
            block_align = int.from_bytes(fmt[12:14], "little")
            handle.seek(size & 1, os.SEEK_CUR)
        elif kind == b"data":
            # streaming writers leave the size at 0 or 0xFFFFFFFF: an open length, not a claim
            if block_align <= 0 or size in (0, 0xFFFFFFFF):
                return 0
            return size // block_align
        else:
            handle.seek(size + (size & 1), os.SEEK_CUR)


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
