"""Cross-modal blocks: bidirectional masked cross-attention and learned modality weights."""

from __future__ import annotations

import torch
import torch.nn as nn

from emorec.layers.attention import MaskedMultiHeadAttention
from emorec.layers.masking import apply_time_mask

__all__ = ["BidirectionalCrossAttention", "ModalityWeights"]


class BidirectionalCrossAttention(nn.Module):
    """Audio attends to video and video attends to audio (seed 004), each with a residual +
    LayerNorm::

        a' = LayerNorm(a + Dropout(MHA(query=a, key=value=v, key_mask=v_mask)))
        v' = LayerNorm(v + Dropout(MHA(query=v, key=value=a, key_mask=a_mask)))

    ``a : [B x T_a x dim]``, ``v : [B x T_v x dim]`` with their masks -> ``(a' [B x T_a x dim],
    v' [B x T_v x dim])``, zero on padded frames. A clip whose other modality has no real frame
    gets zero cross-attention (``a' = LayerNorm(a)``) instead of NaN.
    """

    def __init__(self, dim: int, num_heads: int = 4, *, dropout: float = 0.0):
        super().__init__()
        self.audio_to_video = MaskedMultiHeadAttention(dim, num_heads, dropout=dropout)
        self.video_to_audio = MaskedMultiHeadAttention(dim, num_heads, dropout=dropout)
        self.norm_audio = nn.LayerNorm(dim)
        self.norm_video = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, a: torch.Tensor, a_mask: torch.Tensor, v: torch.Tensor, v_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        from_video, _ = self.audio_to_video(a, v, v_mask, query_mask=a_mask)  # (B, T_a, dim)
        from_audio, _ = self.video_to_audio(v, a, a_mask, query_mask=v_mask)  # (B, T_v, dim)
        a_out = apply_time_mask(self.norm_audio(a + self.dropout(from_video)), a_mask)
        v_out = apply_time_mask(self.norm_video(v + self.dropout(from_audio)), v_mask)
        return a_out, v_out


class ModalityWeights(nn.Module):
    """Learned importance of ``n`` modalities: ``softmax`` over ``n`` learned logits (start equal).

    ``forward()`` -> weights ``[n]`` summing to 1; ``combine([x_1, ..., x_n])`` -> ``sum_i w_i
    x_i``.
    """

    def __init__(self, n: int = 2):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(n))

    def forward(self) -> torch.Tensor:
        return torch.softmax(self.logits, dim=0)

    def combine(self, parts: list[torch.Tensor]) -> torch.Tensor:
        weights = self()
        if len(parts) != weights.numel():
            raise ValueError(f"expected {weights.numel()} modality vectors, got {len(parts)}")
        return sum(w * x for w, x in zip(weights, parts))
