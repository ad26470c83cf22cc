"""Model-specific behaviour of the seed model family (the generic contract is in test_models.py).

Also home of :func:`av_config`, a recipe on the generated audio-visual corpus of imported ``.npy``
features (:mod:`emorec.corpora.synthetic_av`), used by test_fusion.py too.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from emorec.corpora.synthetic_av import generate_av_feature_corpus
from emorec.errors import ConfigError
from emorec.layers import VariationalGRU, reverse_padded, run_rnn
from emorec.models import create_model

# ---------------------------------------- a generated audio-visual corpus
# generate_av_feature_corpus: each modality tells half of the label; one alone reaches 50% at best


def av_config(
    root: Path,
    manifest: Path,
    audio_dir: Path,
    video_dir: Path,
    modalities: tuple[str, ...],
    *,
    model: dict,
    name: str,
    epochs: int = 12,
) -> dict:
    """A recipe (as a dict) on the generated corpus reading ``modalities`` (npy features)."""
    specs = {
        "audio": {"name": "npy", "directory": str(audio_dir), "modality": "audio"},
        "video": {"name": "npy", "directory": str(video_dir), "modality": "video"},
    }
    first, *rest = modalities
    return {
        "data": {
            "manifest": str(manifest),
            "cache": str(root / "cache"),
            "features": specs[first],
            "video_features": specs[rest[0]] if rest else None,
            "workers": 0,
        },
        "split": {"scheme": "speaker_kfold", "k": 3, "val_speakers": 1},
        "model": model,
        "optim": {"lr": 0.01},
        "loss": {"name": "ce"},
        "augment": {"enabled": False},
        "trainer": {"epochs": epochs, "batch_size": 16, "patience": epochs, "threads": 1},
        "run": {"dir": str(root / "runs"), "name": name, "folds": "1", "bootstrap": 20},
    }


TINY_BILSTM = {
    "name": "bilstm_attention",
    "audio_hidden": [8, 8],
    "video_hidden": [8, 8],
    "attention_dim": 8,
    "dense": 16,
    "dropout": 0.1,
}


def _batch(
    lengths: list[int], dims: dict[str, int], seed: int = 0, video_lengths: list[int] | None = None
) -> dict:
    gen = torch.Generator().manual_seed(seed)
    batch: dict[str, torch.Tensor] = {}
    for m, dim in dims.items():
        lens = lengths if m == "audio" else (video_lengths or [max(1, n // 3) for n in lengths])
        t = max(lens)
        mask = torch.arange(t)[None] < torch.tensor(lens)[:, None]
        batch[m] = torch.randn(len(lens), t, dim, generator=gen) * mask[..., None]
        batch[f"{m}_mask"] = mask
    batch["label"] = torch.zeros(len(lengths), dtype=torch.long)
    batch["index"] = torch.arange(len(lengths))
    return batch


# ---------------------------------------- ATTN-CRNN v2: recurrent dropout
def _gru_pair(p: float = 0.3) -> tuple[torch.nn.GRU, VariationalGRU]:
    torch.manual_seed(0)
    reference = torch.nn.GRU(5, 7, batch_first=True, bidirectional=True)
    ours = VariationalGRU(5, 7, recurrent_dropout=p)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(ours, name).copy_(
                torch.stack(
                    [getattr(reference, f"{name}_l0"), getattr(reference, f"{name}_l0_reverse")]
                )
            )
    return reference, ours


def test_variational_gru_equals_nn_gru_in_eval():
    reference, ours = _gru_pair()
    batch = _batch([9, 4, 1], {"audio": 5})
    x, mask = batch["audio"], batch["audio_mask"]
    expected, h_expected = run_rnn(reference, x, mask)
    got, h_got = ours.eval()(x, mask)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(h_got, h_expected, atol=1e-6, rtol=0)


def test_variational_gru_kernel_path_equals_its_python_loop():
    """Without dropout the GRU runs nn.GRU's kernel on its own parameters: the loop's outputs,
    final states (0 for a row without real frames) and gradients; holes fall back to the loop."""
    _, gru = _gru_pair()
    gru.double().eval()
    batch = _batch([9, 4, 1, 0], {"audio": 5})
    x, mask = batch["audio"].double().requires_grad_(True), batch["audio_mask"]
    fused, h_fused = gru._fused(x, mask)
    loop, h_loop = gru._loop(x, mask)
    torch.testing.assert_close(fused, loop, atol=1e-12, rtol=0)
    torch.testing.assert_close(h_fused, h_loop, atol=1e-12, rtol=0)
    grads = [
        torch.autograd.grad((out * out).sum() + h.sum(), (x, gru.weight_hh))
        for out, h in ((fused, h_fused), (loop, h_loop))
    ]
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    assert list(gru.state_dict()) == ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    holes = mask.clone()
    holes[0, 2] = False
    torch.testing.assert_close(gru(x, holes)[0], gru._loop(x, holes)[0], atol=1e-12, rtol=0)


def test_recurrent_dropout_is_active_in_train_and_off_in_eval():
    _, gru = _gru_pair(p=0.5)
    batch = _batch([9, 6], {"audio": 5})
    x, mask = batch["audio"], batch["audio_mask"]
    gru.eval()
    assert gru.dropout_mask(2, x) is None
    torch.testing.assert_close(gru(x, mask)[0], gru(x, mask)[0], atol=0, rtol=0)
    eval_out = gru(x, mask)[0]
    gru.train()
    first, second = gru(x, mask)[0], gru(x, mask)[0]
    assert not torch.allclose(first, second) and not torch.allclose(first, eval_out)
    gru.recurrent_dropout = 0.0
    torch.testing.assert_close(gru(x, mask)[0], eval_out, atol=1e-6, rtol=0)


def test_recurrent_dropout_mask_is_one_per_sequence_and_padding_freezes_the_state(monkeypatch):
    _, gru = _gru_pair(p=0.5)
    gru.train()
    batch = _batch([7, 3], {"audio": 5})
    x, mask = batch["audio"], batch["audio_mask"]
    calls = []
    original = gru.dropout_mask
    monkeypatch.setattr(gru, "dropout_mask", lambda b, like: calls.append(b) or original(b, like))
    torch.manual_seed(1)
    out, h = gru(x, mask)
    assert calls == [2]  # drawn once for the whole sequence, not per step
    # 5 more padded frames: same random mask (same seed), same outputs and final state
    padded_x = torch.cat([x, torch.zeros(2, 5, 5)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(2, 5, dtype=torch.bool)], dim=1)
    torch.manual_seed(1)
    out_padded, h_padded = gru(padded_x, padded_mask)
    torch.testing.assert_close(out_padded[:, :7], out, atol=1e-6, rtol=0)
    assert out_padded[:, 7:].eq(0).all()
    torch.testing.assert_close(h_padded, h, atol=1e-6, rtol=0)


def test_reverse_padded_is_an_involution_that_keeps_padding():
    mask = torch.arange(5)[None] < torch.tensor([[5], [3], [0]])
    x = torch.arange(15.0).view(3, 5, 1) * mask[..., None]
    rev = reverse_padded(x, mask)
    assert rev[1, :, 0].tolist() == [7.0, 6.0, 5.0, 0.0, 0.0]
    torch.testing.assert_close(reverse_padded(rev, mask), x)


def test_attn_crnn_v2_recurrent_dropout_in_the_model():
    torch.manual_seed(0)
    model = create_model(
        "attn_crnn_v2",
        num_classes=4,
        audio_dim=16,
        channels=(4, 8),
        time_pool=(2, 2),
        freq_pool=(2, 2),
        gru_hidden=8,
        attention_heads=2,
        dense=16,
        dropout=0.0,
        recurrent_dropout=0.5,
    )
    assert isinstance(model.gru, VariationalGRU) and model.gru.recurrent_dropout == 0.5
    batch = _batch([40, 17], {"audio": 16})
    model.train()
    assert not torch.allclose(model(batch), model(batch))  # only the recurrent mask is random here
    model.eval()
    torch.testing.assert_close(model(batch), model(batch), atol=0, rtol=0)
    model.train()
    model.gru.recurrent_dropout = 0.0
    torch.testing.assert_close(model(batch), model(batch), atol=0, rtol=0)


def test_attn_crnn_v2_attention_pooling_and_config_errors():
    model = create_model(
        "attn_crnn_v2",
        num_classes=3,
        audio_dim=8,
        channels=(4,),
        time_pool=(2,),
        freq_pool=(2,),
        gru_hidden=4,
        attention_heads=2,
        pooling="attention",
        attention_dim=4,
        dense=8,
    ).eval()
    logits, att = model(_batch([9, 2], {"audio": 8}), return_attention=True)
    assert logits.shape == (2, 3) and att["audio"].shape == (2, 5)
    torch.testing.assert_close(att["audio"].sum(1), torch.ones(2))
    with pytest.raises(ConfigError):
        create_model("attn_crnn_v2", num_classes=3, audio_dim=8, gru_hidden=5, attention_heads=4)
    with pytest.raises(ConfigError):
        create_model("attn_crnn_v2", num_classes=3, audio_dim=8, pooling="max")


# ---------------------------------------- BiLSTM attention: one class, any modalities
def _bilstm(**kw) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model(
        "bilstm_attention",
        num_classes=4,
        audio_hidden=(6, 4),
        video_hidden=(6, 4),
        attention_dim=5,
        dense=8,
        **kw,
    )
    with torch.no_grad():
        for p in model.placeholders.values():
            p.normal_()
    return model.eval()


@pytest.mark.parametrize(
    "dims,branches",
    [
        ({"audio_dim": 6}, ("audio",)),
        ({"video_dim": 5}, ("video",)),
        ({"audio_dim": 6, "video_dim": 5}, ("audio", "video")),
        ({"audio_dim": 6, "video_dim": 5, "modalities": ("video",)}, ("video",)),
    ],
)
def test_bilstm_builds_the_branches_the_data_and_config_give(dims, branches):
    model = _bilstm(**dims)
    assert model.modalities == branches
    batch = _batch([7, 3, 1], {"audio": 6, "video": 5})
    logits, att = model(batch, return_attention=True)
    assert logits.shape == (3, 4) and set(att) == set(branches)
    # modalities the model has no branch for are ignored
    only = {
        k: v for k, v in batch.items() if k.split("_")[0] in branches or k in ("label", "index")
    }
    torch.testing.assert_close(model(only), logits, atol=0, rtol=0)


def test_bilstm_no_branch_is_a_config_error():
    with pytest.raises(ConfigError, match="no branch"):
        create_model("bilstm_attention", num_classes=4, video_dim=5, modalities=("audio",))
    with pytest.raises(ConfigError):
        create_model("bilstm_attention", num_classes=4, audio_dim=5, modalities=("audio", "text"))


def test_bilstm_missing_modality_uses_the_learned_placeholder():
    model = _bilstm(audio_dim=6, video_dim=5)
    batch = _batch([7, 3, 5], {"audio": 6, "video": 5})
    audio_only = {k: v for k, v in batch.items() if not k.startswith("video")}
    with torch.no_grad():
        context, _ = model.branches["audio"](batch["audio"], batch["audio_mask"])
        expected = model.head(
            model.dense(torch.cat([context, model.placeholders["video"].expand(3, -1)], -1))
        )
        torch.testing.assert_close(model(audio_only), expected, atol=1e-6, rtol=0)
        # a clip whose video mask row is all False counts as missing video, the others are unchanged
        holed = dict(batch, video_mask=batch["video_mask"].clone())
        holed["video_mask"][1] = False
        holed["video"] = holed["video"] * holed["video_mask"][..., None]
        full, partial = model(batch), model(holed)
        torch.testing.assert_close(partial[1], expected[1], atol=1e-6, rtol=0)
        torch.testing.assert_close(partial[[0, 2]], full[[0, 2]], atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "name,kw",
    [
        (
            "bilstm_attention",
            dict(audio_hidden=(6, 4), video_hidden=(6, 4), attention_dim=5, dense=8),
        ),
        (
            "hybrid_tcn",
            dict(
                audio_channels=4,
                audio_blocks=1,
                video_channels=4,
                tcn_levels=2,
                model_dim=8,
                heads=2,
                attention_dim=4,
                dense=8,
            ),
        ),
    ],
)
def test_av_models_train_through_modality_dropout(name, kw):
    """Clips with their audio or their video removed (all-False mask rows) give finite logits,
    loss and gradients, and a learning signal reaches the branch that is still there."""
    from emorec.training.augment import modality_dropout

    torch.manual_seed(0)
    model = create_model(name, num_classes=4, audio_dim=6, video_dim=5, **kw).train()
    batch = modality_dropout(
        _batch([9, 4, 7, 1, 5, 8], {"audio": 6, "video": 5}), 1.0, np.random.default_rng(1)
    )
    gone = {m: ~batch[f"{m}_mask"].any(1) for m in ("audio", "video")}
    assert gone["audio"].any() and gone["video"].any()
    logits = model(batch)
    loss = torch.nn.functional.cross_entropy(logits, torch.arange(6) % 4)
    loss.backward()
    assert torch.isfinite(logits).all() and torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


# ---------------------------------------- hybrid TCN
def test_hybrid_tcn_modality_weights_sum_to_one_and_single_modalities():
    torch.manual_seed(0)
    kw = dict(
        audio_channels=4,
        audio_blocks=1,
        video_channels=4,
        tcn_levels=3,
        model_dim=8,
        heads=2,
        attention_dim=4,
        dense=8,
    )
    model = create_model("hybrid_tcn", num_classes=3, audio_dim=6, video_dim=5, **kw)
    with torch.no_grad():
        model.weights.logits.copy_(torch.tensor([1.3, -0.4]))
    weights = model.modality_weights()
    torch.testing.assert_close(weights.sum(), torch.tensor(1.0))
    assert weights[0] > weights[1] > 0
    model.eval()
    batch = _batch([12, 5, 1], {"audio": 6, "video": 5})
    logits, att = model(batch, return_attention=True)
    assert logits.shape == (3, 3) and set(att) == {"audio", "video"}
    # the same model with one modality absent from the batch treats it as missing in every clip:
    # exactly what a clip whose mask row is all False gets, and finite
    full = model(batch)
    for keep, drop in (("audio", "video"), ("video", "audio")):
        part = {k: v for k, v in batch.items() if k.startswith(keep) or k in ("label", "index")}
        logits, att = model(part, return_attention=True)
        assert torch.isfinite(logits).all() and (att[drop] == 0).all()
        holed = dict(batch, **{f"{drop}_mask": batch[f"{drop}_mask"].clone()})
        holed[f"{drop}_mask"][1] = False
        holed[drop] = holed[drop] * holed[f"{drop}_mask"][..., None]
        partial = model(holed)
        torch.testing.assert_close(partial[1], logits[1], atol=1e-5, rtol=0)
        torch.testing.assert_close(partial[[0, 2]], full[[0, 2]], atol=1e-5, rtol=0)
    # models built for one modality
    for dims in ({"audio_dim": 6}, {"video_dim": 5}):
        single = create_model("hybrid_tcn", num_classes=3, **dims, **kw).eval()
        assert single.cross is None and single.weights is None
        torch.testing.assert_close(single.modality_weights().sum(), torch.tensor(1.0))
        assert single(batch).shape == (3, 3)
    assert model.video.tcn.receptive_field() == 1 + 2 * 2 * 7


def test_hybrid_tcn_rejects_bad_sizes():
    with pytest.raises(ConfigError):
        create_model("hybrid_tcn", num_classes=3, audio_dim=6, audio_kernels=(3, 4))
    with pytest.raises(ConfigError):
        create_model("hybrid_tcn", num_classes=3)
    with pytest.raises(ConfigError):
        create_model("hybrid_tcn", num_classes=3, audio_dim=6, model_dim=10, heads=4)


# ---------------------------------------- CNN-LSTM / pooling
def test_cnn_pooling_is_a_masked_mean_and_cnn_lstm_uses_final_states():
    torch.manual_seed(0)
    pooling = create_model("cnn_pooling", num_classes=3, audio_dim=6, dense=(4,)).eval()
    batch = _batch([7, 2], {"audio": 6})
    with torch.no_grad():
        manual = torch.stack([batch["audio"][i, :n].mean(0) for i, n in enumerate([7, 2])])
        torch.testing.assert_close(pooling.embed(batch), pooling.dense(manual))
    lstm = create_model(
        "cnn_lstm", num_classes=3, audio_dim=6, frame_dims=(5,), lstm_hidden=(4, 3), dense=4
    ).eval()
    longer = dict(
        batch,
        audio=torch.cat([batch["audio"], torch.zeros(2, 4, 6)], 1),
        audio_mask=torch.cat([batch["audio_mask"], torch.zeros(2, 4, dtype=torch.bool)], 1),
    )
    with torch.no_grad():
        torch.testing.assert_close(lstm(longer), lstm(batch), atol=1e-6, rtol=0)
    with pytest.raises(ConfigError):
        create_model("cnn_lstm", num_classes=3, audio_dim=6, lstm_hidden=())


@pytest.mark.parametrize(
    "name,kw", [("cnn_lstm", {"time_pool": 3}), ("bilstm_attention", {"audio_time_pool": 3})]
)
def test_time_pooling_before_the_lstms_keeps_padding_invariance(name, kw):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, audio_dim=6, **kw).eval()
    lengths = [1, 4, 8, 13]
    batch = _batch(lengths, {"audio": 6})
    with torch.no_grad():
        together = model(batch)
        for i, n in enumerate(lengths):
            alone = model(
                {
                    "audio": batch["audio"][i : i + 1, :n],
                    "audio_mask": batch["audio_mask"][i : i + 1, :n],
                }
            )
            torch.testing.assert_close(together[i], alone[0], atol=1e-5, rtol=0)


# ---------------------------------------- audio-visual beats each modality alone
def test_av_bilstm_beats_both_single_modality_variants(tmp_path):
    from emorec.evaluation.run_eval import evaluate_run
    from emorec.training.config import config_from_dict
    from emorec.workflows.crossval import train

    av_run = None
    manifest, audio_dir, video_dir = generate_av_feature_corpus(tmp_path)
    ua = {}
    for mods in (("audio", "video"), ("audio",), ("video",)):
        name = "+".join(mods)
        cfg = config_from_dict(
            av_config(tmp_path, manifest, audio_dir, video_dir, mods, model=TINY_BILSTM, name=name)
        )
        run_dir = train(cfg, progress=False)
        meta = json.loads((run_dir / "fold_1" / "model.json").read_text())
        assert sorted(meta["features"]) == sorted(mods)
        ua[name] = json.loads((run_dir / "fold_1" / "report" / "report.json").read_text())["ua"]
        av_run = run_dir if len(mods) == 2 else av_run
    # the AV model still predicts with a modality dropped
    # (learned placeholder): `emorec evaluate --drop video`
    dropped, _ = evaluate_run(av_run, drop="video", progress=False)
    assert (
        0.0 <= dropped[0]["ua"] <= 1.0
        and (av_run / "fold_1" / "report_drop_video" / "report.json").is_file()
    )
    assert ua["audio+video"] >= max(ua["audio"], ua["video"]) + 0.2, ua
    assert ua["audio+video"] >= 0.75, ua


def test_clips_lacking_one_modality_stay_in_as_missing_modality(tmp_path):
    """A video without an audio track (here: no audio array for some clips) is a missing
    modality in training and evaluation, listed per clip, never a dropped clip or a crash."""
    from emorec.data import ClipDataset
    from emorec.evaluation.run_eval import evaluate_run
    from emorec.inference.predictor import Predictor
    from emorec.training.config import config_from_dict
    from emorec.workflows.crossval import train

    manifest, audio_dir, video_dir = generate_av_feature_corpus(tmp_path, speakers=6, clips=2)
    # one clip per speaker loses its audio
    lacking = sorted(audio_dir.glob("av__0[1-6]-happy-00.npy"))
    for path in lacking:
        path.unlink()
    cfg = config_from_dict(
        av_config(
            tmp_path,
            manifest,
            audio_dir,
            video_dir,
            ("audio", "video"),
            model=TINY_BILSTM,
            name="partial",
            epochs=2,
        )
    )
    run_dir = train(cfg, progress=False)
    report = json.loads((run_dir / "fold_1" / "report" / "report.json").read_text())
    missing = report["extra"]["test_clips_missing_a_modality"]
    assert missing and all(m.endswith("(audio)") and "-happy-00" in m for m in missing)
    assert report["extra"]["missing_test_clips"] == []
    assert report["n"] == 2 * 4 * 2  # every test clip (2 speakers) was classified
    # the dataset's view of such a clip: one invalid zero frame of the right size
    predictor = Predictor.load(run_dir / "fold_1")
    # then nothing is left for them but the placeholders
    reports, _ = evaluate_run(run_dir, drop="video", progress=False)
    assert reports[0]["n"] == 16
    from emorec.training.experiment import prepare_experiment

    experiment = prepare_experiment(cfg, extract=False, progress=False)
    data = ClipDataset(
        experiment.clips, {e: i for i, e in enumerate(experiment.class_names)}, experiment.stores
    )
    index = [c.clip_id for c in data.clips].index("av/01-happy-00")
    item = data[index]
    assert item["audio"].shape == (1, predictor.meta["audio_dim"]) and not item["audio_valid"].any()
    # predicting a file that lacks one modality: the missing modality, not a skipped file
    results, skipped = predictor.predict_files([tmp_path / "media" / "av__01-happy-00.mp4"])
    assert not skipped and results[0][1].shape == (4,) and abs(results[0][1].sum() - 1) < 1e-5
    results, skipped = predictor.predict_files([tmp_path / "media" / "av__99-nothing-00.mp4"])
    assert not results and len(skipped) == 1  # neither modality: listed as a bad file
