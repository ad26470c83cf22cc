"""The packed feature store: what it reads back, when it is built, and that a kill or a bad entry
leaves nothing half-written behind."""

from __future__ import annotations

import numpy as np
import pytest

import emorec.features.packed as packed
from emorec.data import ClipDataset, Normalizer
from emorec.features.packed import PackedStore
from emorec.features.store import FeatureStore
from emorec.corpora.manifest import Clip


def clips_with_features(tmp_path, n=30, features=6, seed=0):
    """A store with ``n - 2`` entries of random lengths (the last two clips have none)."""
    store = FeatureStore(tmp_path / "cache", "logmel", {"n_mels": features})
    rng = np.random.default_rng(seed)
    clips = [
        Clip(
            clip_id=f"c{i}",
            path=f"c{i}.wav",
            corpus="x",
            speaker=f"s{i % 3}",
            emotion=("happy", "sad")[i % 2],
            content_hash=f"{i:064x}",
        )
        for i in range(n)
    ]
    arrays = {}
    for clip in clips[:-2]:
        arrays[clip.clip_id] = (
            rng.normal(size=(int(rng.integers(1, 50)), features)) * 20 - 40
        ).astype(np.float32)
        store.put(clip, arrays[clip.clip_id])
    return store, clips, arrays


def test_float32_pack_reads_back_every_entry_exactly_across_shards(tmp_path, monkeypatch):
    monkeypatch.setattr(packed, "SHARD_BYTES", 1024)  # a few clips a shard
    store, clips, arrays = clips_with_features(tmp_path)
    pack = PackedStore.for_clips(store, clips)
    assert len(list(pack.folder.glob("shard-*.npy"))) > 3
    assert len(pack) == len(arrays)
    for clip in clips:
        if clip.clip_id in arrays:
            assert clip in pack and pack.frames(clip) == len(arrays[clip.clip_id])
            np.testing.assert_array_equal(pack.get(clip), arrays[clip.clip_id])
        else:
            assert clip not in pack and pack.get(clip) is None and pack.frames(clip) == 0
    # a plain .npy anyone can map
    shard = np.load(next(pack.folder.glob("shard-*.npy")), mmap_mode="r")
    assert shard.dtype == np.float32 and shard.shape[1] == 6


def test_float16_pack_is_half_the_size_within_a_few_hundredths_of_a_db(tmp_path):
    store, clips, arrays = clips_with_features(tmp_path)
    wide, half = (
        PackedStore.for_clips(store, clips, "float32"),
        PackedStore.for_clips(store, clips, "float16"),
    )
    assert wide.folder != half.folder
    size = lambda pack: sum(f.stat().st_size for f in pack.folder.glob("shard-*.npy"))  # noqa: E731
    assert size(half) < 0.55 * size(wide)
    error = max(
        np.abs(half.get(c).astype(np.float32) - arrays[c.clip_id]).max() for c in clips[:-2]
    )
    assert 0 < error < 0.07  # dB values below 128 in magnitude: float16 steps of 1/16 at most


def test_a_pack_is_built_once_per_clip_set_and_anew_for_another(tmp_path):
    store, clips, _ = clips_with_features(tmp_path)
    first = PackedStore.for_clips(store, clips)
    stamp = (first.folder / "index.json").stat().st_mtime_ns
    again = PackedStore.for_clips(store, list(reversed(clips)))  # the same set in another order
    assert (
        again.folder == first.folder and (again.folder / "index.json").stat().st_mtime_ns == stamp
    )
    fewer = PackedStore.for_clips(store, clips[:10])
    assert fewer.folder != first.folder and len(fewer) == 10


def test_a_build_killed_midway_leaves_no_pack_and_the_next_one_builds_it(tmp_path, monkeypatch):
    store, clips, arrays = clips_with_features(tmp_path)
    real_load, calls = np.load, []

    def failing_load(path, *args, **kwargs):
        if kwargs.get("mmap_mode") is None:
            calls.append(path)
            if len(calls) == 5:
                raise KeyboardInterrupt  # what a kill mid-copy looks like to the process
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(packed.np, "load", failing_load)
    with pytest.raises(KeyboardInterrupt):
        PackedStore.for_clips(store, clips)
    monkeypatch.setattr(packed.np, "load", real_load)
    packs = store.root / "packs"
    assert not any(p.name.endswith(".tmp") or (p / "index.json").exists() for p in packs.iterdir())
    pack = PackedStore.for_clips(store, clips)
    np.testing.assert_array_equal(pack.get(clips[4]), arrays["c4"])


def test_an_unreadable_entry_is_left_out_and_a_value_float16_cannot_hold_is_refused(tmp_path):
    store, clips, arrays = clips_with_features(tmp_path)
    store.path(clips[0]).write_bytes(b"\x93NUMPY truncated")
    pack = PackedStore.for_clips(store, clips)
    assert clips[0] not in pack and len(pack) == len(arrays) - 1
    store.put(clips[1], np.full((3, 6), 1e6, np.float32))
    with pytest.raises(ValueError, match="float16's range"):
        PackedStore.for_clips(store, clips[1:], "float16")


def test_a_dataset_over_a_pack_gives_the_items_of_one_over_the_store(tmp_path):
    store, clips, _ = clips_with_features(tmp_path)
    labels = {"happy": 0, "sad": 1}
    held = ClipDataset(clips, labels, {"audio": store})
    pack = PackedStore.for_clips(store, clips)
    norm = Normalizer.fit(held.real_frames("audio"), center="utterance")
    lazy = ClipDataset(clips, labels, {"audio": pack}, {"audio": norm})
    held.normalizers = {"audio": norm}
    assert [c.clip_id for c in lazy.missing] == ["c28", "c29"]
    assert lazy.lengths() == held.lengths() and len(lazy) == len(held) == 28
    for i in range(len(held)):
        a, b = held[i], lazy[i]
        assert a["label"] == b["label"] and b["audio"].dtype == a["audio"].dtype
        np.testing.assert_array_equal(a["audio"].numpy(), b["audio"].numpy())
    refit = Normalizer.fit(lazy.real_frames("audio"), center="utterance")
    np.testing.assert_allclose(refit.std, norm.std, rtol=1e-6)


def test_normalizer_statistics_in_one_pass_match_numpy(tmp_path):
    _, _, arrays = clips_with_features(tmp_path)
    frames = list(arrays.values())
    norm = Normalizer.fit(frames)
    stacked = np.concatenate(frames).astype(np.float64)
    np.testing.assert_allclose(norm.mean, stacked.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(norm.std, stacked.std(axis=0), rtol=1e-5)
