"""Emotion over time in a long recording: speech regions from a voice-activity detector (Silero
VAD), windows of the length the model was trained on inside them, calibrated probabilities per
window, smoothed into labelled segments.

Two streaming passes over the file keep memory bounded for any length: the first runs the VAD
block by block (its state carries across blocks) and keeps only one speech probability per 32 ms;
the second cuts the windows of the speech regions out of the stream as it passes. A speech region
no longer than ``window`` seconds is one window; a longer one gets windows every ``hop`` seconds,
and each hop of time takes the mean probabilities of the windows covering it. Segments are runs of
one label, those shorter than ``min_segment`` merged into a neighbour.

Why regions get ``context``: the VAD starts soft onsets (a sigh, a breathy first syllable) up to
half a second late and ends some regions early, and the model trims leading and trailing silence
itself. So each region's first and last window reach ``context`` seconds past the VAD's edges (never
past halfway to the next region): a clip inside a recording is then heard as it is heard alone. The
segment edges are where the sound around each VAD edge stays within ``edge_db`` of its window's
loudest 10 ms, pauses up to 0.5 s bridged (a breath before a phrase belongs to it, and the model
hears it in the clip alone), not the VAD's own edges.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from emorec.errors import BadInputError
from emorec.media.audio import stream_audio
from emorec.memory import release_large_blocks

VAD_RATE = 16000
VAD_CHUNK = 512  # samples per Silero VAD step at 16 kHz (32 ms)


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    label: str
    probabilities: dict[str, float]

    def to_dict(self) -> dict:
        return {
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "label": self.label,
            "probabilities": {k: round(v, 5) for k, v in self.probabilities.items()},
        }


@dataclass
class Timeline:
    """What ``Recognizer.timeline`` returns: speech regions, per-window probabilities, segments."""

    source: str
    duration: float
    classes: list[str]
    speech: list[tuple[float, float]] = field(default_factory=list)
    # (start, end, probs (C,))
    windows: list[tuple[float, float, np.ndarray]] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    model_id: str = ""
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "model": self.model_id,
            "duration": round(self.duration, 3),
            "classes": self.classes,
            "settings": self.settings,
            "speech": [[round(a, 3), round(b, 3)] for a, b in self.speech],
            "segments": [s.to_dict() for s in self.segments],
            "windows": [
                {
                    "start": round(a, 3),
                    "end": round(b, 3),
                    "probabilities": [round(float(p), 5) for p in row],
                }
                for a, b, row in self.windows
            ],
        }


def _vad_model():
    from silero_vad import load_silero_vad

    return load_silero_vad()


@torch.inference_mode()
def speech_probabilities(blocks: Iterator[np.ndarray], model=None) -> tuple[list[float], int]:
    """Silero VAD speech probability per 512-sample step of a 16 kHz stream, and the samples
    read."""
    model = model or _vad_model()
    model.reset_states()
    probs: list[float] = []
    carry = np.zeros(0, np.float32)
    total = 0
    for block in blocks:
        total += block.size
        data = np.concatenate([carry, block]) if carry.size else block
        whole = data.size // VAD_CHUNK * VAD_CHUNK
        for start in range(0, whole, VAD_CHUNK):
            probs.append(float(model(torch.from_numpy(data[start : start + VAD_CHUNK]), VAD_RATE)))
        carry = data[whole:]
    if carry.size:
        probs.append(
            float(model(torch.from_numpy(np.pad(carry, (0, VAD_CHUNK - carry.size))), VAD_RATE))
        )
    return probs, total


def speech_regions(
    probs: Sequence[float],
    total_samples: int,
    *,
    threshold: float = 0.5,
    min_speech: float = 0.25,
    min_silence: float = 0.3,
    pad: float = 0.05,
) -> list[tuple[float, float]]:
    """Speech ``(start, end)`` seconds from VAD probabilities (Silero's own hysteresis and
    padding)."""
    from silero_vad import get_speech_timestamps_from_probs

    stamps = get_speech_timestamps_from_probs(
        list(probs),
        sampling_rate=VAD_RATE,
        threshold=threshold,
        min_speech_duration_ms=int(min_speech * 1000),
        min_silence_duration_ms=int(min_silence * 1000),
        speech_pad_ms=int(pad * 1000),
        audio_length_samples=total_samples,
    )
    return [(s["start"] / VAD_RATE, s["end"] / VAD_RATE) for s in stamps]


def plan_windows(
    regions: Sequence[tuple[float, float]], window: float, hop: float
) -> list[tuple[float, float]]:
    """Windows ``(start, end)`` seconds: a region up to ``window`` long is one; a longer one is
    covered by windows of ``window`` every ``hop``, the last ending at the region's end."""
    planned = []
    for start, end in regions:
        if end - start <= window:
            planned.append((start, end))
            continue
        starts = list(np.arange(start, end - window, hop)) + [end - window]
        planned += [(float(s), float(s) + window) for s in starts]
    return planned


