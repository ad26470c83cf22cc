"""Hybrid Conv1D-TCN with bidirectional cross-modal attention (seed 004, seed document
``004_21c7cb58aa1dfa4c.txt``)::

    audio [B x T_a x F_a] -> [parallel Conv1D k=3 | k=5 -> concat -> BN -> ReLU -> max pool] x N
                          -> Linear -> [B x T_a' x d]
    video [B x T_v x F_v] -> TCN (dilations 1, 2, 4, ...; residual) -> Linear
                          -> LayerNorm(x + MHA(x, x, x)) -> [B x T_v x d]
    both present: audio attends to video and video to audio (masked MHA + residual + LayerNorm)
    each -> masked additive attention pooling -> [B x d]
    fused = w_audio * audio + w_video * video, (w_audio, w_video) = softmax(2 learned logits)
    -> Dropout -> Dense -> ReLU -> embed [B x dense] -> Dropout -> Linear -> logits [B x C]

A model built for one modality (``video_dim=None`` or ``audio_dim=None``) has no cross-attention
and its fused vector is that modality's. In an audio-visual model, a clip whose mask row for a
modality has no real frame counts that modality as missing: it gets zero cross-attention and the
modality weights are renormalised over the modalities the clip has. A batch that lacks one
modality altogether (``evaluate --drop``, an audio-only file) takes exactly that path for every
clip, so a missing modality means the same thing however it arrives, and the same thing that
modality dropout (``augment.modality_dropout``) trains for.

The seed's training habits are in ``configs/hybrid_tcn.yaml``: batch 24, up to 50 epochs, lr 5e-4,
early-stopping patience 10, focal loss gamma 2 with inverse-frequency class weights.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from emorec.errors import ConfigError
from emorec.layers import (
    AdditiveAttention,
    BidirectionalCrossAttention,
    MaskedSelfAttention,
    ModalityWeights,
    MultiScaleConv1d,
    TemporalConvNet,
    apply_time_mask,
)
from emorec.models.registry import register_model

__all__ = ["HybridTCN"]


class AudioConvBranch(nn.Module):
    """``[B x T x F]`` -> multi-scale Conv1D blocks -> ``([B x T' x d], Bool[B x T'])``."""

    def __init__(
        self,
        audio_dim: int,
        channels: int,
        kernels: tuple[int, ...],
        blocks: int,
        pool: int,
        model_dim: int,
        dropout: float,
    ):
        super().__init__()
        layers, in_ch = [], audio_dim
        for _ in range(blocks):
            layer = MultiScaleConv1d(in_ch, channels, kernels=kernels, pool=pool, dropout=dropout)
            layers.append(layer)
            in_ch = layer.out_channels
        self.blocks = nn.ModuleList(layers)
        self.proj = nn.Linear(in_ch, model_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = x.transpose(1, 2)  # (B, F, T)
        for block in self.blocks:
            h, mask = block(h, mask)  # (B, C, T'), (B, T')
        return apply_time_mask(self.proj(h.transpose(1, 2)), mask), mask  # (B, T', d)


class VideoTCNBranch(nn.Module):
    """``[B x T x F]`` -> TCN -> Linear -> masked self-attention -> ``[B x T x d]``."""

    def __init__(
        self,
        video_dim: int,
        channels: int,
        levels: int,
        kernel_size: int,
        model_dim: int,
        heads: int,
        dropout: float,
    ):
        super().__init__()
        self.tcn = TemporalConvNet(
            video_dim, channels, levels=levels, kernel_size=kernel_size, dropout=dropout
        )
        self.proj = nn.Linear(channels, model_dim)
        self.self_attention = MaskedSelfAttention(model_dim, heads, dropout=dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.tcn(x.transpose(1, 2), mask).transpose(1, 2)  # (B, T, C)
        return self.self_attention(apply_time_mask(self.proj(h), mask), mask)  # (B, T, d)


@register_model(
    "hybrid_tcn",
    modalities=("audio", "video"),
    seed="004",
    summary="Multi-scale Conv1D audio + dilated TCN/self-attention video + "
    "cross-modal attention (seed 004)",
)
class HybridTCN(nn.Module):
    """Conv1D audio branch + TCN/self-attention video branch + cross-modal attention + weighted
    fusion.

    Hybrid Conv1D-TCN (seed 004). Audio: ``audio_blocks`` blocks of parallel Conv1D with
    ``audio_kernels``, ``audio_channels`` each, max pool ``audio_pool``. Video: a TCN of
    ``tcn_levels`` residual blocks with dilations 1, 2, 4, ... and self-attention. Either modality
    may be absent (``*_dim=None``): the cross-modal attention is then skipped."""

    def __init__(
        self,
        *,
        num_classes: int,
        audio_dim: int | None,
        video_dim: int | None,
        audio_channels: int = 64,
        audio_kernels: tuple[int, ...] = (3, 5),
        audio_blocks: int = 2,
        audio_pool: int = 2,
        video_channels: int = 64,
        tcn_levels: int = 4,
        tcn_kernel: int = 3,
        model_dim: int = 128,
        heads: int = 4,
        attention_dim: int = 64,
        dense: int = 128,
        dropout: float = 0.3,
    ):
        super().__init__()
        if audio_dim is None and video_dim is None:
            raise ConfigError(
                "hybrid_tcn needs audio and/or video features (audio_dim and "
                "video_dim are both None)"
            )
        if model_dim % heads:
            raise ConfigError(
                f"hybrid_tcn: model_dim ({model_dim}) must be divisible by heads ({heads})"
            )
        if any(k < 1 or k % 2 == 0 for k in tuple(audio_kernels) + (tcn_kernel,)):
            raise ConfigError("hybrid_tcn: kernel sizes must be odd (symmetric 'same' padding)")
        if (
            min(
                audio_channels,
                audio_blocks,
                audio_pool,
                video_channels,
                tcn_levels,
                model_dim,
                dense,
            )
            < 1
        ):
            raise ConfigError(
                "hybrid_tcn: channel, block, pool, level and layer sizes must be >= 1"
            )
        self.audio = (
            AudioConvBranch(
                audio_dim,
                audio_channels,
                tuple(audio_kernels),
                audio_blocks,
                audio_pool,
                model_dim,
                dropout,
            )
            if audio_dim is not None
            else None
        )
        self.video = (
            VideoTCNBranch(
                video_dim, video_channels, tcn_levels, tcn_kernel, model_dim, heads, dropout
            )
            if video_dim is not None
            else None
        )
        both = self.audio is not None and self.video is not None
        self.cross = (
            BidirectionalCrossAttention(model_dim, heads, dropout=dropout) if both else None
        )
        self.weights = ModalityWeights(2) if both else None
        self.pool = nn.ModuleDict(
            {
                m: AdditiveAttention(model_dim, attention_dim)
                for m, branch in (("audio", self.audio), ("video", self.video))
                if branch is not None
            }
        )
        self.dense = nn.Sequential(nn.Dropout(dropout), nn.Linear(model_dim, dense), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(dense, num_classes))
        self.embed_dim = dense
        self.num_classes = num_classes
        self.dims = {"audio": audio_dim, "video": video_dim}

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.pool)

    def modality_weights(self) -> torch.Tensor:
        """``[w_audio, w_video]``: softmax of the two learned logits (sums to 1); one-hot for a
        single-modality model."""
        if self.weights is None:
            return torch.tensor([1.0, 0.0] if self.audio is not None else [0.0, 1.0])
        return self.weights()

    def _absent_as_missing(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """An audio-visual model's batch without one modality -> that modality missing in every
        clip: one zero frame ``[B x 1 x F]`` under an all-False mask ``[B x 1]``."""
        present = [m for m in ("audio", "video") if m in batch]
        if self.cross is None or len(present) != 1:
            return batch
        ref = batch[present[0]]
        absent = "video" if present[0] == "audio" else "audio"
        return {
            **batch,
            absent: ref.new_zeros(ref.shape[0], 1, self.dims[absent]),
            f"{absent}_mask": torch.zeros(ref.shape[0], 1, dtype=torch.bool, device=ref.device),
        }

    def _encode(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        batch = self._absent_as_missing(batch)
        seqs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        if self.audio is not None and "audio" in batch:
            # (B, T_a', d), (B, T_a')
            seqs["audio"] = self.audio(batch["audio"], batch["audio_mask"])
        if self.video is not None and "video" in batch:
            mask = batch["video_mask"]
            seqs["video"] = (self.video(batch["video"], mask), mask)  # (B, T_v, d), (B, T_v)
        if not seqs:
            raise ValueError(
                f"hybrid_tcn: the batch holds none of this model's modalities {self.modalities}"
            )
        if len(seqs) == 2:
            (a, a_mask), (v, v_mask) = seqs["audio"], seqs["video"]
            a, v = self.cross(a, a_mask, v, v_mask)  # audio <-> video
            seqs = {"audio": (a, a_mask), "video": (v, v_mask)}
        pooled, attention = {}, {}
        for name, (h, mask) in seqs.items():
            pooled[name], attention[name] = self.pool[name](h, mask)  # (B, d), (B, T')
        if len(pooled) == 1:
            fused = next(iter(pooled.values()))
        else:
            w = self.modality_weights()  # (2,)
            # (B, 2)
            present = torch.stack([seqs[m][1].any(dim=1) for m in ("audio", "video")], dim=1)
            w = w * present.to(w.dtype)  # (B, 2): missing modalities drop out, the rest renormalise
            w = w / w.sum(dim=1, keepdim=True).clamp_min(1e-12)
            fused = w[:, :1] * pooled["audio"] + w[:, 1:] * pooled["video"]  # (B, d)
        return self.dense(fused), attention

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The penultimate representation ``[B x dense]``; ``forward == head(embed)``."""
        return self._encode(batch)[0]

    def forward(
        self, batch: dict[str, torch.Tensor], return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits ``[B x C]``; with ``return_attention`` also the pooling weights
        ``{"audio": [B x T_a'], "video": [B x T_v]}`` of the modalities the batch holds."""
        embedding, attention = self._encode(batch)
        logits = self.head(embedding)
        return (logits, attention) if return_attention else logits
