"""The fused conv block (emorec.layers.conv_block) computes what the block composed of PyTorch
ops computes: outputs, masks, every gradient and the running statistics, in training and eval."""

from __future__ import annotations

import copy

import pytest
import torch

from emorec.layers import MaskedConvBlock2d
from emorec.layers.conv_block import prefix_lengths


def two_blocks(
    cin: int, cout: int, time_pool: int, freq_pool: int
) -> tuple[MaskedConvBlock2d, MaskedConvBlock2d]:
    block = MaskedConvBlock2d(cin, cout, time_pool=time_pool, freq_pool=freq_pool).double().train()
    with torch.no_grad():  # an affine that is not the identity, with weights of both signs
        block.norm.weight.uniform_(0.5, 1.5).mul_(torch.tensor([1.0, -1.0]).repeat(cout)[:cout])
        block.norm.bias.uniform_(-0.5, 0.5)
    return block, copy.deepcopy(block)


@pytest.mark.parametrize(
    "cin,cout,frames,freq,time_pool,freq_pool",
    [
        (3, 16, 21, 16, 2, 2),  # the headline's first block (3 planes)
        (1, 4, 17, 7, 2, 2),  # odd time and frequency sizes: ceil-mode windows
        (4, 8, 9, 3, 2, 1),
        (2, 3, 11, 8, 1, 1),  # no pooling
        (2, 3, 13, 9, 3, 2),  # a 3 x 2 window
    ],
)
def test_fused_block_equals_the_reference_block(cin, cout, frames, freq, time_pool, freq_pool):
    torch.manual_seed(0)
    fused, reference = two_blocks(cin, cout, time_pool, freq_pool)
    lengths = torch.tensor([frames, frames - 1, 3, 1, frames // 2])
    mask = torch.arange(frames)[None, :] < lengths[:, None]  # (B, T)
    x = torch.randn(5, cin, frames, freq, dtype=torch.float64) * 10  # garbage on padded frames too
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    assert fused._fused_applies(xa)
    out_a, mask_a = fused(xa, mask)
    out_b, mask_b = reference.reference_forward(xb, mask)
    assert torch.equal(mask_a, mask_b)
    torch.testing.assert_close(out_a, out_b, rtol=0, atol=1e-12)
    grad = torch.randn_like(out_a)
    (out_a * grad).sum().backward()
    (out_b * grad).sum().backward()
    for got, want in (
        (xa.grad, xb.grad),
        (fused.conv.weight.grad, reference.conv.weight.grad),
        (fused.norm.weight.grad, reference.norm.weight.grad),
        (fused.norm.bias.grad, reference.norm.bias.grad),
        (fused.norm.running_mean, reference.norm.running_mean),
        (fused.norm.running_var, reference.norm.running_var),
    ):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    # no gradient into padding
    assert xa.grad[1, :, frames - 1 :].eq(0).all() and xa.grad[3, :, 1:].eq(0).all()
    fused.eval(), reference.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            fused(x, mask)[0], reference.reference_forward(x, mask)[0], rtol=0, atol=1e-12
        )


def test_fused_block_float32_matches_and_gradcheck_passes():
    torch.manual_seed(1)
    fused, reference = two_blocks(2, 3, 2, 2)
    mask = torch.arange(6)[None, :] < torch.tensor([6, 4, 1])[:, None]
    x = torch.randn(3, 2, 6, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: fused(t, mask)[0], (x,))
    fused.float(), reference.float()
    x32 = torch.randn(3, 2, 6, 4)
    torch.testing.assert_close(
        fused(x32, mask)[0], reference.reference_forward(x32, mask)[0], rtol=1e-5, atol=1e-5
    )


def test_the_reference_path_runs_where_the_fused_one_does_not_apply():
    block = MaskedConvBlock2d(1, 2, activation="gelu")
    assert not block._fused_applies(torch.randn(2, 1, 4, 4))
    block = MaskedConvBlock2d(1, 2).eval()
    x = torch.randn(2, 1, 4, 4, requires_grad=True)  # eval mode, gradients wanted: reference path
    assert not block._fused_applies(x)
    with torch.no_grad():
        assert block._fused_applies(x)
    holes = torch.tensor([[True, False, True, True], [True, True, False, False]])
    assert prefix_lengths(holes) is None and prefix_lengths(holes[1:]) == [2]
    out, _ = block(x.detach(), holes)  # holes: the reference path, still zero on padded windows
    assert out.shape == (2, 2, 2, 2)
