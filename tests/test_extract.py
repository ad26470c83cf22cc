"""The extraction runner: caching, bad files, worker processes, kills, real RAVDESS files."""

from __future__ import annotations

import csv
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import cli_process
import pytest
import soundfile as sf
from conftest import REPO, write_tone

from emorec.errors import ConfigError
from emorec.features import FeatureStore, create_extractor, extract_features, load_features
from emorec.features.extract import remove_stale_tmp
from emorec.features.skipped import write_skipped
from emorec.features.spectral import LogMel
from emorec.corpora.manifest import Clip, write_manifest
from emorec.media.audio import audio_info


def make_clip(path: Path, clip_id: str | None = None) -> Clip:
    """A manifest row; unreadable files get a hash of their path, as prepare would skip them."""
    try:
        info = audio_info(path)
        content_hash, duration = info.content_hash, info.duration
    except Exception:
        content_hash, duration = hashlib.sha256(str(path).encode()).hexdigest(), 0.0
    return Clip(
        clip_id=clip_id or f"t/{path.stem}",
        path=str(path),
        corpus="t",
        speaker="t/1",
        emotion="neutral",
        duration=duration,
        content_hash=content_hash,
    )


def tones(directory: Path, n: int, seconds: float = 0.5) -> list[Clip]:
    return [
        make_clip(
            write_tone(directory / f"tone{i:03d}.wav", seconds=seconds, freq=150.0 + 10 * i, seed=i)
        )
        for i in range(n)
    ]


def entries(store: FeatureStore) -> list[Path]:
    return sorted(p for p in store.root.rglob("*.npy") if not p.name.startswith("."))


def test_cache_second_run_extracts_nothing(tmp_path):
    clips = tones(tmp_path / "audio", 5)
    ext = create_extractor("logmel")
    first = extract_features(clips, ext, tmp_path / "cache", workers=1, progress=False)
    assert (first.extracted, first.cached, first.skipped) == (5, 0, [])
    assert first.audio_seconds == pytest.approx(2.5)
    second = extract_features(clips, ext, tmp_path / "cache", workers=1, progress=False)
    assert (second.extracted, second.cached, second.skipped) == (0, 5, [])
    store = FeatureStore.for_extractor(tmp_path / "cache", ext)
    loaded = load_features(clips, store)
    assert set(loaded) == {c.clip_id for c in clips}
    assert all(a.shape == (51, 64) for a in loaded.values())
    np.testing.assert_array_equal(loaded[clips[0].clip_id], ext.extract_file(clips[0].path))
    other = extract_features(
        clips,
        create_extractor("logmel", deltas=True),
        tmp_path / "cache",
        workers=1,
        progress=False,
    )
    assert other.extracted == 5  # a different config is a different cache
    assert len({p.name for p in (tmp_path / "cache").iterdir()}) == 2


def test_identical_files_are_counted_as_duplicates(tmp_path):
    clips = tones(tmp_path / "audio", 3)
    copy = tmp_path / "audio" / "copy.wav"
    copy.write_bytes(Path(clips[1].path).read_bytes())
    clips += [make_clip(copy), make_clip(copy, "t/copy-again")]
    ext = create_extractor("logmel")
    first = extract_features(clips, ext, tmp_path / "cache", workers=1, progress=False)
    assert (first.extracted, first.duplicates, first.cached, first.skipped) == (3, 2, 0, [])
    second = extract_features(clips, ext, tmp_path / "cache", workers=1, progress=False)
    assert (second.extracted, second.duplicates, second.cached, second.skipped) == (0, 2, 3, [])
    store = FeatureStore.for_extractor(tmp_path / "cache", ext)
    assert len(entries(store)) == 3
    np.testing.assert_array_equal(store.load(clips[3]), store.load(clips[1]))


def test_the_cli_counts_duplicates_apart_from_extracted_clips(tmp_path):
    clips = tones(tmp_path / "audio", 2)
    copy = tmp_path / "audio" / "copy.wav"
    copy.write_bytes(Path(clips[0].path).read_bytes())
    manifest = write_manifest(clips + [make_clip(copy)], tmp_path / "manifest.csv")
    proc = cli_process.emorec(
        "extract",
        manifest,
        "--cache",
        tmp_path / "cache",
        "--workers",
        "1",
        timeout=120,
        COLUMNS="200",
    )
    assert (
        "logmel: 2 extracted, 0 already cached, 1 duplicate of another clip (shares its cache "
        "entry), 0 skipped" in proc.stdout
    )


