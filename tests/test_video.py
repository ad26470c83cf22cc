"""Video decoding (PyAV): containers, frame-rate resampling, audio tracks, bad files, corpora."""

from __future__ import annotations

import dataclasses
import os
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from conftest import write_tone
from emorec.corpora import prepare_corpus
from emorec.errors import BadInputError, EmorecError, LeakageError
from emorec.features.base import create_extractor
from emorec.features.extract import extract_features
from emorec.media.audio import load_audio
from emorec.corpora.splits import Split, check_leakage
from emorec.media.video import (
    NO_AUDIO_TRACK,
    NoAudioTrackError,
    import_av,
    iter_frames,
    load_video_audio,
    read_audio_track,
    read_frames,
    video_info,
)

av = pytest.importorskip("av")

CODECS = {  # suffix -> (video codec, audio codec): what each container usually carries
    ".mp4": ("mpeg4", "aac"),
    ".flv": ("flv", "libmp3lame"),  # CREMA-D's VideoFlash: Sorenson H.263 + MP3
    ".avi": ("mpeg4", "pcm_s16le"),
    ".mov": ("libx264", "aac"),
}


def write_video(
    path: Path,
    frames: np.ndarray,
    *,
    fps: float = 25.0,
    times: np.ndarray | None = None,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    faststart: bool = False,
    rotation: float | None = None,
    audio_start: float = 0.0,
    audio_codec: str | None = None,
) -> Path:
    """Encode ``frames`` (T, H, W, 3) uint8 (H, W even) with PyAV; ``times`` (T,) seconds gives
    a variable frame rate; ``audio`` (n,) or (n, channels) float in [-1, 1] adds an audio track
    starting ``audio_start`` seconds after the first picture; ``rotation`` stores a display matrix
    (degrees counter-clockwise, as phones do for portrait video)."""
    vcodec, acodec = CODECS[path.suffix.lower()]
    acodec = audio_codec or acodec
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(vcodec, rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = 4_000_000  # good quality: the tests look at faces, not at codec artefacts
        if times is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        astream = None
        if audio is not None:
            audio = audio[:, None] if audio.ndim == 1 else audio
            astream = container.add_stream(acodec, rate=sample_rate)
            astream.layout = "mono" if audio.shape[1] == 1 else "stereo"
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            if times is not None:
                frame.pts, frame.time_base = int(round(times[i] * 1000)), Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
        if astream is not None:
            planes = np.ascontiguousarray(audio.T.astype(np.float32))  # (channels, n)
            frame = av.AudioFrame.from_ndarray(planes, format="fltp", layout=astream.layout.name)
            frame.sample_rate, frame.pts = sample_rate, int(round(audio_start * sample_rate))
            container.mux(astream.encode(frame))
            container.mux(astream.encode())
    return path


def level_frames(levels: list[int], height: int = 48, width: int = 64) -> np.ndarray:
    """Uniform grey frames, one level each: a decoded frame's mean tells which one it is."""
    return np.stack([np.full((height, width, 3), level, np.uint8) for level in levels])


def tone(
    seconds: float, sample_rate: int = 16000, freq: float = 440.0, amplitude: float = 0.3
) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def noise_frames(n: int, height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, height, width, 3), dtype=np.uint8)


def dominant_frequency(wave: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(wave.size)))
    return float(np.fft.rfftfreq(wave.size, 1 / sample_rate)[np.argmax(spectrum)])


# -- containers and the audio track ------------------------------------------------------
@pytest.mark.parametrize("suffix", list(CODECS))
def test_every_container_gives_frames_and_audio(tmp_path: Path, suffix: str) -> None:
    rate = 22050 if suffix == ".flv" else 16000
    path = write_video(
        tmp_path / f"clip{suffix}",
        noise_frames(20),
        fps=25,
        audio=tone(0.8, rate),
        sample_rate=rate,
    )
    info = video_info(path)
    assert (info.width, info.height, info.fps) == (64, 48, 25.0)
    assert info.has_audio and info.audio_sample_rate == rate and info.audio_channels == 1
    assert info.duration == pytest.approx(0.8, abs=0.06)
    native = read_frames(path)
    assert native.frames.shape == (20, 48, 64, 3) and native.frames.dtype == np.uint8
    np.testing.assert_allclose(native.times, np.arange(20) / 25, atol=1e-6)
    wave = load_audio(path, 16000)  # media.load_audio falls back to PyAV for video files
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert 0.75 * 16000 <= wave.size <= 0.9 * 16000
    assert dominant_frequency(wave, 16000) == pytest.approx(440, abs=5)