def context_bounds(
    regions: Sequence[tuple[float, float]], context: float, duration: float
) -> list[tuple[float, float]]:
    """Each region widened by up to ``context`` seconds each side, never past the recording's ends
    or halfway to a neighbouring region."""
    widened = []
    for k, (start, end) in enumerate(regions):
        before = (regions[k - 1][1] + start) / 2 if k else 0.0
        after = (end + regions[k + 1][0]) / 2 if k + 1 < len(regions) else duration
        widened.append((max(before, start - context), min(after, end + context)))
    return widened


def speech_edge(
    samples: np.ndarray,
    rate: int,
    near: float,
    *,
    edge_db: float,
    from_end: bool = False,
    max_gap: float = 0.5,
) -> float:
    """Where speech starts (or, ``from_end``, ends) in ``samples``, in seconds from their start:
    from the 10 ms frame at ``near`` (the VAD's edge), the first frame within ``edge_db`` of the
    loudest is found inwards, then followed outwards over loud frames with gaps up to
    ``max_gap``."""
    frame = max(1, rate // 100)
    count = samples.size // frame
    if count == 0:
        return near
    power = np.mean(samples[: count * frame].reshape(count, frame).astype(np.float64) ** 2, axis=1)
    loud = power > power.max() * 10 ** (-edge_db / 10)
    if from_end:  # the end of speech is the start of speech in the reversed signal
        loud, near = loud[::-1], samples.size / rate - near
    at = min(count - 1, max(0, int(near * rate) // frame))
    inwards = np.flatnonzero(loud[at:])
    edge = at + int(inwards[0]) if inwards.size else at
    gap, limit = 0, int(round(max_gap * rate / frame))
    for k in range(edge - 1, -1, -1):
        if loud[k]:
            edge, gap = k, 0
        else:
            gap += 1
            if gap > limit:
                break
    seconds = edge * frame / rate
    return samples.size / rate - seconds if from_end else seconds


def cut_windows(
    blocks: Iterator[np.ndarray], windows: Sequence[tuple[float, float]], rate: int
) -> Iterator[tuple[int, np.ndarray]]:
    """``(index, samples)`` of each window as the stream passes it; only the stretch from the
    earliest unfinished window on is kept in memory."""
    bounds = [(int(round(a * rate)), int(round(b * rate))) for a, b in windows]
    order = sorted(range(len(bounds)), key=lambda i: bounds[i])
    buffer, buffer_start, next_window = np.zeros(0, np.float32), 0, 0
    for block in blocks:
        buffer = np.concatenate([buffer, block])
        end_of_buffer = buffer_start + buffer.size
        while next_window < len(order) and bounds[order[next_window]][1] <= end_of_buffer:
            index = order[next_window]
            a, b = bounds[index]
            yield index, buffer[a - buffer_start : b - buffer_start].copy()
            next_window += 1
        keep_from = (
            min(bounds[order[next_window]][0], end_of_buffer)
            if next_window < len(order)
            else end_of_buffer
        )
        if keep_from > buffer_start:
            buffer = buffer[keep_from - buffer_start :]
            buffer_start = keep_from
    for index in order[next_window:]:  # windows reaching past the last sample
        a, b = bounds[index]
        if a - buffer_start < buffer.size:
            yield index, buffer[max(0, a - buffer_start) : b - buffer_start].copy()


def smooth_segments(
    windows: Sequence[tuple[float, float, np.ndarray]],
    regions: Sequence[tuple[float, float]],
    classes: Sequence[str],
    hop: float,
    min_segment: float,
) -> list[Segment]:
    """Labelled segments inside each speech region from the windows that overlap it (a window may
    reach past its region's edges, never into another region)."""
    segments: list[Segment] = []
    for start, end in regions:
        inside = [(a, b, p) for a, b, p in windows if a < end and b > start]
        if not inside:
            continue
        edges = np.arange(start, end, hop).tolist() + [end]
        steps = []
        for a, b in zip(edges[:-1], edges[1:]):
            covering = [p for wa, wb, p in inside if wa < b and wb > a]
            steps.append((a, b, np.mean(covering, axis=0)))
        runs: list[list] = []
        for a, b, p in steps:
            label = int(p.argmax())
            if runs and runs[-1][3] == label:
                runs[-1][1] = b
                runs[-1][2].append((b - a, p))
            else:
                runs.append([a, b, [(b - a, p)], label])
        merged = _merge_short(runs, min_segment)
        for a, b, parts, _ in merged:
            probs = sum(w * p for w, p in parts) / sum(w for w, _ in parts)
            segments.append(
                Segment(
                    a,
                    b,
                    classes[int(probs.argmax())],
                    {c: float(v) for c, v in zip(classes, probs)},
                )
            )
    return segments


def _merge_short(runs: list[list], min_segment: float) -> list[list]:
    """Runs shorter than ``min_segment`` join the neighbour they border (the longer one)."""
    while len(runs) > 1:
        shortest = min(range(len(runs)), key=lambda i: runs[i][1] - runs[i][0])
        if runs[shortest][1] - runs[shortest][0] >= min_segment:
            break
        if shortest == 0:
            neighbour = 1
        elif shortest == len(runs) - 1:
            neighbour = shortest - 1
        else:
            before, after = runs[shortest - 1], runs[shortest + 1]
            neighbour = (
                shortest - 1 if before[1] - before[0] >= after[1] - after[0] else shortest + 1
            )
        a, b = sorted((shortest, neighbour))
        joined = [runs[a][0], runs[b][1], runs[a][2] + runs[b][2], runs[neighbour][3]]
        runs[a : b + 1] = [joined]
    return runs


def build_timeline(
    recognizer,
    path: str | os.PathLike | bytes,
    *,
    window: float = 3.0,
    hop: float = 1.0,
    min_segment: float = 1.0,
    vad_threshold: float = 0.5,
    context: float = 1.0,
    edge_db: float = 25.0,
    batch_size: int = 16,
    block_seconds: float = 20.0,
    progress=None,
) -> Timeline:
    """The :class:`Timeline` of one file with ``recognizer``'s model (see the module docstring)."""
    if not 0 < hop <= window:
        raise ValueError(f"need 0 < hop <= window, got hop {hop} and window {window}")
    source = "<upload>" if isinstance(path, (bytes, bytearray)) else os.fspath(path)
    release_large_blocks()
    probs, total = speech_probabilities(stream_audio(path, VAD_RATE, block_seconds))
    if total == 0:
        raise BadInputError(path, "no audio samples")
    duration = total / VAD_RATE
    regions = speech_regions(probs, total, threshold=vad_threshold)
    planned: list[tuple[float, float]] = []
    # Which VAD edges each window refines: a region's first window gives its speech start, its last
    # its end, found as the stream passes (a float each: memory stays bounded however many regions).
    edges_of: dict[
        int, list[tuple[int, float, bool]]
    ] = {}  # window -> [(region, VAD edge, from_end)]
    widened = context_bounds(regions, context, duration)
    for k, ((start, end), (wide_start, wide_end)) in enumerate(zip(regions, widened)):
        own = plan_windows([(start, end)], window, hop)
        own[0] = (wide_start, own[0][1])
        own[-1] = (own[-1][0], wide_end)  # the same window as own[0] when the region fits in one
        edges_of.setdefault(len(planned), []).append((k, start, False))
        edges_of.setdefault(len(planned) + len(own) - 1, []).append((k, end, True))
        planned += own
    speech = [list(region) for region in regions]
    rate = recognizer.sample_rate
    results: dict[int, np.ndarray] = {}
    pending: list[tuple[int, np.ndarray]] = []

    def flush() -> None:
        usable = [
            (i, w) for i, w in pending if w.size >= rate // 10
        ]  # under 0.1 s: nothing to hear
        if usable:
            rows = recognizer.probabilities([w for _, w in usable], batch_size=batch_size)
            results.update({i: row for (i, _), row in zip(usable, rows)})
        pending.clear()
        if progress:
            progress(len(results), len(planned))

    for index, samples in cut_windows(stream_audio(path, rate, block_seconds), planned, rate):
        offset = planned[index][0]
        for k, vad_edge, from_end in edges_of.get(index, ()):
            speech[k][1 if from_end else 0] = offset + speech_edge(
                samples, rate, vad_edge - offset, edge_db=edge_db, from_end=from_end
            )
        pending.append((index, samples))
        if len(pending) >= 4 * batch_size:
            flush()
    flush()
    # Where the sound-based edges crossed (nothing loud
    # enough in the region), the VAD's edges stand.
    speech = [(a, b) if b > a else vad for (a, b), vad in zip(speech, regions)]
    windows = [(planned[i][0], planned[i][1], results[i]) for i in sorted(results)]
    segments = smooth_segments(windows, speech, recognizer.classes, hop, min_segment)
    return Timeline(
        source=source,
        duration=duration,
        classes=list(recognizer.classes),
        speech=speech,
        windows=windows,
        segments=segments,
        model_id=recognizer.model_id,
        settings={
            "window": window,
            "hop": hop,
            "min_segment": min_segment,
            "vad": "silero-vad",
            "vad_threshold": vad_threshold,
            "context": context,
            "edge_db": edge_db,
        },
    )
