"""Corpus preparation: name parsing, file probing, skipped files, CREMA-D metadata, folders."""

from __future__ import annotations

import inspect
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import cli_process
from conftest import write_tone

from emorec.corpora import prepare_corpus
from emorec.corpora import crema_d, ravdess
from emorec.corpora.folder import canonical_emotion
from emorec.errors import ConfigError, EmorecError

# --- RAVDESS names ---------------------------------------------------------------------------


def test_ravdess_name_fields(tmp_path: Path) -> None:
    write_tone(tmp_path / "Actor_12" / "03-01-05-02-01-02-12.wav")
    write_tone(tmp_path / "Actor_07" / "03-02-02-01-02-01-07.flac", freq=330)
    result = prepare_corpus("ravdess", tmp_path, include=("speech", "song"), progress=False)
    assert result.skipped == []
    by_id = {c.clip_id: c for c in result.clips}
    speech = by_id["ravdess/03-01-05-02-01-02-12"]
    assert (speech.speaker, speech.gender, speech.emotion) == ("ravdess/12", "female", "angry")
    assert (speech.intensity, speech.statement, speech.vocal_channel, speech.modality) == (
        "strong",
        "01",
        "speech",
        "audio",
    )
    assert speech.performance == "ravdess/01-05-02-01-02-12"
    assert os.path.isabs(speech.path)
    song = by_id["ravdess/03-02-02-01-02-01-07"]
    assert (song.gender, song.emotion, song.vocal_channel, song.intensity) == (
        "male",
        "calm",
        "song",
        "normal",
    )


def test_ravdess_emotion_codes_cover_all_eight() -> None:
    names = [ravdess.parse_name(f"03-01-{e:02d}-01-01-01-01") for e in range(1, 9)]
    assert [ravdess.EMOTION_CODES[n.emotion] for n in names] == [
        "neutral",
        "calm",
        "happy",
        "sad",
        "angry",
        "fearful",
        "disgust",
        "surprised",
    ]


@pytest.mark.parametrize(
    "stem",
    [
        "03-01-05-01-01-12",  # six fields
        "03-01-05-01-01-01-01-01",  # eight fields
        "03-01-09-01-01-01-01",  # emotion 09
        "03-01-05-03-01-01-01",  # intensity 03
        "03-01-05-01-01-01-25",  # actor 25
        "04-01-05-01-01-01-01",  # modality 04
        "03-01-05-01-01-01-xx",
        "hello",
    ],
)
def test_ravdess_bad_names(stem: str) -> None:
    assert ravdess.parse_name(stem) is None


def test_ravdess_bad_name_is_skipped_not_fatal(tmp_path: Path) -> None:
    write_tone(tmp_path / "Actor_01" / "03-01-01-01-01-01-01.wav")
    write_tone(tmp_path / "Actor_01" / "03-01-09-01-01-01-01.wav")
    write_tone(tmp_path / "Actor_01" / "notes.wav")
    result = prepare_corpus("ravdess", tmp_path, progress=False)
    assert [c.clip_id for c in result.clips] == ["ravdess/03-01-01-01-01-01-01"]
    assert len(result.skipped) == 2
    assert all(
        "not a RAVDESS name (expected MM-VV-EE-II-SS-RR-AA)" == s.reason for s in result.skipped
    )
    assert all(s.stage == "prepare" for s in result.skipped)


def test_ravdess_include_selects_parts_and_garbage_videos_are_skipped_at_prepare(
    tmp_path: Path,
) -> None:
    pytest.importorskip("av")
    write_tone(tmp_path / "Actor_19" / "03-01-08-02-01-01-19.wav")
    write_tone(tmp_path / "Actor_19" / "03-02-03-01-01-01-19.wav")
    (tmp_path / "Actor_19" / "01-01-08-02-01-01-19.mp4").write_bytes(
        np.random.default_rng(0).bytes(4000)
    )
    (tmp_path / "Actor_19" / "02-01-08-02-01-01-19.mp4").write_bytes(b"silent video")
    assert len(prepare_corpus("ravdess", tmp_path, progress=False).clips) == 1
    result = prepare_corpus(
        "ravdess", tmp_path, include=("speech", "audio_video", "video"), progress=False
    )
    # random bytes named .mp4 are listed now, not accepted
    # with duration 0 and 0 channels to fail at extract
    assert [c.clip_id for c in result.clips] == ["ravdess/03-01-08-02-01-01-19"]
    reasons = {Path(s.path).name: s.reason for s in result.skipped}
    assert set(reasons) == {"01-01-08-02-01-01-19.mp4", "02-01-08-02-01-01-19.mp4"}
    assert all(r.startswith("unreadable video") for r in reasons.values()), reasons
    with pytest.raises(ConfigError, match="include"):
        prepare_corpus("ravdess", tmp_path, include=("speeches",))


