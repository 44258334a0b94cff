"""langfield.codec: the per-scene autoencoder between CLIP space (E) and per-Gaussian latents (D per level)."""

from langfield.codec.io import load_codec, save_codec
from langfield.codec.targets import encode_feature_map
from langfield.codec.model import CodecConfig, LanguageCodec, split_levels
from langfield.codec.train import CodecReport, CodecTrainConfig, collect_features, reconstruction_cosine, train_codec

__all__ = [
    "CodecConfig",
    "CodecReport",
    "CodecTrainConfig",
    "LanguageCodec",
    "collect_features",
    "encode_feature_map",
    "load_codec",
    "reconstruction_cosine",
    "save_codec",
    "split_levels",
    "train_codec",
]
