"""langfield.features: per-keyframe CLIP-space features (SAM+CLIP levels, dense CLIP, label lifting) and their cache.

This package never sees Gaussians (ARCHITECTURE.md).  Heavy dependencies
(open_clip, segment_anything) are imported lazily, inside the functions that
need them.
"""

from langfield.features.cache import FeatureCache
from langfield.features.extract import METHODS, ExtractConfig, StreamExtractor, extract_features, iter_cached, model_key
from langfield.features.types import DENSE_LEVELS, LABEL_LEVELS, SAM_LEVELS, FeatureInput, FeatureMap
from langfield.features.weights import DEFAULT_CLIP, DEFAULT_SAM, TINY, describe_weights, weights_dir

__all__ = [
    "DEFAULT_CLIP",
    "DEFAULT_SAM",
    "DENSE_LEVELS",
    "LABEL_LEVELS",
    "METHODS",
    "SAM_LEVELS",
    "StreamExtractor",
    "TINY",
    "ExtractConfig",
    "FeatureCache",
    "FeatureInput",
    "FeatureMap",
    "describe_weights",
    "extract_features",
    "iter_cached",
    "model_key",
    "weights_dir",
]
