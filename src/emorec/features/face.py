"""Face features per video frame: dlib's face detector and 68-point landmarks.

Models (all offline, from registry packages; ``pip install emorec[video]``):

* detection: dlib's HOG + linear SVM frontal face detector, compiled into ``dlib-bin``;
* landmarks: dlib's 68-point shape predictor (iBUG 300-W markup), the
  ``shape_predictor_68_face_landmarks.dat`` that the ``face-recognition-models`` package
  ships. Its training data (300-W) is licensed for research only: check before commercial use.

Frames are decoded with PyAV (:mod:`emorec.media.video`) at ``fps`` frames per second (resampled by
timestamp, so variable frame rates come out regular). The detector runs on a copy scaled to
``detect_width`` pixels wide (speed), the landmarks on the full-size picture. When a frame
shows several faces, the one the detector is surest of is used.

``face_landmarks`` output, one row per frame, ``F = 2 * 140 + 1 = 281`` columns
(:func:`landmark_columns` names them):

* ``0:136``  the 68 landmarks aligned by a similarity transform: origin at the centroid of
  the rigid points (eye corners and nose), rotated so the line between the eye centres is
  horizontal, divided by the RMS distance of the rigid points from their centroid
  (pose- and scale-normalised shape: the expression);
* ``136:140`` head pose in the picture: roll (radians), log face scale (relative to the frame
  height), face centre x / width, y / height;
* ``140:280`` frame-to-frame differences of those 140 values (0 at the first frame and
  wherever the previous frame has no face);
* ``280`` (the last column) the **face mask**: 1.0 when a face was found in the frame,
  0.0 when not. Frames without a face hold zeros in every other column; they are not real
  observations and must be masked (see :func:`split_face_mask`).

A clip in which no frame shows a face raises :class:`BadInputError` ("no face detected"), so
the extraction run lists it and the clip's video modality is missing.
"""

from __future__ import annotations

import importlib.util
import math
import os
import threading
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from emorec.errors import BadInputError, ConfigError, EmorecError
from emorec.features.base import FeatureExtractor, register_extractor, validate_features
from emorec.media.video import INSTALL_HINT, frame_luma, frame_to_array, import_av, iter_frames

NO_FACE = "no face detected"
N_LANDMARKS = 68
#: dlib 68-point indices: right eye (image left) 36-41, left eye 42-47, nose 27-35.
RIGHT_EYE = slice(36, 42)
LEFT_EYE = slice(42, 48)
#: Points that move little with expression: eye corners
#: and the nose. They fix the similarity transform.
RIGID = np.array([27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 39, 42, 45])
POSE_COLUMNS = ("roll", "log_scale", "centre_x", "centre_y")
STATIC_DIM = 2 * N_LANDMARKS + len(POSE_COLUMNS)  # 140
LANDMARK_MODELS = {"dlib68": "shape_predictor_68_face_landmarks.dat"}
MODEL_PACKAGE = "face_recognition_models"


def import_dlib() -> Any:
    try:
        import dlib
    except ImportError as err:
        raise EmorecError(
            f"face features need dlib ({err}); install them with `{INSTALL_HINT}`"
        ) from None
    return dlib


