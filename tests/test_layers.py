"""Masked layers: padded frames never change a clip's result, and masks never produce NaN."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from emorec.layers import (
    AdditiveAttention,
    MaskedBatchNorm,
    MaskedConvBlock2d,
    MaskedMultiHeadAttention,
    MaskedSelfAttention,
    apply_time_mask,
    lengths_from_mask,
    masked_max,
    masked_max_pool,
    masked_mean,
    masked_softmax,
    masked_std,
    pool_time_mask,
    run_rnn,
)

ATOL = 1e-5


def make_mask(lengths: list[int], total: int | None = None) -> torch.Tensor:
    total = total or max(lengths)
    return torch.arange(total)[None, :] < torch.tensor(lengths)[:, None]  # (B, T)


def padded(clips: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack clips ``(T_i, ...)`` into ``(B, T, ...)`` with zeros past each end, plus the mask."""
    total = max(c.size(0) for c in clips)
    x = torch.zeros(len(clips), total, *clips[0].shape[1:])
    for i, c in enumerate(clips):
        x[i, : c.size(0)] = c
    return x, make_mask([c.size(0) for c in clips], total)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ---------------------------------------------------------------- masking helpers
def test_lengths_and_apply_time_mask():
    mask = make_mask([3, 1, 5])
    assert lengths_from_mask(mask).tolist() == [3, 1, 5]
    x = torch.full((3, 5, 2), float("nan"))
    out = apply_time_mask(x, mask)
    assert (out[~mask] == 0).all() and torch.isnan(out[mask]).all()
    y = apply_time_mask(torch.ones(3, 4, 5, 6), mask, time_dim=2)  # (B, C, T, F)
    assert y[1, :, 1:].abs().sum() == 0 and y[1, :, :1].eq(1).all()


def test_masked_mean_max_std_match_real_frames():
    clips = [torch.randn(n, 4) for n in (1, 4, 7)]
    x, mask = padded(clips)
    x = x + 100.0 * (~mask)[..., None]  # garbage on padded frames must be ignored
    for i, c in enumerate(clips):
        torch.testing.assert_close(masked_mean(x, mask)[i], c.mean(0))
        torch.testing.assert_close(masked_max(x, mask)[i], c.amax(0))
        torch.testing.assert_close(masked_std(x, mask, eps=0.0)[i], c.std(0, unbiased=False))
    empty = torch.zeros(2, 3, dtype=torch.bool)
    assert masked_mean(torch.randn(2, 3, 4), empty).eq(0).all()
    assert masked_max(torch.randn(2, 3, 4), empty).eq(0).all()


@pytest.mark.parametrize(
    ("length", "kernel", "expected"), [(1, 2, 1), (2, 2, 1), (5, 2, 3), (7, 3, 3), (6, 1, 6)]
)
def test_pool_time_mask(length, kernel, expected):
    mask = make_mask([length, 1], total=length)
    pooled = pool_time_mask(mask, kernel)
    assert pooled.shape == (2, math.ceil(length / kernel))
    assert pooled[0].sum() == expected and pooled[1].sum() == 1


@pytest.mark.parametrize("ndim", [3, 4])
def test_masked_max_pool_is_padding_invariant(ndim):
    lengths = [1, 2, 5, 9]
    shape = (3, 6) if ndim == 4 else (3,)  # (C, F) or (C,)
    clips = [torch.randn(*shape[:1], n, *shape[1:]) for n in lengths]  # (C, T[, F])
    total = max(lengths)
    x = torch.zeros(len(clips), *shape[:1], total, *shape[1:])
    for i, c in enumerate(clips):
        # all negative, so a zero leaking from padding would win the max
        x[i, :, : c.size(1)] = c - 50.0
    mask = make_mask(lengths)
    fk = 2 if ndim == 4 else 1
    pooled, new_mask = masked_max_pool(x, mask, 2, fk)
    assert new_mask.sum(1).tolist() == [math.ceil(n / 2) for n in lengths]
    for i, c in enumerate(clips):
        alone, alone_mask = masked_max_pool((c - 50.0).unsqueeze(0), make_mask([c.size(1)]), 2, fk)
        t = alone.size(2)
        assert alone_mask.all()
        torch.testing.assert_close(pooled[i, :, :t], alone[0], atol=0, rtol=0)
        assert pooled[i, :, t:].eq(0).all()


