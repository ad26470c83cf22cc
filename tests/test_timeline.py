"""Emotion over time (emorec.inference.timeline, `emorec timeline`): windows, streaming cuts,
smoothing, the output files, and a recording made of real RAVDESS clips separated by silence and
noise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import cli_process
import pytest
import soundfile as sf
from test_api import export_random_model

import emorec
from emorec.media.audio import load_audio
from emorec.inference.timeline import (
    Timeline,
    context_bounds,
    cut_windows,
    plan_windows,
    smooth_segments,
    speech_edge,
)
from emorec.inference.timeline_files import to_vtt, write_timeline


def test_short_regions_are_one_window_and_long_ones_are_covered_by_hops():
    assert plan_windows([(1.0, 2.5)], window=3.0, hop=1.0) == [(1.0, 2.5)]
    windows = plan_windows([(10.0, 15.5)], window=3.0, hop=1.0)
    assert windows[0] == (10.0, 13.0) and windows[-1] == (12.5, 15.5)
    assert all(b - a == pytest.approx(3.0) for a, b in windows)
    assert all(b2 - b1 <= 1.0 + 1e-9 for (_, b1), (_, b2) in zip(windows, windows[1:]))


def test_windows_are_cut_from_a_stream_exactly_and_in_bounded_memory():
    rate, signal = (
        100,
        np.arange(10_000, dtype=np.float32),
    )  # 100 s at 100 Hz; sample value = its index
    windows = [(5.0, 8.0), (50.0, 52.5), (51.0, 54.0), (99.0, 101.0)]
    blocks = (signal[i : i + 250] for i in range(0, signal.size, 250))
    got = dict(cut_windows(blocks, windows, rate))
    assert sorted(got) == [0, 1, 2, 3]
    for index, (a, b) in enumerate(windows[:3]):
        np.testing.assert_array_equal(got[index], signal[int(a * rate) : int(b * rate)])
    # the last one stops at the recording's end
    np.testing.assert_array_equal(got[3], signal[9900:])


def test_regions_reach_into_their_context_but_never_past_halfway_to_a_neighbour():
    widened = context_bounds([(0.4, 2.0), (2.6, 5.0), (9.0, 9.5)], context=1.0, duration=9.8)
    assert widened == [(0.0, 2.3), (2.3, 6.0), (8.0, 9.8)]


def test_speech_edges_follow_the_sound_around_a_late_or_early_vad_edge():
    rate, rng = 16000, np.random.default_rng(0)
    # room tone 50 dB under the speech
    wave = 1e-4 * rng.standard_normal(6 * rate).astype(np.float32)
    # a breath, -20 dB
    wave[int(1.0 * rate) : int(1.15 * rate)] += 0.1 * rng.standard_normal(int(0.15 * rate))
    wave[int(1.55 * rate) : int(4.0 * rate)] += rng.standard_normal(int(2.45 * rate))  # the phrase
    # after 0.8 s: not the phrase
    wave[int(4.8 * rate) : int(5.0 * rate)] += 0.3 * rng.standard_normal(int(0.2 * rate))
    # VAD late: the breath joins
    assert speech_edge(wave, rate, 1.7, edge_db=25) == pytest.approx(1.0, abs=0.011)
    # VAD early: moved in
    assert speech_edge(wave, rate, 0.6, edge_db=25) == pytest.approx(1.0, abs=0.011)
    assert speech_edge(wave, rate, 3.8, edge_db=25, from_end=True) == pytest.approx(4.0, abs=0.011)
    # the breath is 20 dB down
    assert speech_edge(wave, rate, 1.7, edge_db=15) == pytest.approx(1.55, abs=0.011)


def test_smoothing_merges_short_label_flips_into_their_neighbours():
    classes = ["happy", "sad"]
    happy, sad = np.array([0.8, 0.2]), np.array([0.3, 0.7])
    windows = [(float(s), float(s) + 3, happy if s not in (4,) else sad) for s in range(0, 10)] + [
        (10.0, 13.0, sad)
    ]
    windows += [(float(s), float(s) + 3, sad) for s in range(11, 17)]
    segments = smooth_segments(windows, [(0.0, 19.0)], classes, hop=1.0, min_segment=2.5)
    assert [s.label for s in segments] == [
        "happy",
        "sad",
    ]  # the one sad window among happy ones is absorbed
    assert segments[0].start == 0.0 and segments[-1].end == 19.0
    assert segments[0].end == segments[1].start
    assert sum(segments[0].probabilities.values()) == pytest.approx(1.0)


def test_webvtt_captions_name_each_segment_with_its_confidence():
    from emorec.inference.timeline import Segment

    timeline = Timeline(
        source="x.wav",
        duration=3725.0,
        classes=["happy", "sad"],
        model_id="m",
        segments=[Segment(3723.5, 3724.25, "sad", {"happy": 0.1, "sad": 0.9})],
    )
    vtt = to_vtt(timeline)
    assert vtt.startswith("WEBVTT\n") and "01:02:03.500 --> 01:02:04.250\nsad (90%)" in vtt


def speech_bounds(
    wave: np.ndarray, rate: int = 16000, below_peak_db: float = 25.0
) -> tuple[float, float]:
    """Where a clip's speech starts and ends: its first and last 10 ms frame within 25 dB of its
    loudest."""
    frame = rate // 100
    power = np.mean(
        wave[: wave.size // frame * frame].reshape(-1, frame).astype(np.float64) ** 2, axis=1
    )
    loud = np.flatnonzero(power > power.max() * 10 ** (-below_peak_db / 10))
    return loud[0] * frame / rate, (loud[-1] + 1) * frame / rate


def recording_of_clips(files: list[Path], path: Path, seed: int = 0) -> list[tuple[float, float]]:
    """Clips separated by 1 s of silence, 1 s of low noise and 1 s of silence; their speech
    bounds."""
    rng = np.random.default_rng(seed)
    parts, bounds, t = [], [], 0.0
    for file in files:
        for gap in (np.zeros(16000), 0.003 * rng.standard_normal(16000), np.zeros(16000)):
            parts.append(gap.astype(np.float32))
            t += 1.0
        wave = load_audio(file, 16000)
        a, b = speech_bounds(wave)
        bounds.append((t + a, t + b))
        parts.append(wave)
        t += wave.size / 16000
    parts.append(np.zeros(16000, np.float32))
    sf.write(path, np.concatenate(parts), 16000)
    return bounds


def check_clip_segments(rec, files, bounds, timeline) -> None:
    """One segment per clip, its edges within 0.3 s of the clip's speech, its label the clip's
    alone."""
    for file, (a, b) in zip(files, bounds):
        found = [s for s in timeline.segments if s.start < b and s.end > a]
        assert len(found) == 1, (file.name, a, b, found)
        assert abs(found[0].start - a) <= 0.3 and abs(found[0].end - b) <= 0.3, (
            file.name,
            a,
            b,
            found[0],
        )
        assert found[0].label == rec.predict(file).label, file.name
    assert len(timeline.segments) == len(files)  # the noise between clips is not speech


@pytest.mark.realdata
def test_a_recording_of_real_clips_gets_one_segment_per_clip_and_the_cli_writes_every_format(
    shared_data, tmp_path
):
    rec = emorec.load(export_random_model(tmp_path / "model"))
    files = sorted((shared_data / "ravdess-speech-16k").glob("Actor_0[1-4]/*.flac"))[::37][:6]
    bounds = recording_of_clips(files, tmp_path / "recording.flac")
    check_clip_segments(rec, files, bounds, rec.timeline(tmp_path / "recording.flac"))
    cli_process.emorec(
        "timeline",
        tmp_path / "recording.flac",
        "--model",
        tmp_path / "model",
        "--out",
        tmp_path / "out",
        "--quiet",
        timeout=300,
    )
    assert sorted(p.suffix for p in (tmp_path / "out").iterdir()) == [
        ".csv",
        ".json",
        ".png",
        ".vtt",
    ]
    data = json.loads((tmp_path / "out" / "recording.json").read_text())
    assert len(data["segments"]) == len(files) and data["settings"]["vad"] == "silero-vad"
    assert (tmp_path / "out" / "recording.csv").read_text().count("\n") == len(files) + 1


def test_an_unreadable_recording_is_skipped_with_its_reason(tmp_path):
    model = export_random_model(tmp_path / "model")
    (tmp_path / "bad.wav").write_bytes(b"RIFF....WAVE")
    proc = cli_process.emorec(
        "timeline",
        tmp_path / "bad.wav",
        "--model",
        model,
        "--out",
        tmp_path / "out",
        "--quiet",
        check=False,
        timeout=300,
    )
    assert proc.returncode == 2 and "bad.wav" in proc.stderr and "unreadable" in proc.stderr
    write_timeline(
        Timeline(source="none.wav", duration=1.0, classes=["a", "b"]), tmp_path / "empty"
    )
    assert (tmp_path / "empty" / "none.vtt").read_text().startswith("WEBVTT")


@pytest.mark.realdata
def test_the_released_model_labels_each_clip_of_a_recording_as_it_labels_the_clip_alone(
    shared_data, tmp_path
):
    from emorec.inference.released import DEFAULT, released_model_dir

    if released_model_dir(DEFAULT) is None:
        pytest.skip(f"no released model {DEFAULT} in this checkout")
    rec = emorec.load()
    files = sorted((shared_data / "ravdess-speech-16k").glob("Actor_1[5-9]/*.flac"))[::23][:8]
    bounds = recording_of_clips(files, tmp_path / "recording.flac", seed=3)
    check_clip_segments(rec, files, bounds, rec.timeline(tmp_path / "recording.flac"))


def test_the_png_draws_probabilities_over_speech_only_and_segments_as_a_band(tmp_path):
    from emorec.inference.timeline import Segment
    from emorec.inference.timeline_files import plot_timeline, speech_lines

    p = np.array([0.7, 0.3])
    windows = [(0.5, 2.0, p), (9.5, 12.5, p), (10.5, 13.5, 1 - p), (11.0, 14.0, 1 - p)]
    segments = [
        Segment(0.8, 2.0, "a", {"a": 0.7, "b": 0.3}),
        Segment(10.0, 14.0, "b", {"a": 0.4, "b": 0.6}),
    ]
    timeline = Timeline(
        source="x.wav",
        duration=20.0,
        classes=["a", "b"],
        speech=[(0.8, 2.0), (10.0, 14.0)],
        windows=windows,
        segments=segments,
    )
    lines = speech_lines(timeline)
    # one line per region: nothing drawn over the 8 s of silence between them
    assert len(lines) == 2
    for (x, probs), (a, b) in zip(lines, timeline.speech):
        assert x.min() >= a and x.max() <= b and probs.shape == (x.size, 2)
    np.testing.assert_array_equal(lines[0][0], [0.8, 2.0])  # one window: level across its region
    assert plot_timeline(timeline, tmp_path / "t.png").stat().st_size > 5_000