def _truncate_wav(path: Path) -> None:
    """Cut the sample data in half and leave the header claiming the full length."""
    data = path.read_bytes()
    path.write_bytes(data[: 44 + (len(data) - 44) // 2])


def test_truncated_wav_is_kept_at_its_decodable_length_with_a_warning(tmp_path: Path) -> None:
    write_tone(tmp_path / "Actor_01" / "03-01-03-01-01-01-01.wav", seconds=1.0)
    cut = write_tone(tmp_path / "Actor_01" / "03-01-03-01-01-02-01.wav", seconds=1.0, seed=1)
    sf.write(
        tmp_path
        / "Actor_01"
        / "03-01-04-01-01-01-01.wav",  # float samples: a 58-byte header, a fact chunk
        np.sin(np.arange(16000) * 0.05).astype(np.float32) * 0.3,
        16000,
        subtype="FLOAT",
    )
    write_tone(tmp_path / "Actor_01" / "03-01-05-01-01-01-01.flac", seconds=1.0, seed=2)
    _truncate_wav(cut)
    result = prepare_corpus("ravdess", tmp_path, progress=False)
    assert len(result.clips) == 4 and not result.skipped
    durations = {Path(c.path).name: c.duration for c in result.clips}
    assert durations["03-01-03-01-01-02-01.wav"] == pytest.approx(0.5)
    (warning,) = result.warnings  # the whole files say nothing
    assert warning.startswith(
        f"{cut}: header says 16000 frames (1.00 s) but only 8000 (0.50 s) decode"
    )
    assert "\n" not in warning


def test_truncated_float_wav_is_noticed_too(tmp_path: Path) -> None:
    path = tmp_path / "Actor_01" / "03-01-04-01-01-01-01.wav"
    path.parent.mkdir()
    sf.write(path, np.sin(np.arange(16000) * 0.05).astype(np.float32) * 0.3, 16000, subtype="FLOAT")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    (warning,) = prepare_corpus("ravdess", tmp_path, progress=False).warnings
    assert "header says 16000 frames (1.00 s)" in warning and str(path) in warning


def test_stereo_48k_file_info(tmp_path: Path) -> None:
    write_tone(
        tmp_path / "Actor_02" / "03-01-03-01-01-01-02.wav", sr=48000, channels=2, seconds=1.5
    )
    (clip,) = prepare_corpus("ravdess", tmp_path, progress=False).clips
    assert (clip.sample_rate, clip.channels) == (48000, 2)
    assert clip.duration == pytest.approx(1.5)
    assert len(clip.content_hash) == 64


def test_same_audio_as_wav_and_flac_gives_same_hash(tmp_path: Path) -> None:
    samples = (np.sin(np.arange(16000) * 0.05) * 9000).astype(np.int16)  # identical PCM in both
    for path in (
        tmp_path / "a" / "03-01-03-01-01-01-02.wav",
        tmp_path / "b" / "03-01-03-01-01-01-04.flac",
    ):
        path.parent.mkdir()
        sf.write(path, samples, 16000)
    clips = prepare_corpus("ravdess", tmp_path, progress=False).clips
    assert clips[0].content_hash == clips[1].content_hash


def test_duplicate_clip_id_keeps_one(tmp_path: Path) -> None:
    write_tone(tmp_path / "03-01-03-01-01-01-02.flac")
    write_tone(tmp_path / "03-01-03-01-01-01-02.wav")
    result = prepare_corpus("ravdess", tmp_path, progress=False)
    assert [Path(c.path).suffix for c in result.clips] == [".wav"]
    assert "duplicate clip id" in result.skipped[0].reason


# --- bad files ---------------------------------------------------------------------------------


def _bad_files(folder: Path) -> dict[str, str]:
    """Write one file per failure mode; return {file name: expected words in the reason}."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "03-01-01-01-01-01-01.wav").write_bytes(b"")
    write_tone(folder / "03-01-01-01-01-02-01.wav")
    (folder / "03-01-01-01-01-02-01.wav").write_bytes(
        (folder / "03-01-01-01-01-02-01.wav").read_bytes()[:30]
    )
    nan = np.full(8000, 0.1, dtype=np.float32)
    nan[100] = np.nan
    sf.write(folder / "03-01-01-01-02-01-01.wav", nan, 16000, subtype="FLOAT")
    sf.write(folder / "03-01-01-01-02-02-01.wav", np.zeros(8000, dtype=np.float32), 16000)
    (folder / "03-01-02-01-01-01-01.wav").write_bytes(np.random.default_rng(0).bytes(4000))
    return {
        "03-01-01-01-01-01-01.wav": "zero-length",
        "03-01-01-01-01-02-01.wav": "unreadable",
        "03-01-01-01-02-01-01.wav": "NaN",
        "03-01-01-01-02-02-01.wav": "silent",
        "03-01-02-01-01-01-01.wav": "unreadable",
    }


def test_bad_files_are_skipped_with_reason_and_rest_prepared(tmp_path: Path) -> None:
    expected = _bad_files(tmp_path / "Actor_01")
    for i in range(3):
        write_tone(
            tmp_path / "Actor_02" / f"03-01-03-01-01-0{i % 2 + 1}-0{2 + 2 * (i // 2)}.wav", seed=i
        )
    result = prepare_corpus("ravdess", tmp_path, progress=False)
    assert len(result.clips) == 3
    reasons = {Path(s.path).name: s.reason for s in result.skipped}
    assert set(reasons) == set(expected)
    for name, words in expected.items():
        assert words in reasons[name], (name, reasons[name])
        assert "\n" not in reasons[name]
    assert all(os.path.isabs(s.path) and s.stage == "prepare" for s in result.skipped)


# --- dispatcher --------------------------------------------------------------------------------


def test_unknown_kind_and_missing_root(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'iemocap'.*ravdess.*crema-d.*folder.*synthetic"):
        prepare_corpus("iemocap", tmp_path)
    with pytest.raises(EmorecError, match="nowhere"):
        prepare_corpus("ravdess", tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="bogus"):
        prepare_corpus("ravdess", tmp_path, bogus=1)


def test_many_files_with_progress_enabled(tmp_path: Path) -> None:
    for actor in range(1, 4):
        for emotion in range(1, 9):
            for rep in (1, 2):
                for statement in (1, 2):
                    write_tone(
                        tmp_path
                        / f"03-01-{emotion:02d}-01-{statement:02d}-{rep:02d}-{actor:02d}.wav",
                        seconds=0.2,
                        seed=actor * 100 + emotion * 10 + rep + statement,
                    )
    result = prepare_corpus("ravdess", tmp_path, progress=True)
    assert len(result.clips) == 96 and not result.skipped


# --- CREMA-D -----------------------------------------------------------------------------------


def test_crema_d_name_parsing() -> None:
    name = crema_d.parse_name("1001_DFA_ANG_XX")
    assert (name.actor, name.sentence, name.emotion, name.level) == ("1001", "DFA", "ANG", "XX")
    # upstream's one misnamed file
    assert crema_d.parse_name("1040_ITH_SAD_X").stem == "1040_ITH_SAD_XX"
    for bad in (
        "1001_DFA_ANG",
        "1001_DFA_BOR_XX",
        "1001_DFA_ANG_ZZ",
        "101_DFA_ANG_XX",
        "1001-DFA-ANG-XX",
    ):
        assert crema_d.parse_name(bad) is None


def _crema_metadata(folder: Path) -> Path:
    """A tiny copy of the real metadata format (quoted CSV, R row names, tie votes)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "VideoDemographics.csv").write_text(
        '"ActorID","Age","Sex","Race","Ethnicity"\n'
        '1001,51,"Male","Caucasian","Not Hispanic"\n'
        '1002,21,"Female","Caucasian","Not Hispanic"\n'
    )
    (folder / "processedResults").mkdir(exist_ok=True)
    (folder / "processedResults" / "summaryTable.csv").write_text(
        '"","FileName","VoiceVote","VoiceLevel","FaceVote","FaceLevel","MultiModalVote","MultiModalLevel"\n'
        '"1","1001_IEO_HAP_LO","N","71.67","H","57","H","57.38"\n'
        '"2","1001_IEO_ANG_MD","A:D","37.2:58.6","A","45.5","A","44.2"\n'
        '"3","1002_DFA_SAD_HI","S","80","S","70","N","60"\n'
    )
    return folder


def _crema_audio(folder: Path) -> None:
    for i, stem in enumerate(
        ("1001_IEO_HAP_LO", "1001_IEO_ANG_MD", "1002_DFA_SAD_HI", "1003_TIE_NEU_XX")
    ):
        write_tone(folder / f"{stem}.wav", seconds=0.3, seed=i)
    write_tone(folder / "1001_IEO_BAD_XX.wav", seconds=0.3)


def test_crema_d_acted_labels_and_demographics(tmp_path: Path) -> None:
    meta = _crema_metadata(tmp_path / "meta")
    _crema_audio(tmp_path / "AudioWAV")
    result = prepare_corpus("crema-d", tmp_path / "AudioWAV", metadata_dir=meta, progress=False)
    by_id = {c.clip_id: c for c in result.clips}
    assert len(by_id) == 4
    hap = by_id["crema-d/1001_IEO_HAP_LO"]
    assert (hap.speaker, hap.gender, hap.emotion, hap.intensity, hap.statement) == (
        "crema-d/1001",
        "male",
        "happy",
        "LO",
        "IEO",
    )
    assert hap.performance == "crema-d/1001_IEO_HAP_LO" and hap.acted_emotion == ""
    assert by_id["crema-d/1002_DFA_SAD_HI"].gender == "female"
    assert (hap.age, by_id["crema-d/1002_DFA_SAD_HI"].age) == (51, 21)
    assert (
        by_id["crema-d/1003_TIE_NEU_XX"].gender == "" and by_id["crema-d/1003_TIE_NEU_XX"].age == 0
    )  # not in the file
    assert [Path(s.path).name for s in result.skipped] == ["1001_IEO_BAD_XX.wav"]
    assert "not a CREMA-D name" in result.skipped[0].reason


def test_crema_d_demographics_found_beside_root(tmp_path: Path) -> None:
    _crema_metadata(tmp_path)
    _crema_audio(tmp_path / "AudioWAV")
    clips = prepare_corpus("crema-d", tmp_path / "AudioWAV", progress=False).clips
    assert {c.clip_id: c.gender for c in clips}["crema-d/1002_DFA_SAD_HI"] == "female"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("voice", {"1001_IEO_HAP_LO": ("neutral", "happy"), "1002_DFA_SAD_HI": ("sad", "sad")}),
        (
            "face",
            {
                "1001_IEO_HAP_LO": ("happy", "happy"),
                "1001_IEO_ANG_MD": ("angry", "angry"),
                "1002_DFA_SAD_HI": ("sad", "sad"),
            },
        ),
        (
            "multimodal",
            {
                "1001_IEO_HAP_LO": ("happy", "happy"),
                "1001_IEO_ANG_MD": ("angry", "angry"),
                "1002_DFA_SAD_HI": ("neutral", "sad"),
            },
        ),
    ],
)
def test_crema_d_perceived_labels(tmp_path: Path, source: str, expected: dict) -> None:
    meta = _crema_metadata(tmp_path / "meta")
    _crema_audio(tmp_path / "audio")
    result = prepare_corpus(
        "crema-d", tmp_path / "audio", metadata_dir=meta, label_source=source, progress=False
    )
    got = {c.clip_id.split("/")[-1]: (c.emotion, c.acted_emotion) for c in result.clips}
    assert got == expected
    reasons = {Path(s.path).stem: s.reason for s in result.skipped}
    assert "1003_TIE_NEU_XX" in reasons and "summaryTable" in reasons["1003_TIE_NEU_XX"]
    if source == "voice":
        assert "tie" in reasons["1001_IEO_ANG_MD"]