# ---------------------------------------------------------------- batch norm and conv block
def test_masked_batchnorm_matches_batchnorm_without_padding():
    x = torch.randn(4, 3, 6, 5)
    ours, ref = MaskedBatchNorm(3).train(), nn.BatchNorm2d(3).train()
    torch.testing.assert_close(ours(x, torch.ones(4, 6, dtype=torch.bool)), ref(x))
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var)
    ours.eval(), ref.eval()
    torch.testing.assert_close(ours(x, torch.ones(4, 6, dtype=torch.bool)), ref(x))


def test_masked_batchnorm_statistics_ignore_padding():
    lengths = [6, 2, 1]
    mask = make_mask(lengths)
    x = torch.randn(3, 3, 6, 5) + 1000.0 * (~mask)[:, None, :, None]
    bn = MaskedBatchNorm(3, affine=False).train()
    out = bn(x, mask)
    real = x.permute(0, 2, 1, 3)[mask]  # (N_real, C, F)
    torch.testing.assert_close(bn.running_mean, 0.1 * real.mean((0, 2)))
    normed = out.permute(0, 2, 1, 3)[mask]
    torch.testing.assert_close(normed.mean((0, 2)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(normed.var((0, 2), unbiased=False), torch.ones(3), atol=1e-3, rtol=0)
    assert out.permute(0, 2, 1, 3)[~mask].eq(0).all()


def test_masked_batchnorm_gradcheck_and_single_value():
    mask = make_mask([4, 2, 1])
    x = torch.randn(3, 2, 4, 3, dtype=torch.float64, requires_grad=True)
    bn = MaskedBatchNorm(2).double().train()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5), bn.bias.uniform_(-1, 1)
    assert torch.autograd.gradcheck(lambda t: bn(t, mask), (x,))
    # (B, C, T)
    one = MaskedBatchNorm(2).train()(torch.randn(1, 2, 1), torch.ones(1, 1, dtype=torch.bool))
    assert torch.isfinite(one).all()


def test_conv_block_is_padding_invariant_in_eval():
    block = MaskedConvBlock2d(1, 4, time_pool=2, freq_pool=2)
    # non-trivial running statistics and affine: padded outputs would not be 0
    with torch.no_grad():
        block.norm.running_mean.uniform_(-1, 1), block.norm.running_var.uniform_(0.5, 2)
        block.norm.bias.uniform_(-1, 1)
    block.eval()
    lengths = [1, 3, 8]
    clips = [torch.randn(n, 7) for n in lengths]  # (T, F)
    x, mask = padded(clips)
    out, out_mask = block(x.unsqueeze(1), mask)  # (B, 4, T', 4)
    assert out.shape[-1] == 4 and out_mask.sum(1).tolist() == [1, 2, 4]
    for i, c in enumerate(clips):
        alone, _ = block(c[None, None], make_mask([c.size(0)]))
        t = alone.size(2)
        torch.testing.assert_close(out[i, :, :t], alone[0], atol=ATOL, rtol=0)
        assert out[i, :, t:].eq(0).all()


def test_conv_block_freq_pool_stops_at_one_bin():
    block = MaskedConvBlock2d(1, 2, freq_pool=2)
    assert [block.output_freq(f) for f in (1, 2, 3, 64)] == [1, 1, 2, 32]
    out, _ = block(torch.randn(2, 1, 3, 1), make_mask([3, 1]))
    assert out.shape == (2, 2, 2, 1)


# ---------------------------------------------------------------- recurrent
@pytest.mark.parametrize("cell", [nn.GRU, nn.LSTM])
def test_run_rnn_packed_is_padding_invariant(cell):
    rnn = cell(4, 5, batch_first=True, bidirectional=True).eval()
    lengths = [1, 6, 3]
    clips = [torch.randn(n, 4) for n in lengths]
    x, mask = padded(clips)
    out, _ = run_rnn(rnn, x, mask)
    assert out.shape == (3, 6, 10)
    for i, c in enumerate(clips):
        alone, _ = rnn(c.unsqueeze(0))  # no padding: the reference
        torch.testing.assert_close(out[i, : c.size(0)], alone[0], atol=ATOL, rtol=0)
        assert out[i, c.size(0) :].eq(0).all()


def test_run_rnn_all_padded_row_and_batch_first_check():
    rnn = nn.GRU(2, 3, batch_first=True)
    out, _ = run_rnn(rnn, torch.randn(2, 4, 2), make_mask([0, 4], total=4))
    assert out[0].eq(0).all() and torch.isfinite(out).all()
    with pytest.raises(ValueError):
        run_rnn(nn.GRU(2, 3), torch.randn(2, 4, 2), make_mask([1, 4]))


# ---------------------------------------------------------------- attention
def test_masked_softmax_all_masked_row_is_zero_not_nan():
    scores = torch.randn(2, 4, requires_grad=True)
    mask = torch.tensor([[True, False, True, False], [False] * 4])
    w = masked_softmax(scores, mask)
    assert w[1].eq(0).all() and w[0, ~mask[0]].eq(0).all()
    torch.testing.assert_close(w[0].sum(), torch.tensor(1.0))
    w.sum().backward()
    assert torch.isfinite(scores.grad).all()


def test_additive_attention_all_but_one_padded():
    att = AdditiveAttention(6, 8)
    h = torch.randn(3, 5, 6, requires_grad=True)
    mask = make_mask([1, 5, 0], total=5)  # one real frame; all real; none real
    context, weights = att(h, mask)
    assert weights.shape == (3, 5) and context.shape == (3, 6)
    assert weights[0, 0] == 1.0 and weights[0, 1:].eq(0).all()
    torch.testing.assert_close(context[0], h[0, 0])
    torch.testing.assert_close(weights[1].sum(), torch.tensor(1.0))
    assert weights[2].eq(0).all() and context[2].eq(0).all()
    (context.sum() + weights.sum()).backward()
    assert torch.isfinite(h.grad).all() and all(
        torch.isfinite(p.grad).all() for p in att.parameters()
    )


def test_additive_attention_padding_invariant_and_query():
    att = AdditiveAttention(4, 8, query_dim=3).eval()
    clips = [torch.randn(n, 4) for n in (1, 4, 9)]
    x, mask = padded(clips)
    query = torch.randn(3, 3)
    # garbage in padding is ignored
    context, weights = att(x + 7.0 * (~mask)[..., None], mask, query)
    for i, c in enumerate(clips):
        ctx_alone, w_alone = att(c.unsqueeze(0), make_mask([c.size(0)]), query[i : i + 1])
        torch.testing.assert_close(context[i], ctx_alone[0], atol=ATOL, rtol=0)
        torch.testing.assert_close(weights[i, : c.size(0)], w_alone[0], atol=ATOL, rtol=0)
        assert weights[i, c.size(0) :].eq(0).all()
    with pytest.raises(ValueError):
        AdditiveAttention(4, 8)(x, mask, query)


def test_masked_self_attention_padding_invariant():
    layer = MaskedSelfAttention(8, num_heads=2).eval()
    clips = [torch.randn(n, 8) for n in (1, 5, 3)]
    x, mask = padded(clips)
    y, weights = layer(x, mask, return_weights=True)
    assert weights.shape == (3, 2, 5, 5)
    assert weights[..., :, :][~mask[:, None, None, :].expand_as(weights)].eq(0).all()
    for i, c in enumerate(clips):
        alone = layer(c.unsqueeze(0), make_mask([c.size(0)]))
        torch.testing.assert_close(y[i, : c.size(0)], alone[0], atol=ATOL, rtol=0)
        assert y[i, c.size(0) :].eq(0).all()


def test_cross_attention_key_mask():
    mha = MaskedMultiHeadAttention(8, 2, kdim=6)
    q, k = torch.randn(2, 3, 8), torch.randn(2, 4, 6)
    key_mask = make_mask([4, 1])
    out, weights = mha(q, k, key_mask, query_mask=make_mask([3, 2]))
    assert out.shape == (2, 3, 8) and out[1, 2].eq(0).all()
    assert weights[1, :, :, 1:].eq(0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 3))


def test_run_rnn_skips_holes_in_the_mask():
    """Frames masked inside a clip (no face) are skipped: same outputs as the clip without them."""
    import torch
    from emorec.layers.masking import run_rnn

    torch.manual_seed(0)
    rnn = torch.nn.GRU(3, 4, batch_first=True, bidirectional=True)
    x = torch.randn(1, 6, 3)
    mask = torch.tensor([[True, False, True, True, False, True]])
    holed, _ = run_rnn(rnn, x, mask)
    compact, _ = run_rnn(rnn, x[:, mask[0]], torch.ones(1, 4, dtype=torch.bool))
    assert torch.allclose(holed[0, mask[0]], compact[0], atol=1e-6)
    assert torch.all(holed[0, ~mask[0]] == 0)
