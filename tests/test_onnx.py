"""ONNX export: the torch front end equals the NumPy one, the graph-export paths of the layers equal
their fast paths, and the exported file runs in onnxruntime alone (no torch, no emorec) with the
probabilities `Recognizer.predict` gives."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import cli_process
import pytest
import soundfile as sf
import torch
from test_api import export_random_model, voice

import emorec
from emorec.data import Normalizer, pad_collate
from emorec.features.spectral import LogMel
from emorec.features.torch_frontend import LogMelFrontEnd
from emorec.inference.predictor import Predictor
from emorec.layers.masking import graph_export

pytest.importorskip("onnxruntime")


def padded(waves: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    batch = torch.zeros(len(waves), max(w.size for w in waves))
    for row, wave in enumerate(waves):
        batch[row, : wave.size] = torch.from_numpy(wave)
    return batch, torch.tensor([w.size for w in waves])


@pytest.mark.parametrize(
    "settings,center",
    [
        ({"n_mels": 16, "deltas": True, "trim_db": 40}, "level"),
        ({"n_mels": 16, "deltas": True, "trim_db": 40, "trim_floor_db": 6}, "level"),
        (
            {
                "n_mels": 16,
                "deltas": True,
                "trim_db": 40,
                "trim_floor_db": 6,
                "trim_to_sample": True,
            },
            "level",
        ),
        ({"n_mels": 16, "trim_db": 40, "trim_to_sample": True}, "global"),
        ({"n_mels": 24, "top_db": None}, "global"),
    ],
)
def test_the_torch_front_end_computes_the_logmel_features_of_every_row_alone(settings, center):
    rng = np.random.default_rng(0)
    quiet_edges = np.concatenate(
        [np.zeros(4000), voice(1.0, 200), 1e-4 * rng.standard_normal(6000)]
    ).astype(np.float32)
    noisy_edges = np.concatenate([np.zeros(7000), voice(1.2, 170), np.zeros(9000)]).astype(
        np.float32
    )
    noisy_edges += (0.02 * rng.standard_normal(noisy_edges.size)).astype(np.float32)
    waves = [
        voice(2.3, 150),
        quiet_edges,
        noisy_edges,
        voice(0.3, 260),
        voice(0.07, 180),
        (0.1 * rng.standard_normal(500)).astype(np.float32),
    ]
    extractor = LogMel(**settings)
    reference = [extractor.extract(w) for w in waves]  # 9+ frames, edges trimmed, 3-8 frames, ...
    level = {"level_columns": 16} if center == "level" else {}
    norm = Normalizer.fit(reference, center=center, **level)
    features, mask = LogMelFrontEnd(extractor, norm.to_dict())(*padded(waves))
    assert [int(m.sum()) for m in mask] == [r.shape[0] for r in reference]
    for row, ref in enumerate(reference):
        np.testing.assert_allclose(features[row, : ref.shape[0]].numpy(), norm(ref), atol=1e-4)
        assert not features[row, ref.shape[0] :].any()


def test_graph_export_paths_compute_what_the_fast_paths_compute(tmp_path):
    predictor = Predictor.load(export_random_model(tmp_path / "m"))
    waves = [voice(s, f, seed=i) for i, (s, f) in enumerate([(2.5, 140), (0.8, 220), (1.6, 300)])]
    items = [predictor.features_for_wave(w) for w in waves]
    batch = pad_collate(items)
    with torch.no_grad():
        fast = predictor.model(batch)
        with graph_export():
            traced_paths = predictor.model(batch)
    torch.testing.assert_close(traced_paths, fast, atol=1e-5, rtol=1e-5)


SERVE_WITH_ONNXRUNTIME_ONLY = """
import json, sys
import numpy as np
import onnxruntime
session = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
meta = session.get_modelmeta().custom_metadata_map
waves = np.load(sys.argv[2])
lengths = np.load(sys.argv[3])
probs = session.run(None, {"waveform": waves, "lengths": lengths})[0]
heavy = ("torch", "emorec", "librosa")
loaded = sorted(name for name in sys.modules if name.split(".")[0] in heavy)
print(json.dumps({"classes": json.loads(meta["class_names"]), "rate": int(meta["sample_rate"]),
                  "probs": probs.tolist(), "loaded": loaded}))