def test_stereo_track_is_averaged_and_resampled(tmp_path: Path) -> None:
    left, right = tone(1.0, 44100, 440), tone(1.0, 44100, 440, amplitude=0.1)
    path = write_video(
        tmp_path / "stereo.avi",
        noise_frames(10),
        audio=np.stack([left, right], 1),
        sample_rate=44100,
    )
    samples, rate = read_audio_track(path)
    assert rate == 44100 and samples.shape == (44100, 2)
    wave = load_video_audio(path, 16000)
    assert wave.size == 16000
    assert np.abs(wave).max() == pytest.approx(0.2, abs=0.01)  # the mean of 0.3 and 0.1


def test_no_audio_track_is_a_distinct_outcome(tmp_path: Path) -> None:
    path = write_video(tmp_path / "mute.mp4", noise_frames(10))
    assert not video_info(path).has_audio and video_info(path).audio_channels == 0
    with pytest.raises(NoAudioTrackError) as err:
        load_audio(path)
    assert isinstance(err.value, BadInputError) and err.value.reason == NO_AUDIO_TRACK
    assert read_frames(path).frames.shape[0] == 10  # the pictures are still fine


def test_audio_extractor_reads_video_files_and_lists_mute_ones(tmp_path: Path) -> None:
    from emorec.corpora.manifest import Clip

    talking = write_video(tmp_path / "talking.mp4", noise_frames(25), audio=tone(1.0))
    mute = write_video(tmp_path / "mute.mp4", noise_frames(25))
    clips = [
        Clip(
            clip_id=p.stem,
            path=str(p),
            corpus="t",
            speaker="s",
            emotion="neutral",
            modality="audio_video",
            content_hash=p.stem * 8,
        )
        for p in (talking, mute)
    ]
    result = extract_features(
        clips, create_extractor("logmel"), tmp_path / "cache", workers=0, progress=False
    )
    assert result.extracted == 1
    assert [(Path(s.path).name, s.reason) for s in result.skipped] == [("mute.mp4", NO_AUDIO_TRACK)]


# -- frame rates ---------------------------------------------------------------------------
def _indices(frames: np.ndarray) -> list[int]:
    """Which level frame (level = 10 + 20 i) each decoded frame is."""
    return [int(round((float(f.mean()) - 10) / 20)) for f in frames]


