"""Masked helpers: pooling, batch norm, conv blocks and packed RNNs that ignore padding.

Convention (docs/ARCHITECTURE.md, the batch contract): ``mask : BoolTensor[B x T]`` is
``True`` on real frames; real frames come first and padded frames (zeros) follow. Every helper
here gives a clip, padded inside a batch, the same result on its real frames as it gets alone.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from emorec.layers.conv_block import conv_bn_relu_pool, prefix_lengths

__all__ = [
    "MaskedBatchNorm",
    "MaskedConvBlock2d",
    "apply_time_mask",
    "lengths_from_mask",
    "masked_max",
    "masked_max_pool",
    "masked_mean",
    "masked_std",
    "pool_time_mask",
    "run_rnn",
]


_GRAPH_EXPORT = False


@contextmanager
def graph_export():
    """Inside this block the masked layers take paths a graph exporter (ONNX) can trace: the
    composed conv block instead of the fused autograd function, and RNNs on padded sequences
    (each direction reads its rows reversed within their lengths) instead of packed ones. Both
    compute the same values on real frames; only the speed differs."""
    global _GRAPH_EXPORT
    before, _GRAPH_EXPORT = _GRAPH_EXPORT, True
    try:
        yield
    finally:
        _GRAPH_EXPORT = before


def exporting_graph() -> bool:
    return _GRAPH_EXPORT


def lengths_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """``mask : Bool[B x T]`` -> ``Long[B]``, the number of real frames per row."""
    return mask.sum(dim=1, dtype=torch.long)


def apply_time_mask(x: torch.Tensor, mask: torch.Tensor, time_dim: int = 1) -> torch.Tensor:
    """Zero the padded frames of ``x``, whose axis ``time_dim`` is the time axis of ``mask (B, T)``.

    ``x`` is ``(B, T, ...)`` for ``time_dim=1`` or ``(B, C, T, ...)`` for ``time_dim=2``.
    Uses ``where`` rather than a product, so ``inf``/``nan`` on padded frames also become 0.
    """
    shape = [mask.size(0)] + [1] * (x.dim() - 1)
    shape[time_dim] = mask.size(1)
    return torch.where(mask.view(shape), x, x.new_zeros(()))


def _expand_mask(x: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    shape = [mask.size(0)] + [1] * (x.dim() - 1)
    shape[dim] = mask.size(1)
    return mask.view(shape)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Mean of ``x`` over its time axis ``dim`` counting real frames only; 0 for an all-padded row.

    ``x : [B x T x ...]`` (``dim=1``), ``mask : Bool[B x T]`` -> ``[B x ...]``.
    """
    m = _expand_mask(x, mask, dim)
    total = torch.where(m, x, x.new_zeros(())).sum(dim)
    count = m.sum(dim).clamp_min(1).to(x.dtype)
    return total / count


def masked_std(
    x: torch.Tensor, mask: torch.Tensor, dim: int = 1, eps: float = 1e-5
) -> torch.Tensor:
    """Standard deviation (population) over real frames; ``sqrt(eps)`` for an all-padded row."""
    m = _expand_mask(x, mask, dim)
    mean = masked_mean(x, mask, dim).unsqueeze(dim)
    sq = torch.where(m, (x - mean) ** 2, x.new_zeros(())).sum(dim)
    count = m.sum(dim).clamp_min(1).to(x.dtype)
    return torch.sqrt(sq / count + eps)


