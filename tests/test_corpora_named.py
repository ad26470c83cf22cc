"""The corpora whose labels lie in their file names (TESS, EMOVO, URDU): generated files, and the
real copies when they are fetched beside the checkout."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from conftest import corpus_copy, write_tone

from emorec.corpora import prepare_corpus


def _files(root: Path, names: list[str]) -> None:
    for i, name in enumerate(names):
        write_tone(root / name, seconds=0.5, seed=i, freq=180.0 + 10 * i)


def test_tess_names_give_speaker_age_and_labels(tmp_path: Path) -> None:
    _files(
        tmp_path,
        [
            "OAF_angry/OAF_back_angry.wav",
            "YAF_pleasant_surprise/YAF_bath_ps.wav",
            "OAF_fear/OAF_germ_fear.wav",
            "OAF_neutral/OA_bite_neutral.wav",
            "YAF_sad/notes.wav",
            "YAF_sad/YAF_bean_bored.wav",
        ],
    )
    result = prepare_corpus("tess", tmp_path, progress=False)
    clips = {c.clip_id: c for c in result.clips}
    assert set(clips) == {
        "tess/OAF_back_angry",
        "tess/YAF_bath_ps",
        "tess/OAF_germ_fear",
        "tess/OAF_bite_neutral",
    }
    assert (
        clips["tess/YAF_bath_ps"].emotion == "surprised"
        and clips["tess/OAF_germ_fear"].emotion == "fearful"
    )
    # the upstream "OA_" typo is the older speaker
    assert clips["tess/OAF_bite_neutral"].speaker == "tess/OAF"
    assert {c.gender for c in clips.values()} == {"female"} and clips["tess/YAF_bath_ps"].age == 26
    assert sorted(Path(s.path).name for s in result.skipped) == ["YAF_bean_bored.wav", "notes.wav"]
    assert all("not a TESS name" in s.reason for s in result.skipped)


def test_emovo_names_give_actor_gender_and_italian_labels(tmp_path: Path) -> None:
    _files(
        tmp_path,
        [
            "f1/rab-f1-b1.wav",
            "m2/gio-m2-l3.wav",
            "m3/pau-m3-n5.wav",
            "f2/sor-f2-d2.wav",
            "f2/xyz-f2-d2.wav",
        ],
    )
    result = prepare_corpus("emovo", tmp_path, progress=False)
    by_id = {c.clip_id: c for c in result.clips}
    assert {k: v.emotion for k, v in by_id.items()} == {
        "emovo/rab-f1-b1": "angry",
        "emovo/gio-m2-l3": "happy",
        "emovo/pau-m3-n5": "fearful",
        "emovo/sor-f2-d2": "surprised",
    }
    assert (
        by_id["emovo/gio-m2-l3"].speaker == "emovo/m2" and by_id["emovo/gio-m2-l3"].gender == "male"
    )
    assert by_id["emovo/rab-f1-b1"].statement == "b1"
    assert [Path(s.path).name for s in result.skipped] == ["xyz-f2-d2.wav"]


def test_urdu_speaker_numbers_count_within_each_sex(tmp_path: Path) -> None:
    _files(
        tmp_path,
        [
            "Angry/SM1_F10_A012.wav",
            "Sad/SF1_F2_S003.wav",
            "Happy/SM01_F3_H001.wav",
            "Neutral/SM25_F1_N040.wav",
            "Neutral/SM25_F1_X040.wav",
        ],
    )
    result = prepare_corpus("urdu", tmp_path, progress=False)
    speakers = Counter(c.speaker for c in result.clips)
    assert speakers == {
        "urdu/M1": 2,
        "urdu/F1": 1,
        "urdu/M25": 1,
    }  # SM01 and SM1 are one man; SF1 another person
    assert {c.emotion for c in result.clips} == {"angry", "sad", "happy", "neutral"}
    assert {c.gender for c in result.clips if c.speaker == "urdu/F1"} == {"female"}
    assert len(result.skipped) == 1 and "not an URDU name" in result.skipped[0].reason


def test_a_corrupt_file_is_listed_and_the_rest_prepared(tmp_path: Path) -> None:
    _files(tmp_path, ["f1/neu-f1-b1.wav"])
    # an LFS pointer
    (tmp_path / "f1" / "tri-f1-b1.wav").write_bytes(b"version https://git-lfs.github.com/spec/v1\n")
    result = prepare_corpus("emovo", tmp_path, progress=False)
    assert [c.clip_id for c in result.clips] == ["emovo/neu-f1-b1"]
    assert len(result.skipped) == 1 and result.skipped[0].path.endswith("tri-f1-b1.wav")


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("kind", "folder", "clips", "speakers", "per_class"),
    [
        (
            "tess",
            "TESS",
            2800,
            2,
            {
                e: 400
                for e in ("neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised")
            },
        ),
        (
            "emovo",
            "EMOVO",
            588,
            6,
            {
                e: 84
                for e in ("neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised")
            },
        ),
        ("urdu", "URDU", 400, 29, {e: 100 for e in ("neutral", "happy", "sad", "angry")}),
    ],
)
def test_real_copy(kind: str, folder: str, clips: int, speakers: int, per_class: dict) -> None:
    result = prepare_corpus(kind, corpus_copy(folder), progress=False)
    assert len(result.clips) == clips and not result.skipped
    assert len({c.speaker for c in result.clips}) == speakers
    assert Counter(c.emotion for c in result.clips) == per_class