def test_bad_files_are_listed_and_the_rest_extracted(tmp_path):
    audio = tmp_path / "audio"
    clips = tones(audio, 3)
    (audio / "empty.wav").write_bytes(b"")
    (audio / "garbage.wav").write_bytes(os.urandom(2000))
    sf.write(
        audio / "nan.wav", np.array([0.1, np.nan, 0.2] * 2000, np.float32), 16000, subtype="FLOAT"
    )
    sf.write(audio / "silent.wav", np.zeros(16000, np.float32), 16000)
    bad = [make_clip(audio / f"{n}.wav") for n in ("empty", "garbage", "nan", "silent")]
    bad.append(make_clip(audio / "gone.wav"))
    result = extract_features(
        bad[:2] + clips + bad[2:],
        create_extractor("logmel"),
        tmp_path / "cache",
        workers=1,
        progress=False,
    )
    assert result.extracted == 3 and result.cached == 0
    reasons = {Path(s.path).stem: s.reason for s in result.skipped}
    assert set(reasons) == {"empty", "garbage", "nan", "silent", "gone"}
    assert "zero-length" in reasons["empty"] and "unreadable" in reasons["garbage"]
    assert "NaN" in reasons["nan"] and "silent" in reasons["silent"]
    assert "not found" in reasons["gone"]
    assert all(s.stage == "extract" for s in result.skipped)
    report = write_skipped(result.skipped, tmp_path / "run" / "skipped.csv")
    with open(report, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["path"] for r in rows] == [s.path for s in result.skipped]
    assert rows[0]["stage"] == "extract" and rows[0]["reason"]
    store = FeatureStore.for_extractor(tmp_path / "cache", create_extractor("logmel"))
    assert len(load_features(bad + clips, store)) == 3
    with pytest.raises(KeyError, match="no cached logmel"):
        load_features(bad + clips, store, strict=True)


def test_worker_processes(tmp_path):
    clips = tones(tmp_path / "audio", 6)
    (tmp_path / "audio" / "garbage.wav").write_bytes(b"RIFF....nonsense")
    clips.append(make_clip(tmp_path / "audio" / "garbage.wav"))
    twin = Clip(**{**clips[0].__dict__, "clip_id": "t/twin"})  # same audio, one entry
    ext = create_extractor("mfcc", deltas=True)
    result = extract_features(clips + [twin], ext, tmp_path / "cache", workers=2, progress=True)
    assert (result.extracted, result.duplicates, result.cached, len(result.skipped)) == (6, 1, 0, 1)
    assert "unreadable" in result.skipped[0].reason
    store = FeatureStore.for_extractor(tmp_path / "cache", ext)
    assert len(entries(store)) == 6
    for clip in clips[:6]:
        # Workers run BLAS on 1 thread (limit_threads), this process on all cores: float32 sums
        # split differently round differently (seen: 7.6e-6 on MFCCs of magnitude ~250, a few
        # ulps), while a wrong frame or coefficient would be off by far more than 1e-5.
        np.testing.assert_allclose(
            store.load(clip), ext.extract_file(clip.path), rtol=1e-5, atol=1e-5
        )


class CrashOnFile(LogMel):
    """Kills its worker process on one file, like a segfault in a decoder would."""

    def extract_file(self, path):
        if Path(path).stem in ("tone002", "tone007"):
            os._exit(3)
        return super().extract_file(path)


@pytest.mark.slow
def test_a_worker_crash_names_the_file_and_the_rest_finish(tmp_path):
    clips = tones(tmp_path / "audio", 10)
    result = extract_features(clips, CrashOnFile(), tmp_path / "cache", workers=2, progress=False)
    assert sorted(Path(s.path).stem for s in result.skipped) == ["tone002", "tone007"]
    assert all("worker process died" in s.reason for s in result.skipped)
    assert result.extracted == 8


class Misconfigured(LogMel):
    def extract(self, wave):
        raise ConfigError("misconfigured: same for every file")


def test_a_config_error_stops_the_run(tmp_path):
    with pytest.raises(ConfigError, match="misconfigured"):
        extract_features(
            tones(tmp_path / "audio", 2),
            Misconfigured(),
            tmp_path / "cache",
            workers=1,
            progress=False,
        )