def test_crema_d_option_errors(tmp_path: Path) -> None:
    _crema_audio(tmp_path / "audio")
    with pytest.raises(ConfigError, match="label_source"):
        prepare_corpus("crema-d", tmp_path / "audio", label_source="crowd")
    with pytest.raises(EmorecError, match="summaryTable.csv not found"):
        prepare_corpus("crema-d", tmp_path / "audio", label_source="voice")
    with pytest.raises(EmorecError, match="VideoDemographics.csv not found"):
        prepare_corpus("crema-d", tmp_path / "audio", demographics=tmp_path / "nope.csv")


# --- folder ------------------------------------------------------------------------------------


def test_folder_from_subfolders(tmp_path: Path) -> None:
    write_tone(tmp_path / "Anger" / "spk1" / "a.wav", seed=1)
    write_tone(tmp_path / "Anger" / "spk2" / "b.wav", seed=2)
    write_tone(tmp_path / "happiness" / "spk1" / "c.flac", seed=3)
    write_tone(tmp_path / "boredom" / "d.wav", seed=4)
    write_tone(tmp_path / "loose.wav", seed=5)
    result = prepare_corpus("folder", tmp_path, progress=False)
    got = {c.clip_id: (c.emotion, c.speaker) for c in result.clips}
    assert got == {
        "folder/Anger/spk1/a": ("angry", "folder/spk1"),
        "folder/Anger/spk2/b": ("angry", "folder/spk2"),
        "folder/happiness/spk1/c": ("happy", "folder/spk1"),
        "folder/boredom/d": ("boredom", "folder/unknown"),
    }
    assert [Path(s.path).name for s in result.skipped] == ["loose.wav"]


