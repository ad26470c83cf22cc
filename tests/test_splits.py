"""Splits: standard RAVDESS folds, speaker k-fold, stratified, leakage guard, save/load."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import pytest

from emorec.corpora import prepare_corpus
from emorec.errors import ConfigError, EmorecError, LeakageError
from emorec.corpora.manifest import Clip
from emorec.corpora.splits import (
    CREMA_D_FOLDS,
    RAVDESS_FOLDS,
    Split,
    check_leakage,
    load_splits,
    make_splits,
    min_speakers,
    save_splits,
)
from emorec.corpora.standard_folds import crema_d_folds_from_demographics

EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")


def ravdess_clips(actors: range = range(1, 25), per_actor: int = 8) -> list[Clip]:
    """In-memory RAVDESS-like clips (no files needed for splitting)."""
    clips = []
    for actor in actors:
        for i in range(per_actor):
            emotion = i % 8 + 1
            stem = f"03-01-{emotion:02d}-01-01-{i // 8 + 1:02d}-{actor:02d}"
            clips.append(
                Clip(
                    clip_id=f"ravdess/{stem}",
                    path=f"/x/{stem}.wav",
                    corpus="ravdess",
                    speaker=f"ravdess/{actor:02d}",
                    emotion=EMOTIONS[emotion - 1],
                    gender="male" if actor % 2 else "female",
                    performance=f"ravdess/{stem[3:]}",
                    content_hash=f"hash-{stem}",
                )
            )
    return clips


def generic_clips(speakers: int, per_speaker: int = 4, corpus: str = "c") -> list[Clip]:
    return [
        Clip(
            clip_id=f"{corpus}/{s}-{i}",
            path=f"/x/{s}-{i}.wav",
            corpus=corpus,
            speaker=f"{corpus}/{s:02d}",
            emotion=EMOTIONS[i % 4],
            gender="male" if s % 2 else "female",
            content_hash=f"h{s}-{i}",
        )
        for s in range(speakers)
        for i in range(per_speaker)
    ]


def speakers_of(split: Split, clips: list[Clip], part: str) -> set[str]:
    by_id = {c.clip_id: c for c in clips}
    return {by_id[cid].speaker for cid in getattr(split, part)}


def test_ravdess_folds_constant() -> None:
    assert RAVDESS_FOLDS[1] == (1, 11, 20, 21) and RAVDESS_FOLDS[6] == (6, 13, 17, 22)
    actors = sorted(a for fold in RAVDESS_FOLDS.values() for a in fold)
    assert actors == list(range(1, 25))


def test_ravdess6_folds() -> None:
    clips = ravdess_clips()
    splits = make_splits(clips)  # auto -> ravdess6
    assert [s.name for s in splits] == [f"fold{i}" for i in range(1, 7)]
    for split, (fold, actors) in zip(splits, RAVDESS_FOLDS.items()):
        assert split.scheme == "ravdess6" and split.speaker_independent
        assert split.test_speakers == [f"ravdess/{a:02d}" for a in actors]
        assert speakers_of(split, clips, "test") == set(split.test_speakers)
        assert len(split.test_speakers) == 4
        train = speakers_of(split, clips, "train")
        assert len(split.val_speakers) == 2
        assert set(split.val_speakers).isdisjoint(train | set(split.test_speakers))
        assert set(split.val_speakers) | train == {f"ravdess/{a:02d}" for a in range(1, 25)} - set(
            split.test_speakers
        )
        genders = {int(s[-2:]) % 2 for s in split.val_speakers}
        assert genders == {0, 1}  # one male, one female
        assert len(split.train) + len(split.val) + len(split.test) == len(clips)
    assert make_splits(clips, "ravdess6", seed=0)[0].val_speakers == splits[0].val_speakers


def test_auto_uses_speaker_kfold_for_incomplete_ravdess() -> None:
    splits = make_splits(ravdess_clips(range(1, 13)))
    assert {s.scheme for s in splits} == {"speaker_kfold"} and len(splits) == 5


def crema_clips(per_actor: int = 3) -> list[Clip]:
    """In-memory CREMA-D-like clips of all 91 actors (sex alternating by id)."""
    return [
        Clip(
            clip_id=f"crema-d/{a}_{i}",
            path=f"/x/{a}_{i}.wav",
            corpus="crema-d",
            speaker=f"crema-d/{a}",
            emotion=EMOTIONS[i % 6],
            gender="male" if a % 2 else "female",
            content_hash=f"h{a}-{i}",
        )
        for a in range(1001, 1092)
        for i in range(per_actor)
    ]


def test_crema5_folds_are_fixed_disjoint_and_chosen_by_auto() -> None:
    actors = [a for fold in CREMA_D_FOLDS.values() for a in fold]
    assert sorted(actors) == list(range(1001, 1092)) and sorted(
        map(len, CREMA_D_FOLDS.values())
    ) == [18, 18, 18, 18, 19]
    clips = crema_clips()
    splits = make_splits(clips)  # auto: a complete CREMA-D manifest
    assert [s.scheme for s in splits] == ["crema5"] * 5 and [s.name for s in splits] == [
        f"fold{f}" for f in range(1, 6)
    ]
    for split, fold in zip(splits, CREMA_D_FOLDS.values()):
        assert split.test_speakers == sorted(f"crema-d/{a}" for a in fold)
        assert len(split.val_speakers) == 2 and not set(split.val_speakers) & set(
            split.test_speakers
        )
        assert speakers_of(split, clips, "test").isdisjoint(
            speakers_of(split, clips, "train") | speakers_of(split, clips, "val")
        )
    assert make_splits(clips, "crema5") == splits  # deterministic
    assert make_splits(clips[:30])[0].scheme == "speaker_kfold"  # not every actor: speaker k-fold
    with pytest.raises(EmorecError, match="crema5 needs CREMA-D actors"):
        make_splits(clips + ravdess_clips(range(1, 3)), "crema5")


def test_crema5_folds_follow_their_rule_on_the_real_demographics(shared_data: Path) -> None:
    """The table is the documented rule applied to the corpus's VideoDemographics.csv: 8-10 actors
    of each sex per fold and the same spread of ages."""
    demographics = shared_data / "crema-d-metadata" / "VideoDemographics.csv"
    assert crema_d_folds_from_demographics(demographics) == CREMA_D_FOLDS
    import csv

    rows = {int(r["ActorID"]): r for r in csv.DictReader(open(demographics, newline=""))}
    for fold in CREMA_D_FOLDS.values():
        men = sum(rows[a]["Sex"] == "Male" for a in fold)
        assert 9 <= men <= 10 and 8 <= len(fold) - men <= 9
        ages = sorted(int(rows[a]["Age"]) for a in fold)
        assert ages[0] <= 22 and ages[-1] >= 56


def test_ravdess6_refuses_other_corpora() -> None:
    with pytest.raises(EmorecError, match="ravdess6 needs RAVDESS"):
        make_splits(ravdess_clips() + generic_clips(3), "ravdess6")


def test_speaker_kfold_covers_every_speaker_once_and_balances_gender() -> None:
    clips = generic_clips(20)
    splits = make_splits(clips, "speaker_kfold", k=5, val_speakers=2, seed=3)
    tests = [set(s.test_speakers) for s in splits]
    assert sorted(x for t in tests for x in t) == sorted({c.speaker for c in clips})
    for split in splits:
        assert len(split.test_speakers) == 4
        assert sum(int(s[-2:]) % 2 for s in split.test_speakers) == 2  # 2 male + 2 female
        assert set(split.val_speakers) <= {c.speaker for c in clips} - set(split.test_speakers)
        assert speakers_of(split, clips, "val") == set(split.val_speakers)
        assert not speakers_of(split, clips, "train") & set(split.val_speakers)
    again = make_splits(clips, "speaker_kfold", k=5, val_speakers=2, seed=3)
    assert [s.to_dict() for s in again] == [s.to_dict() for s in splits]
    other = make_splits(clips, "speaker_kfold", k=5, val_speakers=2, seed=4)
    assert [s.test_speakers for s in other] != [s.test_speakers for s in splits]


def test_impossible_splits_error() -> None:
    assert min_speakers(5, 2) == 5 and min_speakers(2, 2) == 6
    with pytest.raises(EmorecError, match=r"needs at least 5 speakers; the manifest has 4"):
        make_splits(generic_clips(4), "speaker_kfold", k=5)
    with pytest.raises(EmorecError, match=r"needs at least 6 speakers"):
        make_splits(generic_clips(5), "speaker_kfold", k=2, val_speakers=2)
    with pytest.raises(ConfigError, match="unknown split scheme 'random'"):
        make_splits(generic_clips(10), "random")
    with pytest.raises(EmorecError, match="empty manifest"):
        make_splits([], "speaker_kfold")
    with pytest.raises(ConfigError, match="val_speakers"):
        make_splits(generic_clips(10), "speaker_kfold", val_speakers=0)


def test_ravdess6_missing_fold_actors_errors() -> None:
    clips = [c for c in ravdess_clips() if int(c.speaker[-2:]) not in RAVDESS_FOLDS[3]]
    with pytest.raises(EmorecError, match="fold3: empty test"):
        make_splits(clips, "ravdess6")


def test_unknown_speakers_refused_for_speaker_independent() -> None:
    clips = generic_clips(10)
    clips[0] = dataclasses.replace(clips[0], speaker="folder/unknown")
    with pytest.raises(EmorecError, match="no known speaker.*stratified"):
        make_splits(clips, "speaker_kfold")
    assert make_splits(clips, "stratified")[0].speaker_independent is False


def test_stratified_split_is_flagged_speaker_dependent() -> None:
    clips = ravdess_clips(range(1, 25), per_actor=16)
    (split,) = make_splits(clips, "stratified", test_size=0.2, seed=1)
    assert split.speaker_independent is False and split.scheme == "stratified"
    assert split.name != split.scheme  # reports print "scheme name": never "stratified stratified"
    assert split.test_speakers == [] and split.val_speakers == []
    n = len(clips)
    assert abs(len(split.test) - 0.2 * n) <= 8
    assert len(split.train) + len(split.val) + len(split.test) == n
    by_id = {c.clip_id: c for c in clips}
    for part in ("train", "val", "test"):
        assert {by_id[cid].emotion for cid in getattr(split, part)} == set(EMOTIONS)


def test_stratified_keeps_duplicate_audio_together() -> None:
    clips = generic_clips(6, per_speaker=20)
    twin = dataclasses.replace(clips[0], clip_id="c/twin", content_hash=clips[0].content_hash)
    for seed in range(5):
        (split,) = make_splits([*clips, twin], "stratified", seed=seed)
        side = {cid: part for part in ("train", "val", "test") for cid in getattr(split, part)}
        assert side["c/twin"] == side[clips[0].clip_id]


def _split_for(clips: list[Clip]) -> Split:
    return make_splits(clips, "ravdess6")[0]


def test_leakage_guard_catches_speaker() -> None:
    clips = ravdess_clips()
    split = _split_for(clips)
    leaked = dataclasses.replace(split, train=[*split.train, split.test[0]], test=split.test[1:])
    with pytest.raises(LeakageError, match="speaker ravdess/01"):
        check_leakage(leaked, clips)
    val_leak = dataclasses.replace(split, val=[*split.val, split.train[0]], train=split.train[1:])
    with pytest.raises(LeakageError, match="speaker .* in both train and val"):
        check_leakage(val_leak, clips)


def test_leakage_guard_catches_content_hash() -> None:
    clips = ravdess_clips()
    split = _split_for(clips)
    by_id = {c.clip_id: c for c in clips}
    test_clip = by_id[split.test[0]]
    copy = Clip(
        clip_id="ravdess/copy",
        path="/x/copy.wav",
        corpus="ravdess",
        speaker="ravdess/02",
        emotion="neutral",
        content_hash=test_clip.content_hash,
    )
    leaked = dataclasses.replace(split, train=[*split.train, "ravdess/copy"])
    with pytest.raises(
        LeakageError, match=rf"audio \(content hash\) {test_clip.content_hash}.*ravdess/copy"
    ):
        check_leakage(leaked, [*clips, copy])


def test_leakage_guard_catches_performance_in_speaker_dependent_split() -> None:
    clips = ravdess_clips()
    (split,) = make_splits(clips, "stratified")
    by_id = {c.clip_id: c for c in clips}
    target = by_id[split.test[0]]
    av = dataclasses.replace(
        target, clip_id="ravdess/av-copy", modality="audio_video", content_hash="other"
    )
    leaked = dataclasses.replace(split, train=[*split.train, "ravdess/av-copy"])
    with pytest.raises(LeakageError, match=f"performance {target.performance}"):
        check_leakage(leaked, [*clips, av])
    check_leakage(split, clips)  # speakers may straddle a speaker-dependent split


def test_leakage_guard_catches_clip_in_two_parts_and_unknown_ids() -> None:
    clips = ravdess_clips()
    split = _split_for(clips)
    with pytest.raises(LeakageError, match="in both"):
        check_leakage(dataclasses.replace(split, val=[*split.val, split.test[0]]), clips)
    with pytest.raises(EmorecError, match="not in the manifest"):
        check_leakage(dataclasses.replace(split, test=[*split.test, "ravdess/ghost"]), clips)


def test_save_and_load_roundtrip(tmp_path: Path) -> None:
    splits = make_splits(ravdess_clips(), "ravdess6")
    path = save_splits(splits, tmp_path / "out" / "splits.json")
    assert load_splits(path) == splits
    assert not list((tmp_path / "out").glob("*.tmp"))
    with pytest.raises(EmorecError, match="not found"):
        load_splits(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(EmorecError, match="not a splits file"):
        load_splits(tmp_path / "bad.json")


@pytest.mark.realdata
def test_real_ravdess_standard_folds(shared_data: Path) -> None:
    clips = prepare_corpus("ravdess", shared_data / "ravdess-speech-16k", progress=False).clips
    splits = make_splits(clips)
    assert [s.scheme for s in splits] == ["ravdess6"] * 6
    for split in splits:
        assert len(split.test) == 240  # 4 actors x 60 clips
        assert len(split.val) == 120 and len(split.train) == 1080
        check_leakage(split, clips)


def test_train_only_corpora_join_every_training_side_and_never_validation_or_test() -> None:
    ravdess, crema = ravdess_clips(), crema_clips(per_actor=2)
    splits = make_splits(ravdess + crema, "ravdess6", train_only_corpora=["crema-d"])
    plain = make_splits(ravdess, "ravdess6")
    crema_ids = {c.clip_id for c in crema}
    for with_crema, alone in zip(splits, plain):
        # RAVDESS's folds, unchanged
        assert with_crema.test == alone.test and with_crema.val == alone.val
        assert set(with_crema.train) == set(alone.train) | crema_ids
    with pytest.raises(EmorecError, match="no clip of these corpora"):
        make_splits(ravdess, "ravdess6", train_only_corpora=["crema-d"])


def test_cross_corpus_trains_on_one_corpus_and_tests_on_all_of_the_other() -> None:
    ravdess, crema = ravdess_clips(), crema_clips(per_actor=2)
    (split,) = make_splits(
        ravdess + crema, "cross_corpus", val_speakers=2, test_corpora=["crema-d"]
    )
    assert split.name == "ravdess -> crema-d" and split.speaker_independent
    assert set(split.test) == {c.clip_id for c in crema}
    assert {c.clip_id for c in ravdess} == set(split.train) | set(split.val)
    assert len(split.val_speakers) == 2 and all(
        s.startswith("ravdess/") for s in split.val_speakers
    )
    check_leakage(split, ravdess + crema)
    with pytest.raises(ConfigError, match="test_corpora"):
        make_splits(ravdess + crema, "cross_corpus")
    with pytest.raises(EmorecError, match="one to train on"):
        make_splits(crema, "cross_corpus", test_corpora=["crema-d"])


def test_merged_manifest_trains_with_a_corpus_on_the_training_side_only(tmp_path: Path) -> None:
    """`emorec merge` joins two corpora's manifests (a repeated clip id is refused), and a recipe
    with split.train_only_corpora gets folds of the first corpus with the second added to
    training."""
    from emorec.training.experiment import prepare_experiment
    from emorec.corpora.manifest import merge_manifests, write_manifest
    from emorec.training.config import load_config

    write_manifest(ravdess_clips(), tmp_path / "ravdess.csv")
    write_manifest(crema_clips(per_actor=1), tmp_path / "crema.csv")
    from test_corpora import emorec_cli

    proc = emorec_cli(
        "merge",
        tmp_path / "ravdess.csv",
        tmp_path / "crema.csv",
        "--out",
        tmp_path / "both.csv",
        cwd=tmp_path,
    )
    assert proc.returncode == 0 and "crema-d: 91" in proc.stdout and "ravdess: 192" in proc.stdout
    with pytest.raises(EmorecError, match="is also in"):
        merge_manifests([tmp_path / "ravdess.csv", tmp_path / "ravdess.csv"])
    recipe = Path(__file__).resolve().parents[1] / "configs" / "ravdess_crema_d_attn_crnn_v2.yaml"
    config = load_config(recipe, [f"data.manifest={tmp_path / 'both.csv'}"])
    assert (
        config.split.train_only_corpora == ("crema-d",)
        and config.trainer.ema_half_life_epochs == 0.5
    )
    experiment = prepare_experiment(config, extract=False, progress=False)
    assert len(experiment.splits) == 6 and len(experiment.class_names) == 8
    for split in experiment.splits:
        assert all(s.startswith("ravdess/") for s in split.test_speakers + split.val_speakers)
        assert sum(i.startswith("crema-d/") for i in split.train) == 91


def test_cross_corpus_validation_hears_every_sizeable_training_corpus() -> None:
    """Three training corpora: validation speakers come from each by its share of the speakers, none
    from a corpus too small to spare one (two speakers), and none from the held-out corpus."""
    tiny = [
        Clip(
            clip_id=f"tess/{s}_{i}",
            path=f"/x/tess_{s}_{i}.wav",
            corpus="tess",
            speaker=f"tess/{s}",
            emotion="sad",
            gender="female",
        )
        for s in ("OAF", "YAF")
        for i in range(3)
    ]
    ravdess, crema = ravdess_clips(), crema_clips(per_actor=2)
    held_out = [
        Clip(
            clip_id=f"urdu/{i}",
            path=f"/x/urdu_{i}.wav",
            corpus="urdu",
            speaker=f"urdu/M{i}",
            emotion="sad",
        )
        for i in range(5)
    ]
    (split,) = make_splits(
        ravdess + crema + tiny + held_out, "cross_corpus", val_speakers=12, test_corpora=["urdu"]
    )
    by_corpus = Counter(s.split("/")[0] for s in split.val_speakers)
    assert by_corpus == {
        "crema-d": 9,
        "ravdess": 2,
    }  # round(12 x 91/117), round(12 x 24/117); TESS keeps both
    assert {c.clip_id for c in tiny} <= set(split.train) and set(split.test) == {
        c.clip_id for c in held_out
    }
    check_leakage(split, ravdess + crema + tiny + held_out)
