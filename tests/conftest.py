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


def corpus_copy(name: str) -> Path:
    """A corpus fetched beside the checkout (``$EMOREC_CORPORA_DIR/NAME`` or ``../corpora/NAME``,
    see docs/CORPORA.md); the test skips when it is absent."""
    env = os.environ.get("EMOREC_CORPORA_DIR")
    path = (Path(env) if env else REPO.parent / "corpora") / name
    if not path.is_dir():
        pytest.skip(f"corpus copy {path.name} (../corpora/{name} or $EMOREC_CORPORA_DIR) is absent")
    return path


def write_tone(
    path: Path,
    *,
    seconds: float = 1.0,
    sr: int = 16000,
    freq: float = 220.0,
    channels: int = 1,
    amplitude: float = 0.3,
    seed: int = 0,
) -> Path:
    """A short harmonic tone with a little noise, as WAV or FLAC (by suffix)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    wave = amplitude * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)
    data = np.stack([wave] * channels, axis=1) if channels > 1 else wave
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data.astype(np.float32), sr)
    return path


def tiny_recipe_config(root: Path, name: str, **sections: dict) -> dict:
    """A seconds-long attn_crnn recipe over ``root/manifest.csv`` (cache ``root/cache``, runs
    ``root/runs``) on the synthetic corpus's 3 classes; each keyword updates that section."""
    config = {
        "base": str(REPO / "configs" / "base.yaml"),
        "data": {
            "manifest": str(root / "manifest.csv"),
            "cache": str(root / "cache"),
            "features": {"name": "logmel", "n_mels": 16},
            "workers": 1,
        },
        "split": {"scheme": "speaker_kfold", "k": 3, "val_speakers": 1},
        "model": {
            "name": "attn_crnn",
            "channels": [4],
            "time_pool": [2],
            "freq_pool": [2],
            "gru_hidden": 8,
            "attention_dim": 8,
            "dense": 8,
        },
        "trainer": {"epochs": 2, "batch_size": 8},
        "run": {"dir": str(root / "runs"), "name": name, "bootstrap": 20},
    }
    for section, values in sections.items():
        config[section] = {**config.get(section, {}), **values}
    return config


def pytest_sessionfinish(session, exitstatus):
    import cli_process

    cli_process.close()
