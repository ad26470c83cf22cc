"""ATTN-CRNN v2 (seed 001, seed document ``001_67d2c08da372fa7c.txt``): the v1 conv blocks and
BiGRU, with honest recurrent dropout, scaled dot-product self-attention with LayerNorm, and a wider
BatchNorm + GELU dense layer::

    audio [B x T x F] -> (Linear F->P if F is large) -> [Conv2d 3x3 -> BN -> act -> max pool] x N
      -> Dropout -> BiGRU with variational recurrent dropout (masked, state frozen on padding)
      -> LayerNorm(h + MHA(h, h, h)) (masked) -> masked pooling (mean, or additive attention)
      -> Dense 256 -> BatchNorm -> GELU -> Dropout -> embed [B x 256] -> Linear -> logits [B x C]

Recurrent dropout: PyTorch's ``nn.GRU`` has none, so the GRU here is
:class:`~emorec.layers.VariationalGRU`, a Python time loop with ``nn.GRU``'s equations in which,
during training, the previous hidden state is multiplied by one Bernoulli(1 - p) mask per
sequence and direction, fixed over time, before the recurrent matrix (Gal & Ghahramani 2016,
like Keras' ``recurrent_dropout``). In eval mode it equals ``nn.GRU``. It is slower than cuDNN's
fused GRU, which is why ``recurrent_dropout: 0`` (or v1) is the choice when speed matters.

The seed's training habits are in ``configs/attn_crnn_v2.yaml``: Adam betas (0.9, 0.98),
ReduceLROnPlateau factor 0.5 patience 2, 30 epochs, batch 32, early-stopping patience 6,
feature noise sigma 0.005 and MixUp alpha 0.2.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from emorec.errors import ConfigError
from emorec.layers import (
    AdditiveAttention,
    MaskedBatchNorm,
    MaskedSelfAttention,
    VariationalGRU,
    masked_mean,
)
from emorec.models.attn_crnn import build_conv_frontend, run_conv_frontend
from emorec.models.registry import register_model

__all__ = ["AttnCRNNv2", "DenseBNGelu"]

POOLINGS = ("mean", "attention")
CONV_ACTIVATIONS = ("relu", "gelu", "elu", "silu")


class DenseBNGelu(nn.Module):
    """``Linear -> BatchNorm -> GELU -> Dropout`` on ``[B x D_in]``; the BatchNorm accepts a batch
    of one in training (it normalises to its bias), as a Keras model does."""

    def __init__(self, in_features: int, out_features: int, dropout: float):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.norm = MaskedBatchNorm(out_features)
        self.act = nn.GELU()
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(x).unsqueeze(-1)  # (B, D, 1)
        ones = torch.ones(y.size(0), 1, dtype=torch.bool, device=y.device)
        return self.dropout(self.act(self.norm(y, ones).squeeze(-1)))  # (B, D)


@register_model(
    "attn_crnn_v2",
    modalities=("audio",),
    seed="001",
    summary="ATTN-CRNN v2: BiGRU with variational recurrent dropout, self-attention + LayerNorm, "
    "Dense/BN/GELU (seed 001)",
)
class AttnCRNNv2(nn.Module):
    """Conv blocks -> BiGRU (variational recurrent dropout) -> self-attention + LayerNorm ->
    masked pooling -> Dense/BN/GELU -> logits. Reads ``batch["audio"]`` and ``batch["audio_mask"]``.

    ATTN-CRNN v2 (seed 001). ``pooling``: ``"mean"`` (masked mean of the self-attention output)
    or ``"attention"`` (masked additive attention, ``attention_dim``). ``conv_activation``: relu,
    gelu, elu or silu. ``input_proj`` and ``input_channels`` as in ``attn_crnn``. ``video_dim`` is
    ignored."""

    def __init__(
        self,
        *,
        num_classes: int,
        audio_dim: int,
        channels: tuple[int, ...] = (16, 32, 64),
        time_pool: tuple[int, ...] = (2, 2, 2),
        freq_pool: tuple[int, ...] = (2, 2, 2),
        conv_activation: str = "relu",
        input_proj: int | None = None,
        input_channels: int = 1,
        gru_hidden: int = 128,
        recurrent_dropout: float = 0.3,
        attention_heads: int = 4,
        pooling: str = "mean",
        attention_dim: int = 128,
        dense: int = 256,
        dropout: float = 0.3,
    ):
        super().__init__()
        if (2 * gru_hidden) % attention_heads:
            raise ConfigError(
                f"attn_crnn_v2: 2 * gru_hidden ({2 * gru_hidden}) must be divisible by "
                f"attention_heads ({attention_heads})"
            )
        if pooling not in POOLINGS:
            raise ConfigError(f"attn_crnn_v2: pooling must be one of {POOLINGS}, got {pooling!r}")
        if conv_activation not in CONV_ACTIVATIONS:
            raise ConfigError(
                "attn_crnn_v2: conv_activation must be one of "
                f"{CONV_ACTIVATIONS}, got {conv_activation!r}"
            )
        if not 0.0 <= recurrent_dropout < 1.0:
            raise ConfigError(
                f"attn_crnn_v2: recurrent_dropout must be in [0, 1), got {recurrent_dropout}"
            )
        self.input_proj, self.blocks, frontend_dim = build_conv_frontend(
            "attn_crnn_v2",
            audio_dim=audio_dim,
            num_classes=num_classes,
            channels=channels,
            time_pool=time_pool,
            freq_pool=freq_pool,
            input_proj=input_proj,
            activation=conv_activation,
            input_channels=input_channels,
        )
        self.dropout = nn.Dropout(dropout)
        self.gru = VariationalGRU(
            frontend_dim, gru_hidden, bidirectional=True, recurrent_dropout=recurrent_dropout
        )
        self.self_attention = MaskedSelfAttention(2 * gru_hidden, attention_heads, dropout=dropout)
        self.pooling = pooling
        self.pool_attention = (
            AdditiveAttention(2 * gru_hidden, attention_dim) if pooling == "attention" else None
        )
        self.dense = DenseBNGelu(2 * gru_hidden, dense, dropout)
        self.head = nn.Linear(dense, num_classes)
        self.embed_dim = dense
        self.num_classes = num_classes

    def _encode(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x, mask = run_conv_frontend(
            batch["audio"], batch["audio_mask"], self.input_proj, self.blocks
        )  # (B, T', C*F')
        h, _ = self.gru(self.dropout(x), mask)  # (B, T', 2H)
        # (B, T', 2H), (B, heads, T', T')
        h, att = self.self_attention(h, mask, return_weights=True)
        if self.pool_attention is not None:
            pooled, weights = self.pool_attention(h, mask)  # (B, 2H), (B, T')
        else:
            pooled = masked_mean(h, mask)  # (B, 2H)
            weights = received_attention(att, mask)  # (B, T')
        return self.dense(pooled), weights

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The penultimate representation ``[B x dense]``; ``forward == head(embed)``."""
        return self._encode(batch)[0]

    def forward(
        self, batch: dict[str, torch.Tensor], return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits ``[B x C]``; with ``return_attention`` also ``{"audio": weights [B x T']}``: the
        additive pooling weights (``pooling="attention"``), else the self-attention each frame
        receives, averaged over heads and real query frames (what mean pooling of the attention
        output gives each frame's value)."""
        embedding, weights = self._encode(batch)
        logits = self.head(embedding)  # (B, C)
        return (logits, {"audio": weights}) if return_attention else logits


def received_attention(weights: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``weights [B x heads x Tq x Tk]`` (rows sum to 1 over real keys), ``mask Bool[B x T]`` ->
    ``[B x Tk]``: the mean over heads and real queries; sums to 1 over real frames, 0 on padding."""
    per_query = weights.mean(dim=1)  # (B, Tq, Tk)
    return masked_mean(per_query, mask, dim=1)  # (B, Tk)