def test_npy_import_through_the_runner(tmp_path):
    clips = tones(tmp_path / "audio", 2)
    feats = tmp_path / "feats"
    feats.mkdir()
    np.save(feats / "t__tone000.npy", np.ones((3, 4), np.float32))  # by clip id
    np.save(feats / "tone001.npy", np.ones(4, np.float64))  # by file stem, 1-D
    ext = create_extractor("npy", directory=str(feats), modality="video")
    result = extract_features(clips, ext, tmp_path / "cache", progress=False)
    assert result.extracted == 2 and not result.skipped
    loaded = load_features(clips, FeatureStore.for_extractor(tmp_path / "cache", ext))
    assert loaded["t/tone000"].shape == (3, 4) and loaded["t/tone001"].shape == (1, 4)


def test_stale_tmp_files_are_removed(tmp_path):
    store = FeatureStore(tmp_path, "x", {})
    (store.root / "ab").mkdir()
    old, fresh = store.root / "ab" / ".abc.123.tmp", store.root / "ab" / ".abd.456.tmp"
    old.write_bytes(b"partial")
    fresh.write_bytes(b"in progress")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert remove_stale_tmp(store.root) == 1
    assert not old.exists() and fresh.exists()


KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    from emorec.features.extract import extract_features
    from emorec.features.spectral import LogMel
    from emorec.corpora.manifest import read_manifest

    class SlowLogMel(LogMel):  # same name and config as LogMel: the same cache
        def extract(self, wave):
            time.sleep(0.05)
            return super().extract(wave)

    extract_features(read_manifest(sys.argv[1]), SlowLogMel(deltas=True), sys.argv[2],
                     workers=1, progress=False)
""")


@pytest.mark.slow
def test_sigkill_leaves_only_whole_entries_and_a_rerun_finishes(tmp_path):
    clips = tones(tmp_path / "audio", 60, seconds=1.0)
    manifest = write_manifest(clips, tmp_path / "manifest.csv")
    cache = tmp_path / "cache"
    store = FeatureStore.for_extractor(cache, LogMel(deltas=True))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(manifest), str(cache)],
        env=env,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while len(entries(store)) < 5:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "extraction did not start"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = entries(store)
    assert 5 <= len(done) < 60
    for path in store.root.rglob("*"):
        if path.is_dir() or path.name == "extractor.json":
            continue
        if path.name.startswith(".") and path.name.endswith(".tmp"):
            continue  # an interrupted write: invisible to the store
        assert path.suffix == ".npy", path
        array = np.load(path, allow_pickle=False)
        assert array.shape == (101, 192) and np.all(np.isfinite(array))
    rerun = extract_features(clips, LogMel(deltas=True), cache, workers=1, progress=False)
    assert (rerun.cached, rerun.extracted, rerun.skipped) == (len(done), 60 - len(done), [])
    assert len(entries(store)) == 60


@pytest.mark.realdata
def test_real_ravdess_stereo_48k(shared_data, tmp_path):
    files = sorted((shared_data / "ravdess-original-sample").rglob("*.wav"))[:3]
    if len(files) < 3:
        pytest.skip("ravdess-original-sample has fewer than 3 files")
    clips = [make_clip(path, f"ravdess/{path.stem}") for path in files]
    ext = create_extractor("logmel")
    result = extract_features(clips, ext, tmp_path / "cache", workers=1, progress=False)
    assert result.extracted == 3 and not result.skipped
    loaded = load_features(clips, FeatureStore.for_extractor(tmp_path / "cache", ext))
    for clip in clips:
        features = loaded[clip.clip_id]
        assert features.shape[1] == 64
        assert abs(features.shape[0] - clip.duration * 100) <= 2
        assert features.std() > 1.0  # real speech, not a constant


@pytest.mark.realdata
def test_real_ravdess_identical_pair_is_one_extraction_and_one_duplicate(shared_data, tmp_path):
    # Actor 07's statements 1 and 2 of this recording are byte-identical files in RAVDESS.
    files = sorted(
        (shared_data / "ravdess-speech-16k" / "Actor_07").glob("03-01-03-01-02-0[12]-07.*")
    )
    if len(files) != 2 or files[0].read_bytes() != files[1].read_bytes():
        pytest.skip("the identical RAVDESS actor 07 pair is not in ravdess-speech-16k")
    clips = [make_clip(path, f"ravdess/{path.stem}") for path in files]
    result = extract_features(
        clips, create_extractor("logmel"), tmp_path / "cache", workers=1, progress=False
    )
    assert (result.extracted, result.duplicates, result.cached, result.skipped) == (1, 1, 0, [])
