"""Reusable masked blocks; every one honours the batch contract's ``mask`` (True = real frame)."""

from emorec.layers.attention import (
    AdditiveAttention,
    MaskedMultiHeadAttention,
    MaskedSelfAttention,
    masked_softmax,
)
from emorec.layers.cross_modal import BidirectionalCrossAttention, ModalityWeights
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
from emorec.layers.recurrent import VariationalGRU, reverse_padded
from emorec.layers.tcn import MultiScaleConv1d, TemporalBlock, TemporalConvNet

__all__ = [
    "AdditiveAttention",
    "BidirectionalCrossAttention",
    "MaskedBatchNorm",
    "MaskedConvBlock2d",
    "MaskedMultiHeadAttention",
    "MaskedSelfAttention",
    "ModalityWeights",
    "MultiScaleConv1d",
    "TemporalBlock",
    "TemporalConvNet",
    "VariationalGRU",
    "apply_time_mask",
    "lengths_from_mask",
    "masked_max",
    "masked_max_pool",
    "masked_mean",
    "masked_softmax",
    "masked_std",
    "pool_time_mask",
    "reverse_padded",
    "run_rnn",
]