def masked_max(x: torch.Tensor, mask: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Max of ``x`` over real frames along ``dim``; 0 for an all-padded row."""
    m = _expand_mask(x, mask, dim)
    out = x.masked_fill(~m, float("-inf")).amax(dim)
    return torch.where(torch.isneginf(out), out.new_zeros(()), out)


def pool_time_mask(mask: torch.Tensor, kernel: int) -> torch.Tensor:
    """The mask after a stride-``kernel`` time pooling with ``ceil_mode=True``.

    ``Bool[B x T]`` -> ``Bool[B x ceil(T / kernel)]``: a window is real when it holds any real
    frame.
    """
    if kernel == 1:
        return mask
    # (B, 1, T')
    pooled = F.max_pool1d(mask.to(torch.float32).unsqueeze(1), kernel, kernel, ceil_mode=True)
    return pooled.squeeze(1) > 0  # (B, T')


def masked_max_pool(
    x: torch.Tensor, mask: torch.Tensor, time_kernel: int, freq_kernel: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Max pooling over time (and frequency) that never sees padded frames.

    ``x : [B x C x T]`` or ``[B x C x T x F]``, ``mask : Bool[B x T]``. Padded frames become
    ``-inf`` before a ``MaxPool`` with stride = kernel and ``ceil_mode=True`` (so a 1-frame clip
    survives and a clip's last partial window pools only its own frames); the new mask marks the
    windows holding any real frame and padded outputs are set to 0.
    Returns ``(pooled [B x C x T' x F'], mask [B x T'])`` with ``T' = ceil(T / time_kernel)``.
    """
    if time_kernel == 1 and freq_kernel == 1:
        return x, mask
    filled = x.masked_fill(~_expand_mask(x, mask, 2), float("-inf"))
    if x.dim() == 3:
        if freq_kernel != 1:
            raise ValueError("freq_kernel needs a 4-d input (B, C, T, F)")
        pooled = F.max_pool1d(filled, time_kernel, time_kernel, ceil_mode=True)  # (B, C, T')
    else:
        kernel = (time_kernel, freq_kernel)
        pooled = F.max_pool2d(filled, kernel, kernel, ceil_mode=True)  # (B, C, T', F')
    new_mask = pool_time_mask(mask, time_kernel)  # (B, T')
    return apply_time_mask(pooled, new_mask, time_dim=2), new_mask


class _MaskedBatchNormFn(torch.autograd.Function):
    """Batch norm with statistics over real frames, with a hand-written backward (a third of the
    passes over memory that autograd would make; the first conv block's activations are large)."""

    @staticmethod
    def forward(ctx, x, m, weight, bias, eps, n):  # m: float (B, 1, T[, 1]), 1 on real frames
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        xm = x * m  # (B, C, T[, F]) zero on padded frames
        mean = xm.sum(dims) / n  # (C,)
        centred = xm - mean.view(shape) * m
        var = centred.mul_(centred).sum(dims) / n  # (C,) biased, two-pass for accuracy
        del centred
        invstd = torch.rsqrt(var + eps)
        scale = invstd if weight is None else invstd * weight
        shift = -mean * scale if bias is None else bias - mean * scale
        ctx.save_for_backward(xm, m, mean, invstd, weight)
        ctx.n = n
        out = torch.addcmul(shift.view(shape) * m, xm, scale.view(shape))  # 0 on padded frames
        ctx.mark_non_differentiable(mean, var)
        return out, mean, var

    @staticmethod
    def backward(ctx, grad_out, _grad_mean, _grad_var):
        xm, m, mean, invstd, weight = ctx.saved_tensors
        n = ctx.n
        dims = [0] + list(range(2, xm.dim()))
        shape = [1, -1] + [1] * (xm.dim() - 2)
        dy = grad_out * m  # padded outputs are constant 0
        sum_dy = dy.sum(dims)  # (C,)
        sum_dy_xhat = ((grad_out * xm).sum(dims) - mean * sum_dy) * invstd  # (C,) = sum(dy * xhat)
        w = invstd if weight is None else invstd * weight
        # dx = w * (dy - mean(dy) - xhat * mean(dy * xhat)) on real frames, 0 on padded frames
        k = sum_dy_xhat / n
        coef_x = -w * invstd * k
        const = w * (mean * invstd * k - sum_dy / n)
        grad_x = torch.addcmul(const.view(shape) * m, xm, coef_x.view(shape)).addcmul_(
            dy, w.view(shape)
        )
        grad_w = None if weight is None else sum_dy_xhat
        grad_b = None if weight is None else sum_dy
        return grad_x, None, grad_w, grad_b, None, None


class MaskedBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over channel axis 1 of ``[B x C x T]`` or ``[B x C x T x F]`` whose training
    statistics count real frames only (padded zeros would otherwise bias mean and variance, and
    a clip's normalisation would depend on how much padding its batch has).

    With ``mask=None``, or in eval mode with running statistics, it is exactly
    ``nn.BatchNorm1d/2d``. The running variance is updated with the unbiased estimate, as PyTorch
    does. Unlike ``nn.BatchNorm``, a single real value per channel is allowed (it normalises to
    ``bias``). In training the padded positions of the output are 0; with running statistics they
    hold ``bias - running_mean * scale``, so callers zero them.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() not in (3, 4):
            raise ValueError(f"expected a 3-d or 4-d input, got {input.dim()}-d")

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        use_batch_stats = self.training or not self.track_running_stats
        if mask is None or not use_batch_stats:
            return super().forward(x)
        self._check_input_dim(x)
        m = _expand_mask(x, mask, 2).to(x.dtype)  # (B, 1, T[, 1])
        n = float(mask.sum()) * math.prod(x.shape[3:])  # real values per channel
        weight, bias = (self.weight, self.bias) if self.affine else (None, None)
        out, mean, var = _MaskedBatchNormFn.apply(x, m, weight, bias, self.eps, max(n, 1.0))
        self.update_running_stats(mean, var, n)
        return out

    def update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, n: float) -> None:
        """Fold one batch's statistics over its ``n`` real values per channel (``var`` biased) into
        the running ones, in training mode, with the unbiased variance as PyTorch does."""
        if not (self.training and self.track_running_stats and n > 0):
            return
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            factor = (
                1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            )
            unbiased = var * (n / (n - 1)) if n > 1 else var
            self.running_mean.mul_(1 - factor).add_(factor * mean)
            self.running_var.mul_(1 - factor).add_(factor * unbiased)


_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "elu": nn.ELU, "silu": nn.SiLU}


