"""Features: one interface (``base``), one cache (``store``), one runner (``extract``).

Built-in extractors (registered on first use of :func:`create_extractor`):
``logmel``, ``mfcc`` (spectral), ``egemaps`` (opensmile, non-commercial licence),
``ssl`` (wav2vec2 / HuBERT / WavLM via transformers), ``npy`` (imported arrays).
"""

from emorec.features.base import (
    FeatureExtractor,
    create_extractor,
    list_extractors,
    register_extractor,
    validate_features,
)
from emorec.features.extract import ExtractResult, compute_features, extract_features, load_features
from emorec.features.skipped import write_skipped
from emorec.features.store import FeatureStore

__all__ = [
    "ExtractResult",
    "FeatureExtractor",
    "FeatureStore",
    "compute_features",
    "create_extractor",
    "extract_features",
    "list_extractors",
    "load_features",
    "register_extractor",
    "validate_features",
    "write_skipped",
]
