"""Coarse-to-fine training resolution (splatfacto / OpenSplat's schedule, fitted to the run length).

Early steps only need the coarse layout of the scene: a step at half
resolution costs about a quarter of the pixels (and the rasterizer's time is
mostly per pixel), so the first part of a run trains on downscaled copies of
the training views and the rest at full resolution. splatfacto does 3000 steps
at 1/4 and 3000 at 1/2 out of 30k; here the coarse part is a fraction of
``iterations`` so short runs get the same shape.

Downscaling is an area average of RGB (a box filter: what a camera with
bigger pixels would have seen), the minimum of the valid depths in each block
(the nearest surface: a mean would invent depths between layers), and
intrinsics scaled by the exact size ratio (``Intrinsics.scaled``'s rule:
pixel centres stay consistent).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from langfield.types import View


@dataclass(frozen=True)
class ResolutionSchedule:
    """Which downscale factor a training step uses."""

    levels: int = 2
    """Number of coarse levels: the run starts at 1 / 2**levels resolution (0 = always full)."""
    fraction: float = 0.3
    """Fraction of the run spent below full resolution, split evenly over the levels."""
    min_side: int = 16
    """Never downscale an image below this many pixels on its short side (tiny images stay full)."""

    def __post_init__(self) -> None:
        if self.levels < 0:
            raise ValueError(f"resolution levels must be >= 0, got {self.levels}")
        if not 0.0 <= self.fraction < 1.0:
            raise ValueError(f"resolution fraction must be in [0, 1), got {self.fraction}")

    def factor(self, step: int, iterations: int, short_side: int) -> int:
        """Downscale factor (a power of two, 1 = full) of step ``step`` of ``iterations``."""
        if self.levels == 0 or self.fraction == 0.0 or iterations <= 0:
            return 1
        coarse_steps = self.fraction * iterations
        if step >= coarse_steps:
            return 1
        per_level = coarse_steps / self.levels
        level = self.levels - int(step // per_level)  # levels, levels-1, ..., 1
        # the largest allowed factor keeps the short side >= min_side
        cap = max(0, int(math.floor(math.log2(max(short_side, 1) / max(self.min_side, 1)))))
        return 2 ** max(0, min(level, cap))


def downscale_view(view: View, factor: int) -> View:
    """``view`` at 1/factor resolution (RGB area-averaged, depth = nearest valid, K scaled exactly).

    Sizes are ``floor(size / factor)``; a trailing partial block is dropped so
    every output pixel averages exactly factor x factor input pixels, and the
    intrinsics are those of the cropped-then-scaled image.
    """
    if factor == 1:
        return view
    if factor < 1:
        raise ValueError(f"downscale factor must be >= 1, got {factor}")
    w, h = int(view.width) // factor, int(view.height) // factor
    if w < 1 or h < 1:
        raise ValueError(f"cannot downscale a {view.width}x{view.height} view by {factor}")
    K = view.K.clone()
    # cropping keeps K; scaling maps pixel edge 0 -> 0 and factor -> 1, so cx' = cx / factor.
    K[0, :] = K[0, :] / factor
    K[1, :] = K[1, :] / factor
    K[2, :] = view.K[2, :]
    rgb = None
    if view.rgb is not None:
        x = view.rgb[: h * factor, : w * factor].permute(2, 0, 1)[None]
        rgb = F.avg_pool2d(x, factor).squeeze(0).permute(1, 2, 0).contiguous()
    depth = None
    if view.depth is not None:
        d = view.depth[: h * factor, : w * factor, 0]
        big = torch.finfo(d.dtype).max
        d = torch.where(d > 0, d, torch.full_like(d, big))
        d = -F.max_pool2d(-d[None, None], factor)[0, 0]
        depth = torch.where(d < big, d, torch.zeros_like(d))[..., None].contiguous()
    semantics = None
    if view.semantics is not None:
        semantics = view.semantics[: h * factor : factor, : w * factor : factor].contiguous()
    return View(view.name, view.viewmat, K, w, h, rgb=rgb, depth=depth, semantics=semantics)
