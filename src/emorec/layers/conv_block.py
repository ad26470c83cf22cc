"""Conv2d -> masked BatchNorm -> ReLU -> max pool in one autograd function: the fast path of
:class:`~emorec.layers.MaskedConvBlock2d`.

The block is memory-bound on a CPU: its first conv has 1-3 input channels, so the convolution is
cheap and the time goes to passes over the large ``(B, C, T, F)`` activation. Composed from
PyTorch ops (the reference path in ``masking.py``) the block makes about twenty such passes and
keeps four full-size tensors for backward (conv output, BN output, ReLU output, int64 pool
indices); ``max_pool2d`` on a contiguous ``NCHW`` CPU tensor is itself slower than the conv.
Here, in channels-last layout, the forward makes three full-size passes (conv, statistics, window
maximum over strided views) and keeps the conv output and a ``uint8`` argmax per pooled value:
BatchNorm + ReLU is an increasing map once each channel's conv weights are flipped where its
BatchNorm weight is negative, so it is applied to the pooled values only. The backward routes
the pooled gradient through that argmax and computes BatchNorm's gradient in two passes.

Numerically it is the reference path: the same statistics over real frames, the same maxima (ties
go to the first position of the window in row-major order, as ``max_pool2d``'s), gradients equal
up to float rounding (tested). It needs masks whose real frames are a prefix of each row (audio
always is); the block uses the reference path otherwise, and for activations other than ReLU.

Padding: padded frames are set to ``-inf`` while windows are pooled, so a window's maximum never
comes from padding unless the window holds padding only (its output is then set to 0). A window
whose output is 0 passes no gradient (ReLU's gradient at 0 is 0); such windows are marked
``NO_GRADIENT`` in the argmax.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["conv_bn_relu_pool", "prefix_lengths"]

NO_GRADIENT = 255  # argmax code of a window whose maximum is 0 (ReLU passes no gradient)


def prefix_lengths(mask: torch.Tensor) -> list[int] | None:
    """``mask : Bool[B x T]`` -> each row's number of real frames, or ``None`` when some row's
    real frames are not a prefix (holes, e.g. video frames without a face)."""
    lengths = mask.sum(dim=1)  # (B,)
    prefix = torch.arange(mask.size(1), device=mask.device)[None, :] < lengths[:, None]  # (B, T)
    return lengths.tolist() if torch.equal(prefix, mask) else None


def zero_tail_(x: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    """Zero, in place, frames ``>= lengths[b]`` of ``x : [B x C x T x ...]``: work in proportion
    to the padding, not to the tensor."""
    return fill_tail_(x, lengths, 0.0)


def fill_tail_(x: torch.Tensor, lengths: list[int], value: float) -> torch.Tensor:
    """Set, in place, frames ``>= lengths[b]`` of ``x : [B x C x T x ...]`` to ``value``."""
    frames = x.size(2)
    for row, n in enumerate(lengths):
        if n < frames:
            x[row, :, n:].fill_(value)
    return x


def _tail_is_zero(x: torch.Tensor, lengths: list[int]) -> bool:
    frames = x.size(2)
    return all(n >= frames or not x[row, :, n:].any() for row, n in enumerate(lengths))


def channel_sum(x: torch.Tensor) -> torch.Tensor:
    """``x : [B x C x T x F]`` -> ``[C]``, the sum over all but the channel axis. On a channels-last
    tensor a matrix-vector product with ones, four times faster than ``sum((0, 2, 3))`` on a CPU."""
    if x.is_contiguous(memory_format=torch.channels_last) and x.size(1) > 1:
        rows = x.permute(0, 2, 3, 1).reshape(-1, x.size(1))  # (B*T*F, C), a view
        return rows.new_ones(rows.size(0)) @ rows
    return x.sum((0, 2, 3))


def _real_statistics(y: torch.Tensor, n: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and biased variance of ``y : [B x C x T x F]`` over its ``n`` real values,
    given that every padded value is 0, from the sums of ``y`` and ``y^2`` (two fast reductions;
    ``var_mean`` over these axes is ten times slower on a CPU). The sums are combined in float64;
    conv outputs have a mean small against their spread, so the one-pass formula loses nothing."""
    total = channel_sum(y).double()
    squares = channel_sum(y * y).double()
    mean = total / n
    var = (squares / n - mean**2).clamp_min(0)
    return mean.to(y.dtype), var.to(y.dtype)


