import numpy as np
import pytest
import torch

from emorec.data import BucketBatchSampler, ClipDataset, Normalizer, pad_collate, padding_fraction
from emorec.features.store import FeatureStore
from emorec.corpora.manifest import Clip


def _item(length: int, dim: int = 3, label: int = 0, index: int = 0) -> dict:
    return {
        "audio": torch.arange(length * dim, dtype=torch.float32).reshape(length, dim) + 1,
        "label": label,
        "index": index,
    }


def test_pad_collate_pads_to_longest_and_masks_real_frames():
    batch = pad_collate([_item(2), _item(5, label=1, index=1), _item(1, index=2)])
    assert batch["audio"].shape == (3, 5, 3)
    assert batch["audio_mask"].tolist() == [
        [True, True, False, False, False],
        [True] * 5,
        [True, False, False, False, False],
    ]
    assert torch.all(batch["audio"][0, 2:] == 0)
    assert torch.equal(batch["audio"][1], _item(5)["audio"])
    assert batch["label"].tolist() == [0, 1, 0]
    assert batch["index"].tolist() == [0, 1, 2]


def test_pad_collate_refuses_empty_batch():
    with pytest.raises(ValueError):
        pad_collate([])


@pytest.mark.parametrize("n,batch_size", [(1, 4), (7, 3), (32, 32), (33, 32), (100, 7)])
def test_bucket_sampler_covers_every_index_once_and_never_yields_empty(n, batch_size):
    lengths = list(np.random.default_rng(0).integers(1, 500, size=n))
    sampler = BucketBatchSampler(lengths, batch_size, shuffle=True, seed=3)
    for _ in range(2):
        batches = list(sampler)
        assert all(1 <= len(b) <= batch_size for b in batches)
        assert sorted(i for b in batches for i in b) == list(range(n))
        assert len(batches) == len(sampler)


def test_bucketing_reduces_padding():
    lengths = list(np.random.default_rng(1).integers(50, 600, size=400))
    bucketed = padding_fraction(lengths, list(BucketBatchSampler(lengths, 32, seed=0)))
    plain = padding_fraction(
        lengths, list(BucketBatchSampler(lengths, 32, seed=0, bucketing=False))
    )
    assert bucketed < 0.5 * plain


def test_bucket_sampler_is_deterministic_per_seed_and_epoch():
    lengths = list(range(1, 50))
    a, b = BucketBatchSampler(lengths, 8, seed=5), BucketBatchSampler(lengths, 8, seed=5)
    assert list(a) == list(b)
    assert list(a) == list(b)  # second epoch of each also agrees


def test_normalizer_standardises_with_training_statistics():
    rng = np.random.default_rng(0)
    arrays = [
        rng.normal(5.0, 2.0, size=(int(n), 4)).astype(np.float32)
        for n in rng.integers(10, 50, size=20)
    ]
    norm = Normalizer.fit(arrays)
    stacked = np.concatenate([norm(a) for a in arrays])
    assert np.allclose(stacked.mean(0), 0, atol=1e-4) and np.allclose(stacked.std(0), 1, atol=1e-3)
    again = Normalizer.from_dict(norm.to_dict())
    assert np.allclose(again(arrays[0]), norm(arrays[0]))


def test_utterance_normalizer_removes_each_clips_offset():
    """Per-clip mean removal: a constant offset (a louder recording, on log-mel) changes nothing."""
    rng = np.random.default_rng(1)
    arrays = [
        (rng.normal(0.0, 2.0, size=(int(n), 4)) + rng.normal(0, 10, size=4)).astype(np.float32)
        for n in rng.integers(10, 50, size=20)
    ]
    norm = Normalizer.fit(arrays, center="utterance")
    clip = arrays[3]
    assert np.allclose(norm(clip + 6.0), norm(clip), atol=1e-5)
    assert np.allclose(norm(clip).mean(0), 0, atol=1e-5)
    # scaled by the spread within clips (~2), not by the
    # clips' offsets (~10), as a global fit would be
    assert np.all(norm.std < 3.0) and np.all(Normalizer.fit(arrays).std > 5.0)
    assert np.all(norm(clip[:1]) == 0)  # one frame: its own mean, finite zeros
    again = Normalizer.from_dict(norm.to_dict())
    assert again.center == "utterance" and np.allclose(again(clip), norm(clip))
    old_export = {
        "mean": norm.mean.tolist(),
        "std": norm.std.tolist(),
    }  # a model.json from before "center"
    assert Normalizer.from_dict(old_export).center == "global"
    with pytest.raises(ValueError, match="center"):
        Normalizer.fit(arrays, center="speaker")


def test_utterance_mean_reads_real_frames_only():
    """Frames marked missing (no face found) neither shift a clip's mean nor leave their zeros."""
    rows = np.array([[1.0, 2.0], [100.0, 100.0], [3.0, 4.0]], np.float32)
    valid = np.array([True, False, True])
    norm = Normalizer(mean=np.zeros(2, np.float32), std=np.ones(2, np.float32), center="utterance")
    out = norm(rows, valid=valid)
    assert np.allclose(out[[0, 2]], [[-1.0, -1.0], [1.0, 1.0]])


def test_dataset_leaves_out_clips_without_cached_features(tmp_path):
    store = FeatureStore(tmp_path, "toy", {"a": 1})
    clips = [
        Clip(
            clip_id=f"c{i}",
            path=f"/x/{i}.wav",
            corpus="t",
            speaker="s",
            emotion="happy" if i % 2 else "sad",
            content_hash=f"{i:064x}",
        )
        for i in range(4)
    ]
    for clip in clips[:3]:
        store.put(clip, np.ones((i := int(clip.clip_id[1]) + 1, 2), np.float32) * i)
    dataset = ClipDataset(clips, {"sad": 0, "happy": 1}, {"audio": store})
    assert len(dataset) == 3 and [c.clip_id for c in dataset.missing] == ["c3"]
    assert dataset.lengths() == [1, 2, 3]
    assert dataset.labels().tolist() == [0, 1, 0]
    assert dataset[2]["audio"].shape == (3, 2)