def test_folder_speaker_pattern(tmp_path: Path) -> None:
    write_tone(tmp_path / "sad" / "s07_take1.wav", seed=1)
    write_tone(tmp_path / "sad" / "nospeaker.wav", seed=2)
    result = prepare_corpus(
        "folder", tmp_path, speaker_pattern=r"s(?P<speaker>\d+)_", name="mine", progress=False
    )
    assert [(c.clip_id, c.speaker, c.corpus) for c in result.clips] == [
        ("mine/sad/s07_take1", "mine/07", "mine")
    ]
    assert "speaker_pattern" in result.skipped[0].reason
    with pytest.raises(ConfigError, match="named group"):
        prepare_corpus("folder", tmp_path, speaker_pattern=r"s(\d+)")


def test_folder_from_csv(tmp_path: Path) -> None:
    write_tone(tmp_path / "audio" / "x1.wav", seed=1)
    write_tone(tmp_path / "audio" / "x2.wav", seed=2)
    outside = write_tone(tmp_path / "elsewhere" / "x3.wav", seed=3)
    (tmp_path / "audio" / "labels.csv").write_text(
        "path,emotion,speaker\n"
        "x1.wav,Fear,alice\n"
        f"{outside},disgusted,bob\n"
        "missing.wav,sad,carol\n"
        "x2.wav,,dave\n"
    )
    result = prepare_corpus("folder", tmp_path / "audio", labels_csv="labels.csv", progress=False)
    got = sorted((c.emotion, c.speaker, os.path.isabs(c.path)) for c in result.clips)
    assert got == [("disgust", "folder/bob", True), ("fearful", "folder/alice", True)]
    reasons = {Path(s.path).name: s.reason for s in result.skipped}
    assert reasons["missing.wav"] == "file not found"
    assert reasons["x2.wav"] == "no emotion label"
    with pytest.raises(EmorecError, match="labels CSV"):
        prepare_corpus("folder", tmp_path / "audio", labels_csv="nope.csv")


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("anger", "angry"),
        ("ANG", "angry"),
        ("Happiness", "happy"),
        ("fear", "fearful"),
        ("disgusted", "disgust"),
        ("surprise", "surprised"),
        ("sadness", "sad"),
        ("Boredom", "boredom"),
    ],
)
def test_canonical_emotion(raw: str, canonical: str) -> None:
    assert canonical_emotion(raw) == canonical


