"""Where live audio comes from for ``emorec listen``: the default microphone, or a file played at
real time (``--simulate``), as blocks of mono float32 samples at 16 kHz.

The microphone needs ``sounddevice`` (PortAudio), the one library that records on Linux, macOS and
Windows alike; it is the optional ``live`` extra, so nothing else in emorec pulls in a native audio
stack.
"""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Iterator

import numpy as np

from emorec.errors import EmorecError
from emorec.media.audio import stream_audio

RATE = 16000


def played_file(
    path: str | os.PathLike, *, block_seconds: float = 0.1, speed: float = 1.0
) -> Iterator[np.ndarray]:
    """``path`` decoded in blocks of ``block_seconds``, each given out when a listener would have
    heard it at ``speed`` times real time (0: as fast as it decodes)."""
    size = max(1, int(round(block_seconds * RATE)))
    started, sent = time.monotonic(), 0
    pending = np.zeros(0, np.float32)
    for decoded in stream_audio(path, RATE, block_seconds=5.0):
        pending = np.concatenate([pending, decoded])
        while pending.size >= size:
            block, pending = pending[:size], pending[size:]
            sent += block.size
            if speed > 0:
                time.sleep(max(0.0, started + sent / RATE / speed - time.monotonic()))
            yield block
    if pending.size:
        yield pending


def microphone(
    *, block_seconds: float = 0.1, device: str | int | None = None
) -> Iterator[np.ndarray]:
    """Blocks from an input device (default: the system's) until the consumer stops (Ctrl-C)."""
    try:
        import sounddevice
    except (ImportError, OSError) as problem:  # OSError: the package is there, PortAudio is not
        raise EmorecError(
            f"the microphone needs sounddevice and PortAudio ({problem}): pip "
            "install 'emorec[live]', "
            "or play a file with --simulate FILE"
        ) from None
    blocks: queue.Queue[np.ndarray] = queue.Queue()

    def arrived(data, frames, when, status) -> None:  # noqa: ARG001 - PortAudio's callback signature
        blocks.put(data[:, 0].copy())

    try:
        with sounddevice.InputStream(
            samplerate=RATE,
            channels=1,
            dtype="float32",
            device=device,
            blocksize=int(block_seconds * RATE),
            callback=arrived,
        ):
            while True:
                yield blocks.get()
    except sounddevice.PortAudioError as problem:
        raise EmorecError(f"cannot record from the microphone: {problem}") from None
