"""Emotion while audio arrives (emorec.inference.streaming, Recognizer.stream): the online speech
detector equals Silero's offline one, and a stream's final timeline equals ``Recognizer.timeline``
of the same audio."""

from __future__ import annotations

import numpy as np
import cli_process
import pytest
import soundfile as sf
import soxr
from silero_vad import get_speech_timestamps_from_probs
from test_api import export_random_model
from test_timeline import recording_of_clips, speech_bounds

import emorec
from emorec.media.audio import load_audio
from emorec.inference.speech_detector import SpeechDetector
from emorec.inference.streaming import EmotionStream
from emorec.inference.timeline import VAD_CHUNK, VAD_RATE


def detector_regions(probs: list[float], total: int) -> list[tuple[int, int]]:
    detector, regions = SpeechDetector(), []
    for p in probs:
        closed = detector.push(p)
        if closed:
            regions.append(closed)
    tail = detector.finish(total)
    return regions + ([tail] if tail else [])


@pytest.mark.parametrize("seed", range(40))
def test_the_online_detector_gives_silero_s_offline_regions(seed):
    rng = np.random.default_rng(seed)
    probs: list[float] = []
    while len(probs) < 600:  # runs of speech, pauses and in-between values (the hysteresis band)
        level = rng.choice([0.05, 0.4, 0.45, 0.6, 0.9])
        probs += list(np.clip(level + 0.1 * rng.standard_normal(int(rng.integers(1, 40))), 0, 1))
    total = len(probs) * VAD_CHUNK - int(rng.integers(0, VAD_CHUNK))
    expected = [
        (s["start"], s["end"])
        for s in get_speech_timestamps_from_probs(
            probs,
            sampling_rate=VAD_RATE,
            threshold=0.5,
            min_speech_duration_ms=250,
            min_silence_duration_ms=300,
            speech_pad_ms=50,
            audio_length_samples=total,
        )
    ]
    assert detector_regions(probs, total) == expected


def assert_same_timeline(streamed, offline) -> None:
    assert streamed.duration == offline.duration
    np.testing.assert_allclose(np.array(streamed.speech), np.array(offline.speech), atol=1e-9)
    assert [(a, b) for a, b, _ in streamed.windows] == [(a, b) for a, b, _ in offline.windows]
    for (_, _, p), (_, _, q) in zip(streamed.windows, offline.windows):
        np.testing.assert_allclose(p, q, atol=1e-5)
    assert [s.label for s in streamed.segments] == [s.label for s in offline.segments]
    np.testing.assert_allclose(
        [(s.start, s.end) for s in streamed.segments],
        [(s.start, s.end) for s in offline.segments],
        atol=1e-9,
    )


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    return emorec.load(export_random_model(tmp_path_factory.mktemp("stream") / "model"))


@pytest.mark.realdata
@pytest.mark.parametrize("block", [320, 4096, 160_000])
def test_a_stream_of_real_clips_ends_with_the_timeline_of_the_file(
    rec, shared_data, tmp_path, block
):
    files = sorted((shared_data / "ravdess-speech-16k").glob("Actor_0[5-8]/*.flac"))[::41][:5]
    recording_of_clips(files, tmp_path / "recording.flac", seed=1)
    # two clips back to back as well: one region over 3 s, so windows every hop inside it
    speech = []
    for file in files[:3]:
        clip = load_audio(file, 16000)
        a, b = speech_bounds(clip)
        speech.append(clip[int(a * 16000) : int(b * 16000)])
    wave = np.concatenate(
        [load_audio(tmp_path / "recording.flac", 16000)] + speech + [np.zeros(8000, np.float32)]
    )
    sf.write(tmp_path / "long.flac", wave, 16000)
    offline = rec.timeline(tmp_path / "long.flac")
    assert any(b - a > 3.5 for a, b in offline.speech)
    events = list(rec.stream(wave[i : i + block] for i in range(0, wave.size, block)))
    kinds = [e.kind for e in events]
    assert (
        kinds.count("speech_start")
        == kinds.count("speech_end")
        == kinds.count("segments")
        == len(offline.speech)
    )
    assert kinds[-1] == "end" and kinds.count("end") == 1
    assert_same_timeline(events[-1].timeline, offline)
    # each region's final segments come in order, and its start was announced before them
    finals = [e for e in events if e.kind == "segments"]
    assert [s for e in finals for s in e.segments] == events[-1].timeline.segments
    for start, final in zip([e for e in events if e.kind == "speech_start"], finals):
        assert start.time <= final.time
    # small blocks: an interim answer every second of speech, soon after its audio
    if block <= 4096:
        interim = [e for e in events if e.kind == "window"]
        assert len(interim) >= sum(int(b - a) for a, b in offline.speech)
        assert all(e.time - e.end < block / 16000 + 0.033 for e in interim)


