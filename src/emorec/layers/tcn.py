"""Masked 1-D convolution blocks: parallel multi-scale Conv1D and a dilated residual TCN.

Layout ``[B x C x T]`` with ``mask : Bool[B x T]`` (True = real frame). Padding invariance as in
:class:`~emorec.layers.MaskedConvBlock2d`: every convolution is "same"-padded and non-causal, and
its input is zeroed on padded frames first, so a real frame near a clip's end sees zeros past the
end exactly as it would alone; batch norm counts real frames only; outputs are zeroed again.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from emorec.layers.masking import MaskedBatchNorm, apply_time_mask, masked_max_pool

__all__ = ["MultiScaleConv1d", "TemporalBlock", "TemporalConvNet"]


def _check_odd(kernel_size: int) -> None:
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(
            f"kernel sizes must be odd and >= 1 (symmetric 'same' padding), got {kernel_size}"
        )


class MultiScaleConv1d(nn.Module):
    """Parallel ``Conv1d`` with several kernel sizes, concatenated -> BN -> ReLU -> max pool.

    ``x : [B x C_in x T]`` -> ``([B x len(kernels) * channels x T'], Bool[B x T'])`` with
    ``T' = ceil(T / pool)`` (seed 004: kernels 3 and 5).
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        *,
        kernels: tuple[int, ...] = (3, 5),
        pool: int = 2,
        dropout: float = 0.0,
    ):
        super().__init__()
        for k in kernels:
            _check_odd(k)
        self.convs = nn.ModuleList(
            nn.Conv1d(in_channels, channels, k, padding=k // 2, bias=False) for k in kernels
        )
        self.out_channels = channels * len(kernels)
        self.norm = MaskedBatchNorm(self.out_channels)
        self.dropout = nn.Dropout(dropout)
        self.pool = pool

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = apply_time_mask(x, mask, time_dim=2)
        y = torch.cat([conv(x) for conv in self.convs], dim=1)  # (B, K*C, T)
        y = self.dropout(F.relu(self.norm(y, mask)))
        return (
            masked_max_pool(y, mask, self.pool)
            if self.pool > 1
            else (apply_time_mask(y, mask, time_dim=2), mask)
        )


class TemporalBlock(nn.Module):
    """Residual block of two dilated "same" convolutions (Bai et al. 2018, non-causal):
    ``relu(x + drop(relu(bn(conv_d(drop(relu(bn(conv_d(x))))))))`` over ``[B x C x T]``."""

    def __init__(
        self, channels: int, *, kernel_size: int = 3, dilation: int = 1, dropout: float = 0.1
    ):
        super().__init__()
        _check_odd(kernel_size)
        pad = dilation * (kernel_size - 1) // 2
        self.conv1 = nn.Conv1d(
            channels, channels, kernel_size, padding=pad, dilation=dilation, bias=False
        )
        self.conv2 = nn.Conv1d(
            channels, channels, kernel_size, padding=pad, dilation=dilation, bias=False
        )
        self.norm1 = MaskedBatchNorm(channels)
        self.norm2 = MaskedBatchNorm(channels)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = apply_time_mask(x, mask, time_dim=2)
        y = self.dropout(F.relu(self.norm1(self.conv1(x), mask)))  # (B, C, T)
        y = apply_time_mask(y, mask, time_dim=2)  # zeros past the end before the next conv
        y = self.dropout(F.relu(self.norm2(self.conv2(y), mask)))
        return apply_time_mask(F.relu(x + y), mask, time_dim=2)


class TemporalConvNet(nn.Module):
    """1x1 input projection then ``levels`` :class:`TemporalBlock` s with dilations 1, 2, 4, ...

    ``x : [B x C_in x T]``, ``mask : Bool[B x T]`` -> ``[B x channels x T]`` (zero on padded
    frames). The receptive field is ``1 + 2 * (kernel_size - 1) * (2**levels - 1)`` frames.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int = 64,
        *,
        levels: int = 4,
        kernel_size: int = 3,
        dropout: float = 0.1,
    ):
        super().__init__()
        if levels < 1:
            raise ValueError(f"a TCN needs at least one level, got {levels}")
        self.proj = nn.Conv1d(in_channels, channels, 1)
        self.blocks = nn.ModuleList(
            TemporalBlock(channels, kernel_size=kernel_size, dilation=2**i, dropout=dropout)
            for i in range(levels)
        )
        self.out_channels = channels

    def receptive_field(self) -> int:
        k = self.blocks[0].conv1.kernel_size[0]
        return 1 + 2 * (k - 1) * (2 ** len(self.blocks) - 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = apply_time_mask(self.proj(x), mask, time_dim=2)  # (B, C, T)
        for block in self.blocks:
            x = block(x, mask)
        return x