def landmark_model_path(model: str = "dlib68") -> Path:
    """The shape predictor file inside the ``face-recognition-models`` package.

    Found without importing the package (its ``__init__`` needs the old ``pkg_resources``)."""
    if model not in LANDMARK_MODELS:
        raise ConfigError(
            f"face: unknown landmark model {model!r}; available: {', '.join(LANDMARK_MODELS)}"
        )
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmorecError(
            f"face features need the landmark model package face-recognition-models; "
            f"install it with `{INSTALL_HINT}`"
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "models" / LANDMARK_MODELS[model]
        if path.is_file():
            return path
    raise EmorecError(
        f"{LANDMARK_MODELS[model]} is missing from the installed face-recognition-models; "
        f"reinstall it (`{INSTALL_HINT}`)"
    )


def landmark_columns() -> list[str]:
    """Names of the ``face_landmarks`` columns, in order."""
    static = [f"{axis}{i}" for i in range(N_LANDMARKS) for axis in ("x", "y")] + list(POSE_COLUMNS)
    return static + [f"d_{name}" for name in static] + ["face"]


def split_face_mask(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(T, F)`` face features -> ``(features (T, F-1), mask (T,) bool)``: True where a face was
    found."""
    return features[:, :-1], features[:, -1] > 0.5


def align_landmarks(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """``points (68, 2)`` in pixels -> ``(140,)``: aligned shape (136) and pose (4)."""
    points = points.astype(np.float64)
    right_eye, left_eye = points[RIGHT_EYE].mean(axis=0), points[LEFT_EYE].mean(axis=0)
    dx, dy = left_eye - right_eye
    roll = math.atan2(dy, dx)
    centre = points[RIGID].mean(axis=0)
    cos, sin = math.cos(-roll), math.sin(-roll)
    rotation = np.array([[cos, -sin], [sin, cos]])
    centred = (points - centre) @ rotation.T
    scale = math.sqrt(float(np.mean(np.sum(centred[RIGID] ** 2, axis=1))))
    scale = max(scale, 1e-6)
    pose = [
        roll,
        math.log(scale / max(height, 1)),
        centre[0] / max(width, 1),
        centre[1] / max(height, 1),
    ]
    return np.concatenate([(centred / scale).ravel(), pose]).astype(np.float32)


_LOADED = threading.local()


def _loaded_models(model: str) -> tuple[Any, Any]:
    """dlib's face detector and ``model``'s shape predictor, loaded once per thread.

    Loading them takes over a second, more than finding the faces of a short clip, and
    ``emorec predict`` builds a fresh extractor for every file. Per thread because dlib's
    objects are not documented as thread-safe."""
    cache = _LOADED.__dict__.setdefault("models", {})
    if model not in cache:
        dlib = import_dlib()
        cache[model] = (
            dlib.get_frontal_face_detector(),
            dlib.shape_predictor(str(landmark_model_path(model))),
        )
    return cache[model]


class _FaceVideoExtractor(FeatureExtractor):
    """Shared decoding and detection; subclasses turn one frame's face into a feature row."""

    modality: ClassVar[str] = "video"
    #: The last column is a per-frame validity mask (1.0
    #: face found, 0.0 not): see :func:`split_face_mask`.
    frame_mask_column: ClassVar[bool] = True

    def __init__(
        self,
        *,
        fps: float | None = 30.0,
        detect_width: int = 320,
        upsample: int = 0,
        model: str = "dlib68",
        model_fingerprint: str | None = None,
    ):
        if fps is not None and not float(fps) > 0:
            raise ConfigError(f"{self.name}: fps must be positive, or null for the native frames")
        if int(detect_width) < 0 or int(upsample) < 0:
            raise ConfigError(f"{self.name}: detect_width and upsample must be >= 0")
        self.fps = None if fps is None else float(fps)
        self.detect_width = int(detect_width)  # 0: detect at full size
        self.upsample = int(upsample)
        self.model = str(model)
        if self.model not in LANDMARK_MODELS:
            raise ConfigError(
                f"{self.name}: unknown landmark model {self.model!r}; "
                f"available: {', '.join(LANDMARK_MODELS)}"
            )
        self._expected_fingerprint = model_fingerprint
        self._fingerprint: str | None = None
        self._detector: Any = None
        self._predictor: Any = None

    # -- configuration --------------------------------------------------------------------
    @property
    def model_fingerprint(self) -> str:
        """dlib version + landmark file name and size: the cache key follows the models."""
        if self._fingerprint is None:
            dlib = import_dlib()
            path = landmark_model_path(self.model)
            found = f"dlib-{dlib.__version__}/{path.name}/{path.stat().st_size}"
            if self._expected_fingerprint and found != self._expected_fingerprint:
                raise ConfigError(
                    f"{self.name}: the face models have changed (fingerprint {found}, "
                    f"expected {self._expected_fingerprint})"
                )
            self._fingerprint = found
        return self._fingerprint

    @property
    def frames_per_second(self) -> float:
        return self.fps or 0.0

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_detector"] = state["_predictor"] = None  # dlib objects don't pickle; rebuilt lazily
        return state

    def _models(self) -> tuple[Any, Any]:
        if self._predictor is None:
            import_av()
            self._detector, self._predictor = _loaded_models(self.model)
        return self._detector, self._predictor

    # -- per frame ------------------------------------------------------------------------
    def detect(self, frame: Any) -> tuple[np.ndarray, Any] | None:
        """``(landmarks (68, 2) pixels, dlib shape)`` of the best-scoring face in an
        ``av.VideoFrame``, or None."""
        import dlib
        from PIL import Image

        detector, predictor = self._models()
        gray = frame_luma(frame)
        height, width = gray.shape
        factor = (
            width / self.detect_width if self.detect_width and width > self.detect_width else 1.0
        )
        if factor > 1.0:
            size = (self.detect_width, max(1, round(height / factor)))
            small = np.asarray(Image.fromarray(gray).resize(size, Image.Resampling.BILINEAR))
            fx, fy = width / small.shape[1], height / small.shape[0]
        else:
            small, fx, fy = gray, 1.0, 1.0
        boxes, scores, _kinds = detector.run(small, self.upsample, 0.0)
        if len(boxes) == 0:
            return None
        box = boxes[int(np.argmax(scores))]
        rect = dlib.rectangle(
            round(box.left() * fx),
            round(box.top() * fy),
            round(box.right() * fx),
            round(box.bottom() * fy),
        )
        shape = predictor(gray, rect)
        points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
        return points, shape

    def frame_row(self, frame: Any, found: tuple[np.ndarray, Any]) -> np.ndarray:
        raise NotImplementedError

    # -- per file -------------------------------------------------------------------------
    def frames(self, path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
        """``(rows (T, D) float32, face mask (T,) bool)`` for the frames of ``path``."""
        rows: list[np.ndarray | None] = []
        last_frame: Any = None
        last_row: np.ndarray | None = None
        for _time, frame in iter_frames(path, self.fps):
            if frame is not last_frame:  # a repeated frame (fps above the native rate): reuse
                found = self.detect(frame)
                last_frame, last_row = (
                    frame,
                    (None if found is None else self.frame_row(frame, found)),
                )
            rows.append(last_row)
        valid = np.array([row is not None for row in rows], dtype=bool)
        if not valid.any():
            raise BadInputError(path, f"{NO_FACE} (in {len(rows)} frames)")
        dim = next(row for row in rows if row is not None).shape[0]
        out = np.zeros((len(rows), dim), dtype=np.float32)
        for i, row in enumerate(rows):
            if row is not None:
                out[i] = row
        return out, valid

    def extract(self, wave: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{self.name} features are computed from video frames, not audio")


@register_extractor
class FaceLandmarks(_FaceVideoExtractor):
    """Pose-normalised 68-point landmarks, head pose, their deltas and a face mask: ``(T, 281)``."""

    name = "face_landmarks"

    def __init__(
        self,
        *,
        fps: float | None = 30.0,
        detect_width: int = 320,
        upsample: int = 0,
        model: str = "dlib68",
        model_fingerprint: str | None = None,
    ):
        super().__init__(
            fps=fps,
            detect_width=detect_width,
            upsample=upsample,
            model=model,
            model_fingerprint=model_fingerprint,
        )

    def frame_row(self, frame: Any, found: tuple[np.ndarray, Any]) -> np.ndarray:
        return align_landmarks(found[0], frame.width, frame.height)

    def extract_file(self, path: str | os.PathLike) -> np.ndarray:
        static, valid = self.frames(path)  # (T, 140), (T,)
        deltas = np.zeros_like(static)
        both = valid[1:] & valid[:-1]
        deltas[1:][both] = static[1:][both] - static[:-1][both]
        features = np.concatenate([static, deltas, valid[:, None].astype(np.float32)], axis=1)
        return validate_features(path, features)


@register_extractor
class FaceCrops(_FaceVideoExtractor):
    """Aligned grey face crops (dlib's ``get_face_chip``: eyes and nose at fixed places),
    ``size`` x ``size`` pixels in [0, 1] flattened row-major, plus the face mask as the last
    column: ``(T, size * size + 1)``, for a learnable frame encoder."""

    name = "face_crop"

    def __init__(
        self,
        *,
        size: int = 48,
        padding: float = 0.25,
        fps: float | None = 30.0,
        detect_width: int = 320,
        upsample: int = 0,
        model: str = "dlib68",
        model_fingerprint: str | None = None,
    ):
        super().__init__(
            fps=fps,
            detect_width=detect_width,
            upsample=upsample,
            model=model,
            model_fingerprint=model_fingerprint,
        )
        if not 8 <= int(size) <= 256:
            raise ConfigError("face_crop: size must be between 8 and 256 pixels")
        if not 0.0 <= float(padding) <= 1.0:
            raise ConfigError("face_crop: padding must be between 0 and 1")
        self.size = int(size)
        self.padding = float(padding)

    def frame_row(self, frame: Any, found: tuple[np.ndarray, Any]) -> np.ndarray:
        import dlib

        rgb = frame_to_array(frame, "rgb24")
        # (S, S, 3) uint8
        chip = dlib.get_face_chip(rgb, found[1], size=self.size, padding=self.padding)
        gray = chip.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return (gray / 255.0).ravel()

    def extract_file(self, path: str | os.PathLike) -> np.ndarray:
        crops, valid = self.frames(path)
        return validate_features(
            path, np.concatenate([crops, valid[:, None].astype(np.float32)], axis=1)
        )
