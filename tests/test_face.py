"""Face features from video: a real photograph (matplotlib's sample portrait of Grace Hopper)
moved, scaled, rotated and sheared over frames, encoded with PyAV; faceless stretches, faceless
clips, the cache, and the real RAVDESS clip."""

from __future__ import annotations

import math
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from emorec.data import ClipDataset, pad_collate
from emorec.errors import BadInputError, ConfigError, EmorecError
from emorec.features.base import create_extractor
from emorec.features.extract import extract_features
from emorec.features.store import FeatureStore
from emorec.corpora.manifest import Clip

pytest.importorskip("av")
pytest.importorskip("dlib")
from matplotlib import cbook  # noqa: E402  (matplotlib and pillow are core dependencies)
from PIL import Image  # noqa: E402

from emorec.features.face import (
    NO_FACE,
    RIGID,
    STATIC_DIM,
    FaceCrops,
    FaceLandmarks,  # noqa: E402
    align_landmarks,
    landmark_columns,
    split_face_mask,
)
from test_video import noise_frames, tone, write_video  # noqa: E402

FRAME = (320, 240)  # width, height
BACKGROUND = (90, 110, 130)


def head() -> Image.Image:
    """Grace Hopper's head (matplotlib's sample photograph, 512 x 600), face about 215 px wide."""
    with cbook.get_sample_data("grace_hopper.jpg") as handle:
        image = np.asarray(Image.open(handle).convert("RGB"))
    return Image.fromarray(image[60:420, 100:440])


def place(
    image: Image.Image,
    *,
    scale: float = 1.0,
    angle: float = 0.0,
    shear: float = 0.0,
    shift: tuple[float, float] = (0.0, 0.0),
    size: tuple[int, int] = FRAME,
) -> np.ndarray:
    """``image`` scaled, rotated (degrees, counter-clockwise on screen), sheared and moved on a
    plain background: ``(H, W, 3)`` uint8."""
    theta = math.radians(-angle)  # image y points down
    forward = (
        scale
        * np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
        @ np.array([[1.0, shear], [0.0, 1.0]])
    )
    inverse = np.linalg.inv(forward)
    centre_in = np.array(image.size, float) / 2
    centre_out = np.array(size, float) / 2 + np.array(shift)
    offset = centre_in - inverse @ centre_out
    data = (inverse[0, 0], inverse[0, 1], offset[0], inverse[1, 0], inverse[1, 1], offset[1])
    out = image.transform(
        size, Image.Transform.AFFINE, data, resample=Image.Resampling.BILINEAR, fillcolor=BACKGROUND
    )
    return np.asarray(out, dtype=np.uint8)