# --- real data ---------------------------------------------------------------------------------


@pytest.mark.realdata
def test_real_ravdess_speech(shared_data: Path) -> None:
    result = prepare_corpus("ravdess", shared_data / "ravdess-speech-16k", progress=False)
    assert len(result.clips) == 1440 and not result.skipped
    assert len({c.speaker for c in result.clips}) == 24
    assert {c.sample_rate for c in result.clips} == {16000}
    counts = {e: sum(c.emotion == e for c in result.clips) for e in ravdess.EMOTION_CODES.values()}
    assert counts["neutral"] == 96 and all(v == 192 for k, v in counts.items() if k != "neutral")


@pytest.mark.realdata
def test_real_ravdess_original_sample_is_stereo_48k(shared_data: Path) -> None:
    result = prepare_corpus("ravdess", shared_data / "ravdess-original-sample", progress=False)
    assert len(result.clips) == 10 and not result.skipped
    assert {c.sample_rate for c in result.clips} == {48000}
    assert sorted(c.channels for c in result.clips) == [1] * 5 + [2] * 5


@pytest.mark.realdata
def test_real_ravdess_video_sample(shared_data: Path) -> None:
    result = prepare_corpus(
        "ravdess", shared_data / "ravdess-video-sample", include=("audio_video",), progress=False
    )
    (clip,) = result.clips
    assert (
        clip.modality == "audio_video"
        and clip.speaker == "ravdess/19"
        and clip.emotion == "surprised"
    )


