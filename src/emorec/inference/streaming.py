"""Emotion while the audio arrives: ``Recognizer.stream(chunks)`` and ``emorec listen``.

Audio comes in blocks of any size. Silero VAD runs on it 32 ms at a time (its state carries over),
and :class:`~emorec.inference.speech_detector.SpeechDetector` turns its probabilities into speech
regions exactly as Silero's ``get_speech_timestamps_from_probs`` does over a whole file, one
probability at a time. Two kinds of answer come out, as a streaming speech recogniser gives partial
and final results:

- **interim** ``window`` events, every ``hop`` seconds while someone speaks: the model on the last
  ``window`` seconds of the region (the first ones shorter), made as soon as their audio is in;
- **final** ``segments`` events, one per speech region once its bounds are decided: the windows,
  speech edges and smoothed segments that :func:`emorec.inference.timeline.build_timeline` gives the
  same audio. A region is decided when the next one has begun or when no region could begin within
  ``2 * context`` seconds of its end (its last window reaches halfway to the next region at most).

So when the stream ends, :attr:`EmotionStream.timeline` equals ``Recognizer.timeline`` of the same
audio; interim windows that coincide with final ones are not computed twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import soxr
import torch

from emorec.inference.speech_detector import SpeechDetector
from emorec.inference.timeline import (
    VAD_CHUNK,
    VAD_RATE,
    Segment,
    Timeline,
    _vad_model,
    plan_windows,
    smooth_segments,
    speech_edge,
)


@dataclass(frozen=True)
class StreamEvent:
    """One update of a stream. ``kind``: ``speech_start`` (``start``), ``window`` (an interim answer
    for ``start``-``end``: ``probabilities``, ``label``), ``speech_end`` (the region's VAD bounds),
    ``segments`` (a region's final ``segments``, as the timeline gives them) or ``end`` (the whole
    ``timeline``). ``time`` is the seconds of audio received when it was made."""

    kind: str
    time: float
    start: float = 0.0
    end: float = 0.0
    probabilities: dict[str, float] | None = None
    label: str | None = None
    segments: tuple[Segment, ...] = ()
    timeline: Timeline | None = None

    def to_dict(self) -> dict:
        out: dict = {"type": self.kind, "time": round(self.time, 3)}
        if self.kind != "end":
            out.update(start=round(self.start, 3), end=round(self.end, 3))
        if self.probabilities is not None:
            out.update(
                label=self.label,
                probabilities={k: round(v, 5) for k, v in self.probabilities.items()},
            )
        if self.kind == "segments":
            out["segments"] = [s.to_dict() for s in self.segments]
        if self.timeline is not None:
            out["timeline"] = self.timeline.to_dict()
        return out


@dataclass
class _Region:
    start: float  # padded VAD bounds, seconds
    end: float | None = None
    wide_start: float = 0.0
    ticks: int = 0  # interim windows made


@dataclass
class EmotionStream:
    """Feed blocks with :meth:`feed` (each returns the events it caused), then :meth:`close`.
    Settings mean what they mean in :func:`emorec.inference.timeline.build_timeline`."""

    recognizer: object
    sample_rate: int = VAD_RATE
    window: float = 3.0
    hop: float = 1.0
    min_segment: float = 1.0
    vad_threshold: float = 0.5
    context: float = 1.0
    edge_db: float = 25.0
    batch_size: int = 16
    timeline: Timeline = field(init=False)

    def __post_init__(self) -> None:
        if not 0 < self.hop <= self.window:
            raise ValueError(f"need 0 < hop <= window, got hop {self.hop} and window {self.window}")
        self.rate = int(self.recognizer.sample_rate)
        self.classes = list(self.recognizer.classes)
        self._vad = _vad_model()
        self._vad.reset_states()
        self._detector = SpeechDetector(threshold=self.vad_threshold)
        self._to_vad = (
            None
            if self.sample_rate == VAD_RATE
            else soxr.ResampleStream(self.sample_rate, VAD_RATE, 1)
        )
        self._to_model = (
            None
            if self.sample_rate == self.rate
            else soxr.ResampleStream(self.sample_rate, self.rate, 1)
        )
        self._vad_carry = np.zeros(0, np.float32)
        self._vad_total = 0
        self._audio, self._audio_start, self._audio_total = np.zeros(0, np.float32), 0, 0
        self._regions: list[_Region] = []  # confirmed regions not yet final, oldest first
        self._last_end: float | None = None  # padded end of the last final region
        self._cache: dict[tuple[int, int], np.ndarray] = {}
        self._closed = False
        self.timeline = Timeline(
            source="<stream>",
            duration=0.0,
            classes=self.classes,
            model_id=getattr(self.recognizer, "model_id", ""),
            settings={
                "window": self.window,
                "hop": self.hop,
                "min_segment": self.min_segment,
                "vad": "silero-vad",
                "vad_threshold": self.vad_threshold,
                "context": self.context,
                "edge_db": self.edge_db,
            },
        )

    @property
    def seconds(self) -> float:
        """Audio received so far."""
        return self._vad_total / VAD_RATE

    def feed(self, block: np.ndarray) -> list[StreamEvent]:
        """One block of mono samples at ``sample_rate`` (float in [-1, 1] or int16)."""
        if self._closed:
            raise RuntimeError("the stream is closed")
        samples = _as_float(block)
        vad_part = samples if self._to_vad is None else self._to_vad.resample_chunk(samples)
        model_part = samples if self._to_model is None else self._to_model.resample_chunk(samples)
        return self._take(vad_part, model_part, last=False)

    def close(self) -> list[StreamEvent]:
        """The end of the audio: every region made final, then the ``end`` event with the
        timeline."""
        if self._closed:
            return []
        vad_tail = (
            np.zeros(0, np.float32)
            if self._to_vad is None
            else self._to_vad.resample_chunk(np.zeros(0, np.float32), last=True)
        )
        model_tail = (
            np.zeros(0, np.float32)
            if self._to_model is None
            else self._to_model.resample_chunk(np.zeros(0, np.float32), last=True)
        )
        events = self._take(vad_tail, model_tail, last=True)
        self._closed = True
        return events + [StreamEvent("end", self.seconds, timeline=self.timeline)]

    # -- internals -------------------------------------------------------------------------------

    @torch.inference_mode()
    def _take(
        self, vad_part: np.ndarray, model_part: np.ndarray, *, last: bool
    ) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        self._audio = np.concatenate([self._audio, model_part.astype(np.float32)])
        self._audio_total += model_part.size
        self._vad_total += vad_part.size
        data = (
            np.concatenate([self._vad_carry, vad_part])
            if self._vad_carry.size
            else vad_part.astype(np.float32)
        )
        whole = data.size // VAD_CHUNK * VAD_CHUNK
        chunks = [data[i : i + VAD_CHUNK] for i in range(0, whole, VAD_CHUNK)]
        self._vad_carry = data[whole:]
        if last and self._vad_carry.size:
            chunks.append(np.pad(self._vad_carry, (0, VAD_CHUNK - self._vad_carry.size)))
            self._vad_carry = np.zeros(0, np.float32)
        for chunk in chunks:
            closed = self._detector.push(
                float(self._vad(torch.from_numpy(np.ascontiguousarray(chunk)), VAD_RATE))
            )
            if closed is not None:
                events += self._region_closed(closed)
            events += self._confirm()
        if last:
            self.timeline.duration = self._vad_total / VAD_RATE
            tail = self._detector.finish(self._vad_total)
            if tail is not None:
                events += self._confirm(tail[0])
                events += self._region_closed(tail)
        events += self._interim(last)
        events += self._finalise(last)
        self._forget()
        return events

    def _confirm(self, start: int | None = None) -> list[StreamEvent]:
        start = self._detector.confirmed_start() if start is None else start
        if start is None or (self._regions and self._regions[-1].end is None):
            return []
        seconds = start / VAD_RATE
        previous_end = self._regions[-1].end if self._regions else self._last_end
        before = (previous_end + seconds) / 2 if previous_end is not None else 0.0
        self._regions.append(_Region(start=seconds, wide_start=max(before, seconds - self.context)))
        return [StreamEvent("speech_start", self.seconds, start=seconds)]

    def _region_closed(self, bounds: tuple[int, int]) -> list[StreamEvent]:
        if not self._regions or self._regions[-1].end is not None:
            # a region confirmed only by its closing (cannot happen past min_speech)
            self._confirm(bounds[0])
        region = self._regions[-1]
        region.end = bounds[1] / VAD_RATE
        return [StreamEvent("speech_end", self.seconds, start=region.start, end=region.end)]

    def _interim(self, last: bool) -> list[StreamEvent]:
        """Windows of the open region, every ``hop`` seconds of it, once their audio is in."""
        if not self._regions or self._regions[-1].end is not None:
            return []
        region = self._regions[-1]
        planned = []
        while True:
            tick = region.ticks + 1
            end = region.start + tick * self.hop
            start = (
                region.wide_start
                if tick * self.hop <= self.window
                else region.start + (tick - int(round(self.window / self.hop))) * self.hop
            )
            if int(round(end * self.rate)) > self._audio_total:
                break
            planned.append((start, end))
            region.ticks = tick
        rows = self._probabilities(planned)
        return [
            StreamEvent(
                "window",
                self.seconds,
                start=a,
                end=b,
                label=self.classes[int(row.argmax())],
                probabilities={c: float(p) for c, p in zip(self.classes, row)},
            )
            for (a, b), row in zip(planned, rows)
            if row is not None
        ]

    def _finalise(self, last: bool) -> list[StreamEvent]:
        events = []
        while self._regions and self._regions[0].end is not None:
            region = self._regions[0]
            nxt = self._regions[1] if len(self._regions) > 1 else None
            if nxt is not None:
                after = (region.end + nxt.start) / 2
            elif last:
                after = self.timeline.duration
            elif self._detector.earliest_next_start() / VAD_RATE >= region.end + 2 * self.context:
                after = float("inf")  # no region can begin close enough to matter
            else:
                break
            wide_end = min(after, region.end + self.context)
            if not last and int(round(wide_end * self.rate)) > self._audio_total:
                break
            events.append(self._final_region(region, wide_end))
            self._regions.pop(0)
            self._last_end = region.end
        return events

    def _final_region(self, region: _Region, wide_end: float) -> StreamEvent:
        """The region's windows, edges and segments as :func:`build_timeline` makes them."""
        own = plan_windows([(region.start, region.end)], self.window, self.hop)
        own[0] = (region.wide_start, own[0][1])
        own[-1] = (own[-1][0], wide_end)
        speech = [region.start, region.end]
        cut = []
        for index, (a, b) in enumerate(own):
            samples = self._cut(a, b)
            if samples is None:
                continue
            if index == 0:
                speech[0] = a + speech_edge(
                    samples, self.rate, region.start - a, edge_db=self.edge_db
                )
            if index == len(own) - 1:
                speech[1] = a + speech_edge(
                    samples, self.rate, region.end - a, edge_db=self.edge_db, from_end=True
                )
            cut.append((a, b))
        rows = self._probabilities(cut)
        windows = [(a, b, row) for (a, b), row in zip(cut, rows) if row is not None]
        bounds = (speech[0], speech[1]) if speech[1] > speech[0] else (region.start, region.end)
        segments = smooth_segments(windows, [bounds], self.classes, self.hop, self.min_segment)
        self.timeline.speech.append(bounds)
        self.timeline.windows.extend(windows)
        self.timeline.segments.extend(segments)
        return StreamEvent(
            "segments", self.seconds, start=bounds[0], end=bounds[1], segments=tuple(segments)
        )

    def _cut(self, a: float, b: float) -> np.ndarray | None:
        """Samples ``a``-``b`` s as :func:`emorec.inference.timeline.cut_windows` cuts them (cut
        short at the end)."""
        lo, hi = int(round(a * self.rate)), int(round(b * self.rate))
        if lo >= self._audio_total:
            return None
        return self._audio[max(0, lo - self._audio_start) : hi - self._audio_start].copy()

    def _probabilities(self, spans: list[tuple[float, float]]) -> list[np.ndarray | None]:
        """Rows for each span (``None`` under 0.1 s, as the timeline skips those), computed once
        each."""
        keys = [(int(round(a * self.rate)), int(round(b * self.rate))) for a, b in spans]
        waves = {k: self._cut(a, b) for k, (a, b) in zip(keys, spans) if k not in self._cache}
        todo = [k for k, w in waves.items() if w is not None and w.size >= self.rate // 10]
        if todo:
            rows = self.recognizer.probabilities(
                [waves[k] for k in todo], batch_size=self.batch_size
            )
            self._cache.update(zip(todo, rows))
        return [self._cache.get(k) for k in keys]

    def _forget(self) -> None:
        """Drop the audio and cached rows no window can need any more (bounded memory)."""
        future = (self._detector.earliest_next_start() / VAD_RATE) - self.context
        keep = min([r.wide_start for r in self._regions] + [future, self._audio_total / self.rate])
        keep_from = max(self._audio_start, int(np.floor(keep * self.rate)) - 1)
        if keep_from > self._audio_start:
            self._audio = self._audio[keep_from - self._audio_start :]
            self._audio_start = keep_from
            self._cache = {k: v for k, v in self._cache.items() if k[0] >= keep_from}


def _as_float(block: np.ndarray) -> np.ndarray:
    block = np.asarray(block)
    if block.ndim == 2:  # (samples, channels)
        block = block.mean(axis=1)
    if block.dtype == np.int16:
        return block.astype(np.float32) / 32768.0
    return np.ascontiguousarray(block, dtype=np.float32)


def stream_events(recognizer, chunks: Iterable[np.ndarray], **settings) -> Iterator[StreamEvent]:
    """Events of the blocks in ``chunks`` as they arrive, then those of the end (see
    :class:`EmotionStream`)."""
    stream = EmotionStream(recognizer, **settings)
    for chunk in chunks:
        yield from stream.feed(chunk)
    yield from stream.close()
