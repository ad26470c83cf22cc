"""The synthetic corpus generator: layout, README, determinism, prepare."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emorec.corpora import generate_synthetic_corpus, prepare_corpus
from emorec.errors import ConfigError


def _small(root: Path, **kw) -> Path:
    return generate_synthetic_corpus(
        root, speakers=kw.pop("speakers", 3), clips_per_emotion=kw.pop("clips", 2), **kw
    )


def test_layout_counts_and_readme(tmp_path: Path) -> None:
    # CPU time, not wall time: other processes and a slow disk must not fail the test.
    start = time.process_time()
    root = generate_synthetic_corpus(tmp_path / "synth")
    elapsed = time.process_time() - start
    wavs = sorted(root.rglob("*.wav"))
    assert len(wavs) == 8 * 4 * 6
    assert (root / "speaker_03" / "synth-03-happy-05.wav") in wavs
    readme = (root / "README.txt").read_text()
    assert "SYNTHETIC" in readme and "not speech" in readme.lower()
    assert elapsed < 10  # ~1-2 s on a laptop
    info = sf.info(wavs[0])
    assert (info.samplerate, info.channels) == (16000, 1)
    durations = {round(sf.info(w).duration, 3) for w in wavs}
    assert len(durations) > 100 and min(durations) >= 1.0 and max(durations) <= 2.0


def test_deterministic_given_seed(tmp_path: Path) -> None:
    a = _small(tmp_path / "a", seed=7)
    b = _small(tmp_path / "b", seed=7)
    c = _small(tmp_path / "c", seed=8)
    names = sorted(p.relative_to(a) for p in a.rglob("*.wav"))
    assert names == sorted(p.relative_to(b) for p in b.rglob("*.wav"))
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert any((a / name).read_bytes() != (c / name).read_bytes() for name in names)


def test_prepare_synthetic(tmp_path: Path) -> None:
    root = _small(tmp_path / "s", emotions=("neutral", "sad", "fearful"), seconds=(0.5, 0.8))
    (root / "speaker_01" / "stray.wav").write_bytes(b"")
    result = prepare_corpus("synthetic", root, progress=False)
    assert len(result.clips) == 3 * 3 * 2
    clip = {c.clip_id: c for c in result.clips}["synthetic/synth-02-fearful-01"]
    assert (clip.corpus, clip.speaker, clip.gender, clip.emotion) == (
        "synthetic",
        "synthetic/02",
        "female",
        "fearful",
    )
    assert {c.gender for c in result.clips if c.speaker == "synthetic/01"} == {"male"}
    assert all(0.5 <= c.duration <= 0.8 for c in result.clips)
    assert len({c.content_hash for c in result.clips}) == len(result.clips)
    assert [Path(s.path).name for s in result.skipped] == ["stray.wav"]


def test_emotions_differ_in_level_and_pitch(tmp_path: Path) -> None:
    """The classes carry signal: angry is louder than sad on average (not a guarantee per clip)."""
    root = _small(tmp_path / "s", speakers=4, clips=4, emotions=("sad", "angry"))

    def rms(emotion: str) -> float:
        return float(
            np.mean(
                [np.sqrt(np.mean(sf.read(p)[0] ** 2)) for p in root.rglob(f"*-{emotion}-*.wav")]
            )
        )

    assert rms("angry") > 1.5 * rms("sad")


def test_bad_options(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="boredom"):
        generate_synthetic_corpus(tmp_path, emotions=("neutral", "boredom"))
    with pytest.raises(ConfigError, match="seconds"):
        generate_synthetic_corpus(tmp_path, seconds=(2.0, 1.0))
