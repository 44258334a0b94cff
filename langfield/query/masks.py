"""Relevancy maps -> [0, 1] maps, binary masks and heatmap overlay PNGs.

Mask rule (LangSplat's evaluation, ``evaluate_iou_loc.py``), for one relevancy
map ``r`` [H, W] of the chosen level:

1. ``s = 0.5 * (r + boxfilter_k(r))`` with k = ``QueryConfig.smoothing_kernel`` (30);
2. min-max normalise ``s`` to ``n`` in [0, 1], then stretch the upper half:
   ``v = clip(2 n - 1, 0, 1)`` -- pixels in the lower half of the map's own
   range become 0 ("background");
3. ``mask = v > QueryConfig.mask_threshold`` (0.4, i.e. ``n > 0.7``);
4. majority vote over a ``mask_majority`` (7) square window clipped at the
   border (a tie keeps the pixel out), removing speckles -- and any object
   thinner than about half the window, so lower it for small maps (the CLI
   scales 7 px at a 730 px short side to the render, as it does the box filter).

Because step 2 normalises per map, some pixels are always selected even for an
absent object; callers wanting an absolute rule can threshold the raw LERF
relevancy at 0.5 instead (``absolute_mask``).

The display rule (LERF's viewer, also used by LangSplat's composited images):
``clip(r - 0.5, 0, 1) / max`` -- only pixels where the positive beats every
negative get colour.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from langfield.io import atomic_write_png
from langfield.query.levels import smooth_relevancy
from langfield.query.relevancy import QueryConfig

NormalizeMode = Literal["langsplat", "lerf", "minmax"]

_EPS = 1e-9


def normalize_relevancy(rel: torch.Tensor, mode: NormalizeMode = "langsplat") -> torch.Tensor:
    """Map a relevancy map [..., H, W] (normalised per map over its last two dims) to [0, 1].

    * ``langsplat``: ``clip(2 * minmax(r) - 1, 0, 1)``;
    * ``lerf``: ``clip(r - 0.5, 0, 1) / max`` (all-zero when nothing beats the negatives);
    * ``minmax``: ``(r - min) / (max - min)``.
    """
    r = rel.float()
    flat = r.flatten(-2)
    lo = flat.min(dim=-1).values[..., None, None]
    hi = flat.max(dim=-1).values[..., None, None]
    if mode == "minmax":
        return (r - lo) / (hi - lo + _EPS)
    if mode == "langsplat":
        n = (r - lo) / (hi - lo + _EPS)
        return (2.0 * n - 1.0).clamp(0.0, 1.0)
    if mode == "lerf":
        p = (r - 0.5).clamp(0.0, 1.0)
        return p / (p.flatten(-2).max(dim=-1).values[..., None, None] + 1e-6)
    raise ValueError(f"unknown normalisation mode {mode!r}")


def majority_filter(mask: torch.Tensor, size: int) -> torch.Tensor:
    """Each pixel becomes the majority of its ``size`` x ``size`` window (clipped at borders; ties -> False)."""
    if size <= 1:
        return mask.bool()
    h, w = mask.shape[-2:]
    lead = mask.shape[:-2]
    x = mask.reshape(-1, 1, h, w).float()
    before, after = size // 2, (size - 1) // 2
    ones = F.avg_pool2d(F.pad(x, (before, after, before, after)), size, stride=1) * size * size
    valid = F.avg_pool2d(F.pad(torch.ones_like(x), (before, after, before, after)), size, stride=1) * size * size
    return (ones > 0.5 * valid + 1e-4).reshape(*lead, h, w)


def relevancy_mask(rel: torch.Tensor, config: Optional[QueryConfig] = None) -> torch.Tensor:
    """Binary mask [..., H, W] of a relevancy map by the module's documented LangSplat rule."""
    config = config or QueryConfig()
    smoothed = smooth_relevancy(rel, config.smoothing_kernel, raw_weight=0.5)
    v = normalize_relevancy(smoothed, "langsplat")
    return majority_filter(v > config.mask_threshold, config.mask_majority)


def absolute_mask(rel: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Pixels whose raw LERF relevancy exceeds ``threshold`` (0.5: the positive beats every negative)."""
    return rel > threshold


def turbo_colormap(x: np.ndarray) -> np.ndarray:
    """Turbo-like colour of values in [0, 1]: [...] -> [..., 3] float32 in [0, 1].

    Evaluates the published degree-5 polynomial fit of Google's Turbo map
    (good to about 1/255), so no colormap table or matplotlib is needed.
    """
    t = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
    powers = np.stack([np.ones_like(t), t, t**2, t**3, t**4, t**5], axis=-1)
    coeffs = np.array(
        [
            [0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943],
            [0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604],
            [0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973],
        ]
    )
    return np.clip(powers @ coeffs.T, 0.0, 1.0).astype(np.float32)


def _to_float_rgb(rgb: Union[np.ndarray, torch.Tensor]) -> np.ndarray:
    a = rgb.detach().cpu().numpy() if isinstance(rgb, torch.Tensor) else np.asarray(rgb)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"expected an [H, W, 3] image, got {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    return np.clip(a.astype(np.float32), 0.0, 1.0)


def heatmap_overlay(
    rgb: Union[np.ndarray, torch.Tensor],
    value: Union[np.ndarray, torch.Tensor],
    opacity: float = 0.6,
    dim: float = 0.3,
) -> np.ndarray:
    """Colour ``value`` [H, W] in [0, 1] (e.g. ``normalize_relevancy(r, "lerf")``) over ``rgb``.

    Pixels with value > 0 get ``(1 - opacity) * rgb + opacity * turbo(value)``;
    the rest are shown as ``dim * rgb`` so the relevant region stands out.
    Returns [H, W, 3] uint8.
    """
    base = _to_float_rgb(rgb)
    v = value.detach().float().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value, np.float32)
    if v.shape != base.shape[:2]:
        raise ValueError(f"value map {v.shape} does not match image {base.shape[:2]}")
    hot = v > 0
    out = base * dim
    blended = (1.0 - opacity) * base + opacity * turbo_colormap(v)
    out[hot] = blended[hot]
    return (np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def save_heatmap_png(
    path: Union[str, Path],
    rgb: Union[np.ndarray, torch.Tensor],
    rel: torch.Tensor,
    mode: NormalizeMode = "lerf",
    opacity: float = 0.6,
) -> Path:
    """Normalise raw relevancy ``rel`` [H, W] with ``mode`` and write the overlay PNG atomically."""
    return atomic_write_png(path, heatmap_overlay(rgb, normalize_relevancy(rel, mode), opacity=opacity))


def save_mask_png(path: Union[str, Path], mask: torch.Tensor) -> Path:
    """Write a boolean mask [H, W] as a 0/255 greyscale PNG, atomically."""
    m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    return atomic_write_png(path, (m.astype(bool) * 255).astype(np.uint8))
