"""Video decoding with PyAV (its wheels bundle FFmpeg): frames at a chosen rate, the audio track.

One video file feeds both branches of an audio-visual model: :func:`iter_frames` /
:func:`read_frames` give its pictures, :func:`load_video_audio` its sound (mono float32 at a
chosen rate, as :func:`emorec.media.audio.load_audio` gives for audio files, which falls back to it
for video suffixes).

Timing. A frame's time is its presentation timestamp, counted from the first decoded frame
(so t = 0 is the first picture). With ``fps`` given, frames are resampled by timestamp onto
the grid ``k / fps`` (sample and hold: each grid point shows the last frame presented at or
before it), which turns a variable frame rate into a constant one; without ``fps`` every
decoded frame comes out once with its own time. :func:`load_video_audio` puts the sound on the
same clock: an audio track that starts after the first picture is preceded by silence, sound
before it is cut (container start offsets, e.g. a camera starting its audio late). Pictures
come out upright: a display rotation in the file (portrait phone video) is applied.

Failures are :class:`~emorec.errors.BadInputError` naming the file: missing, empty,
unreadable, no video stream, corrupt or truncated. A readable video without sound raises
:class:`NoAudioTrackError` (a ``BadInputError`` with the reason :data:`NO_AUDIO_TRACK`), so
batch jobs list it like any bad file while callers that want the distinction can catch it
and treat the audio as a missing modality.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from emorec.errors import BadInputError, EmorecError

VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".flv", ".avi", ".mov", ".mkv", ".m4v", ".webm")
NO_AUDIO_TRACK = "no audio track"
INSTALL_HINT = "pip install emorec[video]"
#: A file whose header promises N frames but decodes fewer than this share of them is truncated.
TRUNCATED_SHARE = 0.9
#: ... and when the header gives no frame count:
#: decoded time short of the declared duration by this.
TRUNCATED_SECONDS = 1.0


class NoAudioTrackError(BadInputError):
    """A readable video without an audio stream: the audio modality is missing for this clip."""

    def __init__(self, path: object):
        super().__init__(path, NO_AUDIO_TRACK)


def import_av() -> Any:
    """The ``av`` module, or an :class:`EmorecError` that says how to install it."""
    try:
        import av
    except ImportError as err:
        raise EmorecError(
            f"video decoding needs PyAV ({err}); install it with `{INSTALL_HINT}`"
        ) from None
    return av


@dataclass(frozen=True)
class VideoInfo:
    """What the container header says (nothing is decoded)."""

    duration: float  # seconds (0.0 when the header does not say)
    fps: float  # average frame rate of the video stream (0.0 when unknown)
    frames: int  # frame count from the header (0 when unknown)
    width: int
    height: int
    codec: str
    has_audio: bool
    audio_sample_rate: int  # 0 without an audio track
    audio_channels: int  # 0 without an audio track


@dataclass(frozen=True)
class VideoFrames:
    """Decoded pictures: ``frames`` (T, H, W, 3) uint8 for rgb24 or (T, H, W) for gray,
    ``times`` (T,) seconds from the first frame, ``fps`` the grid rate (0.0: native frames)."""

    frames: np.ndarray
    times: np.ndarray
    fps: float


def _short(err: BaseException) -> str:
    """One short line: FFmpeg's own words without the errno and the file name PyAV adds."""
    text = getattr(err, "strerror", None) or str(err).strip()
    text = str(text).splitlines()[0] if str(text).strip() else type(err).__name__
    return text[:160]


@contextlib.contextmanager
def open_container(path: str | os.PathLike) -> Iterator[Any]:
    """An open PyAV input container; header problems become :class:`BadInputError`."""
    av = import_av()
    if not os.path.exists(path):
        raise BadInputError(path, "file not found")
    if os.path.isdir(path):
        raise BadInputError(path, "a folder, not a video file")
    if os.path.getsize(path) == 0:
        raise BadInputError(path, "zero-length file")
    try:
        container = av.open(os.fspath(path), mode="r")
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as err:
        raise BadInputError(path, f"unreadable video ({_short(err)})") from None
    try:
        yield container
    finally:
        container.close()


def _video_stream(container: Any, path: str | os.PathLike) -> Any:
    if not container.streams.video:
        raise BadInputError(path, "no video stream")
    return container.streams.video[0]


def _duration(container: Any, stream: Any) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return 0.0


def video_info(path: str | os.PathLike) -> VideoInfo:
    """Duration, frame rate, size and audio-track facts from the header (cheap: no decoding)."""
    with open_container(path) as container:
        stream = _video_stream(container, path)
        audio = container.streams.audio[0] if container.streams.audio else None
        rate = stream.average_rate or stream.guessed_rate
        context = stream.codec_context
        return VideoInfo(
            duration=_duration(container, stream),
            fps=float(rate) if rate else 0.0,
            frames=int(stream.frames or 0),
            width=int(context.width or 0),
            height=int(context.height or 0),
            codec=str(context.name or ""),
            has_audio=audio is not None,
            audio_sample_rate=int(audio.codec_context.sample_rate or 0) if audio is not None else 0,
            audio_channels=int(audio.codec_context.channels or 0) if audio is not None else 0,
        )


