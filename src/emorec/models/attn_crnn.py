"""Attention CRNN for speech emotion recognition (seed 000, seed document
``000_0f45aec744754fab.txt``).

Conv blocks learn local time-frequency patterns of the log-mel "image", a bidirectional GRU
models their order, Bahdanau (additive) attention pools the frames that carry the emotion,
and dense layers classify::

    audio [B x T x F] -> (Linear F->P if F is large) -> [Conv2d 3x3 -> BN -> ReLU -> max pool] x N
      -> BiGRU (packed) -> additive attention -> Dense -> embed [B x dense]
      -> Linear -> logits [B x C]

The seed trained on log-mel or wav2vec features in Keras; this is a PyTorch re-implementation
that honours the batch contract: padding never changes a clip's logits or attention weights.
The feature axis F is treated as the frequency axis; any F >= 1 works (frequency pooling stops
once the axis is down to one bin, and F > 128, e.g. 768 SSL dims, is first projected to 64).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from emorec.errors import ConfigError
from emorec.layers import AdditiveAttention, MaskedConvBlock2d, apply_time_mask, run_rnn
from emorec.models.registry import register_model

__all__ = ["AttnCRNN"]

AUTO_PROJECT_ABOVE = 128  # feature dims above this are projected (input_proj=None)
AUTO_PROJECT_TO = 64


def build_conv_frontend(
    model: str,
    *,
    audio_dim: int,
    num_classes: int,
    channels: tuple[int, ...],
    time_pool: tuple[int, ...],
    freq_pool: tuple[int, ...],
    input_proj: int | None,
    activation: str = "relu",
    input_channels: int = 1,
) -> tuple[nn.Linear | None, nn.ModuleList, int]:
    """Checked conv front-end shared by the CRNNs: ``(input projection or None, conv blocks, C*F'
    out)``.

    ``input_channels > 1`` reads the feature axis as that many stacked planes of equal width
    (log-mel, delta and delta-delta from ``deltas: true`` are 3 planes of ``n_mels``), which become
    the first convolution's input channels instead of one image three times as tall."""
    channels, time_pool, freq_pool = tuple(channels), tuple(time_pool), tuple(freq_pool)
    if not (len(channels) == len(time_pool) == len(freq_pool)):
        raise ConfigError(
            f"{model}: channels {channels}, time_pool {time_pool} and freq_pool {freq_pool} "
            "need one entry per conv block"
        )
    if audio_dim < 1 or num_classes < 1 or min(time_pool + freq_pool, default=1) < 1:
        raise ConfigError(f"{model}: audio_dim, num_classes and pool sizes must be >= 1")
    if input_channels < 1 or audio_dim % input_channels:
        raise ConfigError(
            f"{model}: input_channels ({input_channels}) must divide the "
            f"feature size ({audio_dim}); "
            "with deltas: true the features are 3 planes, so input_channels is 1 or 3"
        )
    if input_channels > 1 and input_proj:
        raise ConfigError(f"{model}: input_proj works on one plane; use input_channels 1 with it")
    plane = audio_dim // input_channels
    if input_proj is None:
        input_proj = AUTO_PROJECT_TO if plane > AUTO_PROJECT_ABOVE and input_channels == 1 else 0
    projection = nn.Linear(audio_dim, input_proj) if input_proj > 0 else None
    freq = input_proj if input_proj > 0 else plane
    blocks, in_ch = [], input_channels
    for out_ch, tp, fp in zip(channels, time_pool, freq_pool):
        block = MaskedConvBlock2d(in_ch, out_ch, time_pool=tp, freq_pool=fp, activation=activation)
        freq = block.output_freq(freq)
        blocks.append(block)
        in_ch = out_ch
    return projection, nn.ModuleList(blocks), in_ch * freq


def run_conv_frontend(
    x: torch.Tensor, mask: torch.Tensor, input_proj: nn.Linear | None, blocks: nn.ModuleList
) -> tuple[torch.Tensor, torch.Tensor]:
    """``x [B x T x F]``, ``mask Bool[B x T]`` -> frame sequence ``[B x T' x C*F']`` and its mask
    ``[B x T']``."""
    if input_proj is not None:
        x = input_proj(x)  # (B, T, P)
    planes = blocks[0].conv.in_channels if len(blocks) else 1
    b, t, f = x.shape
    # (B, planes, T, F / planes)
    x = apply_time_mask(x, mask).reshape(b, t, planes, f // planes).transpose(1, 2)
    for block in blocks:
        x, mask = block(x, mask)  # (B, C, T', F'), (B, T')
    b, c, t, f = x.shape
    return x.permute(0, 2, 1, 3).reshape(b, t, c * f), mask  # (B, T', C*F'), (B, T')


@register_model(
    "attn_crnn",
    modalities=("audio",),
    seed="000",
    summary="Conv blocks + packed BiGRU + masked Bahdanau attention (seed 000)",
)
class AttnCRNN(nn.Module):
    """Conv blocks -> packed BiGRU -> masked additive attention -> dense -> logits.

    ``forward(batch)`` reads ``batch["audio"] [B x T x F]`` and ``batch["audio_mask"] Bool[B x T]``.

    Attention CRNN (seed 000): conv blocks, packed BiGRU, masked additive attention, dense.

    ``input_proj``: ``None`` projects features wider than 128 to 64 dims before the convs,
    ``0`` never projects, ``n > 0`` always projects to ``n``. ``input_channels: 3`` reads features
    made with ``deltas: true`` as 3 conv input channels (log-mel, delta, delta-delta).
    ``video_dim`` is ignored."""

    def __init__(
        self,
        *,
        num_classes: int,
        audio_dim: int,
        channels: tuple[int, ...] = (16, 32, 64),
        time_pool: tuple[int, ...] = (2, 2, 2),
        freq_pool: tuple[int, ...] = (2, 2, 2),
        input_proj: int | None = None,
        input_channels: int = 1,
        gru_hidden: int = 128,
        gru_layers: int = 1,
        attention_dim: int = 128,
        dense: int = 128,
        dropout: float = 0.3,
    ):
        super().__init__()
        self.input_proj, self.blocks, frontend_dim = build_conv_frontend(
            "attn_crnn",
            audio_dim=audio_dim,
            num_classes=num_classes,
            channels=channels,
            time_pool=time_pool,
            freq_pool=freq_pool,
            input_proj=input_proj,
            input_channels=input_channels,
        )
        self.dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(
            frontend_dim,
            gru_hidden,
            num_layers=gru_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if gru_layers > 1 else 0.0,
        )
        self.attention = AdditiveAttention(2 * gru_hidden, attention_dim)
        self.dense = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * gru_hidden, dense), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(dense, num_classes))
        self.embed_dim = dense
        self.num_classes = num_classes

    def _encode(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x, mask = run_conv_frontend(
            batch["audio"], batch["audio_mask"], self.input_proj, self.blocks
        )  # (B, T', C*F')
        h, _ = run_rnn(self.gru, self.dropout(x), mask)  # (B, T', 2H)
        context, weights = self.attention(h, mask)  # (B, 2H), (B, T')
        return self.dense(context), weights  # (B, D), (B, T')

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The penultimate representation ``[B x dense]``; ``forward == head(embed)``."""
        return self._encode(batch)[0]

    def forward(
        self, batch: dict[str, torch.Tensor], return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits ``[B x C]``; with ``return_attention`` also ``{"audio": weights [B x T']}``,
        ``T' = T / prod(time_pool)`` (rounded up at every block)."""
        embedding, weights = self._encode(batch)
        logits = self.head(embedding)  # (B, C)
        return (logits, {"audio": weights}) if return_attention else logits
