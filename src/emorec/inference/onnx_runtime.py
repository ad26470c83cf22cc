"""An exported ONNX model (``emorec export --format onnx``) served by onnxruntime: the same
``predict_files`` interface as :class:`emorec.inference.predictor.Predictor`, with emorec decoding
the media and the graph doing everything after (front end, model, calibration)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

from emorec.errors import EmorecError, SkippedFile


class OnnxPredictor:
    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        try:
            import onnxruntime
        except ImportError:
            raise EmorecError("ONNX models need onnxruntime: pip install 'emorec[onnx]'") from None
        if not os.path.isfile(path):
            raise EmorecError(f"{path}: no such ONNX file")
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = onnxruntime.InferenceSession(
                os.fspath(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # noqa: BLE001 - onnxruntime's own error types
            raise EmorecError(
                f"{path}: not a loadable ONNX model ({str(err).splitlines()[0][:200]})"
            ) from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if "class_names" not in meta or "sample_rate" not in meta:
            raise EmorecError(
                f"{path}: no emorec metadata (class_names, sample_rate); was it "
                "made by `emorec export`?"
            )
        self.meta = dict(meta)
        self.class_names = list(json.loads(meta["class_names"]))
        self.sample_rate = int(meta["sample_rate"])
        self.audio_only = True

    def probabilities(self, waves: Sequence[np.ndarray], batch_size: int = 16) -> np.ndarray:
        """Waveforms at the model's rate -> ``(N, C)`` probabilities in input order, in zero-padded
        batches of up to ``batch_size`` clips of similar length (the graph masks the padding)."""
        order = sorted(range(len(waves)), key=lambda i: waves[i].size)
        out = np.zeros((len(waves), len(self.class_names)), np.float32)
        step = max(1, batch_size)
        for start in range(0, len(order), step):
            chosen = order[start : start + step]
            lengths = np.array([waves[i].size for i in chosen], np.int64)
            batch = np.zeros((len(chosen), int(lengths.max())), np.float32)
            for row, i in enumerate(chosen):
                batch[row, : lengths[row]] = waves[i]
            out[chosen] = self.session.run(None, {"waveform": batch, "lengths": lengths})[0]
        return out

    def predict_files(
        self, paths: Sequence[str | os.PathLike], answers: dict | None = None
    ) -> tuple[list[tuple[str, np.ndarray]], list[SkippedFile]]:
        """As :meth:`emorec.inference.predictor.Predictor.predict_files` (long input windowed over
        its speech)."""
        from emorec.inference.long_input import answer_files

        return answer_files(self, paths, answers)
