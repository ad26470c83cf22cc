"""Extractors: shapes, determinism, resampling, configs; SSL with tiny random models."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from conftest import write_tone

from emorec.errors import BadInputError, ConfigError
from emorec.features import create_extractor, list_extractors
from emorec.features.store import FeatureStore
from emorec.corpora.manifest import Clip


def test_registry_lists_builtin_extractors():
    assert {"logmel", "mfcc", "egemaps", "ssl", "npy"} <= set(list_extractors())
    with pytest.raises(ConfigError):
        create_extractor("nope")
    with pytest.raises(ConfigError):
        create_extractor("logmel", n_melz=3)


# -- spectral ---------------------------------------------------------------------------
def test_logmel_shape_determinism_and_config(tmp_path):
    path = write_tone(tmp_path / "a.wav", seconds=1.5)
    ext = create_extractor("logmel")
    first, second = ext.extract_file(path), ext.extract_file(path)
    assert first.shape == (1 + 24000 // 160, 64) and first.dtype == np.float32
    assert np.array_equal(first, second)
    assert ext.frames_per_second == 100.0
    assert ext.config() == {
        "sample_rate": 16000,
        "n_mels": 64,
        "n_fft": 512,
        "hop_ms": 10.0,
        "win_ms": 25.0,
        "fmin": 50.0,
        "fmax": 8000.0,
        "top_db": 80.0,
        "deltas": False,
        "trim_db": None,
    }
    assert pickle.loads(pickle.dumps(ext)).config() == ext.config()


def test_logmel_keeps_loudness(tmp_path):
    ext = create_extractor("logmel", top_db=None)
    loud = ext.extract_file(write_tone(tmp_path / "loud.wav", amplitude=0.4))
    quiet = ext.extract_file(write_tone(tmp_path / "quiet.wav", amplitude=0.2))
    strong = loud > loud.max() - 30  # bins well above the noise floor
    assert np.mean(loud[strong] - quiet[strong]) == pytest.approx(6.02, abs=0.3)


def test_mfcc_and_deltas(tmp_path):
    path = write_tone(tmp_path / "a.wav", seconds=1.0)
    mfcc = create_extractor("mfcc").extract_file(path)
    assert mfcc.shape == (101, 40)
    with_deltas = create_extractor("mfcc", deltas=True).extract_file(path)
    assert with_deltas.shape == (101, 120)
    np.testing.assert_allclose(with_deltas[:, :40], mfcc, rtol=1e-6)
    logmel = create_extractor("logmel", n_mels=32, deltas=True)
    assert logmel.extract_file(path).shape == (101, 96)
    # what training's frequency augmentations use
    assert logmel.planes == 3 and create_extractor("mfcc").planes == 1
    for n in (100, 800, 2000):  # 1, 6 and 13 frames: deltas work on very short clips too
        out = logmel.extract(np.random.default_rng(n).standard_normal(n).astype(np.float32))
        assert out.shape == (1 + n // 160, 96) and np.all(np.isfinite(out))


def test_stereo_48k_matches_mono_16k(tmp_path):
    rng = np.random.default_rng(1)
    t = np.arange(48000 * 2) / 48000
    wave48 = (
        0.3 * np.sin(2 * np.pi * 330 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
        + 0.01 * rng.standard_normal(t.size)
    ).astype(np.float32)
    stereo = tmp_path / "stereo48.wav"
    sf.write(stereo, np.stack([wave48, wave48], axis=1), 48000)
    mono = tmp_path / "mono16.wav"
    sf.write(mono, soxr.resample(wave48, 48000, 16000, quality="HQ"), 16000, subtype="FLOAT")
    for name in ("logmel", "mfcc"):
        ext = create_extractor(name)
        a, b = ext.extract_file(stereo), ext.extract_file(mono)
        assert a.shape == b.shape == (201, ext.n_features)
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.999


def test_spectral_config_validation():
    with pytest.raises(ConfigError):
        create_extractor("logmel", hop_ms=30.0)  # hop longer than the window
    with pytest.raises(ConfigError):
        create_extractor("mfcc", n_mfcc=80, n_mels=64)
    low = create_extractor("logmel", sample_rate=8000, n_mels=40, n_fft=256)
    assert low.fmax_hz == 4000.0 and low.config()["fmax"] == 8000.0
    assert low.extract(np.ones(8000, np.float32) * 0.1).shape == (101, 40)


def test_cache_keys_follow_config(tmp_path):
    roots = {
        FeatureStore.for_extractor(tmp_path, create_extractor(name, **kw)).root
        for name, kw in [
            ("logmel", {}),
            ("logmel", {"deltas": True}),
            ("logmel", {"n_mels": 80}),
            ("mfcc", {}),
        ]
    }
    assert len(roots) == 4
    assert FeatureStore.for_extractor(tmp_path, create_extractor("logmel")).root in roots


# -- eGeMAPS ----------------------------------------------------------------------------
def test_egemaps_lld_and_functionals(tmp_path):
    pytest.importorskip("opensmile")
    path = write_tone(tmp_path / "a.wav", seconds=2.0, sr=44100, channels=2)
    lld = create_extractor("egemaps")
    out = lld.extract_file(path)
    assert out.shape[1] == 25 and 190 <= out.shape[0] <= 200
    assert lld.frames_per_second == 100.0 and len(lld.feature_names) == 25
    functionals = create_extractor("egemaps", level="functionals").extract_file(path)
    assert functionals.shape == (1, 88)
    clone = pickle.loads(pickle.dumps(lld))  # the Smile object is rebuilt in each worker
    assert np.array_equal(clone.extract_file(path), out)
    with pytest.raises(ConfigError):
        create_extractor("egemaps", level="frames")


def test_egemaps_without_opensmile_gives_install_advice(monkeypatch):
    from emorec.errors import EmorecError

    monkeypatch.setitem(sys.modules, "opensmile", None)  # import opensmile -> ImportError
    with pytest.raises(EmorecError, match=r"pip install emorec\[egemaps\]"):
        create_extractor("egemaps").extract(np.zeros(16000, np.float32))


# -- SSL (tiny random models, loaded by path) -------------------------------------------
TINY = dict(
    hidden_size=16,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=32,
    conv_dim=(16, 16, 16),
    conv_stride=(10, 8, 4),
    conv_kernel=(10, 8, 4),
    conv_bias=True,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
)


def save_tiny(kind: str, directory: Path, seed: int = 0) -> Path:
    import torch
    import transformers as tf

    config_cls, model_cls = {
        "wav2vec2": (tf.Wav2Vec2Config, tf.Wav2Vec2Model),
        "hubert": (tf.HubertConfig, tf.HubertModel),
        "wavlm": (tf.WavLMConfig, tf.WavLMModel),
    }[kind]
    torch.manual_seed(seed)
    model_cls(config_cls(**TINY)).save_pretrained(directory)
    tf.Wav2Vec2FeatureExtractor(do_normalize=True, sampling_rate=16000).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    pytest.importorskip("transformers")
    root = tmp_path_factory.mktemp("ssl")
    return {kind: save_tiny(kind, root / kind) for kind in ("wav2vec2", "hubert", "wavlm")}


@pytest.mark.parametrize("kind", ["wav2vec2", "hubert", "wavlm"])
def test_ssl_tiny_models_by_path(tiny_models, tmp_path, kind):
    path = write_tone(tmp_path / "a.wav", seconds=2.0, sr=22050)
    ext = create_extractor("ssl", model=str(tiny_models[kind]))
    out = ext.extract_file(path)
    assert out.shape == (100, 16) and out.dtype == np.float32  # 320-sample hop and field
    assert ext.frames_per_second == 50.0
    assert np.array_equal(out, ext.extract_file(path))


def test_ssl_layers(tiny_models, tmp_path):
    model = str(tiny_models["wav2vec2"])
    wave = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    layers = [create_extractor("ssl", model=model, layer=i).extract(wave) for i in range(3)]
    assert not np.allclose(layers[0], layers[2])
    np.testing.assert_allclose(create_extractor("ssl", model=model).extract(wave), layers[2])
    both = create_extractor("ssl", model=model, layer="all").extract(wave)
    assert both.shape == (50, 48)
    np.testing.assert_allclose(both, np.concatenate(layers, axis=1), atol=1e-5)
    mean = create_extractor("ssl", model=model, layer="mean").extract(wave)
    np.testing.assert_allclose(mean, np.mean(layers, axis=0), atol=1e-5)
    assert create_extractor("ssl", model=model, layer="-2").layer == -2
    with pytest.raises(ConfigError):
        create_extractor("ssl", model=model, layer=5).extract(wave)
    with pytest.raises(ConfigError):
        create_extractor("ssl", model=model, layer="sum")


def test_ssl_chunking_and_short_input(tiny_models):
    model = str(tiny_models["hubert"])
    wave = np.random.default_rng(0).standard_normal(16000 * 3 + 100).astype(np.float32) * 0.1
    whole = create_extractor("ssl", model=model).extract(wave)
    chunked = create_extractor("ssl", model=model, max_seconds=1.0).extract(wave)
    assert whole.shape == (150, 16) and chunked.shape == (4 * 37, 16)  # 4 chunks of 12025
    tiny = create_extractor("ssl", model=model).extract(wave[:100])
    assert tiny.shape == (1, 16)


def test_ssl_config_fingerprint(tiny_models, tmp_path):
    model = str(tiny_models["wavlm"])
    ext = create_extractor("ssl", model=model, layer="all", device="cpu")
    config = ext.config()
    assert config["model"] == model and "device" not in config
    assert len(config["weights_fingerprint"]) == 16
    again = create_extractor("ssl", **config)  # a stored config recreates the extractor
    assert again.config() == config
    other = save_tiny("wavlm", tmp_path / "other", seed=1)  # same architecture, new weights
    changed = create_extractor("ssl", model=str(other), layer="all").config()
    assert changed["weights_fingerprint"] != config["weights_fingerprint"]
    assert FeatureStore(tmp_path, "ssl", changed).root != FeatureStore(tmp_path, "ssl", config).root
    stale = create_extractor("ssl", **{**config, "model": str(other)})
    with pytest.raises(ConfigError, match="changed"):
        stale.config()
    assert create_extractor("ssl", model=model).parallel is False


def test_ssl_missing_model_is_a_user_error(tmp_path):
    pytest.importorskip("transformers")
    from emorec.errors import EmorecError

    ext = create_extractor("ssl", model=str(tmp_path / "no-such-model"))
    with pytest.raises(EmorecError, match="cannot load model"):
        ext.extract(np.zeros(16000, np.float32))


# -- imported .npy features -------------------------------------------------------------
def _clip(clip_id: str, path: Path) -> Clip:
    return Clip(clip_id=clip_id, path=str(path), corpus="x", speaker="x/1", emotion="neutral")


def test_npy_import(tmp_path):
    feats = tmp_path / "feats"
    (feats / "deep").mkdir(parents=True)
    good = np.random.default_rng(0).standard_normal((7, 5)).astype(np.float32)
    np.save(feats / "deep" / "clip_a.npy", good)
    np.save(feats / "vec.npy", np.arange(4, dtype=np.float64))
    np.save(feats / "ravdess__03-01-01.npy", good * 2)
    ext = create_extractor("npy", directory=str(feats))
    np.testing.assert_array_equal(ext.extract_file(tmp_path / "media" / "clip_a.wav"), good)
    vec = ext.extract_file("/anywhere/vec.mp4")
    assert vec.shape == (1, 4) and vec.dtype == np.float32
    by_id = ext.extract_clip(_clip("ravdess/03-01-01", tmp_path / "elsewhere.wav"))
    np.testing.assert_array_equal(by_id, good * 2)
    with pytest.raises(BadInputError, match="no missing.npy"):
        ext.extract_file("missing.wav")


@pytest.mark.parametrize(
    "array, reason",
    [
        (np.zeros((2, 3, 4), np.float32), "1-D or 2-D"),
        (np.ones((3, 2), np.int64), "must be float"),
        (np.array([[1.0, np.nan]]), "NaN"),
        (np.array([[np.inf, 1.0]]), "NaN or infinite"),
        (np.zeros((0, 4), np.float32), "no frames"),
    ],
)
def test_npy_bad_arrays(tmp_path, array, reason):
    np.save(tmp_path / "bad.npy", array)
    ext = create_extractor("npy", directory=str(tmp_path))
    with pytest.raises(BadInputError, match=reason):
        ext.extract_file("bad.wav")


def test_npy_unreadable_duplicate_and_modality(tmp_path):
    (tmp_path / "garbage.npy").write_bytes(b"not numpy")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    np.save(tmp_path / "a" / "twice.npy", np.zeros((1, 2), np.float32))
    np.save(tmp_path / "b" / "twice.npy", np.zeros((1, 2), np.float32))
    ext = create_extractor("npy", directory=str(tmp_path), modality="video")
    with pytest.raises(BadInputError, match="unreadable"):
        ext.extract_file("garbage.wav")
    with pytest.raises(BadInputError, match="2 files named twice.npy"):
        ext.extract_file("twice.wav")
    assert ext.modality == "video" and type(ext).modality == "audio"
    assert ext.config()["modality"] == "video"
    with pytest.raises(ConfigError):
        create_extractor("npy", directory=str(tmp_path / "absent"))
    before = ext.config()["files_fingerprint"]
    np.save(tmp_path / "new.npy", np.zeros((1, 2), np.float32))
    assert create_extractor("npy", directory=str(tmp_path)).config()["files_fingerprint"] != before


def test_logmel_trim_removes_leading_and_trailing_silence(tmp_path):
    sr = 16000
    rng = np.random.default_rng(0)
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(sr) / sr)
    quiet = 1e-4 * rng.standard_normal(sr // 2)
    wave = np.concatenate([quiet, tone, quiet]).astype(np.float32)
    full = create_extractor("logmel").extract(wave)
    trimmed = create_extractor("logmel", trim_db=40).extract(wave)
    assert full.shape[0] == 1 + wave.size // 160
    # librosa.effects.trim works in 2048-sample frames: up to 2048/160 = 12.8 extra frames a side.
    tone_frames = 1 + sr // 160
    assert tone_frames - 1 <= trimmed.shape[0] <= tone_frames + 2 * 13 < full.shape[0]


def test_ssl_refuses_pickled_weights_unless_trusted(tmp_path):
    """A model folder with only ``pytorch_model.bin`` (a pickle) is refused by default."""
    tf = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    directory = tmp_path / "pickled"
    torch.manual_seed(0)
    model = tf.Wav2Vec2Model(tf.Wav2Vec2Config(**TINY))
    model.save_pretrained(directory)
    for weights in directory.glob("*.safetensors"):  # as older transformers wrote models
        weights.unlink()
    torch.save(model.state_dict(), directory / "pytorch_model.bin")
    assert not list(directory.glob("*.safetensors")) and list(directory.glob("*.bin"))
    wave = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    with pytest.raises(ConfigError, match="pickled"):
        create_extractor("ssl", model=str(directory)).extract(wave)
    trusted = create_extractor("ssl", model=str(directory), trust_pickled_weights=True)
    assert trusted.extract(wave).shape[1] == 16
    # the output, and so the cache key, is the same
    assert "trust_pickled_weights" not in trusted.config()
