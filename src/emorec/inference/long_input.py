"""Input longer than a training clip: one answer from its speech, never the clip model over
everything.

The models learn from acted clips of 1.5-5 s. Read whole, a 58 s recording becomes one long clip
whose pooled frames mean nothing the model was trained on (and minutes of silence or music count as
much as speech). So a recording over :data:`LONG_INPUT_SECONDS` is windowed as the timeline does it:
Silero VAD speech regions, windows of :data:`WINDOW_SECONDS` every :data:`HOP_SECONDS` inside them,
labelled segments from the windows; the whole-file answer is the **duration-weighted mean of the
speech segments' probabilities** (each second of speech counts once, silence not at all).
``predict`` (CLI), ``Recognizer.predict``, ``/v1/predict`` and the web page all answer through
:func:`windowed_answer`, and all refuse input over :data:`MAX_SECONDS`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import soxr

from emorec.errors import BadInputError, SkippedFile

#: The longest input any entry point accepts (10
#: minutes); longer recordings go to ``emorec timeline``.
MAX_SECONDS = 600.0
#: Input longer than this is windowed over its speech (the training clips are at most about 5 s).
LONG_INPUT_SECONDS = 6.0
WINDOW_SECONDS = 3.0
HOP_SECONDS = 1.0
#: How the whole-file answer was made, as results state it.
CLIP = "whole clip"
WINDOWED = "duration-weighted mean of speech windows"


class Backend(Protocol):
    """What every answer needs of a model, whatever runs it: torch (``inference.Predictor``), ONNX
    (``onnx_runtime.OnnxPredictor``) or an equal-weight ensemble
    (``inference.EnsemblePredictor``)."""

    @property
    def class_names(self) -> list[str]: ...

    @property
    def sample_rate(self) -> int: ...

    def probabilities(self, waves: Sequence[np.ndarray], batch_size: int = 16) -> np.ndarray:
        """Mono waveforms at :attr:`sample_rate` -> calibrated probabilities ``(N, C)`` in input
        order."""
        ...


@dataclass(frozen=True)
class WindowedAnswer:
    """``probabilities`` (C,) of the whole input and what they come from: speech regions, windows
    ``(start, end, probs (C,))`` and labelled segments (``emorec.inference.timeline.Segment``), in
    seconds."""

    probabilities: np.ndarray
    speech: list[tuple[float, float]] = field(default_factory=list)
    windows: list[tuple[float, float, np.ndarray]] = field(default_factory=list)
    segments: list = field(default_factory=list)

    @property
    def speech_seconds(self) -> float:
        return float(sum(s.end - s.start for s in self.segments))


def check_length(
    source: str | os.PathLike, seconds: float | None, max_seconds: float = MAX_SECONDS
) -> None:
    """:class:`BadInputError` naming ``source`` when it is longer than ``max_seconds``."""
    if seconds is not None and seconds > max_seconds:
        raise BadInputError(
            source,
            f"{seconds:.0f} s of audio is longer than the limit of {max_seconds:.0f} s: "
            "use `emorec timeline` (Recognizer.timeline) for long recordings",
        )


def is_long(wave: np.ndarray, rate: int) -> bool:
    return wave.size / rate > LONG_INPUT_SECONDS


def windowed_answer(
    source: str | os.PathLike,
    wave: np.ndarray,
    rate: int,
    classes: Sequence[str],
    probabilities_of: Callable[[list[np.ndarray]], np.ndarray],
    *,
    vad_threshold: float = 0.5,
    context: float = 1.0,
) -> WindowedAnswer:
    """The answer for mono ``wave`` at ``rate`` from the windows of its speech regions;
    ``probabilities_of(waves)`` gives ``(N, C)`` calibrated probabilities. No speech at all is a
    :class:`BadInputError`: nothing in the input can be answered for."""
    from emorec.inference.timeline import (
        VAD_RATE,
        context_bounds,
        plan_windows,
        smooth_segments,
        speech_probabilities,
        speech_regions,
    )

    vad_wave = wave if rate == VAD_RATE else soxr.resample(wave, rate, VAD_RATE).astype(np.float32)
    probs, total = speech_probabilities(iter([np.ascontiguousarray(vad_wave, dtype=np.float32)]))
    regions = speech_regions(probs, total, threshold=vad_threshold)
    duration = wave.size / rate
    planned: list[tuple[float, float]] = []
    for (start, end), (wide_start, wide_end) in zip(
        regions, context_bounds(regions, context, duration)
    ):
        own = plan_windows([(start, end)], WINDOW_SECONDS, HOP_SECONDS)
        own[0] = (wide_start, own[0][1])
        own[-1] = (own[-1][0], wide_end)
        planned += own
    cuts = [(a, b, wave[int(round(a * rate)) : int(round(b * rate))]) for a, b in planned]
    cuts = [(a, b, w) for a, b, w in cuts if w.size >= rate // 10]  # under 0.1 s: nothing to hear
    if not cuts:
        raise BadInputError(source, f"no speech found in {duration:.0f} s of audio")
    rows = probabilities_of([w for _, _, w in cuts])
    windows = [(a, b, row) for (a, b, _), row in zip(cuts, rows)]
    segments = smooth_segments(windows, regions, classes, HOP_SECONDS, min_segment=1.0)
    weights = np.array([s.end - s.start for s in segments])
    stacked = np.array([[s.probabilities[c] for c in classes] for s in segments])
    whole = (weights[:, None] * stacked).sum(axis=0) / weights.sum()
    return WindowedAnswer(
        probabilities=whole.astype(np.float32),
        speech=list(regions),
        windows=windows,
        segments=segments,
    )


def answer_file(
    path: str | os.PathLike,
    rate: int,
    classes: Sequence[str],
    probabilities_of: Callable[[list[np.ndarray]], np.ndarray],
    whole_clip: Callable[[], np.ndarray] | None = None,
) -> tuple[np.ndarray, WindowedAnswer | None]:
    """``(probabilities (C,), WindowedAnswer or None)`` of one file: refused past
    :data:`MAX_SECONDS`, windowed past :data:`LONG_INPUT_SECONDS`, else ``whole_clip()`` (default:
    its waveform read whole)."""
    from emorec.media.audio import load_audio, probe_duration

    seconds = probe_duration(path)
    check_length(path, seconds)
    if seconds is not None and seconds <= LONG_INPUT_SECONDS and whole_clip is not None:
        return whole_clip(), None
    wave = load_audio(path, rate)
    check_length(path, wave.size / rate)
    if not is_long(wave, rate):
        return (whole_clip() if whole_clip is not None else probabilities_of([wave])[0]), None
    answer = windowed_answer(path, wave, rate, classes, probabilities_of)
    return answer.probabilities, answer


def answer_files(
    backend: Backend,
    paths: Sequence[str | os.PathLike],
    answers: dict | None = None,
    whole_clip: Callable[[str | os.PathLike], np.ndarray] | None = None,
) -> tuple[list[tuple[str, np.ndarray]], list[SkippedFile]]:
    """Probabilities ``(C,)`` for each readable file through ``backend`` (:func:`answer_file`); an
    unreadable one is listed with its reason, not fatal. A windowed file's :class:`WindowedAnswer`
    goes to ``answers[path]`` when a dict is given; ``whole_clip(path)`` answers a short file
    instead of its decoded waveform (a model whose extractor reads the file itself)."""
    results, skipped = [], []
    for path in paths:
        whole = (lambda path=path: whole_clip(path)) if whole_clip is not None else None
        try:
            probs, answer = answer_file(
                path, backend.sample_rate, backend.class_names, backend.probabilities, whole
            )
        except BadInputError as err:
            skipped.append(SkippedFile(err.path, err.reason, "predict"))
            continue
        if answer is not None and answers is not None:
            answers[str(path)] = answer
        results.append((str(path), probs))
    return results, skipped
