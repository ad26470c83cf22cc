"""The model contract, checked for every registered model (a new model is tested for free).

Each model is built with ``num_classes=5`` and the dims of the modalities it reads
(``model_info(name).modalities``): audio 16, video 20. Its parameters and normalisation statistics
are perturbed away from their initial values (zero biases, unit running variances) so that a
layer that lets padded frames through cannot hide behind an identity-like initialisation.
"""

from __future__ import annotations

import inspect
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from emorec.errors import ConfigError
from emorec.models.registry import (
    create_model,
    describe_models,
    list_models,
    model_arguments,
    model_info,
)

NUM_CLASSES = 5
DIMS = {"audio": 16, "video": 20}
ATOL = 1e-5
MODELS = list_models()


def build(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    mods = model_info(name).modalities
    model = create_model(
        name,
        num_classes=NUM_CLASSES,
        audio_dim=DIMS["audio"] if "audio" in mods else None,
        video_dim=DIMS["video"] if "video" in mods else None,
    )
    perturb(model, seed)
    return model


@torch.no_grad()
def perturb(model: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed + 1000)
    for p in model.parameters():
        p.add_(0.1 * torch.randn(p.shape, generator=gen))
    for name, buf in model.named_buffers():
        if name.endswith("running_mean"):
            buf.copy_(0.3 * torch.randn(buf.shape, generator=gen))
        elif name.endswith("running_var"):
            buf.copy_(0.5 + torch.rand(buf.shape, generator=gen))


def video_length(audio_length: int) -> int:
    return max(1, (audio_length + 2) // 3)  # a different frame rate, still down to 1 frame


def make_clips(name: str, lengths: list[int], seed: int = 0) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    clips = []
    for n in lengths:
        clip = {}
        for mod in model_info(name).modalities:
            t = n if mod == "audio" else video_length(n)
            clip[mod] = torch.randn(t, DIMS[mod], generator=gen)
        clips.append(clip)
    return clips


def collate(
    clips: list[dict[str, torch.Tensor]], labels: list[int] | None = None
) -> dict[str, torch.Tensor]:
    """The batch contract: zero-padded ``(B, T, F)`` plus ``mask`` (True = real frame)."""
    batch: dict[str, torch.Tensor] = {}
    for mod in clips[0]:
        total = max(c[mod].size(0) for c in clips)
        x = torch.zeros(len(clips), total, clips[0][mod].size(1))
        mask = torch.zeros(len(clips), total, dtype=torch.bool)
        for i, c in enumerate(clips):
            x[i, : c[mod].size(0)] = c[mod]
            mask[i, : c[mod].size(0)] = True
        batch[mod], batch[f"{mod}_mask"] = x, mask
    batch["label"] = torch.tensor(
        labels if labels is not None else [i % NUM_CLASSES for i in range(len(clips))]
    )
    batch["index"] = torch.arange(len(clips))
    return batch


def has_attention(model: torch.nn.Module) -> bool:
    return "return_attention" in inspect.signature(model.forward).parameters


LENGTHS = [1, 2, 7, 16, 33, 40]  # odd, even, 1 frame, and one clip that sets the padded length


@pytest.mark.parametrize("name", MODELS)
def test_padding_never_changes_logits(name):
    model = build(name).eval()
    clips = make_clips(name, LENGTHS)
    with torch.no_grad():
        batched = model(collate(clips))
        assert batched.shape == (len(clips), NUM_CLASSES) and batched.dtype == torch.float32
        for i, clip in enumerate(clips):
            alone = model(collate([clip]))
            diff = (batched[i] - alone[0]).abs().max().item()
            assert diff <= ATOL, (
                f"{name}: clip of {LENGTHS[i]} frames changes by {diff:.2e} when padded"
            )


@pytest.mark.parametrize("name", MODELS)
def test_attention_weights_sum_to_one_and_ignore_padding(name):
    model = build(name).eval()
    if not has_attention(model):
        pytest.skip(f"{name} has no attention")
    clips = make_clips(name, LENGTHS, seed=1)
    batch = collate(clips)
    with torch.no_grad():
        logits, attention = model(batch, return_attention=True)
        torch.testing.assert_close(logits, model(batch), atol=0, rtol=0)
        assert attention, f"{name}: return_attention=True gave no weights"
        alone = [model(collate([clip]), return_attention=True)[1] for clip in clips]
    for key, weights in attention.items():
        assert weights.dim() == 2 and weights.size(0) == len(clips), (
            f"{key}: expected (B, T'), got {tuple(weights.shape)}"
        )
        for i in range(len(clips)):
            ref = alone[i][key][0]  # (T'_i,) every frame of a lone clip is real
            t = ref.size(0)
            torch.testing.assert_close(ref.sum(), torch.tensor(1.0), atol=ATOL, rtol=0)
            torch.testing.assert_close(weights[i, :t], ref, atol=ATOL, rtol=0)
            assert weights[i, t:].eq(0).all(), (
                f"{name}/{key}: padded frames of clip {i} get attention"
            )
            torch.testing.assert_close(weights[i].sum(), torch.tensor(1.0), atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("lengths", [[1], [5], [1, 2, 5]], ids=["B1-T1", "B1-T5", "B3-T1to5"])
def test_forward_backward_short_clips(name, lengths):
    model = build(name).train()
    batch = collate(make_clips(name, lengths, seed=2))
    logits = model(batch)
    assert logits.shape == (len(lengths), NUM_CLASSES) and torch.isfinite(logits).all()
    F.cross_entropy(logits, batch["label"]).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads), (
        f"{name}: no gradient reached the parameters"
    )
    for pname, p in model.named_parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient in {pname}"


@pytest.mark.parametrize("name", MODELS)
def test_safetensors_roundtrip(name, tmp_path):
    model = build(name, seed=0).eval()
    path = tmp_path / "model.safetensors"
    save_file(model.state_dict(), str(path))
    fresh = build(name, seed=1).eval()
    fresh.load_state_dict(load_file(str(path)))
    batch = collate(make_clips(name, [3, 11], seed=3))
    with torch.no_grad():
        torch.testing.assert_close(fresh(batch), model(batch), atol=0, rtol=0)


@pytest.mark.parametrize("name", MODELS)
def test_embed_shape_and_head(name):
    model = build(name).eval()
    batch = collate(make_clips(name, [4, 9, 1], seed=4))
    with torch.no_grad():
        embedding = model.embed(batch)
        assert embedding.dim() == 2 and embedding.size(0) == 3 and torch.isfinite(embedding).all()
        if hasattr(model, "embed_dim"):
            assert embedding.size(1) == model.embed_dim
        if hasattr(model, "head"):
            torch.testing.assert_close(model.head(embedding), model(batch), atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", MODELS)
def test_registry_schema(name):
    info = model_info(name)
    assert info.modalities and set(info.modalities) <= {"audio", "video"}
    assert info.seed and info.summary
    params = inspect.signature(info.factory).parameters
    for key in model_arguments(name):
        assert params[key].annotation is not inspect.Parameter.empty, (
            f"{name}.{key} needs a type annotation"
        )
    with pytest.raises(ConfigError):
        create_model(name, num_classes=3, audio_dim=16, video_dim=20, no_such_argument=1)


def test_describe_models():
    rows = describe_models()
    assert [r["name"] for r in rows] == MODELS
    for row in rows:
        assert set(row) == {"name", "modalities", "parameters", "seed", "summary"}
        assert row["parameters"] > 0


# ---------------------------------------------------------------- attn_crnn specifics
@pytest.mark.parametrize("audio_dim", [1, 3, 8, 25, 768])
def test_attn_crnn_any_feature_dim(audio_dim):
    torch.manual_seed(0)
    model = create_model(
        "attn_crnn",
        num_classes=4,
        audio_dim=audio_dim,
        channels=(4, 8),
        time_pool=(2, 2),
        freq_pool=(2, 2),
        gru_hidden=8,
        attention_dim=8,
        dense=8,
    )
    assert (model.input_proj is not None) == (audio_dim > 128)
    x = torch.randn(2, 9, audio_dim)
    mask = torch.arange(9)[None] < torch.tensor([[9], [1]])
    logits, att = model({"audio": x * mask[..., None], "audio_mask": mask}, return_attention=True)
    assert logits.shape == (2, 4) and att["audio"].shape == (2, math.ceil(9 / 4))
    logits.sum().backward()


def test_attn_crnn_config_errors():
    with pytest.raises(ConfigError):
        create_model("attn_crnn", num_classes=4, audio_dim=64, channels=(8, 16), time_pool=(2,))
    with pytest.raises(ConfigError):
        create_model("attn_crnn", num_classes=4)  # no audio_dim


@pytest.mark.parametrize("name", ["attn_crnn", "attn_crnn_v2"])
def test_crnn_reads_delta_planes_as_input_channels(name):
    """``input_channels=3`` on ``(T, 3F)`` features is the same network as 3-channel convs over the
    planes ``[values | delta | delta-delta]``: padding still never leaks, and a change confined to
    one plane reaches the first conv only through that plane's input channel."""
    torch.manual_seed(0)
    model = create_model(
        name,
        num_classes=4,
        audio_dim=3 * 10,
        channels=(4, 8),
        time_pool=(2, 2),
        freq_pool=(2, 2),
        input_channels=3,
    ).eval()
    assert model.input_proj is None and model.blocks[0].conv.in_channels == 3
    lengths = [1, 6, 11]
    clips = [torch.randn(n, 30) for n in lengths]
    batch = {
        "audio": torch.nn.utils.rnn.pad_sequence(clips, batch_first=True),
        "audio_mask": torch.arange(11)[None] < torch.tensor(lengths)[:, None],
    }
    with torch.no_grad():
        batched = model(batch)
        for i, clip in enumerate(clips):
            alone = model(
                {"audio": clip[None], "audio_mask": torch.ones(1, lengths[i], dtype=torch.bool)}
            )
            assert (batched[i] - alone[0]).abs().max() <= ATOL
        # Zeroing the delta plane's weights makes the delta values irrelevant to the output.
        model.blocks[0].conv.weight[:, 1] = 0.0
        changed = batch["audio"].clone()
        changed[..., 10:20] += 5.0
        assert torch.allclose(model(batch), model({**batch, "audio": changed}), atol=1e-6)
        changed[..., :10] += 5.0
        assert not torch.allclose(model(batch), model({**batch, "audio": changed}), atol=1e-3)


def test_input_channels_must_divide_features():
    with pytest.raises(ConfigError, match="input_channels"):
        create_model("attn_crnn", num_classes=4, audio_dim=64, input_channels=3)
    with pytest.raises(ConfigError, match="input_proj"):
        create_model("attn_crnn", num_classes=4, audio_dim=192, input_channels=3, input_proj=32)
