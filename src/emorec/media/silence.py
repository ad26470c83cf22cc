"""The one rule for silent input, shared by audio files (``media``) and video tracks (``video``)."""

from __future__ import annotations

import os

import numpy as np

from emorec.errors import BadInputError

#: Peak amplitude below which a recording counts as silent (-90 dBFS).
SILENCE_PEAK = 3e-5


def check_not_silent(path: str | os.PathLike, mono: np.ndarray) -> None:
    """:class:`BadInputError` if the mono waveform ``mono`` never rises above -90 dBFS."""
    if float(np.max(np.abs(mono))) < SILENCE_PEAK:
        raise BadInputError(path, "silent audio (peak below -90 dBFS)")
