"""The six real CREMA-D VideoFlash clips (.flv: VP6 video + MP3 audio, actor 1001) through the
whole audio-visual path: prepare, the audio track's log-mel, face landmarks, a tiny AV model
trained on them and `emorec predict` on the files. Skipped without ../shared/data."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("av")
pytest.importorskip("dlib")

import cli_process  # noqa: E402
from emorec.corpora import crema_d  # noqa: E402
from emorec.features.base import create_extractor  # noqa: E402
from emorec.features.extract import extract_features  # noqa: E402
from emorec.features.face import split_face_mask  # noqa: E402
from emorec.features.store import FeatureStore  # noqa: E402
from emorec.corpora.manifest import read_manifest  # noqa: E402
from emorec.corpora.splits import Split, save_splits  # noqa: E402

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
# One spec each for the test's own extraction and the recipe, so training finds them cached.
AUDIO = {"name": "logmel", "n_mels": 16}
VIDEO = {"name": "face_landmarks", "fps": 15.0}
STEMS = [f"1001_DFA_{code}_XX" for code in ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")]


def emorec(*args, cwd: Path) -> subprocess.CompletedProcess:
    # One intra-op thread: on a shared 2-core machine torch's spinning worker threads made a
    # 6-clip prediction take 10 s instead of 0.1 s.
    return cli_process.emorec(*args, cwd=cwd, timeout=300, COLUMNS="200", OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from conftest import shared_data_dir

    data = shared_data_dir()
    if data is None or not (data / "crema-d-video-sample").is_dir():
        pytest.skip("real data folder (../shared/data or $EMOREC_DATA_DIR) is absent")
    root = tmp_path_factory.mktemp("real_av")
    videos, meta = data / "crema-d-video-sample", data / "crema-d-metadata"
    proc = emorec(
        "prepare",
        "crema-d",
        videos,
        "-O",
        "include=[audio_video]",
        "-O",
        f"metadata_dir={meta}",
        "--out",
        root / "manifest.csv",
        cwd=root,
    )
    return root, videos, proc


@pytest.fixture(scope="module")
def features(prepared):
    root, _videos, _proc = prepared
    clips = read_manifest(root / "manifest.csv")
    stores = {}
    for modality, spec in (("audio", AUDIO), ("video", VIDEO)):
        extractor = create_extractor(spec["name"], **{k: v for k, v in spec.items() if k != "name"})
        result = extract_features(clips, extractor, root / "cache", workers=0, progress=False)
        assert result.skipped == [] and result.extracted == len(clips), result.skipped
        stores[modality] = FeatureStore.for_extractor(root / "cache", extractor)
    return root, clips, stores


def test_prepare_reads_the_flash_videos_with_their_metadata(prepared):
    root, _videos, proc = prepared
    assert "6 clips from 1 speaker ->" in proc.stdout
    assert "warning" not in proc.stderr and "skipped" not in proc.stderr
    clips = {c.clip_id: c for c in read_manifest(root / "manifest.csv")}
    assert sorted(clips) == [f"crema-d/av/{stem}" for stem in STEMS]
    for stem in STEMS:
        clip = clips[f"crema-d/av/{stem}"]
        assert (clip.modality, clip.speaker, clip.gender) == ("audio_video", "crema-d/1001", "male")
        assert clip.emotion == crema_d.EMOTION_CODES[stem.split("_")[2]]
        assert (clip.sample_rate, clip.channels) == (44100, 1)  # the MP3 track, from the header
        assert 1.5 < clip.duration < 3.0


def test_the_mp3_track_decodes_into_log_mel_on_the_video_clock(features):
    _root, clips, stores = features
    for clip in clips:
        mel = stores["audio"].load(clip)
        assert mel.shape[1] == 16 and np.isfinite(mel).all()
        assert abs(mel.shape[0] - 100 * clip.duration) < 10  # 100 frames/s over the whole clip
        assert float(mel.std()) > 0.5  # speech, not a padded silence


def test_face_landmarks_find_the_face_on_nearly_every_frame(features):
    _root, clips, stores = features
    found = total = 0
    for clip in clips:
        rows, mask = split_face_mask(stores["video"].load(clip))
        assert rows.shape[1] == 280 and abs(len(mask) - 15 * clip.duration) <= 2
        assert mask.mean() >= 0.9, (clip.clip_id, mask.mean())
        found, total = found + int(mask.sum()), total + len(mask)
    assert found / total >= 0.9  # measured: 194 of 194 frames at 15 frames/s


def test_a_tiny_av_model_trains_on_them_and_predicts_each_file(features):
    root, clips, _stores = features
    ids = [c.clip_id for c in clips]
    # One actor, six clips of six emotions: no speaker-independent split exists, so a fixed one
    # (the point is the real files end to end, not a score).
    save_splits(
        [
            Split(
                "fold_1",
                train=ids[:4],
                val=[ids[4]],
                test=[ids[5]],
                speaker_independent=False,
                scheme="fixed",
            )
        ],
        root / "splits.json",
    )
    recipe = {
        "base": str(REPO / "configs" / "base.yaml"),
        "data": {
            "manifest": str(root / "manifest.csv"),
            "cache": str(root / "cache"),
            "features": AUDIO,
            "video_features": VIDEO,
            "workers": 1,
        },
        "split": {"file": str(root / "splits.json")},
        "model": {
            "name": "bilstm_attention",
            "modalities": ["audio", "video"],
            "audio_hidden": [8],
            "video_hidden": [8],
            "audio_time_pool": 4,
            "attention_dim": 8,
            "dense": 8,
            "dropout": 0.1,
        },
        "augment": {"enabled": False},
        "trainer": {"epochs": 2, "batch_size": 4, "patience": 2, "threads": 1},
        "run": {"dir": str(root / "runs"), "name": "av", "folds": "1", "bootstrap": 10},
    }
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    emorec("train", root / "recipe.yaml", "--quiet", cwd=root)
    fold = next((root / "runs").glob("av-*")) / "fold_1"
    meta = json.loads((fold / "model.json").read_text())
    assert sorted(meta["features"]) == ["audio", "video"]
    videos = Path(clips[0].path).parent
    proc = emorec("predict", fold, videos, "--out", root / "predictions.csv", cwd=root)
    rows = list(csv.DictReader(open(root / "predictions.csv")))
    assert sorted(Path(r["path"]).stem for r in rows) == STEMS, proc.stdout + proc.stderr
    classes = sorted(crema_d.EMOTION_CODES.values())
    for row in rows:
        probs = np.array([float(row[name]) for name in classes])
        assert np.all(probs >= 0) and probs.sum() == pytest.approx(1.0, abs=1e-4)
        assert row["predicted"] in classes
    assert "skipped" not in proc.stderr
