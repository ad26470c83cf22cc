"""The Python API (emorec.load / Recognizer.predict) on a small randomly initialised model exported
the way training exports one; the released model's own checks are in test_released.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import save_file

import emorec
from emorec.inference.api import BatchPrediction, Prediction
from emorec.data import Normalizer
from emorec.errors import BadInputError, EmorecError
from emorec.features.spectral import LogMel
from emorec.models import create_model

CLASSES = ["neutral", "happy", "sad", "angry"]
KWARGS = {
    "channels": [4, 8],
    "time_pool": [2, 2],
    "freq_pool": [2, 2],
    "input_channels": 3,
    "gru_hidden": 8,
    "attention_heads": 2,
    "dense": 8,
}


def voice(seconds: float, f0: float, sr: int = 16000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    wave = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 12)) * (
        0.2 + 0.1 * np.sin(2 * np.pi * 3 * t)
    )
    return (0.2 * wave + 0.002 * rng.standard_normal(t.size)).astype(np.float32)


def export_random_model(out: Path, temperature: float = 1.7) -> Path:
    """``out/model.safetensors`` + ``model.json``: the format `emorec train` exports, random
    weights."""
    torch.manual_seed(0)
    spec = {"name": "logmel", "n_mels": 16, "deltas": True, "trim_db": 40}
    model = create_model("attn_crnn_v2", num_classes=len(CLASSES), audio_dim=48, **KWARGS).eval()
    extractor = LogMel(n_mels=16, deltas=True, trim_db=40)
    frames = [extractor.extract(voice(1.5, f, seed=i)) for i, f in enumerate((110, 150, 220, 300))]
    out.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors")
    )
    meta = {
        "format": 1,
        "model": "attn_crnn_v2",
        "model_kwargs": KWARGS,
        "num_classes": len(CLASSES),
        "audio_dim": 48,
        "video_dim": None,
        "class_names": CLASSES,
        "features": {"audio": spec},
        "normalizers": {
            "audio": Normalizer.fit(frames, center="level", level_columns=16).to_dict()
        },
        "speaker_norm": False,
        "calibration": {"temperature": temperature},
    }
    (out / "model.json").write_text(json.dumps(meta))
    return out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return export_random_model(tmp_path_factory.mktemp("api") / "model")


def test_a_file_a_waveform_and_another_rate_give_the_same_prediction(model_dir, tmp_path):
    rec = emorec.load(model_dir)
    wave = voice(2.0, 180)
    sf.write(tmp_path / "clip.wav", wave, 16000, subtype="FLOAT")
    from_file = rec.predict(tmp_path / "clip.wav")
    assert (
        isinstance(from_file, Prediction)
        and from_file.label in CLASSES
        and from_file.duration == 2.0
    )
    assert sum(from_file.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    from_samples = rec.predict(wave, sample_rate=16000)
    assert from_samples.probabilities == pytest.approx(from_file.probabilities, abs=1e-6)
    import soxr

    at_44k = soxr.resample(wave, 16000, 44100, quality="HQ")
    # stereo at 44.1 kHz
    resampled = rec.predict(np.stack([at_44k, at_44k], axis=1), sample_rate=44100)
    assert resampled.probabilities == pytest.approx(from_file.probabilities, abs=0.02)


def test_probabilities_are_the_calibrated_ones(model_dir, tmp_path):
    hot = export_random_model(tmp_path / "hot", temperature=1.0)
    wave = voice(1.5, 200)
    calibrated, raw = (
        emorec.load(model_dir).predict(wave, 16000),
        emorec.load(hot).predict(wave, 16000),
    )
    # softmax(z / T) = softmax(log softmax(z) / T)
    logits_ratio = np.log(list(raw.probabilities.values())) / 1.7
    expected = np.exp(logits_ratio) / np.exp(logits_ratio).sum()
    np.testing.assert_allclose(list(calibrated.probabilities.values()), expected, atol=1e-5)


def test_a_clip_predicts_the_same_alone_and_in_a_batch_and_bad_inputs_are_listed(
    model_dir, tmp_path
):
    rec = emorec.load(model_dir)
    waves = [
        voice(s, f, seed=i)
        for i, (s, f) in enumerate([(0.6, 120), (3.5, 250), (1.2, 170), (2.4, 320), (0.9, 140)])
    ]
    paths = []
    for i, wave in enumerate(waves):
        paths.append(tmp_path / f"c{i}.flac")
        sf.write(paths[-1], wave, 16000)
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    sf.write(tmp_path / "silent.wav", np.zeros(8000, np.float32), 16000)
    inputs = [
        paths[0],
        tmp_path / "broken.wav",
        *paths[1:],
        tmp_path / "silent.wav",
        tmp_path / "missing.wav",
    ]
    batch = rec.predict(inputs, batch_size=3)
    assert isinstance(batch, BatchPrediction) and [p.source for p in batch] == [
        str(p) for p in paths
    ]
    assert [Path(s.source).name for s in batch.skipped] == [
        "broken.wav",
        "silent.wav",
        "missing.wav",
    ]
    assert all(s.reason for s in batch.skipped)
    for path, in_batch in zip(paths, batch):
        alone = rec.predict(path)
        assert alone.label == in_batch.label
        assert alone.probabilities == pytest.approx(in_batch.probabilities, abs=1e-5)


def test_bad_and_overlong_inputs_are_refused_with_a_reason(model_dir, tmp_path):
    rec = emorec.load(model_dir, max_seconds=5)
    long_file = tmp_path / "long.wav"
    sf.write(long_file, np.zeros(16000 * 6, np.float32), 16000)
    with pytest.raises(BadInputError, match="longer than the limit of 5 s: use `emorec timeline`"):
        rec.predict(long_file)  # refused from its header, before decoding
    for bad, reason in [
        (np.full(1000, np.nan, np.float32), "NaN"),
        (np.zeros(1000, np.float32), "silent"),
        (np.zeros((2, 3, 4), np.float32), "shape"),
        (voice(6, 100), "longer than"),
    ]:
        with pytest.raises(BadInputError, match=reason):
            rec.predict(bad, sample_rate=16000)
    with pytest.raises(BadInputError, match="sample_rate"):
        rec.predict(voice(1, 100))
    with pytest.raises(EmorecError, match="no trained model"):
        emorec.load(tmp_path)


def test_the_api_runs_from_a_plain_script(model_dir, tmp_path):
    """No ``if __name__ == "__main__"`` guard: nothing in predict starts a process."""
    sf.write(tmp_path / "clip.wav", voice(1.0, 200), 16000)
    script = tmp_path / "script.py"
    script.write_text(
        "import emorec\n"
        f"rec = emorec.load({str(model_dir)!r})\n"
        f"print(rec.predict({str(tmp_path / 'clip.wav')!r}).label)\n"
    )
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() in CLASSES