def check_first_frame(path: str | os.PathLike) -> None:
    """Decode the first picture of ``path`` (cheap); :class:`BadInputError` when none decodes."""
    av = import_av()
    with open_container(path) as container:
        stream = _video_stream(container, path)
        try:
            for _frame in container.decode(stream):
                return
        except av.FFmpegError as err:
            raise BadInputError(
                path, f"corrupt video: the first picture does not decode ({_short(err)})"
            ) from None
    raise BadInputError(path, "no decodable video frames (corrupt or truncated)")


def has_audio_track(path: str | os.PathLike) -> bool:
    with open_container(path) as container:
        return bool(container.streams.audio)


def _decoded(
    path: str | os.PathLike, container: Any, stream: Any
) -> Iterator[tuple[float, float, Any]]:
    """``(time from first frame, frame duration, frame)`` in presentation order, times
    non-decreasing; decoding errors and truncation become :class:`BadInputError`."""
    av = import_av()
    rate = stream.average_rate or stream.guessed_rate
    nominal = 1.0 / float(rate) if rate else 1.0 / 30.0
    first: float | None = None
    last = -np.inf
    count = 0
    try:
        for frame in container.decode(stream):
            t = frame.time
            if t is None:  # no timestamp: continue the nominal rate
                t = (last + (first or 0.0) + nominal) if count else 0.0
            if first is None:
                first = float(t)
            t = max(float(t) - first, last if count else 0.0)
            step = (
                float(frame.duration * frame.time_base)
                if frame.duration and frame.time_base
                else 0.0
            )
            count += 1
            last = t
            yield t, (step if step > 0 else nominal), frame
    except av.FFmpegError as err:
        raise BadInputError(
            path,
            f"corrupt or truncated video: decoding failed after {count} frame(s) ({_short(err)})",
        ) from None
    if count == 0:
        raise BadInputError(path, "no decodable video frames (corrupt or truncated)")
    expected = int(stream.frames or 0)
    if expected > 0:
        if count < TRUNCATED_SHARE * expected:
            raise BadInputError(path, f"truncated video: decoded {count} of {expected} frames")
    else:
        declared = _duration(container, stream)
        if declared > 0 and last + nominal < declared - max(
            TRUNCATED_SECONDS, (1 - TRUNCATED_SHARE) * declared
        ):
            raise BadInputError(
                path,
                f"truncated video: frames end at {last + nominal:.2f} s "
                f"of a declared {declared:.2f} s",
            )


def iter_frames(path: str | os.PathLike, fps: float | None = None) -> Iterator[tuple[float, Any]]:
    """``(time, av.VideoFrame)`` for the video stream of ``path``.

    ``fps=None``: every decoded frame with its own time. ``fps > 0``: one frame per grid time
    ``k / fps`` from 0 up to the end of the last frame, each the latest frame presented at or
    before that time (the same frame object repeats when ``fps`` exceeds the native rate).
    """
    if fps is not None and not fps > 0:
        raise EmorecError(f"fps must be positive (or None for the native frames), not {fps!r}")
    with open_container(path) as container:
        stream = _video_stream(container, path)
        if fps is None:
            for t, _step, frame in _decoded(path, container, stream):
                yield t, frame
            return
        k = 0
        held: Any = None
        end = 0.0
        for t, step, frame in _decoded(path, container, stream):
            while held is not None and k / fps < t - 1e-9:
                yield k / fps, held
                k += 1
            held = frame
            end = t + step
        while k / fps < end - 1e-9:
            yield k / fps, held
            k += 1


def display_quarter_turns(frame: Any) -> int:
    """Counter-clockwise quarter turns that show ``frame`` upright: its display matrix (phones
    store portrait video as landscape pictures plus a rotation). Other angles are ignored."""
    try:
        degrees = float(frame.rotation or 0)
    except (AttributeError, TypeError, ValueError):
        return 0
    turns = degrees / 90.0
    return int(round(turns)) % 4 if abs(turns - round(turns)) < 1e-3 else 0


def _upright(array: np.ndarray, turns: int) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(array, k=turns, axes=(0, 1))) if turns else array


def frame_to_array(
    frame: Any, format: str = "rgb24", width: int | None = None, height: int | None = None
) -> np.ndarray:
    """One ``av.VideoFrame`` as uint8 ``(H, W, 3)`` (``rgb24``) or ``(H, W)`` (``gray``), upright
    (its display rotation applied), scaled by FFmpeg to ``width``/``height`` of the upright
    picture."""
    turns = display_quarter_turns(frame)
    if width or height:
        if turns % 2:  # the stored picture is on its side: scale its sides the other way round
            width, height = height, width
        frame = frame.reformat(width=width, height=height, format=format)
        return _upright(frame.to_ndarray(), turns)
    return _upright(frame.to_ndarray(format=format), turns)