class MaskedConvBlock2d(nn.Module):
    """Conv2d 3x3 -> MaskedBatchNorm -> activation -> masked max pool, over ``[B x C x T x F]``.

    Padding invariance: the input is zeroed on padded frames before the convolution, so every
    real frame sees zeros past the clip's end exactly as it would alone; the output is zeroed
    again after the activation, and time pooling ignores padded frames.

    With ReLU and prefix masks (audio) the block runs as one fused autograd function
    (:mod:`emorec.layers.conv_block`, about 3x faster on a CPU); :meth:`reference_forward` is
    the same computation composed of PyTorch ops.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int = 3,
        time_pool: int = 2,
        freq_pool: int = 2,
        activation: str = "relu",
    ):
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False
        )
        self.norm = MaskedBatchNorm(out_channels)
        self.act = _ACTIVATIONS[activation]()
        self.time_pool = time_pool
        self.freq_pool = freq_pool

    def output_freq(self, freq: int) -> int:
        """The frequency size after this block for an input of ``freq`` bins."""
        return math.ceil(freq / self._freq_kernel(freq))

    def _freq_kernel(self, freq: int) -> int:
        return max(1, min(self.freq_pool, freq))  # pooling stops once the frequency axis is small

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x : [B x C x T x F]``, ``mask : Bool[B x T]`` -> ``([B x C' x T' x F'], Bool[B x
        T'])``."""
        if not _GRAPH_EXPORT and self._fused_applies(x):
            lengths = prefix_lengths(mask)
            if lengths is not None:
                time_kernel, freq_kernel = self.time_pool, self._freq_kernel(x.size(-1))
                pooled = conv_bn_relu_pool(
                    x, lengths, self.conv, self.norm, time_kernel, freq_kernel
                )
                return pooled, pool_time_mask(mask, time_kernel)
        return self.reference_forward(x, mask)

    def _fused_applies(self, x: torch.Tensor) -> bool:
        """Whether :func:`~emorec.layers.conv_block.conv_bn_relu_pool` computes this block: ReLU,
        float32/64 without autocast, and batch statistics or no gradient wanted."""
        if (
            not isinstance(self.act, nn.ReLU)
            or x.dtype not in (torch.float32, torch.float64)
            or x.dim() != 4
        ):
            return False
        if torch.is_autocast_enabled(x.device.type):
            return False
        batch_stats = self.norm.training or not self.norm.track_running_stats
        return batch_stats or not (
            torch.is_grad_enabled() and (x.requires_grad or self.conv.weight.requires_grad)
        )

    def reference_forward(
        self, x: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The block composed of PyTorch ops (any activation, any mask): what the fused path
        equals."""
        x = apply_time_mask(x, mask, time_dim=2)
        x = self.act(self.norm(self.conv(x), mask))  # (B, C', T, F)
        time_kernel, freq_kernel = self.time_pool, self._freq_kernel(x.size(-1))
        if time_kernel == 1 and freq_kernel == 1:
            return apply_time_mask(x, mask, time_dim=2), mask
        # ignores and zeroes padded frames
        return masked_max_pool(x, mask, time_kernel, freq_kernel)


def run_rnn(
    rnn: nn.RNNBase,
    x: torch.Tensor,
    mask: torch.Tensor,
    params: dict[str, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | tuple[torch.Tensor, torch.Tensor]]:
    """Run a batch-first (bi)GRU/LSTM on the real frames only (packed, ``enforce_sorted=False``).

    ``x : [B x T x F]``, ``mask : Bool[B x T]`` -> ``(out [B x T x H*dirs], h_n)`` with ``out``
    zero on padded frames. ``h_n`` is the RNN's final state (a tuple for an LSTM); an all-padded
    row is run on one zero frame and gets zero outputs. ``params`` replaces the RNN's parameters
    for this call (``torch.func.functional_call``).
    """
    if not rnn.batch_first:
        raise ValueError("run_rnn needs an RNN built with batch_first=True")
    lengths = lengths_from_mask(mask)  # (B,)
    prefix = torch.arange(mask.size(1), device=mask.device)[None, :] < lengths[:, None]  # (B, T)
    order = None
    if not torch.equal(prefix, mask):
        # Holes (e.g. video frames without a face): run the real frames in order, then put the
        # outputs back at their time steps, so a missing frame is skipped, never read as zeros.
        # (B, T) real frames first
        order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
        x = torch.gather(x, 1, order.unsqueeze(-1).expand_as(x))
    packed = pack_padded_sequence(
        x, lengths.clamp_min(1).cpu(), batch_first=True, enforce_sorted=False
    )
    out, hidden = (
        rnn(packed) if params is None else torch.func.functional_call(rnn, params, (packed,))
    )
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))  # (B, T, H*dirs)
    if order is not None:
        # (B, T, H*dirs)
        out = torch.zeros_like(out).scatter(1, order.unsqueeze(-1).expand_as(out), out)
    return apply_time_mask(out, mask), hidden
