"""Masked attention layers: additive (Bahdanau) pooling, multi-head and self-attention.

Every layer takes a key padding mask ``Bool[B x T]`` (``True`` = real frame). Padded keys get
``-inf`` scores, so their weights are exactly 0 and the weights over real frames sum to 1; a row
with no real frame at all gets all-zero weights and a zero output instead of NaN.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from emorec.layers.masking import apply_time_mask

__all__ = ["AdditiveAttention", "MaskedMultiHeadAttention", "MaskedSelfAttention", "masked_softmax"]


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis counting ``True`` positions of ``mask`` only.

    ``mask`` broadcasts against ``scores``. Masked positions get exactly 0; rows with no
    ``True`` position get all zeros (never NaN, in the forward or the backward pass).
    """
    mask = mask.expand_as(scores)
    empty = ~mask.any(dim=-1, keepdim=True)
    safe = mask | empty  # all-masked rows: softmax over everything, then zeroed
    weights = torch.softmax(scores.masked_fill(~safe, float("-inf")), dim=-1)
    return weights.masked_fill(~mask, 0.0)


class AdditiveAttention(nn.Module):
    """Bahdanau attention pooling: ``score_t = v^T tanh(W h_t + U q + b)``, ``context = sum_t a_t
    h_t``.

    ``h : [B x T x input_dim]``, ``mask : Bool[B x T]``, optional ``query : [B x query_dim]``
    (a decoder state or another modality's summary, for cross-modal pooling).
    Returns ``(context [B x input_dim], weights [B x T])``.
    """

    def __init__(self, input_dim: int, attention_dim: int = 128, *, query_dim: int | None = None):
        super().__init__()
        self.proj = nn.Linear(input_dim, attention_dim)  # W h + b
        # U q
        self.query_proj = nn.Linear(query_dim, attention_dim, bias=False) if query_dim else None
        self.score = nn.Linear(attention_dim, 1, bias=False)  # v^T

    def forward(
        self, h: torch.Tensor, mask: torch.Tensor, query: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        energy = self.proj(h)  # (B, T, A)
        if query is not None:
            if self.query_proj is None:
                raise ValueError("this AdditiveAttention was built without query_dim")
            energy = energy + self.query_proj(query).unsqueeze(1)  # (B, T, A)
        scores = self.score(torch.tanh(energy)).squeeze(-1)  # (B, T)
        weights = masked_softmax(scores, mask)  # (B, T)
        context = torch.bmm(weights.unsqueeze(1), apply_time_mask(h, mask)).squeeze(1)  # (B, H)
        return context, weights


class MaskedMultiHeadAttention(nn.Module):
    """Scaled dot-product multi-head attention with a key padding mask (no residual, no norm).

    ``query : [B x Tq x dim]``, ``key : [B x Tk x kdim]``, ``key_mask : Bool[B x Tk]``;
    ``value`` defaults to ``key``. Returns ``(out [B x Tq x dim], weights [B x heads x Tq x Tk])``;
    rows of ``out`` where ``query_mask`` is ``False`` are zero.
    """

    def __init__(
        self, dim: int, num_heads: int = 4, *, kdim: int | None = None, dropout: float = 0.0
    ):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        kdim = kdim or dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(kdim, dim)
        self.v = nn.Linear(kdim, dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)  # (B, h, T, d)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        key_mask: torch.Tensor,
        value: torch.Tensor | None = None,
        query_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        value = key if value is None else value
        q, k, v = (
            self._split(self.q(query)),
            self._split(self.k(key)),
            self._split(self.v(value)),
        )  # (B, h, T*, d)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # (B, h, Tq, Tk)
        weights = masked_softmax(scores, key_mask[:, None, None, :])  # (B, h, Tq, Tk)
        mixed = self.dropout(weights) @ v  # (B, h, Tq, d)
        b, _, tq, _ = mixed.shape
        out = self.out(mixed.transpose(1, 2).reshape(b, tq, -1))  # (B, Tq, dim)
        if query_mask is not None:
            out = apply_time_mask(out, query_mask)
        return out, weights


class MaskedSelfAttention(nn.Module):
    """Self-attention block: ``LayerNorm(x + Dropout(MHA(x, x, x)))`` with a key padding mask.

    ``x : [B x T x dim]``, ``mask : Bool[B x T]`` -> ``y [B x T x dim]`` (zero on padded frames),
    plus ``weights [B x heads x T x T]`` when ``return_weights``.
    """

    def __init__(self, dim: int, num_heads: int = 4, *, dropout: float = 0.0):
        super().__init__()
        self.attn = MaskedMultiHeadAttention(dim, num_heads, dropout=dropout)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, return_weights: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        attended, weights = self.attn(x, x, mask, query_mask=mask)  # (B, T, dim)
        y = apply_time_mask(self.norm(x + self.dropout(attended)), mask)  # (B, T, dim)
        return (y, weights) if return_weights else y
