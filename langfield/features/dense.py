"""Dense CLIP (fast path): MaskCLIP-style per-patch features from one forward pass."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from langfield.features.clip_model import ClipModel
from langfield.features.types import DENSE_LEVELS, FeatureMap, normalize_f16


@dataclass
class DenseConfig:
    """Settings of the dense extractor."""

    short_side: int = 448
    """The image is resized (aspect kept) so its short side is about this many pixels before
    the ViT; more pixels = finer patch grid (patch 16 -> 28 rows at 448) and slower."""


def grid_index_map(height: int, width: int, grid: tuple[int, int]) -> torch.Tensor:
    """[H, W] int32 row-major index of the grid cell whose area contains each pixel centre."""
    gh, gw = grid
    ys = ((torch.arange(height, dtype=torch.float64) + 0.5) * gh / height).floor().long().clamp(0, gh - 1)
    xs = ((torch.arange(width, dtype=torch.float64) + 0.5) * gw / width).floor().long().clamp(0, gw - 1)
    return (ys[:, None] * gw + xs[None, :]).to(torch.int32)


def extract_dense(image: torch.Tensor, clip: ClipModel, cfg: DenseConfig) -> FeatureMap:
    """[H, W, 3] float in [0, 1] -> FeatureMap with one level ("dense") on the patch grid.

    Stored at patch-grid resolution (``grid_shape``) to keep the cache small;
    ``FeatureMap.to_dense`` / ``sample`` upsample bilinearly to image resolution.
    """
    h, w = image.shape[:2]
    grid = clip.dense_features(image.permute(2, 0, 1).float(), cfg.short_side)  # [gh, gw, E]
    gh, gw = grid.shape[:2]
    segments = grid_index_map(h, w, (gh, gw))[None]
    return FeatureMap(
        level_names=DENSE_LEVELS,
        segments=segments,
        features=normalize_f16(grid.reshape(gh * gw, -1)),
        grid_shape=(gh, gw),
    )
