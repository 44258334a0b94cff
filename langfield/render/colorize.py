"""Depth images as colour: the one depth colormap (``langfield render`` depth PNGs and the viewer)."""

from __future__ import annotations

import numpy as np


def colorize_depth(depth: np.ndarray) -> np.ndarray:
    """[H, W] metres -> uint8 [H, W, 3] (turbo colormap, near = red; 0/unknown = black).

    Normalised between the 2nd and 98th percentile of valid depths so a few
    far outliers do not wash the image out.
    """
    import cv2

    valid = np.isfinite(depth) & (depth > 0)
    out = np.zeros((*depth.shape, 3), dtype=np.uint8)
    if not valid.any():
        return out
    lo, hi = np.percentile(depth[valid], [2, 98])
    t = np.clip((depth - lo) / max(hi - lo, 1e-9), 0, 1)
    u8 = ((1.0 - t) * 255).astype(np.uint8)
    bgr = cv2.applyColorMap(u8, cv2.COLORMAP_TURBO)
    out[valid] = bgr[..., ::-1][valid]
    return out