def _window_max(y: torch.Tensor, kt: int, kf: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``y : [B x C x T x F]`` -> (window maxima ``[B x C x ceil(T/kt) x ceil(F/kf)]``, argmax codes
    ``uint8``, ``i * kf + j`` for window offset ``(i, j)``). A last partial window (ceil mode)
    pools the values it has.

    Offsets are visited in increasing code order, so the code of a new strict maximum is always
    larger than the current one and ``arg = max(arg, better * code)`` records it without a
    masked write (``masked_fill_`` is several times slower on a CPU); ties keep the first offset,
    as ``max_pool2d`` does."""
    best = y[:, :, 0::kt, 0::kf].clone()
    arg = torch.zeros_like(best, dtype=torch.uint8)  # the layout of best (channels last)
    for i, j, v in _offsets(y, kt, kf)[1:]:
        rows, cols = v.size(2), v.size(3)
        b, a = best[:, :, :rows, :cols], arg[:, :, :rows, :cols]
        torch.maximum(a, (v > b).to(torch.uint8).mul_(i * kf + j), out=a)
        torch.maximum(b, v, out=b)
    return best, arg


def _offsets(y: torch.Tensor, kt: int, kf: int) -> list[tuple[int, int, torch.Tensor]]:
    """Each window offset ``(i, j)`` with the strided view of ``y`` it selects (ceil mode: views
    past the last full window have one row or column fewer)."""
    return [(i, j, y[:, :, i::kt, j::kf]) for i in range(kt) for j in range(kf)]


def _window_max_values(y: torch.Tensor, kt: int, kf: int) -> torch.Tensor:
    """The window maxima of :func:`_window_max` without the argmax, which only backward reads."""
    best = y[:, :, 0::kt, 0::kf].clone()
    for _, _, v in _offsets(y, kt, kf)[1:]:
        b = best[:, :, : v.size(2), : v.size(3)]
        torch.maximum(b, v, out=b)
    return best


def _masked_input(x, lengths):
    """``x`` channels last with its padded frames zeroed, copied only when they are not already 0
    (the caller's tensor is never written)."""
    x = x.contiguous(memory_format=torch.channels_last)
    return x if _tail_is_zero(x, lengths) else zero_tail_(x.clone(), lengths)


def _masked_conv(x, weight, lengths, padding):
    """``(x with padded frames zeroed, conv output zeroed on padded frames)``, without autograd."""
    x = _masked_input(x, lengths)
    return x, zero_tail_(F.conv2d(x, weight, None, 1, padding), lengths)  # (B, C, T, F)


def _pool_normalise_relu(y, scale, shift, lengths, kt, kf):
    """``relu(scale * y + shift)`` max-pooled, for ``scale >= 0``: pooling first (the affine map is
    increasing), so the full-size normalised tensor is never written. Returns ``(pooled, arg)``;
    ``arg`` is ``NO_GRADIENT`` where the pooled value is 0."""
    fill_tail_(y, lengths, float("-inf"))  # padding never wins a window that has a real frame
    best, arg = _window_max(y, kt, kf)
    zero_tail_(y, lengths)
    out = best.mul_(scale.view(1, -1, 1, 1)).add_(shift.view(1, -1, 1, 1)).clamp_min_(0)
    # windows of padding only (-inf, or nan times 0)
    zero_tail_(out, [-(-n // kt) for n in lengths])
    torch.maximum(arg, (out <= 0).to(torch.uint8).mul_(NO_GRADIENT), out=arg)
    return out, arg


def _signs(bn_weight: torch.Tensor) -> torch.Tensor:
    return torch.where(bn_weight < 0, -1.0, 1.0).to(bn_weight.dtype)  # (C,)


class _ConvBNReLUPool(torch.autograd.Function):
    """Computed on ``y' = sign * conv(x)`` (the conv with each output channel's weights flipped
    where the BatchNorm weight is negative), so that ``relu(bn(conv(x)))`` is the increasing map
    ``relu(invstd * |w| * (y' - mean') + b)`` of ``y'`` and can be pooled before it is applied."""

    @staticmethod
    def forward(ctx, x, weight, bn_weight, bn_bias, lengths, padding, kt, kf, eps):
        sign = _signs(bn_weight)
        flipped = weight * sign.view(-1, 1, 1, 1)
        x, y = _masked_conv(x, flipped, lengths, padding)  # y = y' (sign-flipped channels)
        n = max(float(sum(lengths) * y.size(3)), 1.0)
        mean, var = _real_statistics(y, n)  # of y'
        invstd = torch.rsqrt(var + eps)
        scale = invstd * bn_weight.abs()
        pooled, arg = _pool_normalise_relu(y, scale, bn_bias - mean * scale, lengths, kt, kf)
        ctx.save_for_backward(x, y, arg, flipped, sign, scale, mean, invstd)
        ctx.lengths, ctx.padding, ctx.kt, ctx.kf, ctx.n = lengths, padding, kt, kf, n
        ctx.mark_non_differentiable(arg)
        return pooled, arg, mean * sign, var

    @staticmethod
    def backward(ctx, grad_pooled, _grad_arg, _grad_mean, _grad_var):
        x, y, arg, flipped, sign, scale, mean, invstd = ctx.saved_tensors
        kt, kf, n, lengths = ctx.kt, ctx.kf, ctx.n, ctx.lengths
        shape = (1, -1, 1, 1)
        grad_pooled = grad_pooled.contiguous(memory_format=torch.channels_last)
        # dz, the gradient at the normalised values, is the pooled gradient at each window's
        # argmax and 0 elsewhere: its sums come from the pooled size, and it is added to grad_y
        # through the strided views without ever being written at full size
        routed = [
            (
                i,
                j,
                v,
                grad_pooled[:, :, : v.size(2), : v.size(3)]
                * (arg[:, :, : v.size(2), : v.size(3)] == i * kf + j),
            )
            for i, j, v in _offsets(y, kt, kf)
        ]
        sum_dz = sum(channel_sum(g) for *_, g in routed)  # (C,)
        sum_dz_y = sum(channel_sum(g * v) for _, _, v, g in routed)
        sum_dz_xhat = (sum_dz_y - mean * sum_dz) * invstd  # (C,) = sum(dz * xhat')
        k = sum_dz_xhat / n
        coef_y = -scale * invstd * k
        const = scale * (mean * invstd * k - sum_dz / n)
        # (B, C, T, F), channels last
        grad_y = torch.addcmul(const.view(shape), y, coef_y.view(shape))
        for i, j, _, g in routed:
            grad_y[:, :, i::kt, j::kf].addcmul_(g, scale.view(shape))
        zero_tail_(grad_y, lengths)
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
            grad_y,
            x,
            flipped,
            None,
            [1, 1],
            [ctx.padding, ctx.padding],
            [1, 1],
            False,
            [0, 0],
            1,
            [need_x, need_w, False],
        )
        if grad_x is not None:
            zero_tail_(grad_x, lengths)  # the input was masked: padded frames get no gradient
        if grad_w is not None:
            grad_w = grad_w * sign.view(-1, 1, 1, 1)
        return grad_x, grad_w, sum_dz_xhat * sign, sum_dz, None, None, None, None, None


def _inference_block(
    x: torch.Tensor, lengths: list[int], conv: torch.nn.Conv2d, norm, kt: int, kf: int
) -> torch.Tensor:
    """The forward with running statistics and no gradient: the conv output's padded frames go
    straight to ``-inf`` (no zeroing first) and windows keep their maxima only, so the two full-size
    passes that exist for backward (the argmax and its ``NO_GRADIENT`` marks) are not made."""
    sign = _signs(norm.weight)
    scale = torch.rsqrt(norm.running_var + norm.eps) * norm.weight.abs()  # (C,)
    shift = norm.bias - norm.running_mean * sign * scale
    x = _masked_input(x, lengths)
    y = F.conv2d(x, conv.weight * sign.view(-1, 1, 1, 1), None, 1, conv.padding[0])  # (B, C, T, F)
    fill_tail_(y, lengths, float("-inf"))  # padding never wins a window that has a real frame
    out = (
        _window_max_values(y, kt, kf)
        .mul_(scale.view(1, -1, 1, 1))
        .add_(shift.view(1, -1, 1, 1))
        .clamp_min_(0)
    )
    return zero_tail_(out, [-(-n // kt) for n in lengths])  # windows of padding only


def conv_bn_relu_pool(
    x: torch.Tensor, lengths: list[int], conv: torch.nn.Conv2d, norm, kt: int, kf: int
) -> torch.Tensor:
    """``x : [B x C x T x F]`` with real frames ``[:lengths[b]]`` -> pooled ``[B x C' x T' x F']``,
    0 on padded windows. With batch statistics (training) it is differentiable and updates
    ``norm``'s running statistics (``MaskedBatchNorm.update_running_stats``); with running
    statistics it is forward-only (the block uses the reference path when gradients are wanted in
    eval mode)."""
    padding = conv.padding[0]
    if not (norm.training or not norm.track_running_stats):
        with torch.no_grad():
            return _inference_block(x, lengths, conv, norm, kt, kf)
    pooled, _, mean, var = _ConvBNReLUPool.apply(
        x, conv.weight, norm.weight, norm.bias, lengths, padding, kt, kf, norm.eps
    )
    norm.update_running_stats(mean, var, sum(lengths) * x.size(3))
    return pooled
