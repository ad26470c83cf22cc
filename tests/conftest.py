"""Shared fixtures. Tests generate their own data; real-data tests skip without ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """``$EMOREC_DATA_DIR``, else ``../shared/data`` beside the repository, if it exists."""
    env = os.environ.get("EMOREC_DATA_DIR")
    candidate = Path(env) if env else REPO.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


@pytest.fixture
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("real data folder (../shared/data or $EMOREC_DATA_DIR) is absent")
    return path


def write_tone(path: Path, *, seconds: float = 1.0, sr: int = 16000, freq: float = 220.0,
               channels: int = 1, amplitude: float = 0.3, seed: int = 0) -> Path:
    """A short harmonic tone with a little noise, as WAV or FLAC (by suffix)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    wave = amplitude * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)
    data = np.stack([wave] * channels, axis=1) if channels > 1 else wave
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data.astype(np.float32), sr)
    return path