def test_resampling_to_a_lower_and_a_higher_rate(tmp_path: Path) -> None:
    path = write_video(
        tmp_path / "ramp.mp4", level_frames([10 + 20 * i for i in range(10)]), fps=10
    )  # 1.0 s
    assert _indices(read_frames(path).frames) == list(range(10))
    low = read_frames(path, fps=5, format="gray")
    assert low.frames.shape == (5, 48, 64) and low.fps == 5.0
    assert _indices(low.frames) == [0, 2, 4, 6, 8]
    np.testing.assert_allclose(low.times, np.arange(5) / 5)
    high = read_frames(path, fps=20)
    assert _indices(high.frames) == [i // 2 for i in range(20)]
    repeated = [frame for _t, frame in iter_frames(path, fps=20)]
    assert repeated[0] is repeated[1] and repeated[1] is not repeated[2]  # held frames are shared


def test_variable_frame_rate_is_resampled_by_timestamp(tmp_path: Path) -> None:
    # gaps of 40 ms and 220-360 ms
    times = np.array([0.0, 0.04, 0.08, 0.3, 0.34, 0.7, 0.74, 0.78, 0.82, 0.86])
    path = write_video(
        tmp_path / "vfr.mp4", level_frames([10 + 20 * i for i in range(10)]), times=times
    )
    native = read_frames(path)
    np.testing.assert_allclose(native.times, times, atol=1e-3)
    grid = read_frames(path, fps=25)
    expected = [
        int(np.searchsorted(times, t + 1e-6) - 1) for t in grid.times
    ]  # last frame shown at t
    assert _indices(grid.frames) == expected
    assert grid.times[-1] == pytest.approx(0.88, abs=0.05)
    assert len(grid.times) == pytest.approx(0.9 * 25, abs=2)


def test_fps_must_be_positive(tmp_path: Path) -> None:
    path = write_video(tmp_path / "a.mp4", noise_frames(3))
    with pytest.raises(EmorecError, match="fps"):
        read_frames(path, fps=0)


# -- bad files -------------------------------------------------------------------------------
def test_missing_empty_and_garbage_files(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="file not found"):
        read_frames(tmp_path / "nope.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(BadInputError, match="zero-length"):
        video_info(tmp_path / "empty.mp4")
    (tmp_path / "garbage.avi").write_bytes(os.urandom(4000))
    with pytest.raises(BadInputError, match="unreadable video"):
        read_frames(tmp_path / "garbage.avi")
    with pytest.raises(BadInputError, match="unreadable video"):
        load_audio(tmp_path / "garbage.avi")


@pytest.mark.parametrize(
    "suffix,faststart", [(".mp4", False), (".mp4", True), (".avi", False), (".flv", False)]
)
def test_truncated_files_are_reported(tmp_path: Path, suffix: str, faststart: bool) -> None:
    path = write_video(tmp_path / f"full{suffix}", noise_frames(75), faststart=faststart)  # 3 s
    data = path.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInputError, match="unreadable video|truncated"):
        read_frames(cut)


def test_longer_audio_is_not_mistaken_for_truncated_video(tmp_path: Path) -> None:
    path = write_video(
        tmp_path / "long_audio.flv",
        noise_frames(25),
        fps=25,
        audio=tone(1.8, 22050),
        sample_rate=22050,
    )  # the .flv header only gives the longest stream's duration
    assert read_frames(path).frames.shape[0] == 25


def test_corrupt_middle_of_an_mp4_is_reported(tmp_path: Path) -> None:
    path = write_video(tmp_path / "full.mp4", noise_frames(40), faststart=True)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + len(data) // 4] = (
        np.random.default_rng(1).integers(0, 256, len(data) // 4, dtype=np.uint8).tobytes()
    )
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    with pytest.raises(BadInputError, match="corrupt|truncated|unreadable"):
        read_frames(bad)


def write_sound_only_mp4(path: Path) -> Path:
    """An .mp4 with half a second of AAC sound and no video stream."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(tone(0.5)[None, :], format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def test_audio_only_container_has_no_video_stream(tmp_path: Path) -> None:
    path = write_sound_only_mp4(tmp_path / "sound.mp4")
    with pytest.raises(BadInputError, match="no video stream"):
        read_frames(path)
    assert load_video_audio(path).size > 0.4 * 16000


def test_missing_pyav_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(EmorecError, match=r"pip install emorec\[video\]"):
        import_av()


# -- corpora -----------------------------------------------------------------------------------
def test_ravdess_audio_video_and_video_only_files(tmp_path: Path) -> None:
    actor = tmp_path / "Actor_19"
    write_tone(actor / "03-01-08-02-01-01-19.wav")
    write_video(actor / "01-01-08-02-01-01-19.mp4", noise_frames(25), fps=25, audio=tone(1.0))
    write_video(actor / "02-01-08-02-01-01-19.mp4", noise_frames(50), fps=25)
    result = prepare_corpus(
        "ravdess", tmp_path, include=("speech", "audio_video", "video"), progress=False
    )
    assert not result.skipped
    by_id = {c.clip_id: c for c in result.clips}
    av_clip, video_clip = (
        by_id["ravdess/01-01-08-02-01-01-19"],
        by_id["ravdess/02-01-08-02-01-01-19"],
    )
    audio_clip = by_id["ravdess/03-01-08-02-01-01-19"]
    assert (av_clip.modality, av_clip.sample_rate, av_clip.channels) == ("audio_video", 16000, 1)
    assert av_clip.duration == pytest.approx(1.0, abs=0.1)
    assert (video_clip.modality, video_clip.channels, video_clip.sample_rate) == ("video", 0, 0)
    assert video_clip.duration == pytest.approx(2.0, abs=0.1)
    assert av_clip.group == video_clip.group == audio_clip.group
    assert len({av_clip.content_hash, video_clip.content_hash, audio_clip.content_hash}) == 3
    # the leakage guard sees one performance, whichever copies sit on either side
    for train, test in (([av_clip], [audio_clip]), ([video_clip], [av_clip])):
        split = Split(
            name="t",
            train=[c.clip_id for c in train],
            val=[],
            test=[c.clip_id for c in test],
            speaker_independent=False,
        )
        with pytest.raises(LeakageError, match="performance"):
            check_leakage(split, result.clips)


def test_crema_d_flash_videos(tmp_path: Path) -> None:
    write_video(
        tmp_path / "VideoFlash" / "1001_DFA_ANG_XX.flv",
        noise_frames(25),
        audio=tone(1.0, 22050),
        sample_rate=22050,
    )
    write_tone(tmp_path / "AudioWAV" / "1001_DFA_ANG_XX.wav")
    (tmp_path / "VideoFlash" / "1002_DFA_HAP_XX.flv").write_bytes(b"not a video")
    result = prepare_corpus("crema-d", tmp_path, include=("audio", "audio_video"), progress=False)
    by_id = {c.clip_id: c for c in result.clips}
    flv = by_id["crema-d/av/1001_DFA_ANG_XX"]
    assert (flv.modality, flv.sample_rate, flv.channels) == ("audio_video", 22050, 1)
    assert flv.performance == by_id["crema-d/1001_DFA_ANG_XX"].performance
    assert sorted(by_id) == ["crema-d/1001_DFA_ANG_XX", "crema-d/av/1001_DFA_ANG_XX"]
    (skipped,) = result.skipped  # listed at prepare, not found out at extraction
    assert skipped.path.endswith("1002_DFA_HAP_XX.flv") and skipped.reason.startswith(
        "unreadable video"
    )


def test_prepare_probes_videos_and_lists_the_unusable_ones(tmp_path: Path) -> None:
    actor = tmp_path / "Actor_19"
    write_video(actor / "01-01-08-02-01-01-19.mp4", noise_frames(25), audio=tone(1.0))
    (actor / "01-01-08-02-01-02-19.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    write_sound_only_mp4(actor / "01-01-08-02-02-01-19.mp4")
    full = write_video(tmp_path / "full.mp4", noise_frames(10), faststart=True).read_bytes()
    # a complete header (40 frames promised) and not one byte of picture data
    (actor / "01-01-08-02-02-02-19.mp4").write_bytes(full[: full.index(b"mdat") + 4])
    result = prepare_corpus("ravdess", actor, include=("audio_video",), progress=False)
    assert [c.clip_id for c in result.clips] == ["ravdess/01-01-08-02-01-01-19"]
    reasons = {Path(s.path).stem: s.reason for s in result.skipped}
    assert reasons["01-01-08-02-01-02-19"].startswith("unreadable video")
    assert reasons["01-01-08-02-02-01-19"] == "no video stream"
    assert reasons["01-01-08-02-02-02-19"].startswith("no decodable video frames")


def test_folder_corpus_takes_videos_too(tmp_path: Path) -> None:
    write_video(tmp_path / "happy" / "spk1" / "a.mp4", noise_frames(25), audio=tone(1.0))
    write_tone(tmp_path / "sad" / "spk1" / "b.wav")
    clips = {c.clip_id: c for c in prepare_corpus("folder", tmp_path, progress=False).clips}
    video, audio = clips["folder/happy/spk1/a"], clips["folder/sad/spk1/b"]
    assert (video.modality, video.emotion, video.speaker, video.sample_rate) == (
        "audio_video",
        "happy",
        "folder/spk1",
        16000,
    )
    assert video.duration == pytest.approx(1.0, abs=0.1) and audio.modality == "audio"


def test_predict_expands_a_folder_to_its_videos(tmp_path: Path) -> None:
    from emorec.inference.predict import collect_files

    write_tone(tmp_path / "in" / "a.wav")
    for name in ("b.mp4", "sub/c.flv", "d.MOV"):
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / name).write_bytes(b"x")
    (tmp_path / "in" / "notes.txt").write_text("not media")
    assert sorted(
        p.relative_to(tmp_path / "in").as_posix() for p in collect_files([tmp_path / "in"])
    ) == ["a.wav", "b.mp4", "d.MOV", "sub/c.flv"]


# -- the real RAVDESS clip -------------------------------------------------------------------------
@pytest.mark.realdata
def test_real_ravdess_clip_decodes_and_has_no_audio_track(shared_data: Path) -> None:
    path = shared_data / "ravdess-video-sample" / "01-01-08-02-01-01-19.mp4"
    info = video_info(path)
    assert (info.width, info.height, info.frames) == (720, 720, 122)
    assert info.fps == pytest.approx(29.97, abs=0.01) and info.duration == pytest.approx(
        4.07, abs=0.01
    )
    assert not info.has_audio
    times = [t for t, _frame in iter_frames(path)]
    assert len(times) == 122 and np.all(np.diff(times) > 0)
    assert len(list(iter_frames(path, fps=15))) == 62  # 4.07 s at 15 frames per second
    with pytest.raises(NoAudioTrackError, match=NO_AUDIO_TRACK):
        load_audio(path)
    (clip,) = prepare_corpus("ravdess", path.parent, include=("audio_video",), progress=False).clips
    assert clip.duration == pytest.approx(4.07, abs=0.01) and clip.channels == 0
    assert dataclasses.asdict(clip)["modality"] == "audio_video"


@pytest.mark.parametrize("rotation,turns", [(90, 1), (-90, 3), (180, 2)])
def test_display_rotation_is_applied(tmp_path: Path, rotation: int, turns: int) -> None:
    """A phone's portrait video is stored on its side with a display matrix: frames come out
    upright."""
    image = np.zeros((48, 64, 3), np.uint8)
    image[:16, :24] = 255  # a bright block in the top-left corner of the stored picture
    path = write_video(tmp_path / "phone.mov", np.stack([image] * 5), rotation=rotation)
    upright = np.rot90(image, k=turns)
    frames = read_frames(path).frames
    assert frames.shape[1:] == upright.shape
    assert np.abs(frames[0].astype(int) - upright).mean() < 8  # codec noise only
    scaled = read_frames(path, width=upright.shape[1] // 2, height=upright.shape[0] // 2).frames
    assert scaled.shape[1:3] == (upright.shape[0] // 2, upright.shape[1] // 2)
    from emorec.media.video import frame_luma

    _, frame = next(iter_frames(path))
    luma = frame_luma(frame)
    assert (
        luma.shape == upright.shape[:2]
        and luma[upright[..., 0] > 128].mean() > luma[upright[..., 0] < 128].mean() + 100
    )


def test_audio_that_starts_late_is_placed_on_the_video_clock(tmp_path: Path) -> None:
    wave = tone(0.5)
    path = write_video(
        tmp_path / "late.mov",
        level_frames([100] * 25),
        audio=wave,
        audio_start=0.3,
        audio_codec="pcm_s16le",
    )
    aligned = load_video_audio(path, 16000)
    raw = load_video_audio(path, 16000, align=False)
    assert raw.size == wave.size and aligned.size == wave.size + int(0.3 * 16000)
    late = int(0.3 * 16000)
    assert not aligned[:late].any()  # silence until the sound starts
    np.testing.assert_allclose(aligned[late:], raw, atol=1e-4)
    assert np.abs(raw[:16]).max() > 0.05  # the tone is there from its first millisecond