@pytest.mark.realdata
def test_another_rate_and_int16_blocks_give_the_clips_segments(rec, shared_data, tmp_path):
    files = sorted((shared_data / "ravdess-speech-16k").glob("Actor_1[0-2]/*.flac"))[::29][:3]
    recording_of_clips(files, tmp_path / "recording.flac", seed=2)
    wave = soxr.resample(load_audio(tmp_path / "recording.flac", 16000), 16000, 48000)
    pcm = np.round(np.clip(wave, -1, 1) * 32767).astype(np.int16)
    events = list(
        rec.stream((pcm[i : i + 960] for i in range(0, pcm.size, 960)), sample_rate=48000)
    )
    assert len(events[-1].timeline.segments) >= len(files)
    assert len(events[-1].timeline.speech) == len(files)


def test_memory_stays_bounded_and_a_closed_stream_takes_no_more(rec):
    rng = np.random.default_rng(0)
    stream = EmotionStream(rec)
    held = []
    for second in range(90):  # 90 s of tone bursts and pauses, fed in 100 ms blocks
        t = np.arange(16000) / 16000
        loud = second % 5 < 3
        block = (
            0.3 * np.sin(2 * np.pi * (140 + 40 * np.sin(3 * t)) * t) * loud
            + 1e-3 * rng.standard_normal(16000)
        ).astype(np.float32)
        for i in range(0, 16000, 1600):
            stream.feed(block[i : i + 1600])
            held.append(stream._audio.size)
    events = stream.close()
    assert events[-1].kind == "end" and events[-1].timeline.duration == pytest.approx(90.0)
    assert max(held) < 10 * 16000  # never more than a few windows of audio, however long the stream
    with pytest.raises(RuntimeError):
        stream.feed(np.zeros(160, np.float32))


def test_events_serialise_to_json_types(rec):
    t = np.arange(4 * 16000) / 16000
    wave = np.concatenate(
        [np.zeros(8000), 0.3 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(7 * t)), np.zeros(32000)]
    )
    import json

    events = list(rec.stream([wave.astype(np.float32)]))
    payloads = [json.loads(json.dumps(e.to_dict())) for e in events]
    assert payloads[-1]["type"] == "end" and "timeline" in payloads[-1]
    assert all("type" in p and "time" in p for p in payloads)


@pytest.mark.realdata
def test_listen_plays_a_file_at_real_time_and_ends_with_the_timeline_s_segments(
    rec, shared_data, tmp_path
):
    import json
    import time

    model = rec.model_dir
    files = sorted((shared_data / "ravdess-speech-16k").glob("Actor_2[0-2]/*.flac"))[::31][:2]
    recording_of_clips(files, tmp_path / "talk.flac", seed=4)
    seconds = sf.info(tmp_path / "talk.flac").duration
    started = time.monotonic()
    proc = cli_process.emorec(
        "listen",
        "--simulate",
        tmp_path / "talk.flac",
        "--model",
        model,
        "--json",
        "--out",
        tmp_path / "live",
        check=False,
        timeout=300,
    )
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert took >= seconds  # played at real time, not decoded at once
    updates = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [u["type"] for u in updates].count("segments") == len(files) and updates[-1][
        "type"
    ] == "end"
    live = json.loads((tmp_path / "live" / "talk.json").read_text())
    offline = rec.timeline(tmp_path / "talk.flac")
    assert [s["label"] for s in live["segments"]] == [s.label for s in offline.segments]
    assert [u["label"] for u in updates if u["type"] == "window"]  # interim answers while it played


def test_listen_names_what_is_missing_in_one_line(rec, tmp_path):
    proc = cli_process.emorec(
        "listen",
        "--simulate",
        tmp_path / "none.wav",
        "--model",
        rec.model_dir,
        check=False,
        timeout=120,
        fresh=True,
    )  # a fresh interpreter, whose start-up notices would show
    assert proc.returncode != 0 and "none.wav" in proc.stderr and "not found" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 2  # the "listening to" line and the reason
    try:
        import sounddevice  # noqa: F401
    except (ImportError, OSError):
        proc = cli_process.emorec("listen", "--model", rec.model_dir, check=False, timeout=120)
        assert (
            proc.returncode != 0
            and "emorec[live]" in proc.stderr
            and "Traceback" not in proc.stderr
        )
