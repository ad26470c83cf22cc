"""Input longer than a training clip is windowed over its speech, alike in every entry point."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import REPO
from test_api import CLASSES, export_random_model, voice

import emorec
from emorec.errors import BadInputError
from emorec.inference.long_input import CLIP, WINDOWED, windowed_answer


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return export_random_model(tmp_path_factory.mktemp("long") / "model")


def test_the_whole_answer_is_the_duration_weighted_mean_of_the_speech_segments(monkeypatch):
    """Speech 0.5-4.5 s (says happy) and 8-9 s (says sad): 4 s against 1 s, the 3 s between not
    heard."""
    import emorec.inference.timeline as timeline

    monkeypatch.setattr(
        timeline, "speech_regions", lambda probs, total, threshold: [(0.5, 4.5), (8.0, 9.0)]
    )
    wave = voice(12.0, 150)
    heard: list[int] = []

    def probabilities_of(waves):
        heard.extend(w.size for w in waves)
        rows = np.zeros((len(waves), len(CLASSES)))
        # windows of the first region are longer than 1.5 s, the second's not
        for row, w in zip(rows, waves):
            row[CLASSES.index("happy" if w.size > 2.5 * 16000 else "sad")] = 1.0
        return rows

    answer = windowed_answer("x.wav", wave, 16000, CLASSES, probabilities_of, context=0.0)
    assert [(s.start, s.end, s.label) for s in answer.segments] == [
        (0.5, 4.5, "happy"),
        (8.0, 9.0, "sad"),
    ]
    assert answer.probabilities[CLASSES.index("happy")] == pytest.approx(0.8)
    assert answer.probabilities[CLASSES.index("sad")] == pytest.approx(0.2)
    # 3 s windows, never the whole
    assert answer.speech_seconds == pytest.approx(5.0) and max(heard) == 3 * 16000


def test_long_input_without_speech_is_refused_and_a_batch_goes_on(model_dir, tmp_path):
    rec = emorec.load(model_dir)
    tone = tmp_path / "tone.wav"
    sf.write(tone, voice(9.0, 150), 16000)  # a synthetic tone is not speech to the VAD
    with pytest.raises(BadInputError, match="no speech found in 9 s of audio"):
        rec.predict(tone)
    short = tmp_path / "short.wav"
    sf.write(short, voice(2.0, 200), 16000)
    batch = rec.predict([tone, short])
    assert [p.source for p in batch] == [str(short)] and batch.predictions[0].method == CLIP
    assert len(batch.skipped) == 1 and "no speech" in batch.skipped[0].reason


def _recording(shared_data: Path, out: Path) -> Path:
    """About 14 s: four RAVDESS clips of one actor end to end (neutral, happy, sad, angry)."""
    names = [
        "03-01-01-01-01-01-03",
        "03-01-03-02-01-01-03",
        "03-01-04-02-02-01-03",
        "03-01-05-02-01-02-03",
    ]
    waves = [
        sf.read(shared_data / "ravdess-speech-16k" / "Actor_03" / f"{n}.flac", dtype="float32")[0]
        for n in names
    ]
    sf.write(out, np.concatenate(waves), 16000)
    return out


@pytest.mark.realdata
def test_predict_the_api_and_the_server_give_one_windowed_answer(model_dir, shared_data, tmp_path):
    from fastapi.testclient import TestClient

    from emorec.serve.app import create_app
    from test_corpora import emorec_cli

    recording = _recording(shared_data, tmp_path / "four.wav")
    by_api = emorec.load(model_dir).predict(recording)
    assert by_api.method == WINDOWED and len(by_api.segments) >= 1 and by_api.duration > 12
    proc = emorec_cli(
        "predict", model_dir, recording, "--segments", "--out", tmp_path / "p.csv", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert WINDOWED in proc.stdout and "speech segment" in proc.stdout
    (row,) = json.loads((tmp_path / "p.json").read_text())["predictions"]
    assert row["method"] == WINDOWED and len(row["segments"]) == len(by_api.segments)
    with TestClient(create_app(model_dir)) as client:
        served = client.post("/v1/predict", content=recording.read_bytes()).json()
    assert served["method"] == WINDOWED and len(served["segments"]) == len(by_api.segments)
    for name in CLASSES:
        assert row[name] == pytest.approx(by_api.probabilities[name], abs=1e-4)
        assert served["probabilities"][name] == pytest.approx(by_api.probabilities[name], abs=1e-4)


def test_predict_refuses_input_over_ten_minutes(model_dir, tmp_path):
    from test_corpora import emorec_cli

    sf.write(tmp_path / "long.flac", np.zeros(16000 * 601, np.float32) + 1e-3, 16000)
    sf.write(tmp_path / "ok.wav", voice(2.0, 200), 16000)
    proc = emorec_cli(
        "predict", model_dir, tmp_path / "long.flac", tmp_path / "ok.wav", cwd=tmp_path
    )
    assert proc.returncode == 0 and "ok.wav" in proc.stdout
    assert "long.flac: 601 s of audio is longer than the limit of 600 s" in proc.stderr.replace(
        "\n", ""
    )


def test_page_shows_the_segments_of_the_predict_answer():
    page = (REPO / "src" / "emorec" / "web" / "app.js").read_text()
    assert "/v1/timeline" not in page and "renderTimeline(result)" in page