"""


def test_the_exported_file_serves_alone_with_the_api_probabilities(tmp_path):
    model = export_random_model(tmp_path / "m")
    cli_process.emorec("export", model, tmp_path / "m.onnx", "--quantize", timeout=600)
    assert (tmp_path / "m.onnx").is_file() and (tmp_path / "m.int8.onnx").is_file()
    rec = emorec.load(model)
    waves = [
        voice(s, f, seed=i)
        for i, (s, f) in enumerate([(3.1, 130), (1.2, 210), (2.0, 280), (0.5, 170)])
    ]
    batch, lengths = padded(waves)
    np.save(tmp_path / "w.npy", batch.numpy())
    np.save(tmp_path / "l.npy", lengths.numpy())
    (tmp_path / "serve.py").write_text(SERVE_WITH_ONNXRUNTIME_ONLY)
    served = subprocess.run(
        [
            sys.executable,
            str(tmp_path / "serve.py"),
            str(tmp_path / "m.onnx"),
            str(tmp_path / "w.npy"),
            str(tmp_path / "l.npy"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert served.returncode == 0, served.stderr
    result = json.loads(served.stdout)
    assert result["loaded"] == [] and result["classes"] == rec.classes and result["rate"] == 16000
    np.testing.assert_allclose(np.array(result["probs"]), rec.probabilities(waves), atol=1e-4)
    sf.write(tmp_path / "clip.wav", waves[0], 16000, subtype="FLOAT")
    cli_process.emorec(
        "predict",
        "--onnx",
        tmp_path / "m.onnx",
        tmp_path / "clip.wav",
        "--out",
        tmp_path / "p.csv",
        timeout=300,
    )
    row = (tmp_path / "p.csv").read_text().splitlines()[1].split(",")
    assert row[-1] == "whole clip"  # how the answer was made: a 2 s clip is read whole
    np.testing.assert_allclose(
        [float(v) for v in row[2:-1]], rec.probabilities(waves[:1])[0], atol=1e-4
    )
    onnx_rec = emorec.load(tmp_path / "m.onnx")  # the one Recognizer over the ONNX backend
    assert onnx_rec.classes == rec.classes and onnx_rec.sample_rate == rec.sample_rate
    np.testing.assert_allclose(onnx_rec.probabilities(waves), rec.probabilities(waves), atol=1e-4)
    np.testing.assert_allclose(
        list(onnx_rec.predict(tmp_path / "clip.wav").probabilities.values()),
        rec.probabilities(waves[:1])[0],
        atol=1e-4,
    )


@pytest.mark.parametrize("to_sample", [False, True])
def test_an_exported_model_with_the_noise_floor_trim_gives_the_api_probabilities(
    tmp_path, to_sample
):
    """``trim_floor_db`` in the graph (a sort per row for the floor), with edges on the frame grid
    or per sample: ONNX = ``Recognizer`` on clips with noise around the voice, alone and in one
    padded batch."""
    from emorec.inference.onnx_export import export_onnx
    from emorec.inference.onnx_runtime import OnnxPredictor

    model = export_random_model(tmp_path / "m")
    meta = json.loads((model / "model.json").read_text())
    meta["features"]["audio"].update(trim_floor_db=6, trim_to_sample=to_sample)
    (model / "model.json").write_text(json.dumps(meta))
    rng = np.random.default_rng(1)
    waves = [
        np.concatenate([np.zeros(n), voice(s, f, seed=i), np.zeros(m)]).astype(np.float32)
        for i, (n, s, f, m) in enumerate(
            [(8000, 1.1, 150, 12000), (3000, 2.0, 230, 500), (0, 0.6, 300, 9000)]
        )
    ]
    waves = [
        (w + level * rng.standard_normal(w.size)).astype(np.float32)
        for w, level in zip(waves, (0.02, 0.005, 0.04))
    ]
    rec = emorec.load(model)
    assert rec.backend._front_end()[0]["audio"].trim_floor_db == 6.0
    export_onnx(model, tmp_path / "m.onnx")
    served = OnnxPredictor(tmp_path / "m.onnx")
    want = rec.probabilities(waves)
    plain = emorec.load(export_random_model(tmp_path / "plain")).probabilities(waves)
    # the floor trims these clips, the 40 dB trim alone does not
    assert np.abs(want - plain).max() > 1e-3
    np.testing.assert_allclose(
        np.stack([served.probabilities([w])[0] for w in waves]), want, atol=1e-4
    )
    np.testing.assert_allclose(served.probabilities(waves), want, atol=1e-4)


@pytest.mark.realdata
def test_onnx_parity_on_50_real_clips(shared_data, tmp_path):
    """The released model when this checkout has it (else a random one): its ONNX export gives the
    probabilities of `Recognizer.predict` on 50 real clips, alone, in one padded batch and in
    batches."""
    from emorec.inference.onnx_export import export_onnx
    from emorec.inference.onnx_runtime import OnnxPredictor
    from emorec.inference.released import DEFAULT, released_model_dir

    model = released_model_dir(DEFAULT) or export_random_model(tmp_path / "m")
    export_onnx(model, tmp_path / "m.onnx")
    files = sorted((shared_data / "ravdess-speech-16k").glob("*/*.flac"))[::29][:50]
    rec, served = emorec.load(model), OnnxPredictor(tmp_path / "m.onnx")
    waves = [rec.waveform(f)[0] for f in files]
    alone = np.stack([served.probabilities([w])[0] for w in waves])
    np.testing.assert_allclose(alone, rec.probabilities(waves), atol=1e-4)
    # one padded batch
    np.testing.assert_allclose(served.probabilities(waves, batch_size=50), alone, atol=1e-5)
    # batches by length
    np.testing.assert_allclose(served.probabilities(waves, batch_size=7), alone, atol=1e-5)
