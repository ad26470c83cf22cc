"""A trained model as one self-contained ONNX graph: waveform in, calibrated probabilities out.

Inputs ``waveform`` float32 ``(batch, samples)`` (mono at the model's sample rate, rows zero-padded)
and ``lengths`` int64 ``(batch,)``; output ``probabilities`` float32 ``(batch, classes)``, the
softmax of the logits over the fitted temperature. The front end (trim, STFT, mel filterbank, dB,
deltas, normalisation; or the voice encoder's mel and LSTM layers: ``features/torch_frontend.py``)
is inside the graph, and the file's metadata
names the classes, the sample rate, the model and its card's digest, so onnxruntime alone serves it:

    import onnxruntime, numpy, json
    session = onnxruntime.InferenceSession("model.onnx")
    meta = session.get_modelmeta().custom_metadata_map
    probs = session.run(None, {"waveform": wave[None], "lengths": numpy.array([wave.size])})[0]
    json.loads(meta["class_names"])[probs.argmax()]
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from emorec.atomic import publish
from emorec.errors import EmorecError
from emorec.features.base import extractor_from_spec
from emorec.inference.predictor import Predictor
from emorec.layers.masking import graph_export
from emorec.inference.model_files import find_model_dir
from emorec.version import __version__

CARD = "MODEL_CARD.md"


class WaveformModel(nn.Module):
    """``(waveform (B, N), lengths (B,)) -> probabilities (B, C)``: front end, model,
    temperature."""

    def __init__(self, predictor: Predictor):
        super().__init__()
        from emorec.features.torch_frontend import front_end_for

        specs = predictor.meta["features"]
        if set(specs) != {"audio"}:
            raise EmorecError("ONNX export takes audio models; this one reads video")
        if predictor.meta.get("speaker_norm"):
            raise EmorecError(
                "ONNX export needs an inductive model; this one normalises per speaker"
            )
        extractor = extractor_from_spec(specs["audio"])
        normalizer = predictor.meta.get("normalizers", {}).get("audio")
        try:
            self.front = front_end_for(extractor, normalizer)
        except ValueError as err:
            raise EmorecError(f"ONNX export: {err}") from None
        self.model = predictor.model.eval()
        self.temperature = float(predictor.temperature)
        self.sample_rate = int(extractor.sample_rate)

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        features, mask = self.front(waveform, lengths)  # (B, T, F), (B, T)
        logits = self.model({"audio": features, "audio_mask": mask})  # (B, C)
        return torch.softmax(logits / self.temperature, dim=-1)


def card_digest(model_dir: Path) -> str:
    card = model_dir / CARD
    return hashlib.sha256(card.read_bytes()).hexdigest() if card.is_file() else ""


def export_onnx(
    model: str | os.PathLike, out: str | os.PathLike, *, quantize: bool = False, opset: int = 18
) -> dict:
    """Write ``out`` (and, with ``quantize``, ``out`` with int8 dynamic quantisation of its
    weights beside it as ``*.int8.onnx``); check the file against torch on a batch of two
    lengths; return what was written and measured."""
    import onnx

    model_dir = find_model_dir(model)
    predictor = Predictor.load(model_dir)
    module = WaveformModel(predictor).eval()
    rate = module.sample_rate
    generator = torch.Generator().manual_seed(0)
    example = (
        0.1 * torch.randn(2, 3 * rate, generator=generator),
        torch.tensor([3 * rate, 2 * rate]),
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as scratch:
        raw = Path(scratch) / "model.onnx"
        # The TorchScript exporter: it maps nn.GRU to ONNX's GRU op, which keeps the time axis
        # dynamic (the dynamo exporter unrolls the recurrence over the example's length).
        with graph_export(), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                example,
                str(raw),
                dynamo=False,
                opset_version=opset,
                input_names=["waveform", "lengths"],
                output_names=["probabilities"],
                dynamic_axes={
                    "waveform": {0: "batch", 1: "samples"},
                    "lengths": {0: "batch"},
                    "probabilities": {0: "batch"},
                },
            )
        graph = onnx.load(str(raw))
        metadata = {
            "class_names": json.dumps(predictor.class_names),
            "sample_rate": str(rate),
            "model_id": predictor.meta.get("model_id", model_dir.name),
            "model_card_sha256": card_digest(model_dir),
            "temperature": f"{module.temperature:.6f}",
            "producer": f"emorec {__version__}",
            "inputs": "waveform float32 (batch, samples) mono, zero-padded; lengths int64 (batch,)",
            "outputs": "probabilities float32 (batch, classes), calibrated",
        }
        for key, value in metadata.items():
            graph.metadata_props.add(key=key, value=value)
        staged = Path(scratch) / "final.onnx"
        onnx.save(graph, str(staged))  # one file: the weights are a few MB
        publish(staged, out)
        written = {"onnx": str(out), "bytes": out.stat().st_size, "metadata": metadata}
        written["check"] = parity_with_torch(module, out)
        if quantize:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantized_tmp = Path(scratch) / "int8.onnx"
            quantize_dynamic(str(out), str(quantized_tmp), weight_type=QuantType.QInt8)
            int8 = out.with_suffix(".int8.onnx")
            publish(quantized_tmp, int8)
            written |= {"int8": str(int8), "int8_bytes": int8.stat().st_size}
    return written


def parity_with_torch(module: WaveformModel, path: Path) -> dict:
    """Max absolute probability difference between onnxruntime and torch on a fresh batch whose
    rows differ in length (not the export example)."""
    import onnxruntime

    rate = module.sample_rate
    rng = np.random.default_rng(1)
    t = np.arange(4 * rate) / rate
    waves = np.zeros((3, 4 * rate), np.float32)
    lengths = np.array([4 * rate, int(2.5 * rate), rate], np.int64)
    for row, (n, f0) in enumerate(zip(lengths, (140, 220, 300))):
        voiced = sum(np.sin(2 * np.pi * k * f0 * t[:n]) / k for k in range(1, 10)) * (
            0.5 + 0.5 * np.sin(2 * np.pi * 3 * t[:n])
        )
        waves[row, :n] = 0.1 * voiced + 0.003 * rng.standard_normal(n)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"waveform": waves, "lengths": lengths})[0]
    with graph_export(), torch.no_grad():
        want = module(torch.from_numpy(waves), torch.from_numpy(lengths)).numpy()
    return {"rows": int(len(lengths)), "max_abs_diff": float(np.abs(got - want).max())}
