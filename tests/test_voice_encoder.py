"""The frozen speaker-encoder front end, on tiny random weights written here (and on the packaged
weights where the resemblyzer wheel is installed)."""

from __future__ import annotations

import importlib.util
import pickle

import numpy as np
import pytest
import torch

from emorec.errors import ConfigError, EmorecError
from emorec.features.base import create_extractor, extractor_from_spec
from emorec.features.store import FeatureStore
from emorec.features.voice_encoder import HIDDEN, N_MELS


def random_encoder(path, seed=0, layers=3):
    """A GE2E-shaped state (``lstm.*`` of 3 LSTM layers, 40 -> 256) with random weights."""
    torch.manual_seed(seed)
    lstm = torch.nn.LSTM(N_MELS, HIDDEN, layers, batch_first=True)
    state = {f"lstm.{k}": v for k, v in lstm.state_dict().items()}
    torch.save({"model_state": state, "step": 1}, path)
    return path


def speech_like(seconds=1.5, sr=16000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    voiced = np.sin(2 * np.pi * 140 * t) + 0.5 * np.sin(2 * np.pi * 280 * t) * (
        1 + np.sin(2 * np.pi * 3 * t)
    )
    return (0.2 * voiced + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return random_encoder(tmp_path_factory.mktemp("encoder") / "encoder.pt")


def test_frame_states_shape_rate_and_layers(weights):
    wave = speech_like(1.5)
    ext = create_extractor("voice_encoder", weights=str(weights), trim_db=None)
    states = ext.extract(wave)
    mel_frames = 1 + wave.size // 160  # centred 25 ms windows every 10 ms
    assert states.shape == ((mel_frames + 1) // 2, HIDDEN) and ext.frames_per_second == 50
    every = create_extractor("voice_encoder", weights=str(weights), trim_db=None, stride=1).extract(
        wave
    )
    # stride subsamples, the LSTM runs at 100 fps
    np.testing.assert_allclose(every[::2], states, atol=1e-6)
    first = create_extractor(
        "voice_encoder", weights=str(weights), trim_db=None, stride=1, layer=1
    ).extract(wave)
    assert first.shape == every.shape and not np.allclose(first, every)
    assert np.all(np.abs(states) <= 1)  # LSTM outputs
    with pytest.raises(ConfigError, match="layer"):
        create_extractor("voice_encoder", weights=str(weights), layer=4)


def test_level_does_not_change_the_states(weights):
    wave = speech_like(1.0)
    ext = create_extractor("voice_encoder", weights=str(weights))
    np.testing.assert_allclose(ext.extract(wave), ext.extract(0.05 * wave), atol=1e-4)
    raw = create_extractor("voice_encoder", weights=str(weights), level_dbfs=None)
    assert not np.allclose(raw.extract(wave), raw.extract(0.05 * wave), atol=1e-3)


def test_config_names_the_weights_and_a_stored_config_checks_them(weights, tmp_path):
    config = create_extractor("voice_encoder", weights=str(weights)).config()
    assert len(config["weights_fingerprint"]) == 16
    again = extractor_from_spec({"name": "voice_encoder", **config})
    assert again.config() == config
    other = random_encoder(tmp_path / "other.pt", seed=1)
    changed = create_extractor("voice_encoder", weights=str(other)).config()
    assert (
        FeatureStore(tmp_path, "voice_encoder", changed).root
        != FeatureStore(tmp_path, "voice_encoder", config).root
    )
    stale = create_extractor("voice_encoder", **{**config, "weights": str(other)})
    with pytest.raises(ConfigError, match="changed"):
        stale.config()


class _Payload:
    def __reduce__(self):
        return (print, ("unpickled",))


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"not a checkpoint", "not a readable weights file"),
        (
            pickle.dumps({"model_state": _Payload()}),
            "not a readable weights file",
        ),  # never unpickled
        ("torch-dict", "no lstm"),
    ],
)
def test_bad_weights_are_one_line_errors_naming_the_file(tmp_path, content, reason):
    path = tmp_path / "bad.pt"
    if content == "torch-dict":
        torch.save({"model_state": {"linear.weight": torch.zeros(2, 2)}}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(EmorecError, match=reason) as err:
        create_extractor("voice_encoder", weights=str(path)).extract(speech_like(0.5))
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_missing_weights_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        create_extractor("voice_encoder", weights=str(tmp_path / "none.pt")).config()


@pytest.mark.skipif(
    importlib.util.find_spec("resemblyzer") is None, reason="resemblyzer wheel not installed"
)
def test_packaged_weights_load_and_tell_two_voices_apart():
    ext = create_extractor("voice_encoder")
    low = speech_like(1.5)
    t = np.arange(low.size) / 16000
    high = (0.2 * np.sin(2 * np.pi * 260 * t) * (1 + np.sin(2 * np.pi * 5 * t))).astype(np.float32)
    a, b = ext.extract(low).mean(0), ext.extract(high).mean(0)
    assert a.shape == (HIDDEN,) and np.linalg.norm(a - b) > 0.1


def test_all_layers_are_the_stacked_lstm_layer_by_layer(weights):
    wave = speech_like(1.0)
    ext = create_extractor("voice_encoder", weights=str(weights), layer="all", stride=1)
    states = ext.extract(wave)
    assert states.shape[1] == 3 * HIDDEN
    lstm = torch.nn.LSTM(N_MELS, HIDDEN, 3, batch_first=True)
    saved = torch.load(weights, weights_only=True)["model_state"]
    lstm.load_state_dict({k[len("lstm.") :]: v for k, v in saved.items()})
    with torch.no_grad():
        stacked, _ = lstm(torch.from_numpy(ext.mel(wave))[None])
    np.testing.assert_allclose(states[:, 2 * HIDDEN :], stacked[0].numpy(), atol=1e-5)
    last = create_extractor("voice_encoder", weights=str(weights), layer=3, stride=1).extract(wave)
    np.testing.assert_allclose(states[:, 2 * HIDDEN :], last, atol=1e-6)


def test_a_two_layer_file_cannot_give_the_third_layer(tmp_path):
    path = random_encoder(tmp_path / "two.pt", layers=2)
    assert (
        create_extractor("voice_encoder", weights=str(path), layer=2)
        .extract(speech_like(0.5))
        .shape[1]
        == HIDDEN
    )
    with pytest.raises(EmorecError, match="lack lstm.weight_ih_l2"):
        create_extractor("voice_encoder", weights=str(path), layer=3).extract(speech_like(0.5))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``emorec train`` on encoder states of a generated corpus, with speed views; the weights file
    is gone afterwards, so everything after reads the copy the model keeps."""
    import yaml

    import cli_process
    from conftest import tiny_recipe_config
    from emorec.corpora.synthetic import generate_synthetic_corpus

    root = tmp_path_factory.mktemp("encoder-model")
    weights = random_encoder(root / "encoder.pt")
    corpus = generate_synthetic_corpus(
        root / "corpus", speakers=4, clips_per_emotion=2, emotions=("happy", "sad")
    )
    cli_process.emorec("prepare", "synthetic", corpus, "--out", root / "manifest.csv", cwd=root)
    config = tiny_recipe_config(
        root,
        "encoder",
        data={"features": {"name": "voice_encoder", "weights": str(weights), "layer": "all"}},
        split={"scheme": "speaker_kfold", "k": 2, "val_speakers": 1},
        trainer={"epochs": 1, "batch_size": 4},
        augment={"speed_views": [0.9, 1.1]},
    )
    config["model"] = {
        "name": "cnn_pooling",
        "frame_dims": [8],
        "pooling": "mean_std",
        "dense": [8],
        "dropout": 0.1,
    }
    (root / "recipe.yaml").write_text(yaml.safe_dump(config))
    cli_process.emorec("train", root / "recipe.yaml", "--quiet", cwd=root, OMP_NUM_THREADS="1")
    weights.unlink()
    return root, next((root / "runs").iterdir()) / "fold_1", corpus


def test_a_trained_model_keeps_its_encoder_and_predicts_without_the_original(trained):
    import json

    import cli_process

    root, fold, corpus = trained
    spec = json.loads((fold / "model.json").read_text())["features"]["audio"]
    assert (
        spec["weights"] == "voice_encoder.safetensors"
        and (fold / "voice_encoder.safetensors").is_file()
    )
    clip = next(corpus.rglob("*.wav"))
    cli_process.emorec("predict", fold, clip, "--out", root / "answers.csv", cwd=root)
    rows = (root / "answers.csv").read_text().splitlines()
    assert len(rows) == 2 and clip.name in rows[1]


def test_speed_views_are_cached_beside_the_originals_and_the_model_never_sees_them(trained):
    import json

    root, fold, corpus = trained
    caches = {
        json.loads(p.read_text())["config"].get("speed", 1.0): p.parent
        for p in (root / "cache").glob("voice_encoder-*/extractor.json")
    }
    assert sorted(caches) == [0.9, 1.0, 1.1]
    entries = {
        speed: len(list(folder.glob("??/*.npy"))) for speed, folder in caches.items()
    }  # not packs
    # every clip the originals hold, at each speed
    assert entries[0.9] == entries[1.1] == entries[1.0] > 0
    # training drew the views from packs (data.pack's default), as it reads the originals
    assert all(list((caches[speed] / "packs").glob("float32-*/index.json")) for speed in caches)
    spec = json.loads((fold / "model.json").read_text())["features"]["audio"]
    assert "speed" not in spec  # validation, test and the exported model read the clips as they are


def test_speed_plays_the_clip_faster_and_leaves_earlier_cache_keys_alone(weights):
    wave = speech_like(1.6)
    plain = create_extractor("voice_encoder", weights=str(weights), trim_db=None)
    slow = create_extractor("voice_encoder", weights=str(weights), trim_db=None, speed=0.8)
    assert "speed" not in plain.config() and slow.config()["speed"] == 0.8
    assert abs(len(slow.extract(wave)) / len(plain.extract(wave)) - 1.25) < 0.02
    with pytest.raises(ConfigError, match="speed"):
        create_extractor("voice_encoder", weights=str(weights), speed=3)


def test_a_training_draw_reads_the_original_or_a_view_alike(tmp_path):
    from emorec.data.dataset import ClipDataset
    from emorec.corpora.manifest import Clip

    clips = [
        Clip(
            clip_id=f"c{i}",
            path=f"/x/c{i}.wav",
            corpus="x",
            speaker="x/1",
            emotion="happy",
            content_hash=f"{i:064d}",
        )
        for i in range(2)
    ]
    original = FeatureStore(tmp_path, "voice_encoder", {"speed": 1.0})
    view = FeatureStore(tmp_path, "voice_encoder", {"speed": 0.9})
    for clip in clips:
        original.put(clip, np.zeros((10, 4), np.float32))
    # the second clip has no view: its original is read
    view.put(clips[0], np.ones((11, 4), np.float32))
    data = ClipDataset(clips, {"happy": 0}, {"audio": original}, views={"audio": [view]}, seed=3)
    first = [tuple(data[0]["audio"].shape) for _ in range(200)]
    assert set(first) == {(10, 4), (11, 4)} and 60 < first.count((11, 4)) < 140
    assert {tuple(data[1]["audio"].shape) for _ in range(50)} == {(10, 4)}
    assert {tuple(ClipDataset(clips, {"happy": 0}, {"audio": original})[0]["audio"].shape)} == {
        (10, 4)
    }


def test_speed_views_need_an_extractor_that_can_make_them(tmp_path):
    from emorec.training.experiment import speed_view_stores
    from emorec.training.config import config_from_dict

    config = config_from_dict({"data": {"cache": str(tmp_path)}, "augment": {"speed_views": [0.9]}})
    with pytest.raises(ConfigError, match="augment.speed_views.*logmel"):
        speed_view_stores(config, {"audio": {"name": "logmel"}}, [], extract=False, progress=False)
    with pytest.raises(ConfigError, match="speed_views"):
        config_from_dict({"augment": {"speed_views": [3.0]}})


def test_the_onnx_export_computes_the_encoder_in_the_graph(trained):
    """``emorec export``: trim, level, mel and the LSTM layers inside the graph, the torch
    answers."""
    import cli_process
    import emorec

    root, fold, _ = trained
    cli_process.emorec("export", fold, root / "m.onnx", cwd=root, timeout=600)
    waves = [0.3 * speech_like(s, seed=i) for i, s in enumerate((2.6, 1.1, 0.7))]
    # trimmed away
    waves[1] = np.concatenate([np.zeros(5000, np.float32), waves[1], np.zeros(2000, np.float32)])
    torch_rec, onnx_rec = emorec.load(fold), emorec.load(root / "m.onnx")
    np.testing.assert_allclose(
        onnx_rec.probabilities(waves), torch_rec.probabilities(waves), atol=1e-4
    )


def test_trimmed_to_the_sample_the_states_do_not_move_with_the_silence_before_a_clip(weights):
    clip = np.concatenate([np.zeros(4000), speech_like(1.2), np.zeros(3000)]).astype(np.float32)
    shifted = [np.concatenate([np.zeros(pad, np.float32), clip]) for pad in (0, 100, 333)]
    exact = create_extractor("voice_encoder", weights=str(weights), trim_to_sample=True)
    states = [exact.extract(w) for w in shifted]
    for other in states[1:]:
        np.testing.assert_allclose(other, states[0], atol=1e-5)
    grid = create_extractor("voice_encoder", weights=str(weights))
    assert "trim_to_sample" not in grid.config() and exact.config()["trim_to_sample"] is True


@pytest.mark.parametrize(
    "settings",
    [
        {"layer": "all"},
        {"layer": 2, "stride": 1, "trim_to_sample": True},
        {"layer": 3, "level_dbfs": None, "trim_db": None},
    ],
)
def test_the_graph_front_end_computes_each_rows_states_alone(weights, settings):
    from emorec.features.torch_frontend import VoiceEncoderFrontEnd

    ext = create_extractor("voice_encoder", weights=str(weights), **settings)
    waves = [
        0.3 * speech_like(2.0, seed=1),
        np.concatenate([np.zeros(6000), 0.05 * speech_like(0.8, seed=2)]),
    ]
    batch = torch.zeros(2, max(w.size for w in waves))
    for row, w in enumerate(waves):
        batch[row, : w.size] = torch.from_numpy(w.astype(np.float32))
    with torch.no_grad():
        features, mask = VoiceEncoderFrontEnd(ext)(batch, torch.tensor([w.size for w in waves]))
    for row, w in enumerate(waves):
        alone = ext.extract(w.astype(np.float32))
        assert int(mask[row].sum()) == alone.shape[0]
        np.testing.assert_allclose(features[row, : alone.shape[0]].numpy(), alone, atol=2e-4)
