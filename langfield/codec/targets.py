"""Target latents for training: a FeatureMap encoded by the codec, per level and pixel."""

from __future__ import annotations

from typing import Optional

import torch

from langfield.codec.model import LanguageCodec
from langfield.features.types import FeatureMap


@torch.no_grad()
def encode_feature_map(
    codec: LanguageCodec, fmap: FeatureMap, size: Optional[tuple[int, int]] = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(latents [L, H, W, D] float32, valid [L, H, W] bool)``; zeros where there is no feature.

    Segment maps encode each table row once and gather (S encodings instead of
    L*H*W); dense grids encode the upsampled per-pixel features, because a
    latent of a blended feature is not the blend of the latents.
    """
    dev = next(codec.parameters()).device
    h, w = size if size is not None else (fmap.height, fmap.width)
    d = codec.config.latent_dim
    if fmap.grid_shape is None:
        seg = fmap.segments if size is None else fmap._resized_segments(list(range(fmap.num_levels)), h, w)
        valid = seg >= 0
        table = codec.encode(fmap.features.to(dev).float()).cpu() if fmap.features.shape[0] else torch.zeros(0, d)
        table = torch.cat([table, torch.zeros(1, d)])
        idx = torch.where(valid, seg.long(), torch.full_like(seg, table.shape[0] - 1, dtype=torch.long))
        return table[idx], valid
    dense = fmap.to_dense(size=(h, w))  # [L, H, W, E]
    valid = dense.abs().sum(-1) > 0
    flat = dense.reshape(-1, dense.shape[-1])
    out = torch.cat([codec.encode(flat[i : i + 65536].to(dev)).cpu() for i in range(0, flat.shape[0], 65536)])
    return out.reshape(*dense.shape[:-1], d) * valid.unsqueeze(-1), valid
