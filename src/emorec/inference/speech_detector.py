"""Speech regions from Silero VAD one probability at a time: the detector behind
``Recognizer.stream`` and ``emorec listen``, equal to Silero's whole-file rule."""

from __future__ import annotations

from emorec.inference.timeline import VAD_CHUNK, VAD_RATE


class SpeechDetector:
    """Silero's ``get_speech_timestamps_from_probs`` (no maximum speech length) fed one VAD
    probability per 512 samples at 16 kHz; regions in samples, padded as Silero pads them (the
    regions are always over ``min_silence`` apart, so each side simply gets ``pad``)."""

    def __init__(
        self,
        *,
        threshold: float = 0.5,
        min_speech: float = 0.25,
        min_silence: float = 0.3,
        pad: float = 0.05,
    ):
        # the same expressions as Silero's, so the float thresholds are bit-equal
        self.threshold, self.neg_threshold = threshold, max(threshold - 0.15, 0.01)
        self.min_speech = VAD_RATE * int(min_speech * 1000) / 1000
        self.min_silence = VAD_RATE * int(min_silence * 1000) / 1000
        self.pad = VAD_RATE * int(pad * 1000) / 1000
        self.steps = 0
        self.triggered, self.start, self.temp_end = False, 0, 0

    def push(self, prob: float) -> tuple[int, int] | None:
        """The padded ``(start, end)`` samples of a region that this probability closes, else
        ``None``."""
        cur = VAD_CHUNK * self.steps
        self.steps += 1
        if prob >= self.threshold and self.temp_end:
            self.temp_end = 0
        if prob >= self.threshold and not self.triggered:
            self.triggered, self.start = True, cur
            return None
        if prob < self.neg_threshold and self.triggered:
            if not self.temp_end:
                self.temp_end = cur
            if cur - self.temp_end < self.min_silence:
                return None
            start, end = self.start, self.temp_end
            self.triggered, self.temp_end = False, 0
            if end - start > self.min_speech:
                return self.padded_start(start), int(end + self.pad)
        return None

    def padded_start(self, start: int) -> int:
        return int(max(0, start - self.pad))

    def confirmed_start(self) -> int | None:
        """The padded start of the open region once it is sure to be kept (longer than
        ``min_speech``)."""
        if not self.triggered:
            return None
        reached = self.temp_end or VAD_CHUNK * (self.steps - 1)
        return self.padded_start(self.start) if reached - self.start > self.min_speech else None

    def earliest_next_start(self) -> float:
        """A lower bound, in samples, on the padded start of any region not yet confirmed."""
        return (self.start if self.triggered else VAD_CHUNK * self.steps) - self.pad

    def finish(self, total: int) -> tuple[int, int] | None:
        """At the end of ``total`` samples: the open region, if it is long enough."""
        if self.triggered and total - self.start > self.min_speech:
            self.triggered = False
            return self.padded_start(self.start), total
        return None
