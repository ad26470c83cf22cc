"""CNN-LSTM sequence model and global-pooling model (seed 003, seed document
``003_c7567aa92ad6b5b7.txt``).

The seed trained both on pre-extracted CNN features (import them with the ``npy`` extractor) and
kept the one that did better on validation (``emorec compare``)::

    cnn_lstm:    audio [B x T x F] -> [time-distributed Dense -> ReLU -> Dropout] x N (masked)
                   -> (masked max pool over ``time_pool`` frames; 1 = none, as the seed)
                   -> BiLSTM(128) -> Dropout -> BiLSTM(64) (packed) -> final fwd/bwd states
                   -> Dense -> ReLU -> embed -> Dropout -> Linear -> logits
    cnn_pooling: audio [B x T x F] -> (time-distributed Dense layers, none by default)
                   -> masked global average pooling (optionally + std)
                   -> [Dense -> ReLU -> Dropout] x N
                   -> embed -> Linear -> logits

Padding: time-distributed layers act per frame and their padded outputs are zeroed, LSTMs are
packed (the final states are those of each clip's last real frame), pooling counts real frames.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from emorec.errors import ConfigError
from emorec.layers import apply_time_mask, masked_max_pool, masked_mean, masked_std, run_rnn
from emorec.models.registry import register_model

__all__ = ["CNNLSTM", "CNNPooling", "TimeDistributedMLP"]


class TimeDistributedMLP(nn.Module):
    """``[Linear -> ReLU -> Dropout] x len(dims)`` applied to every frame of ``[B x T x F]``;
    padded frames are zero on the way out. ``dims=()`` is the identity."""

    def __init__(self, in_dim: int, dims: tuple[int, ...], dropout: float):
        super().__init__()
        layers: list[nn.Module] = []
        for d in dims:
            layers += [nn.Linear(in_dim, d), nn.ReLU(), nn.Dropout(dropout)]
            in_dim = d
        self.layers = nn.Sequential(*layers)
        self.out_dim = in_dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return apply_time_mask(self.layers(x), mask)  # (B, T, D)


def _check(name: str, audio_dim: int | None, num_classes: int, **sizes: tuple[int, ...]) -> None:
    if audio_dim is None:
        raise ConfigError(f"{name} reads the audio modality: audio_dim is required")
    if audio_dim < 1 or num_classes < 1:
        raise ConfigError(f"{name}: audio_dim and num_classes must be >= 1")
    for key, value in sizes.items():
        if any(int(v) < 1 for v in value):
            raise ConfigError(f"{name}: {key} must hold positive sizes, got {list(value)}")


@register_model(
    "cnn_lstm",
    modalities=("audio",),
    seed="003",
    summary="Time-distributed dense layers + packed BiLSTMs over (CNN) features (seed 003)",
)
class CNNLSTM(nn.Module):
    """Time-distributed dense layers -> stacked packed BiLSTMs -> last states -> dense -> logits.

    CNN-LSTM (seed 003): ``frame_dims`` time-distributed dense layers, optional masked max
    pooling over ``time_pool`` frames (for long inputs such as 100 fps log-mel; the seed's CNN
    features needed none), then BiLSTMs of ``lstm_hidden`` units, then a ``dense`` layer.
    ``video_dim`` is ignored."""

    def __init__(
        self,
        *,
        num_classes: int,
        audio_dim: int,
        frame_dims: tuple[int, ...] = (256,),
        time_pool: int = 1,
        lstm_hidden: tuple[int, ...] = (128, 64),
        dense: int = 128,
        dropout: float = 0.3,
    ):
        super().__init__()
        _check("cnn_lstm", audio_dim, num_classes, frame_dims=frame_dims, lstm_hidden=lstm_hidden)
        if not lstm_hidden:
            raise ConfigError("cnn_lstm: lstm_hidden needs at least one LSTM size")
        if time_pool < 1:
            raise ConfigError(f"cnn_lstm: time_pool must be >= 1, got {time_pool}")
        self.frames = TimeDistributedMLP(audio_dim, frame_dims, dropout)
        self.time_pool = time_pool
        sizes = [self.frames.out_dim] + [2 * h for h in lstm_hidden[:-1]]
        self.lstms = nn.ModuleList(
            nn.LSTM(n, h, batch_first=True, bidirectional=True) for n, h in zip(sizes, lstm_hidden)
        )
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Sequential(nn.Linear(2 * lstm_hidden[-1], dense), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(dense, num_classes))
        self.embed_dim = dense
        self.num_classes = num_classes

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B x dense]`` from the last BiLSTM's final forward and backward states."""
        x, mask = batch["audio"], batch["audio_mask"]  # (B, T, F), (B, T)
        h = self.frames(apply_time_mask(x, mask), mask)  # (B, T, D)
        if self.time_pool > 1:
            # (B, D, T'), (B, T')
            pooled, mask = masked_max_pool(h.transpose(1, 2), mask, self.time_pool)
            h = pooled.transpose(1, 2)  # (B, T', D)
        state = None
        for i, lstm in enumerate(self.lstms):
            if i:
                h = self.dropout(h)
            h, (state, _) = run_rnn(lstm, h, mask)  # (B, T, 2H), h_n (2, B, H)
        # (B, 2H): forward at the last real frame, backward at the first
        last = torch.cat([state[0], state[1]], dim=-1)
        return self.dense(self.dropout(last))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.embed(batch))  # (B, C)


@register_model(
    "cnn_pooling",
    modalities=("audio",),
    seed="003",
    summary="Masked global average pooling + dense layers (seed 003)",
)
class CNNPooling(nn.Module):
    """(Time-distributed dense) -> masked global average pooling -> dense layers -> logits.

    Global pooling (seed 003): optional ``frame_dims`` time-distributed layers, masked mean
    (``pooling="mean_std"`` adds the std) over real frames, then ``dense`` layers."""

    def __init__(
        self,
        *,
        num_classes: int,
        audio_dim: int,
        frame_dims: tuple[int, ...] = (),
        pooling: str = "mean",
        dense: tuple[int, ...] = (256, 128),
        dropout: float = 0.3,
    ):
        super().__init__()
        _check("cnn_pooling", audio_dim, num_classes, frame_dims=frame_dims, dense=dense)
        if pooling not in ("mean", "mean_std"):
            raise ConfigError(f"cnn_pooling: pooling must be 'mean' or 'mean_std', got {pooling!r}")
        if not dense:
            raise ConfigError("cnn_pooling: dense needs at least one layer size")
        self.frames = TimeDistributedMLP(audio_dim, frame_dims, dropout)
        self.pooling = pooling
        in_dim = self.frames.out_dim * (2 if pooling == "mean_std" else 1)
        layers: list[nn.Module] = []
        for d in dense:
            layers += [nn.Linear(in_dim, d), nn.ReLU(), nn.Dropout(dropout)]
            in_dim = d
        self.dense = nn.Sequential(*layers)
        self.head = nn.Linear(in_dim, num_classes)
        self.embed_dim = in_dim
        self.num_classes = num_classes

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x, mask = batch["audio"], batch["audio_mask"]  # (B, T, F), (B, T)
        h = self.frames(apply_time_mask(x, mask), mask)  # (B, T, D)
        pooled = masked_mean(h, mask)  # (B, D)
        if self.pooling == "mean_std":
            pooled = torch.cat([pooled, masked_std(h, mask)], dim=-1)  # (B, 2D)
        return self.dense(pooled)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.embed(batch))  # (B, C)
