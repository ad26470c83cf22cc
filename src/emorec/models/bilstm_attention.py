"""BiLSTM with masked attention for audio, video or both (seed 002, seed document
``002_50342a74a455f735.txt``)::

    audio [B x T_a x F_a] -> BiLSTM(128) -> Dropout -> BiLSTM(64)  -> attention -> [B x 128] ┐
    video [B x T_v x F_v] -> BiLSTM(256) -> Dropout -> BiLSTM(128) -> attention -> [B x 256] ┴
      -> concat -> Dropout -> Dense -> ReLU -> embed [B x dense]
      -> Dropout -> Linear -> logits [B x C]

``audio_time_pool > 1`` first max-pools the audio frames (masked), for long inputs such as
100 fps log-mel (default 1: none, as the seed). Every LSTM runs on packed sequences, so padding
never enters the recurrent state; attention gives padded frames ``-inf`` scores before the softmax,
so their weights are exactly 0 and the weights over real frames sum to 1.

One class serves audio-only, video-only and audio-visual input:

* which branches exist is chosen by config (``modalities``) and by the data: a branch is built
  for each modality in ``modalities`` whose feature dim the data gives (``audio_dim`` /
  ``video_dim`` not ``None``);
* at run time a branch whose modality is absent from the batch, or whose clip has no real frame
  of it (an all-False mask row), contributes a learned placeholder embedding instead, so the
  same trained model still predicts when a modality is missing; modalities the model has no
  branch for are ignored.

Its seed's default loss is focal loss (gamma 2) with inverse-frequency class weights
(``configs/bilstm_attention.yaml``; ``configs/bilstm_attention_av.yaml`` adds video features).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from emorec.errors import ConfigError
from emorec.layers import AdditiveAttention, masked_max_pool, run_rnn
from emorec.models.registry import register_model

__all__ = ["BiLSTMAttention", "BiLSTMBranch"]

MODALITIES = ("audio", "video")


class BiLSTMBranch(nn.Module):
    """(Masked max pool over ``time_pool`` frames) -> stacked BiLSTMs (packed, dropout between
    them) -> masked additive attention.

    ``x : [B x T x F]``, ``mask : Bool[B x T]`` -> ``(context [B x 2 * hidden[-1]], weights [B x
    T'])``, ``T' = ceil(T / time_pool)``.
    """

    def __init__(
        self,
        input_dim: int,
        hidden: tuple[int, ...],
        *,
        attention_dim: int = 128,
        dropout: float = 0.3,
        time_pool: int = 1,
    ):
        super().__init__()
        if time_pool < 1:
            raise ConfigError(f"bilstm_attention: time pooling must be >= 1, got {time_pool}")
        self.time_pool = time_pool
        if not hidden or min(hidden) < 1:
            raise ConfigError(
                "bilstm_attention: LSTM sizes must be a non-empty list of "
                f"positive ints, got {hidden}"
            )
        sizes = [input_dim] + [2 * h for h in hidden[:-1]]
        self.lstms = nn.ModuleList(
            nn.LSTM(n_in, h, batch_first=True, bidirectional=True) for n_in, h in zip(sizes, hidden)
        )
        self.dropout = nn.Dropout(dropout)
        self.attention = AdditiveAttention(2 * hidden[-1], attention_dim)
        self.out_dim = 2 * hidden[-1]

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = x
        if self.time_pool > 1:
            # (B, F, T'), (B, T')
            pooled, mask = masked_max_pool(x.transpose(1, 2), mask, self.time_pool)
            h = pooled.transpose(1, 2)  # (B, T', F)
        for i, lstm in enumerate(self.lstms):
            if i:
                h = self.dropout(h)
            h, _ = run_rnn(lstm, h, mask)  # (B, T, 2H_i), zero on padded frames
        return self.attention(h, mask)  # (B, 2H), (B, T)


@register_model(
    "bilstm_attention",
    modalities=("audio", "video"),
    seed="002",
    summary="BiLSTM + masked attention per modality, audio / video / audio-visual (seed 002)",
)
class BiLSTMAttention(nn.Module):
    """Per-modality BiLSTM + attention branches, concatenated -> dense -> logits.

    ``placeholders[m]`` is the learned embedding used when modality ``m`` is missing.

    BiLSTM attention (seed 002). A branch exists for each of ``modalities`` whose features the
    data has; a missing modality at run time uses a learned placeholder embedding.
    ``audio_time_pool > 1`` max-pools the audio frames (masked) before the LSTMs, for long inputs
    such as 100 fps log-mel (1 = none, as the seed)."""

    def __init__(
        self,
        *,
        num_classes: int,
        audio_dim: int | None,
        video_dim: int | None,
        modalities: tuple[str, ...] = MODALITIES,
        audio_hidden: tuple[int, ...] = (128, 64),
        video_hidden: tuple[int, ...] = (256, 128),
        audio_time_pool: int = 1,
        attention_dim: int = 128,
        dense: int = 128,
        dropout: float = 0.3,
    ):
        super().__init__()
        unknown = sorted(set(modalities) - set(MODALITIES))
        if unknown or not modalities:
            raise ConfigError(
                "bilstm_attention: modalities must be a non-empty subset of "
                f"{MODALITIES}, got {list(modalities)}"
            )
        self.branches = nn.ModuleDict()
        self.placeholders = nn.ParameterDict()
        pools = {"audio": audio_time_pool, "video": 1}
        for name, dim, hidden in (
            ("audio", audio_dim, audio_hidden),
            ("video", video_dim, video_hidden),
        ):
            if name in modalities and dim is not None:
                branch = BiLSTMBranch(
                    dim,
                    tuple(hidden),
                    attention_dim=attention_dim,
                    dropout=dropout,
                    time_pool=pools[name],
                )
                self.branches[name] = branch
                self.placeholders[name] = nn.Parameter(torch.zeros(branch.out_dim))
        if not self.branches:
            given = [m for m, d in (("audio", audio_dim), ("video", video_dim)) if d is not None]
            raise ConfigError(
                f"bilstm_attention: no branch to build: modalities {list(modalities)} but the "
                f"data gives {given or 'no'} features"
            )
        merged = sum(b.out_dim for b in self.branches.values())
        self.dense = nn.Sequential(nn.Dropout(dropout), nn.Linear(merged, dense), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(dense, num_classes))
        self.embed_dim = dense
        self.num_classes = num_classes

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities this model has a branch for."""
        return tuple(self.branches)

    def _encode(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        present = [m for m in self.branches if m in batch]
        if not present:
            raise ValueError(
                "bilstm_attention: the batch holds none of this model's "
                f"modalities {self.modalities}"
            )
        size = batch[present[0]].size(0)
        parts, weights = [], {}
        for name, branch in self.branches.items():
            placeholder = self.placeholders[name]
            if name in batch:
                mask = batch[f"{name}_mask"]
                context, weights[name] = branch(batch[name], mask)  # (B, D_m), (B, T_m)
                # (B, 1): a row without frames is missing
                has_frames = mask.any(dim=1, keepdim=True)
                context = torch.where(has_frames, context, placeholder.expand_as(context))
            else:
                context = placeholder.expand(size, -1)  # (B, D_m)
            parts.append(context)
        return self.dense(torch.cat(parts, dim=-1)), weights  # (B, dense)

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The penultimate representation ``[B x dense]``; ``forward == head(embed)``."""
        return self._encode(batch)[0]

    def forward(
        self, batch: dict[str, torch.Tensor], return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits ``[B x C]``; with ``return_attention`` also ``{modality: weights [B x T_m]}`` for
        each modality the batch holds."""
        embedding, weights = self._encode(batch)
        logits = self.head(embedding)
        return (logits, weights) if return_attention else logits
