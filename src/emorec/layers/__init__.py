"""Reusable masked blocks; every one honours the batch contract's ``mask`` (True = real frame)."""

from emorec.layers.attention import AdditiveAttention, MaskedMultiHeadAttention, MaskedSelfAttention, masked_softmax
from emorec.layers.masking import (
    MaskedBatchNorm,
    MaskedConvBlock2d,
    apply_time_mask,
    lengths_from_mask,
    masked_max,
    masked_max_pool,
    masked_mean,
    masked_std,
    pool_time_mask,
    run_rnn,
)

__all__ = [
    "AdditiveAttention",
    "MaskedBatchNorm",
    "MaskedConvBlock2d",
    "MaskedMultiHeadAttention",
    "MaskedSelfAttention",
    "apply_time_mask",
    "lengths_from_mask",
    "masked_max",
    "masked_max_pool",
    "masked_mean",
    "masked_softmax",
    "masked_std",
    "pool_time_mask",
    "run_rnn",
]