@pytest.mark.realdata
def test_real_crema_d_metadata_join(shared_data: Path, tmp_path: Path) -> None:
    stems = ("1001_IEO_HAP_LO", "1002_IEO_NEU_XX", "1091_WSI_SAD_HI", "1001_IEO_ANG_MD")
    for i, stem in enumerate(stems):
        write_tone(tmp_path / "AudioWAV" / f"{stem}.wav", seconds=0.1, seed=i)
    meta = shared_data / "crema-d-metadata"
    acted = prepare_corpus("crema-d", tmp_path / "AudioWAV", metadata_dir=meta, progress=False)
    genders = {c.clip_id: c.gender for c in acted.clips}
    assert genders["crema-d/1001_IEO_HAP_LO"] == "male"
    assert genders["crema-d/1002_IEO_NEU_XX"] == "female"
    assert genders["crema-d/1091_WSI_SAD_HI"] == "female"
    voice = prepare_corpus(
        "crema-d", tmp_path / "AudioWAV", metadata_dir=meta, label_source="voice", progress=False
    )
    hap = {c.clip_id: c for c in voice.clips}["crema-d/1001_IEO_HAP_LO"]
    assert (hap.emotion, hap.acted_emotion) == ("neutral", "happy")
    assert any("1001_IEO_ANG_MD" in s.path and "tie" in s.reason for s in voice.skipped)