def frame_luma(frame: Any) -> np.ndarray:
    """The brightness of an ``av.VideoFrame``, ``(H, W)`` uint8 and upright: the Y plane itself
    for planar YUV frames (no conversion, studio range as stored), FFmpeg's grey conversion
    otherwise."""
    name = frame.format.name
    turns = display_quarter_turns(frame)
    if name.startswith(("yuv", "yuvj", "nv12", "nv21")) and frame.format.components[0].bits == 8:
        plane = frame.planes[0]
        rows = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)
        return _upright(np.ascontiguousarray(rows[:, : frame.width]), turns)
    return _upright(frame.to_ndarray(format="gray"), turns)


def read_frames(
    path: str | os.PathLike,
    fps: float | None = None,
    *,
    format: str = "rgb24",
    width: int | None = None,
    height: int | None = None,
) -> VideoFrames:
    """All frames of ``path`` in memory (see :func:`iter_frames` for ``fps``)."""
    if format not in ("rgb24", "gray"):
        raise EmorecError(f"frame format must be 'rgb24' or 'gray', not {format!r}")
    arrays, times = [], []
    last_frame, last_array = None, None
    for t, frame in iter_frames(path, fps):
        if frame is not last_frame:
            last_frame, last_array = frame, frame_to_array(frame, format, width, height)
        arrays.append(last_array)
        times.append(t)
    return VideoFrames(
        frames=np.stack(arrays), times=np.asarray(times, dtype=np.float64), fps=float(fps or 0.0)
    )


def read_audio_track(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """The first audio stream as stored: ``(samples (n, channels) float32, sample_rate)``.

    :class:`NoAudioTrackError` when the file has no audio stream.
    """
    samples, rate, _offset = _read_audio_track(path)
    return samples, rate


def _start_seconds(stream: Any) -> float | None:
    if stream.start_time is None or stream.time_base is None:
        return None
    return float(stream.start_time * stream.time_base)


def _read_audio_track(path: str | os.PathLike) -> tuple[np.ndarray, int, float]:
    """``(samples, sample_rate, offset)``: ``offset`` seconds from the first picture (the video
    stream's start) to the first audio sample; 0.0 without a video stream or timestamps."""
    av = import_av()
    with open_container(path) as container:
        if not container.streams.audio:
            raise NoAudioTrackError(path)
        stream = container.streams.audio[0]
        video_start = (
            _start_seconds(container.streams.video[0]) if container.streams.video else None
        )
        first_time: float | None = None
        # keep layout and rate, convert to float planes
        resampler = av.AudioResampler(format="fltp")
        chunks: list[np.ndarray] = []
        rate = int(stream.codec_context.sample_rate or 0)
        try:
            for frame in container.decode(stream):
                if first_time is None and frame.time is not None:
                    first_time = float(frame.time)
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(len(out.layout.channels), -1))
                    rate = out.sample_rate
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(len(out.layout.channels), -1))
        except av.FFmpegError as err:
            raise BadInputError(path, f"corrupt audio track ({_short(err)})") from None
    chunks = [c for c in chunks if c.shape[1]]
    if not chunks or rate <= 0:
        raise BadInputError(path, "audio track holds no samples")
    channels = chunks[0].shape[0]
    if any(c.shape[0] != channels for c in chunks):
        raise BadInputError(path, "audio track changes its channel count")
    samples = np.concatenate(chunks, axis=1).T.astype(np.float32, copy=False)  # (n, channels)
    if not np.all(np.isfinite(samples)):
        raise BadInputError(path, "audio contains NaN or infinite samples")
    offset = first_time - video_start if first_time is not None and video_start is not None else 0.0
    return np.ascontiguousarray(samples), rate, offset


def load_video_audio(
    path: str | os.PathLike, sample_rate: int = 16000, *, align: bool = True
) -> np.ndarray:
    """The audio track of a video as :func:`emorec.media.audio.load_audio` gives audio files:
    mono (channels averaged) float32 at ``sample_rate``; silent tracks are rejected too.

    ``align``: sample 0 is the time of the first picture (a late audio start is padded with
    silence, audio before the first picture is cut), so audio and video frames share one clock.
    """
    import soxr

    from emorec.media.silence import check_not_silent

    samples, rate, offset = _read_audio_track(path)
    mono = samples.mean(axis=1)
    shift = int(round(offset * rate)) if align else 0
    if shift > 0:
        mono = np.concatenate([np.zeros(shift, np.float32), mono])
    elif shift < 0:
        mono = mono[-shift:]
        if mono.size == 0:
            raise BadInputError(path, "the audio track ends before the first picture")
    check_not_silent(path, mono)
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(mono, dtype=np.float32)
