"""Recompute BatchNorm running statistics of trained weights ("precise BN").

During training, running statistics are a momentum average over the last few augmented,
MixUp-blended batches, computed by weights that kept changing; for an averaged model (EMA) they
are an average of statistics that belonged to other weights. This pass replaces them with the
plain average over the un-augmented training clips as the final weights see them. Training
clips only: the result stays inductive.
"""

from __future__ import annotations

import torch
from torch.optim.swa_utils import update_bn
from torch.utils.data import DataLoader

from emorec.data import BucketBatchSampler, ClipDataset, pad_collate


def recalibrate_batch_norm(
    model: torch.nn.Module, dataset: ClipDataset, *, batch_size: int = 32, seed: int = 0
) -> torch.nn.Module:
    """Reset every BatchNorm's running statistics and average them over ``dataset`` in train
    mode (``torch.optim.swa_utils.update_bn``: cumulative average, momentum ``None``), in
    length-bucketed batches as in training. The model comes back in eval mode."""
    first = dataset.modalities[0]
    loader = DataLoader(
        dataset,
        collate_fn=pad_collate,
        batch_sampler=BucketBatchSampler(
            dataset.lengths(first), batch_size, shuffle=True, seed=seed
        ),
    )
    with torch.no_grad():
        update_bn(loader, model)
    return model.eval()