@pytest.mark.realdata
def test_real_crema_d_opus_audio_is_prepared(shared_data: Path, tmp_path: Path) -> None:
    """The shared CREMA-D audio is Ogg Opus: it used to give "0 clips" (.opus was not an audio
    suffix)."""
    meta = shared_data / "crema-d-metadata"
    stems = ("1001_DFA_ANG_XX", "1001_DFA_HAP_XX", "1002_IEO_SAD_HI", "1040_ITH_SAD_X")
    for stem in stems:  # links, not copies: the media stay in the shared folder
        (tmp_path / f"{stem}.opus").symlink_to(shared_data / "crema-d-audio" / f"{stem}.opus")
    result = prepare_corpus("crema-d", tmp_path, metadata_dir=meta, progress=False)
    clips = {c.clip_id: c for c in result.clips}
    # the one upstream name with a single X is the clip its metadata calls 1040_ITH_SAD_XX
    assert sorted(clips) == [
        "crema-d/1001_DFA_ANG_XX",
        "crema-d/1001_DFA_HAP_XX",
        "crema-d/1002_IEO_SAD_HI",
        "crema-d/1040_ITH_SAD_XX",
    ]
    assert all(
        (c.sample_rate, c.channels) == (16000, 1) and 1.0 < c.duration < 5.0 for c in clips.values()
    )
    assert (
        clips["crema-d/1002_IEO_SAD_HI"].gender == "female"
        and clips["crema-d/1040_ITH_SAD_XX"].intensity == "XX"
    )
    assert not result.skipped and not result.warnings
    voice = prepare_corpus(
        "crema-d", tmp_path, metadata_dir=meta, label_source="voice", progress=False
    )
    assert {c.clip_id: c.emotion for c in voice.clips}[
        "crema-d/1040_ITH_SAD_XX"
    ] == "neutral"  # its VoiceVote


# --- the prepare command, as a user runs it ---------------------------------------------------


def emorec_cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    return cli_process.emorec(*args, cwd=cwd, check=False, timeout=120, COLUMNS="200")


def _flat_unlabelled(root: Path) -> list[str]:
    for i in range(3):
        write_tone(root / f"take{i}.wav", seconds=0.2, seed=i)
    return ["3 files skipped, all 'no emotion label'", "labels_csv"]


def _empty(root: Path) -> list[str]:
    root.mkdir(parents=True)
    (root / "notes.txt").write_text("no media here")
    return ["no media files (.wav", "in it or its sub-folders"]


def _crema_videos_only(root: Path) -> list[str]:
    for stem in ("1001_DFA_ANG_XX", "1001_DFA_HAP_XX"):
        (root / f"{stem}.flv").parent.mkdir(parents=True, exist_ok=True)
        (root / f"{stem}.flv").write_bytes(b"FLV")
    return ["2 media files (.flv), none of them selected", "include=[audio_video]"]


