"""Values produced by the feature extractors (no Gaussians here: see ARCHITECTURE.md).

A :class:`FeatureMap` is the per-keyframe language target: for every hierarchy
level and every pixel, one L2-normalised CLIP-space vector.  It is stored
cheaply as a segment-id map per level plus one feature per segment; dense
CLIP features use the same layout with one "segment" per cell of the model's
patch grid plus ``grid_shape``, so :meth:`FeatureMap.to_dense` can upsample
them smoothly instead of by nearest neighbour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import torch
import torch.nn.functional as F

# Level names per method (fine to coarse).
SAM_LEVELS = ("subpart", "part", "whole")
LABEL_LEVELS = ("part", "whole")
DENSE_LEVELS = ("dense",)

ImageLike = Union[np.ndarray, torch.Tensor]


@dataclass
class FeatureInput:
    """One keyframe handed to ``extract_features`` (``langfield.types.View`` works too)."""

    name: str
    """Frame name; the cache key (``Frame.name`` / ``View.name``)."""
    rgb: Optional[ImageLike] = None
    """[H, W, 3] float32 in [0, 1] (numpy or torch); not needed for label lifting."""
    semantics: Optional[ImageLike] = None
    """[H, W] int64 label ids, 0 = none; needed for label lifting only."""


@dataclass
class FeatureMap:
    """Per-level CLIP features of one image, as segment maps + a segment feature table."""

    level_names: tuple[str, ...]
    """Names of the L levels, fine to coarse: ("subpart","part","whole"), ("part","whole") or ("dense",)."""
    segments: torch.Tensor
    """[L, H, W] int32 row of ``features`` for each pixel and level; -1 = no feature there."""
    features: torch.Tensor
    """[S, E] float16 L2-normalised CLIP embeddings, shared by all levels (ids are global)."""
    grid_shape: Optional[tuple[int, int]] = None
    """(h, w) when ``features`` is a row-major h x w patch grid (dense CLIP); None for real segments."""

    def __post_init__(self) -> None:
        if self.segments.ndim != 3:
            raise ValueError(f"segments must be [L, H, W], got {tuple(self.segments.shape)}")
        if self.features.ndim != 2:
            raise ValueError(f"features must be [S, E], got {tuple(self.features.shape)}")
        if self.segments.shape[0] != len(self.level_names):
            raise ValueError(
                f"segments has {self.segments.shape[0]} levels but level_names has {len(self.level_names)}"
            )
        if self.grid_shape is not None and self.grid_shape[0] * self.grid_shape[1] != self.features.shape[0]:
            raise ValueError(f"grid_shape {self.grid_shape} does not match {self.features.shape[0]} features")

    @property
    def num_levels(self) -> int:
        return len(self.level_names)

    @property
    def height(self) -> int:
        return int(self.segments.shape[1])

    @property
    def width(self) -> int:
        return int(self.segments.shape[2])

    @property
    def embed_dim(self) -> int:
        """E, the CLIP embedding width."""
        return int(self.features.shape[1])

    def level_index(self, name: str) -> int:
        try:
            return self.level_names.index(name)
        except ValueError:
            raise KeyError(f"level {name!r} not in {self.level_names}") from None

    def valid_mask(self) -> torch.Tensor:
        """[L, H, W] bool: where a feature exists."""
        return self.segments >= 0

    def to_dense(
        self,
        levels: Optional[Union[int, str, list[Union[int, str]]]] = None,
        size: Optional[tuple[int, int]] = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Expand to per-pixel features ``[L', H', W', E]`` (zeros where ``segments == -1``).

        ``levels`` selects levels by index or name (default all, an int/str gives
        ``L' = 1``).  ``size = (H', W')`` resamples: nearest for segment maps,
        bilinear (then re-normalised) for dense grids.  A full-resolution map is
        large (H*W*E floats); trainers should prefer :meth:`sample`.
        """
        idx = self._level_indices(levels)
        h, w = size if size is not None else (self.height, self.width)
        feats = self.features.to(dtype)
        if self.grid_shape is not None:
            gh, gw = self.grid_shape
            grid = feats.reshape(1, gh, gw, -1).permute(0, 3, 1, 2)
            up = F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)
            up = F.normalize(up, dim=1).permute(0, 2, 3, 1)  # [1, H, W, E]
            out = up.expand(len(idx), -1, -1, -1).clone()
            seg = self._resized_segments(idx, h, w)
            return out * (seg >= 0).unsqueeze(-1).to(dtype)
        seg = self._resized_segments(idx, h, w).long()
        table = torch.cat([feats, torch.zeros(1, feats.shape[1], dtype=dtype)], dim=0)
        seg = torch.where(seg < 0, torch.full_like(seg, feats.shape[0]), seg)
        return table[seg]

    def sample(self, level: Union[int, str], ys: torch.Tensor, xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features at integer pixels ``(ys, xs)`` of one level: ``([P, E] float32, [P] bool valid)``."""
        li = self._level_indices(level)[0]
        seg = self.segments[li, ys.long(), xs.long()].long()
        valid = seg >= 0
        feats = self.features.float()
        if self.grid_shape is not None:
            gh, gw = self.grid_shape
            # grid_sample wants coordinates in [-1, 1] over pixel centres (align_corners=False)
            gx = (xs.float() + 0.5) / self.width * 2 - 1
            gy = (ys.float() + 0.5) / self.height * 2 - 1
            grid = feats.reshape(1, gh, gw, -1).permute(0, 3, 1, 2)
            pts = torch.stack([gx, gy], dim=-1).reshape(1, 1, -1, 2)
            out = F.grid_sample(grid, pts, mode="bilinear", align_corners=False)[0, :, 0].T
            return F.normalize(out, dim=-1) * valid.unsqueeze(-1), valid
        out = feats[seg.clamp_min(0)] * valid.unsqueeze(-1)
        return out, valid

    def _level_indices(self, levels: Optional[Union[int, str, list[Union[int, str]]]]) -> list[int]:
        if levels is None:
            return list(range(self.num_levels))
        if isinstance(levels, (int, str)):
            levels = [levels]
        return [self.level_index(lv) if isinstance(lv, str) else int(lv) for lv in levels]

    def _resized_segments(self, idx: list[int], h: int, w: int) -> torch.Tensor:
        seg = self.segments[idx]
        if (h, w) == (self.height, self.width):
            return seg
        # nearest-exact keeps ids intact (no blending of segment numbers)
        return F.interpolate(seg[None].float(), size=(h, w), mode="nearest-exact")[0].to(torch.int32)

    def to_state(self) -> dict:
        """Plain dict of tensors / str / ints, loadable with ``torch.load(weights_only=True)``."""
        return {
            "level_names": list(self.level_names),
            "segments": self.segments.to(torch.int32).contiguous(),
            "features": self.features.to(torch.float16).contiguous(),
            "grid_shape": list(self.grid_shape) if self.grid_shape is not None else None,
        }

    @classmethod
    def from_state(cls, state: dict) -> "FeatureMap":
        grid = state.get("grid_shape")
        return cls(
            level_names=tuple(state["level_names"]),
            segments=state["segments"],
            features=state["features"],
            grid_shape=(int(grid[0]), int(grid[1])) if grid is not None else None,
        )


def normalize_f16(features: torch.Tensor) -> torch.Tensor:
    """L2-normalise in float32 (float16 norms overflow for wide raw features), then store as float16."""
    return F.normalize(features.float(), dim=-1).to(torch.float16)
