"""Turn frames of a Capture into ``View``s: world-to-camera matrix, K and pixel tensors."""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np
import torch

from langfield.sources.conventions import invert_rigid
from langfield.sources.io import load_depth, load_rgb, load_semantics
from langfield.types import Capture, DataError, View


def load_views(
    capture: Capture,
    ids: Sequence[int],
    *,
    downscale: int = 1,
    device: Union[str, torch.device] = "cpu",
) -> list[View]:
    """Load frames ``ids`` of ``capture`` as Views at ``intrinsics.scaled(downscale)`` resolution.

    ``viewmat`` is the rigid inverse of the frame's c2w (float32 4x4, OpenCV);
    ``K`` is the scaled pinhole matrix.  Images of cameras with non-zero
    distortion are UNDISTORTED on load to that same K (``io.undistort``), so
    a view is always an ideal pinhole camera.  Depth is ``[H, W, 1]`` metres
    (0 = unknown), semantics ``[H, W]`` int64 ids; both None when absent.
    """
    views: list[View] = []
    n = len(capture.frames)
    for i in ids:
        if not 0 <= int(i) < n:
            raise DataError(f"{capture.root}: frame index {i} out of range (capture has {n} frames)")
        frame = capture.frames[int(i)]
        if frame.c2w is None:
            raise DataError(f"{frame.image_path}: frame has no pose (estimate poses with a frontend first)")
        k = frame.intrinsics.scaled(downscale)
        rgb = load_rgb(frame, downscale)
        depth = load_depth(frame, downscale)
        sem = load_semantics(frame, downscale)
        views.append(
            View(
                name=frame.name,
                viewmat=torch.from_numpy(invert_rigid(frame.c2w).astype(np.float32)).to(device),
                K=k.K(torch.float32).to(device),
                width=k.width,
                height=k.height,
                rgb=torch.from_numpy(rgb).to(device),
                depth=torch.from_numpy(depth[:, :, None]).to(device) if depth is not None else None,
                semantics=torch.from_numpy(sem).to(device) if sem is not None else None,
            )
        )
    return views