def moving_face(n: int = 20) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(frames (n, H, W, 3), angles (n,) degrees, scales (n,))``: the head drifts, grows and
    shrinks, tilts and shears a little."""
    u = np.linspace(0, 1, n)
    angles, scales = 8 * np.sin(2 * np.pi * u), 0.62 + 0.1 * np.sin(2 * np.pi * u + 1.0)
    frames = [
        place(
            head(),
            scale=s,
            angle=a,
            shear=0.04 * math.cos(2 * math.pi * v),
            shift=(40 * (v - 0.5), 10 * math.sin(3 * v)),
        )
        for a, s, v in zip(angles, scales, u)
    ]
    return np.stack(frames), angles, scales


def blank(n: int) -> np.ndarray:
    return np.broadcast_to(np.array(BACKGROUND, np.uint8), (n, FRAME[1], FRAME[0], 3)).copy()


@pytest.fixture(scope="module")
def extractor() -> FaceLandmarks:
    return FaceLandmarks(fps=None)


@pytest.fixture(scope="module")
def still_points(extractor: FaceLandmarks) -> np.ndarray:
    import av

    frame = av.VideoFrame.from_ndarray(place(head(), scale=0.6), format="rgb24")
    found = extractor.detect(frame)
    assert found is not None
    return found[0]


def _pixel_landmarks(extractor: FaceLandmarks, frames: np.ndarray) -> list[np.ndarray]:
    import av

    found = [
        extractor.detect(av.VideoFrame.from_ndarray(image, format="rgb24")) for image in frames
    ]
    return [f[0] for f in found if f is not None]


def clip_for(path: Path, clip_id: str = "") -> Clip:
    return Clip(
        clip_id=clip_id or path.stem,
        path=str(path),
        corpus="t",
        speaker="s",
        emotion="happy",
        modality="audio_video",
        content_hash=(path.stem * 64)[:64],
    )


# -- geometry ---------------------------------------------------------------------------------
def test_alignment_removes_rotation_scale_and_translation(still_points: np.ndarray) -> None:
    base = align_landmarks(still_points, *FRAME)
    theta, scale = math.radians(15), 1.7
    rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    moved = (still_points - 100) @ rotation.T * scale + np.array([160.0, 140.0])
    again = align_landmarks(moved, *FRAME)
    np.testing.assert_allclose(again[:136], base[:136], atol=1e-4)
    assert again[136] - base[136] == pytest.approx(theta, abs=1e-5)  # roll
    assert again[137] - base[137] == pytest.approx(math.log(scale), abs=1e-5)  # log scale
    shape = base[:136].reshape(68, 2)
    assert np.sqrt(np.mean(np.sum(shape[[27, 30, 33, 36, 39, 42, 45]] ** 2, 1))) == pytest.approx(
        1, abs=0.3
    )
    assert len(landmark_columns()) == 2 * STATIC_DIM + 1 == 281


# -- videos --------------------------------------------------------------------------------------
def test_moving_face_gives_stable_shape_and_tracks_pose(
    tmp_path: Path, extractor: FaceLandmarks
) -> None:
    frames, angles, scales = moving_face(20)
    path = write_video(tmp_path / "face.mp4", frames, fps=25)
    features = extractor.extract_file(path)
    assert features.shape == (20, 281) and features.dtype == np.float32
    rows, mask = split_face_mask(features)
    assert mask.all()
    shape, pose = rows[:, :136], rows[:, 136:140]
    # the pose-normalised shape moves far less than the picture: the head turns by 16 degrees and
    # scales by 40 %; what is left is landmark jitter and the shear (not a similarity)
    aligned_spread = float(shape.std(axis=0).mean())
    # the same points only moved to the centroid, in the same units (one scale for the clip)
    centred = np.stack([p - p[RIGID].mean(axis=0) for p in _pixel_landmarks(extractor, frames)])
    naive_spread = float(
        (centred / np.sqrt(np.mean(np.sum(centred[:, RIGID] ** 2, -1)))).std(axis=0).mean()
    )
    assert aligned_spread < 0.08 and aligned_spread < 0.4 * naive_spread
    roll = np.degrees(pose[:, 0] - pose[:, 0].mean())
    # counter-clockwise on screen = negative roll
    np.testing.assert_allclose(roll, -(angles - angles.mean()), atol=2.5)
    assert np.corrcoef(pose[:, 1], np.log(scales))[0, 1] > 0.95
    deltas = rows[:, 140:280]
    np.testing.assert_array_equal(deltas[0], 0)
    np.testing.assert_allclose(deltas[1:], rows[1:, :140] - rows[:-1, :140], atol=1e-6)


def test_frames_without_a_face_are_masked_not_zero_faces(
    tmp_path: Path, extractor: FaceLandmarks
) -> None:
    frames, _, _ = moving_face(16)
    video = np.concatenate([frames[:6], blank(5), frames[6:11]])  # face, nobody, face again
    path = write_video(tmp_path / "gap.mp4", video, fps=25)
    rows, mask = split_face_mask(extractor.extract_file(path))
    np.testing.assert_array_equal(mask, [True] * 6 + [False] * 5 + [True] * 5)
    np.testing.assert_array_equal(rows[~mask], 0)
    np.testing.assert_array_equal(rows[6 + 5, 140:], 0)  # no delta across the gap
    assert np.abs(rows[1:6, 140:]).sum() > 0


def test_clip_without_any_face_is_reported_not_crashing(tmp_path: Path) -> None:
    faceless = write_video(tmp_path / "noise.mp4", noise_frames(10, 240, 320), audio=tone(0.4))
    with pytest.raises(BadInputError, match=NO_FACE):
        FaceLandmarks(fps=None).extract_file(faceless)
    face = write_video(tmp_path / "face.mp4", moving_face(6)[0])
    clips = [clip_for(faceless), clip_for(face)]
    result = extract_features(
        clips, FaceLandmarks(fps=10.0), tmp_path / "cache", workers=0, progress=False
    )
    assert result.extracted == 1
    (skipped,) = result.skipped
    assert skipped.path == str(faceless) and skipped.reason.startswith(NO_FACE)


def test_rate_resampling_variable_frame_rate_and_cache(tmp_path: Path) -> None:
    frames, _, _ = moving_face(12)
    # variable frame rate
    times = np.array([0, 0.04, 0.08, 0.12, 0.4, 0.44, 0.48, 0.8, 0.84, 0.88, 0.92, 0.96])
    path = write_video(tmp_path / "vfr.mp4", frames, times=times)
    ext = create_extractor("face_landmarks", fps=10.0)
    assert ext.modality == "video" and ext.frames_per_second == 10.0
    clip = clip_for(path)
    first = extract_features([clip], ext, tmp_path / "cache", workers=0, progress=False)
    assert (first.extracted, first.cached) == (1, 0)
    again = extract_features([clip], ext, tmp_path / "cache", workers=0, progress=False)
    assert (again.extracted, again.cached) == (0, 1)
    stored = FeatureStore.for_extractor(tmp_path / "cache", ext).load(clip)
    assert stored.shape == (10, 281) and split_face_mask(stored)[1].all()  # 1.0 s at 10 frames/s
    other = FeatureStore.for_extractor(
        tmp_path / "cache", create_extractor("face_landmarks", fps=5.0)
    )
    assert other.root != FeatureStore.for_extractor(tmp_path / "cache", ext).root


def test_one_video_file_feeds_both_branches(tmp_path: Path) -> None:
    path = write_video(tmp_path / "talking.mp4", moving_face(10)[0], fps=25, audio=tone(0.4))
    clip = clip_for(path, "av/talking")
    audio, video = create_extractor("logmel"), create_extractor("face_landmarks", fps=25.0)
    stores = {}
    for modality, ext in (("audio", audio), ("video", video)):
        assert (
            extract_features([clip], ext, tmp_path / "cache", workers=0, progress=False).extracted
            == 1
        )
        stores[modality] = FeatureStore.for_extractor(tmp_path / "cache", ext)
    batch = pad_collate([ClipDataset([clip], {"happy": 0}, stores)[0]])
    # The face-present column becomes video_mask, so the model sees 280 features per frame.
    assert batch["video"].shape == (1, 10, 280) and batch["video_mask"].all()  # 25 frames/s
    assert 40 <= batch["audio"].shape[1] <= 46  # 100 frames/s (the AAC encoder adds a little)


def test_extractor_pickles_for_worker_processes(
    still_points: np.ndarray, extractor: FaceLandmarks
) -> None:
    clone = pickle.loads(pickle.dumps(extractor))  # the loaded dlib models stay behind
    assert clone.config() == extractor.config() and clone._predictor is None
    assert "dlib-" in extractor.config()["model_fingerprint"]
    # the hook data loading reads
    assert FaceLandmarks.frame_mask_column and FaceCrops.frame_mask_column


def test_face_models_load_once_per_thread_not_per_extractor() -> None:
    """``emorec predict`` builds an extractor per file; reloading dlib's models cost ~1.4 s each
    time."""
    import threading

    first, second = FaceLandmarks(fps=None), FaceCrops(fps=None)
    assert first._models()[1] is second._models()[1] and first._models()[0] is second._models()[0]
    other: list = []
    worker = threading.Thread(target=lambda: other.append(FaceLandmarks(fps=None)._models()))
    worker.start()
    worker.join()
    assert other[0][1] is not first._models()[1]


def test_face_crops(tmp_path: Path) -> None:
    frames = np.stack(
        [place(head(), scale=0.6), place(head(), angle=12, scale=0.75, shift=(20, 5))]
    )
    path = write_video(tmp_path / "two.mp4", frames, fps=25)
    crops = FaceCrops(size=32, fps=None).extract_file(path)
    assert crops.shape == (2, 32 * 32 + 1) and crops[:, -1].tolist() == [1.0, 1.0]
    assert 0.0 <= crops[:, :-1].min() and crops[:, :-1].max() <= 1.0
    # aligned: rotation and scale undone
    assert np.corrcoef(crops[0, :-1], crops[1, :-1])[0, 1] > 0.8


def test_bad_settings_and_missing_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="fps"):
        FaceLandmarks(fps=0)
    with pytest.raises(ConfigError, match="landmark model"):
        FaceLandmarks(model="dlib194")
    with pytest.raises(ConfigError, match="changed"):
        FaceLandmarks(model_fingerprint="dlib-0/other.dat/1").config()
    monkeypatch.setitem(sys.modules, "dlib", None)
    with pytest.raises(EmorecError, match=r"pip install emorec\[video\]"):
        FaceLandmarks().config()


@pytest.mark.realdata
def test_real_ravdess_clip_has_a_face_on_nearly_every_frame(shared_data: Path) -> None:
    path = shared_data / "ravdess-video-sample" / "01-01-08-02-01-01-19.mp4"
    features = FaceLandmarks(fps=15.0).extract_file(path)
    rows, mask = split_face_mask(features)
    assert rows.shape == (62, 280) and mask.mean() >= 0.95
    assert float(rows[mask, 136].std()) < 0.2  # an upright, mostly still head
