"""The Python API: a trained or released model as one object.

    import emorec
    rec = emorec.load()                      # the released model (or "runs/x/fold_1", "model.onnx")
    rec.predict("clip.wav").label            # 'happy'
    rec.predict(samples, sample_rate=44100)  # a NumPy waveform, resampled to the model's rate
    batch = rec.predict(["a.wav", "b.flac", "broken.wav"])
    batch.predictions, batch.skipped         # unreadable inputs are listed with their reason

Probabilities are the model's calibrated ones (temperature scaling fitted on validation speakers).
A clip's result does not depend on the batch it is predicted in. Nothing here starts a process, so
it runs from a plain script without a ``__main__`` guard. Input longer than a training clip (over
6 s) is windowed over its speech regions and answered by the duration-weighted mean of its speech
segments (``prediction.method`` says so, ``prediction.segments`` has them: see
:mod:`emorec.inference.long_input`). An input longer than ``max_seconds`` (default 10 minutes) is
refused from its header, before it is decoded: emotion over time in a long recording is
:meth:`Recognizer.timeline`'s job, which streams it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np
import soxr

from emorec.errors import BadInputError, EmorecError
from emorec.inference.predictor import Predictor
from emorec.inference.long_input import (
    CLIP,
    MAX_SECONDS,
    WINDOWED,
    Backend,
    check_length,
    is_long,
    windowed_answer,
)
from emorec.media.audio import load_audio, probe_duration
from emorec.inference.released import default_model_dir, released_model_dir
from emorec.media.silence import check_not_silent

AudioInput = Union[str, os.PathLike, np.ndarray]


@dataclass(frozen=True)
class Prediction:
    """One input: the most probable ``label``, every class's calibrated probability, seconds of
    audio, and how the answer was made (``method``: the whole clip, or for long input the
    duration-weighted mean of its speech ``segments``, each an
    :class:`emorec.inference.timeline.Segment`)."""

    label: str
    probabilities: dict[str, float]
    duration: float
    source: str
    method: str = CLIP
    segments: tuple = ()

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "label": self.label,
            "duration": self.duration,
            "probabilities": self.probabilities,
            "method": self.method,
            "segments": [s.to_dict() for s in self.segments],
        }


@dataclass(frozen=True)
class Skipped:
    source: str
    reason: str


@dataclass
class BatchPrediction:
    """Predictions of the readable inputs, in input order, and the inputs that were not."""

    predictions: list[Prediction] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def __iter__(self) -> Iterator[Prediction]:
        return iter(self.predictions)

    def __len__(self) -> int:
        return len(self.predictions)


class Recognizer:
    """A model ready to predict: :func:`load` (a trained or released model, or an ``.onnx`` export),
    or ``Recognizer(backend)`` around any :class:`emorec.inference.long_input.Backend`: every answer
    (files, waveforms, long input, timeline, stream) goes through ``backend.probabilities``."""

    def __init__(
        self,
        backend: Backend,
        *,
        model_id: str = "",
        model_dir: Path | None = None,
        max_seconds: float = MAX_SECONDS,
    ):
        if not getattr(backend, "audio_only", True):
            raise EmorecError(
                "the Python API predicts from audio; this model reads video (use `emorec predict`)"
            )
        self.backend = backend
        self.model_id = model_id or (model_dir.name if model_dir else "model")
        self.model_dir = model_dir
        self.max_seconds = float(max_seconds)

    @property
    def predictor(self) -> Backend:
        """The backend (a :class:`emorec.inference.predictor.Predictor` for a trained model)."""
        return self.backend

    @property
    def classes(self) -> list[str]:
        return list(self.backend.class_names)

    @property
    def sample_rate(self) -> int:
        return int(self.backend.sample_rate)

    def __repr__(self) -> str:
        return (
            f"Recognizer({self.model_id!r}, classes={self.classes}, sample_rate={self.sample_rate})"
        )

    def predict(
        self,
        inputs: AudioInput | Sequence[AudioInput],
        sample_rate: int | None = None,
        *,
        batch_size: int = 16,
    ) -> Prediction | BatchPrediction:
        """One file or waveform -> :class:`Prediction` (a bad one raises :class:`BadInputError`);
        a list of them -> :class:`BatchPrediction` (bad ones skipped with their reason).
        ``sample_rate`` is the rate of waveform inputs (required for them)."""
        if isinstance(inputs, (str, os.PathLike, np.ndarray)):
            wave, source = self.waveform(inputs, sample_rate)
            return self._predict_waves([wave], [source], batch_size)[0]
        answered: dict[int, Prediction] = {}
        short: list[tuple[int, np.ndarray, str]] = []
        skipped = []
        for index, item in enumerate(inputs):
            try:
                wave, source = self.waveform(item, sample_rate, index=index)
                # windowed alone: one without speech is skipped, not fatal
                if is_long(wave, self.sample_rate):
                    answered[index] = self._predict_waves([wave], [source], batch_size)[0]
                    continue
            except BadInputError as err:
                skipped.append(Skipped(str(err.path), err.reason))
                continue
            short.append((index, wave, source))
        batch = self._predict_waves([w for _, w, _ in short], [s for _, _, s in short], batch_size)
        answered.update({index: p for (index, _, _), p in zip(short, batch)})
        return BatchPrediction([answered[i] for i in sorted(answered)], skipped)

    def waveform(
        self, item: AudioInput, sample_rate: int | None = None, *, index: int = 0
    ) -> tuple[np.ndarray, str]:
        """``item`` as mono float32 at the model's rate, and how results name it."""
        if isinstance(item, (str, os.PathLike)):
            check_length(item, probe_duration(item), self.max_seconds)
            return load_audio(item, self.sample_rate), os.fspath(item)
        source = f"<samples {index}>"
        if not isinstance(item, np.ndarray):
            raise BadInputError(
                source, f"expected a file path or a NumPy waveform, got {type(item).__name__}"
            )
        if sample_rate is None:
            raise BadInputError(source, "a waveform needs its sample_rate")
        wave = np.asarray(item, dtype=np.float32)
        # (samples, channels) or (channels, samples): the shorter axis is channels
        if wave.ndim == 2:
            wave = wave.mean(axis=int(np.argmin(wave.shape)))
        if wave.ndim != 1 or wave.size == 0:
            raise BadInputError(
                source,
                f"expected mono (n,) or multichannel (n, channels) samples, got shape {item.shape}",
            )
        if not np.all(np.isfinite(wave)):
            raise BadInputError(source, "samples contain NaN or infinite values")
        check_length(source, wave.size / sample_rate, self.max_seconds)
        check_not_silent(source, wave)
        if sample_rate != self.sample_rate:
            wave = soxr.resample(wave, sample_rate, self.sample_rate, quality="HQ").astype(
                np.float32
            )
        return np.ascontiguousarray(wave), source

    def probabilities(self, waves: Sequence[np.ndarray], batch_size: int = 16) -> np.ndarray:
        """Waveforms at the model's rate -> calibrated probabilities ``(N, C)`` in input order
        (the backend batches them by length)."""
        return self.backend.probabilities(waves, batch_size)

    def timeline(
        self,
        path: str | os.PathLike,
        *,
        window: float = 3.0,
        hop: float = 1.0,
        min_segment: float = 1.0,
        vad_threshold: float = 0.5,
        context: float = 1.0,
        edge_db: float = 25.0,
        progress=None,
    ):
        """Emotion over time in a recording of any length (streamed): a
        :class:`emorec.inference.timeline.Timeline` with Silero VAD speech regions, per-window
        probabilities and smoothed segments (``context`` and ``edge_db``: see
        :mod:`emorec.inference.timeline`)."""
        from emorec.inference.timeline import build_timeline

        return build_timeline(
            self,
            path,
            window=window,
            hop=hop,
            min_segment=min_segment,
            vad_threshold=vad_threshold,
            context=context,
            edge_db=edge_db,
            progress=progress,
        )

    def stream(
        self,
        chunks,
        sample_rate: int = 16000,
        *,
        window: float = 3.0,
        hop: float = 1.0,
        min_segment: float = 1.0,
        vad_threshold: float = 0.5,
        context: float = 1.0,
        edge_db: float = 25.0,
    ):
        """Emotion while audio arrives: blocks of mono samples (float or int16, at
        ``sample_rate``) in, :class:`emorec.inference.streaming.StreamEvent` updates out as they
        are made (speech start and end, interim windows, each region's final segments, then the
        whole timeline, equal to :meth:`timeline` of the same audio). See
        :mod:`emorec.inference.streaming`."""
        from emorec.inference.streaming import stream_events

        return stream_events(
            self,
            chunks,
            sample_rate=sample_rate,
            window=window,
            hop=hop,
            min_segment=min_segment,
            vad_threshold=vad_threshold,
            context=context,
            edge_db=edge_db,
        )

    def answer(
        self, wave: np.ndarray, source: str = "<samples>", batch_size: int = 16
    ) -> Prediction:
        """One mono waveform at the model's rate -> its :class:`Prediction` (long input
        windowed)."""
        return self._predict_waves([wave], [source], batch_size)[0]

    def _predict_waves(
        self, waves: list[np.ndarray], sources: list[str], batch_size: int
    ) -> list[Prediction]:
        short = [i for i, w in enumerate(waves) if not is_long(w, self.sample_rate)]
        rows: dict[int, tuple[np.ndarray, str, tuple]] = {}
        if short:
            probs = self.probabilities([waves[i] for i in short], batch_size)
            rows.update({i: (row, CLIP, ()) for i, row in zip(short, probs)})
        for i, wave in enumerate(waves):
            if i not in rows:  # a long input without speech raises BadInputError
                long = windowed_answer(
                    sources[i],
                    wave,
                    self.sample_rate,
                    self.classes,
                    lambda cut: self.probabilities(cut, batch_size),
                )
                rows[i] = (long.probabilities, WINDOWED, tuple(long.segments))
        return [
            Prediction(
                label=self.classes[int(row.argmax())],
                probabilities={c: float(p) for c, p in zip(self.classes, row)},
                duration=round(len(wave) / self.sample_rate, 4),
                source=source,
                method=method,
                segments=segments,
            )
            for (row, method, segments), wave, source in zip(
                (rows[i] for i in range(len(waves))), waves, sources
            )
        ]


def load(model: str | os.PathLike | None = None, *, max_seconds: float = MAX_SECONDS) -> Recognizer:
    """A :class:`Recognizer` for ``model``: a fold directory, a one-fold run, ``model.safetensors``,
    an ``.onnx`` export (run by onnxruntime), or the name of a released model; ``None`` is the
    default released model."""
    if model is not None and os.fspath(model).endswith(".onnx"):
        from emorec.inference.onnx_runtime import OnnxPredictor

        onnx = OnnxPredictor(model)
        return Recognizer(
            onnx, model_id=onnx.meta.get("model_id", Path(model).stem), max_seconds=max_seconds
        )
    if model is None:
        model_dir = default_model_dir()
    elif not os.path.exists(model) and released_model_dir(str(model)) is not None:
        model_dir = released_model_dir(str(model))
    else:
        model_dir = Path(model)
    predictor = Predictor.load(model_dir)
    return Recognizer(
        predictor,
        model_id=predictor.meta.get("model_id", ""),
        model_dir=Path(model_dir),
        max_seconds=max_seconds,
    )
