"""One RGB-D frame as tensors at the resolutions tracking and mapping use."""

from __future__ import annotations

import numpy as np
import torch

from langfield.sources.rgbd import RGBDFrame
from langfield.train.resolution import downscale_view
from langfield.types import Intrinsics, View


def frame_view(frame: RGBDFrame, intrinsics: Intrinsics, c2w: np.ndarray, factor: int = 1) -> View:
    """``frame`` as a posed View (float RGB in [0, 1], depth [H, W, 1] metres) at 1/``factor`` resolution.

    Downscaling is ``train.resolution.downscale_view``: RGB area-averaged, depth the nearest valid
    sample (never a blend across an edge), K scaled exactly.
    """
    rgb = torch.from_numpy(frame.rgb).float().div_(255.0)
    depth = torch.from_numpy(np.nan_to_num(frame.depth, nan=0.0, posinf=0.0, neginf=0.0))[..., None]
    view = View(
        name=frame.name,
        viewmat=torch.from_numpy(np.linalg.inv(c2w)).float(),
        K=intrinsics.K(),
        width=intrinsics.width,
        height=intrinsics.height,
        rgb=rgb,
        depth=depth.clamp_min(0.0),
    )
    return downscale_view(view, factor)

