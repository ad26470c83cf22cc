"""The seed-000 fusion workflow on a generated audio-visual corpus: two branch runs on the same
split -> ``emorec fuse --finetune`` -> cached embeddings, fusion classifier, fine-tuned model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import cli_process
import pytest
import torch
from safetensors.torch import load_file

from emorec.corpora.synthetic_av import generate_av_feature_corpus
from emorec.errors import ConfigError, EmorecError, LeakageError
from emorec.features.store import FeatureStore
from emorec.inference.embedding import EmbeddingExtractor, model_fingerprint
from emorec.workflows.fusion import fuse
from emorec.inference.predictor import Predictor
from emorec.corpora.manifest import read_manifest
from emorec.models import create_model
from emorec.corpora.splits import load_splits, save_splits
from emorec.training.config import config_from_dict
from emorec.workflows.crossval import train
from test_model_family import TINY_BILSTM, av_config

AUDIO_MODEL = {"name": "cnn_pooling", "dense": [16], "dropout": 0.1}
VIDEO_MODEL = {**TINY_BILSTM, "modalities": ["video"]}


@pytest.fixture(scope="module")
def branches(tmp_path_factory):
    root = tmp_path_factory.mktemp("fusion")
    manifest, audio_dir, video_dir = generate_av_feature_corpus(root)
    runs = {}
    for role, model in (("audio", AUDIO_MODEL), ("video", VIDEO_MODEL)):
        cfg = config_from_dict(
            av_config(
                root, manifest, audio_dir, video_dir, (role,), model=model, name=role, epochs=8
            )
        )
        runs[role] = train(cfg, progress=False) / "fold_1"
    return root, runs


@pytest.fixture(scope="module")
def fused(branches):
    root, runs = branches
    proc = cli_process.emorec(
        "fuse",
        runs["audio"],
        runs["video"],
        "--finetune",
        "--epochs",
        "10",
        "--lr",
        "0.01",
        "--finetune-epochs",
        "3",
        "--hidden",
        "16",
        "--run-dir",
        root / "fused",
        "--quiet",
        cwd=root,
        check=False,
        timeout=600,
        COLUMNS="200",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    fusion_run = next((root / "fused").glob("fuse-*"))
    finetune_run = next((root / "fused").glob("finetune-*"))
    return root, runs, proc, fusion_run, finetune_run


def test_fuse_caches_one_embedding_per_clip_keyed_by_the_model_fingerprint(fused):
    root, runs, _, _, _ = fused
    clips = read_manifest(root / "manifest.csv")
    for role in ("audio", "video"):
        extractor = EmbeddingExtractor(model_dir=str(runs[role]), cache=str(root / "cache"))
        assert (
            extractor.modality == role
            and extractor.name
            == f"embed-{json.loads((runs[role] / 'model.json').read_text())['model']}"
        )
        assert extractor.config()["fingerprint"] == model_fingerprint(runs[role])
        store = FeatureStore.for_extractor(root / "cache", extractor)
        assert store.root.name.startswith(f"{extractor.name}-")
        arrays = [store.get(c) for c in clips]
        assert all(a is not None and a.shape == arrays[0].shape and a.shape[0] == 1 for a in arrays)
        # the cached embedding is the branch model's embed() of its normalised input features
        predictor = Predictor.load(runs[role])
        clip = clips[5]
        spec = predictor.meta["features"][role]
        raw = np.load(Path(spec["directory"]) / f"{clip.clip_id.replace('/', '__')}.npy")
        x = torch.from_numpy(predictor.normalizers()[role](raw))[None]
        with torch.no_grad():
            expected = predictor.model.embed(
                {role: x, f"{role}_mask": torch.ones(1, x.shape[1], dtype=torch.bool)}
            )
        np.testing.assert_allclose(store.get(clip), expected.numpy(), atol=1e-5)


def test_fusion_runs_use_the_branch_split_and_beat_each_branch(fused):
    _, runs, proc, fusion_run, finetune_run = fused
    branch_splits = [s.to_dict() for s in load_splits(runs["audio"].parent / "splits.json")]
    for run in (fusion_run, finetune_run):
        assert [s.to_dict() for s in load_splits(run / "splits.json")] == branch_splits
        assert (run / "fold_1" / "report" / "report.json").is_file()
    ua = {
        name: json.loads((d / "report" / "report.json").read_text())["ua"]
        for name, d in (
            ("audio", runs["audio"]),
            ("video", runs["video"]),
            ("fusion", fusion_run / "fold_1"),
            ("finetune", finetune_run / "fold_1"),
        )
    }
    assert ua["fusion"] >= max(ua["audio"], ua["video"]) + 0.2, ua
    assert ua["finetune"] >= max(ua["audio"], ua["video"]) + 0.2, ua
    assert ua["fusion"] >= 0.85, ua
    for needle in (
        "fusion classifier (cached embeddings)",
        "fine-tuned end to end",
        "audio: cnn_pooling",
        "video: bilstm_attention",
    ):
        assert needle in proc.stdout
    cfg = json.loads((fusion_run / "fold_1" / "model.json").read_text())
    assert (
        cfg["model"] == "embedding_fusion" and cfg["model_kwargs"]["audio_model"] == "precomputed"
    )
    assert cfg["features"]["audio"]["name"] == "embed"


def test_finetuned_model_is_self_contained_and_started_from_the_branches(fused):
    root, runs, _, fusion_run, finetune_run = fused
    meta = json.loads((finetune_run / "fold_1" / "model.json").read_text())
    assert meta["model_kwargs"]["init_from"] is None
    assert set(meta["initialised_from"]) == {"audio", "video", "fusion"}
    assert (
        meta["model_kwargs"]["audio_model"] == "cnn_pooling"
        and meta["model_kwargs"]["video_model"] == "bilstm_attention"
    )
    predictor = Predictor.load(finetune_run / "fold_1")  # loads without the source runs' paths
    assert predictor.model.branches["audio"].embed_dim == 16
    # the initialisation copies both checkpoints and the fusion head exactly
    model = create_model(
        "embedding_fusion",
        num_classes=4,
        audio_dim=6,
        video_dim=5,
        **{**meta["model_kwargs"], "init_from": meta["initialised_from"]},
    )
    for role in ("audio", "video"):
        source = load_file(str(runs[role] / "model.safetensors"))
        for key, value in model.branches[role].state_dict().items():
            torch.testing.assert_close(value, source[key], atol=0, rtol=0)
    head = load_file(str(fusion_run / "fold_1" / "model.safetensors"))
    torch.testing.assert_close(model.head[1].weight, head["head.1.weight"], atol=0, rtol=0)


def test_fusion_run_re_evaluates_to_the_same_numbers(fused):
    from emorec.evaluation.run_eval import evaluate_run

    _, _, _, fusion_run, _ = fused
    before = json.loads((fusion_run / "fold_1" / "report" / "report.json").read_text())
    reports, _ = evaluate_run(fusion_run, progress=False)
    assert (
        reports[0]["ua"] == before["ua"]
        and reports[0]["confusion_matrix"] == before["confusion_matrix"]
    )


def test_fuse_refuses_branches_trained_on_different_splits(branches, tmp_path):
    _, runs = branches
    other = tmp_path / "video-run"
    shutil.copytree(runs["video"].parent, other)
    splits = load_splits(other / "splits.json")
    moved = splits[0].test.pop()
    splits[0].train.append(moved)  # a test clip of the audio model becomes a training clip here
    save_splits(splits, other / "splits.json")
    with pytest.raises(LeakageError, match="different splits"):
        fuse(runs["audio"], other / "fold_1", progress=False)
    # a fold of the same split, but another fold
    shutil.copytree(other / "fold_1", other / "fold_2")
    save_splits(load_splits(runs["video"].parent / "splits.json"), other / "splits.json")
    with pytest.raises(LeakageError, match="different folds"):
        fuse(runs["audio"], other / "fold_2", progress=False)
    # each branch must read its own modality only
    with pytest.raises(EmorecError, match="must read audio"):
        fuse(runs["video"], runs["audio"], progress=False)


def test_embedding_fusion_init_checks_the_source_model(branches):
    _, runs = branches
    with pytest.raises(ConfigError, match="holds a 'cnn_pooling' model"):
        create_model(
            "embedding_fusion",
            num_classes=4,
            audio_dim=6,
            video_dim=5,
            audio_model="cnn_lstm",
            video_model="bilstm_attention",
            video_kwargs={"modalities": ["video"]},
            init_from={"audio": str(runs["audio"])},
        )
    with pytest.raises(ConfigError, match="does not fit"):
        create_model(
            "embedding_fusion",
            num_classes=4,
            audio_dim=6,
            video_dim=5,
            audio_model="cnn_pooling",
            audio_kwargs={"dense": [8]},
            video_model="precomputed",
            init_from={"audio": str(runs["audio"])},
        )


def test_embedding_fusion_frozen_branches_and_missing_modality():
    torch.manual_seed(0)
    model = create_model(
        "embedding_fusion",
        num_classes=3,
        audio_dim=6,
        video_dim=5,
        audio_model="cnn_pooling",
        audio_kwargs={"dense": [8]},
        video_model="bilstm_attention",
        video_kwargs={"video_hidden": [4, 4], "attention_dim": 4, "dense": 8},
        fusion_hidden=8,
        freeze_branches=True,
    )
    model.train()
    assert not model.branches.training and model.fusion.training
    batch = {
        "audio": torch.randn(2, 7, 6),
        "audio_mask": torch.ones(2, 7, dtype=torch.bool),
        "video": torch.randn(2, 3, 5),
        "video_mask": torch.ones(2, 3, dtype=torch.bool),
    }
    model(batch).sum().backward()
    assert all(p.grad is None for p in model.branches.parameters())
    assert model.head[1].weight.grad is not None
    # unfrozen: every trainable parameter gets a gradient (DDP
    # needs that); the branch heads are unused and frozen
    model = create_model(
        "embedding_fusion",
        num_classes=3,
        audio_dim=6,
        video_dim=5,
        audio_model="cnn_pooling",
        audio_kwargs={"dense": [8]},
        video_model="bilstm_attention",
        video_kwargs={"video_hidden": [4, 4], "attention_dim": 4, "dense": 8},
        fusion_hidden=8,
    ).train()
    model(batch).sum().backward()
    assert [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None] == []
    assert all(not p.requires_grad for b in model.branches.values() for p in b.head.parameters())
    model.eval()
    audio_only = {k: v for k, v in batch.items() if k.startswith("audio")}
    assert torch.isfinite(model(audio_only)).all()
    with pytest.raises(ConfigError, match="cannot be the video branch"):
        create_model(
            "embedding_fusion", num_classes=3, audio_dim=6, video_dim=5, video_model="cnn_pooling"
        )
