"""Datasets over cached features, the pad+mask collate (the batch contract) and bucketing.

A batch is a dict: ``audio`` (B, T_a, F_a) float with ``audio_mask`` (B, T_a) bool,
``video`` (B, T_v, F_v) with ``video_mask`` (B, T_v), ``label`` (B,) long, ``index`` (B,)
long. ``True`` in a mask marks a real frame; padded frames are zeros.

``normalizer.py`` standardises features, ``dataset.py`` reads clips, ``batching.py`` pads them into
batches; every public name is importable from here.
"""

from emorec.data.batching import (
    BucketBatchSampler,
    ShardedBucketBatchSampler,
    make_loaders,
    pad_collate,
    padding_fraction,
)
from emorec.data.dataset import (
    MODALITIES,
    ClipDataset,
    ClipFrames,
    balanced_weights,
    corpus_class_masks,
    missing_modality_frames,
)
from emorec.data.normalizer import Normalizer

__all__ = [
    "MODALITIES",
    "BucketBatchSampler",
    "ClipDataset",
    "ClipFrames",
    "Normalizer",
    "ShardedBucketBatchSampler",
    "balanced_weights",
    "corpus_class_masks",
    "make_loaders",
    "missing_modality_frames",
    "pad_collate",
    "padding_fraction",
]