def test_each_clip_carries_the_classes_its_corpus_has(tmp_path):
    """``loss.corpus_classes``: the class rows come from the clips of each corpus (CREMA-D has no
    calm), and every item and batch carries its clip's row for the loss to mask with."""
    from emorec.data import corpus_class_masks

    store = FeatureStore(tmp_path, "toy", {"a": 1})
    labels = [
        ("ravdess", "calm"),
        ("ravdess", "sad"),
        ("crema-d", "sad"),
        ("crema-d", "happy"),
        ("ravdess", "happy"),
    ]
    clips = [
        Clip(
            clip_id=f"{corpus}/{i}",
            path=f"/x/{i}.wav",
            corpus=corpus,
            speaker=f"{corpus}/s",
            emotion=emotion,
            content_hash=f"{i:064x}",
        )
        for i, (corpus, emotion) in enumerate(labels)
    ]
    for clip in clips:
        store.put(clip, np.ones((3, 2), np.float32))
    index = {"calm": 0, "sad": 1, "happy": 2}
    masks = corpus_class_masks(clips, index)
    assert masks["ravdess"].tolist() == [True, True, True] and masks["crema-d"].tolist() == [
        False,
        True,
        True,
    ]
    dataset = ClipDataset(clips, index, {"audio": store}, corpus_classes=masks)
    batch = pad_collate([dataset[i] for i in range(len(dataset))])
    assert batch["classes"].tolist() == [masks[c.corpus].tolist() for c in clips]
    assert "classes" not in ClipDataset(clips, index, {"audio": store})[0]


def test_frames_marked_missing_become_holes_in_the_mask(tmp_path):
    """Face features carry a face-present column: such frames are masked, not fed as real zeros."""
    store = FeatureStore(tmp_path, "face_landmarks", {"toy": True})
    clip = Clip(
        clip_id="v", path="/x/v.mp4", corpus="t", speaker="s", emotion="sad", content_hash="f" * 64
    )
    rows = np.arange(5 * 3, dtype=np.float32).reshape(5, 3) + 1.0
    valid = np.array([1, 0, 1, 1, 0], np.float32)
    store.put(clip, np.concatenate([rows, valid[:, None]], axis=1))
    dataset = ClipDataset([clip], {"sad": 0}, {"video": store})
    assert dataset.features["video"][0].shape == (5, 3)
    assert np.array_equal(dataset.real_frames("video")[0], rows[[0, 2, 3]])
    norm = Normalizer.fit(dataset.real_frames("video"))
    dataset.normalizers = {"video": norm}
    batch = pad_collate(
        [
            dataset[0],
            {
                **dataset[0],
                "video": dataset[0]["video"][:2],
                "video_valid": dataset[0]["video_valid"][:2],
            },
        ]
    )
    assert batch["video_mask"].tolist() == [
        [True, False, True, True, False],
        [True, False, False, False, False],
    ]
    assert torch.all(batch["video"][0, 1] == 0) and torch.all(batch["video"][0, 4] == 0)
    assert torch.allclose(batch["video"][0, 0], torch.from_numpy(norm(rows[:1])[0]))


def _corpus_clips(sizes: dict[str, list[int]]) -> list[Clip]:
    """``{"big": [300, 100]}``: corpus big with two speakers of 300 and 100 clips."""
    return [
        Clip(
            clip_id=f"{corpus}/{s}/{i}",
            path="",
            corpus=corpus,
            speaker=f"{corpus}/{s}",
            emotion="sad",
        )
        for corpus, speakers in sizes.items()
        for s, n in enumerate(speakers)
        for i in range(n)
    ]


@pytest.mark.parametrize(
    ("power", "big_share", "loud_speaker_share"),
    [(1.0, 0.8, 0.75), (0.5, 2 / 3, 0.634), (0.0, 0.5, 0.5)],
)
def test_balanced_weights_share_corpora_and_speakers_by_size_to_the_power(
    power, big_share, loud_speaker_share
):
    from emorec.data import balanced_weights

    clips = _corpus_clips({"big": [300, 100], "small": [50, 50]})
    weights = balanced_weights(clips, power)
    big = np.array([c.corpus == "big" for c in clips])
    loud = np.array([c.speaker == "big/0" for c in clips])
    assert weights.sum() == pytest.approx(1.0) and (weights > 0).all()
    assert weights[big].sum() == pytest.approx(big_share, abs=1e-3)
    assert weights[loud].sum() / weights[big].sum() == pytest.approx(loud_speaker_share, abs=1e-3)
    assert len(set(np.round(weights[loud], 12))) == 1  # one speaker's clips alike
    with pytest.raises(ValueError, match="power"):
        balanced_weights(clips, 1.5)


def test_weighted_sampler_draws_a_fixed_epoch_by_weight_deterministically():
    weights = [0.0] * 50 + [1.0] * 50
    sampler = BucketBatchSampler([10] * 100, 16, seed=3, weights=weights, draws=400)
    first = list(sampler)
    drawn = [i for batch in first for i in batch]
    assert len(sampler) == 25 and len(drawn) == 400 and min(drawn) >= 50  # zero weight: never drawn
    assert len(set(drawn)) < 400  # with replacement
    sampler.set_epoch(0)
    assert list(sampler) == first
    assert list(sampler) != first  # the next epoch draws anew
