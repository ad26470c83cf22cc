"""Cross-entropy and focal loss over soft targets (so MixUp works), with class weights."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def inverse_frequency_weights(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """``w_c = N / (C * n_c)`` (classes absent from training get weight 0)."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(num_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return torch.tensor(weights, dtype=torch.float32)


class SoftTargetLoss(nn.Module):
    """``-sum_c w_c * y_c * (1 - p_c)^gamma * log p_c``, averaged over the batch.

    ``gamma = 0`` is (weighted) cross-entropy; ``gamma > 0`` is the focal loss of Lin et al.
    (2017). Targets are probability rows ``(B, C)`` so MixUp's mixed labels are exact.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        gamma: float = 0.0,
        class_weights: torch.Tensor | None = None,
        label_smoothing: float = 0.0,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.gamma = gamma
        self.label_smoothing = label_smoothing
        weights = class_weights if class_weights is not None else torch.ones(num_classes)
        self.register_buffer("class_weights", weights.float())

    def forward(
        self, logits: torch.Tensor, targets: torch.Tensor, allowed: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``allowed (B, C)`` bool: each row's softmax (and label smoothing) runs over its own
        classes only."""
        if targets.dim() == 1:
            targets = F.one_hot(targets, self.num_classes).float()  # (B, C)
        logits = logits.float()
        if allowed is not None:
            logits = logits.masked_fill(~allowed, float("-inf"))
        if self.label_smoothing:
            classes = allowed.sum(dim=-1, keepdim=True) if allowed is not None else self.num_classes
            spread = self.label_smoothing / classes
            targets = targets * (1 - self.label_smoothing) + (
                spread * allowed if allowed is not None else spread
            )
        log_p = F.log_softmax(logits, dim=-1)  # (B, C)
        if allowed is not None:
            log_p = log_p.masked_fill(~allowed, 0.0)  # no target there: 0, not 0 * -inf
        per_class = -targets * log_p * self.class_weights  # (B, C)
        if self.gamma:
            per_class = per_class * (1.0 - log_p.exp()).pow(self.gamma)
        return per_class.sum(dim=-1).mean()