@pytest.mark.parametrize(
    ("kind", "make"),
    [("folder", _flat_unlabelled), ("folder", _empty), ("crema-d", _crema_videos_only)],
)
def test_prepare_that_finds_no_clip_is_an_error_naming_the_cause(
    tmp_path: Path, kind: str, make
) -> None:
    corpus = tmp_path / "corpus"
    needles = make(corpus)
    proc = emorec_cli("prepare", kind, corpus, "--out", tmp_path / "m.csv", cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    message = proc.stderr.strip()
    assert message.startswith(f"error: {corpus}: no clip found: ") and "\n" not in message, message
    for needle in needles:
        assert needle in message, message
    assert not (tmp_path / "m.csv").exists()  # no empty manifest to train on by mistake


def test_prepare_counts_read_as_english(tmp_path: Path) -> None:
    write_tone(tmp_path / "one" / "sad" / "spk1" / "a.wav", seconds=0.2)
    proc = emorec_cli(
        "prepare", "folder", tmp_path / "one", "--out", tmp_path / "one.csv", cwd=tmp_path
    )
    assert proc.returncode == 0 and proc.stdout.startswith("1 clip from 1 speaker -> "), proc.stdout
    write_tone(tmp_path / "two" / "sad" / "spk1" / "a.wav", seconds=0.2)
    write_tone(tmp_path / "two" / "sad" / "spk2" / "b.wav", seconds=0.2, seed=1)
    (tmp_path / "two" / "loose.wav").write_bytes(b"")
    proc = emorec_cli(
        "prepare", "folder", tmp_path / "two", "--out", tmp_path / "two.csv", cwd=tmp_path
    )
    assert proc.stdout.startswith("2 clips from 2 speakers -> ") and "1 file skipped" in proc.stderr


def test_labels_outside_the_built_in_set_are_named_once(tmp_path: Path) -> None:
    for i, label in enumerate(("boredom", "boredom", "angry", "Angyr")):
        write_tone(tmp_path / "corpus" / label / f"s{i}" / "a.wav", seconds=0.2, seed=i)
    result = prepare_corpus("folder", tmp_path / "corpus", progress=False)
    (warning,) = result.warnings
    assert "3 clips labelled outside the built-in set" in warning and warning.endswith(
        "angyr (1), boredom (2)"
    )
    proc = emorec_cli(
        "prepare", "folder", tmp_path / "corpus", "--out", tmp_path / "m.csv", cwd=tmp_path
    )
    assert proc.returncode == 0
    lines = [line for line in proc.stderr.splitlines() if "boredom" in line]
    assert lines == [f"warning: {warning}"]
    write_tone(tmp_path / "known" / "angry" / "s1" / "a.wav", seconds=0.2)
    assert prepare_corpus("folder", tmp_path / "known", progress=False).warnings == []


def test_crema_d_without_demographics_says_gender_is_empty(tmp_path: Path) -> None:
    _crema_audio(tmp_path / "audio")
    (warning,) = prepare_corpus("crema-d", tmp_path / "audio", progress=False).warnings
    assert "VideoDemographics.csv not found" in warning and "metadata_dir" in warning
    meta = _crema_metadata(tmp_path / "meta")
    assert (
        prepare_corpus("crema-d", tmp_path / "audio", metadata_dir=meta, progress=False).warnings
        == []
    )


def test_prepare_help_lists_every_corpus_option() -> None:
    from typer.testing import CliRunner

    from emorec.cli import app
    from emorec.corpora import OPTION_HELP, PREPARERS

    result = CliRunner().invoke(app, ["prepare", "folder", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "include=[speech,song]" in text  # not eaten by rich markup
    listed = " ".join(key for options in OPTION_HELP.values() for key, _ in options)
    for kind, prepare in PREPARERS.items():
        for name, param in inspect.signature(prepare).parameters.items():
            if param.kind is param.KEYWORD_ONLY:
                assert f"{name}=" in listed, (kind, name)
                assert f"{name}=" in text, (kind, name)
    for needle in (
        "labels_csv=FILE",
        "speaker_pattern=REGEX",
        "gender",
        "label_source=acted|voice|face|multimodal",
        "include=[speech,song,audio_video,video]",
        "include=[audio,audio_video]",
    ):
        assert needle in text, needle


def test_prepare_prints_ten_warnings_and_lists_all_of_them(tmp_path: Path) -> None:
    for i in range(11):
        _truncate_wav(
            write_tone(
                tmp_path / "corpus" / f"03-01-03-01-01-01-{i + 1:02d}.wav", seconds=0.2, seed=i
            )
        )
    proc = emorec_cli(
        "prepare", "ravdess", tmp_path / "corpus", "--out", tmp_path / "m.csv", cwd=tmp_path
    )
    assert proc.returncode == 0 and proc.stdout.startswith("11 clips from 11 speakers"), (
        proc.stdout + proc.stderr
    )
    shown = [line for line in proc.stderr.splitlines() if line.startswith("warning: ")]
    assert (
        len(shown) == 11 and "header says 3200 frames (0.20 s) but only 1600 (0.10 s)" in shown[0]
    )
    assert shown[-1] == f"warning: 1 more warning, all listed in {tmp_path / 'm.warnings.txt'}"
    listed = (tmp_path / "m.warnings.txt").read_text().splitlines()
    assert len(listed) == 11 and all("03-01-03-01-01-01-" in line for line in listed)


def test_crema_d_finds_its_metadata_in_a_sibling_folder(tmp_path: Path) -> None:
    """The layout the corpus is often kept in: ``crema-d-audio/`` beside ``crema-d-metadata/``."""
    _crema_metadata(tmp_path / "crema-d-metadata")
    _crema_audio(tmp_path / "crema-d-audio")
    result = prepare_corpus(
        "crema-d", tmp_path / "crema-d-audio", label_source="voice", progress=False
    )
    assert result.warnings == []
    by_id = {c.clip_id: c for c in result.clips}
    assert (
        by_id["crema-d/1002_DFA_SAD_HI"].gender == "female"
        and by_id["crema-d/1001_IEO_HAP_LO"].emotion == "neutral"
    )
