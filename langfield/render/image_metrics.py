"""Image comparison: SSIM (differentiable, used by the training loss) and PSNR / SSIM metrics.

Below ``train`` and ``eval`` so that both use one implementation (channels-last images in [0, 1]).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
# Standard SSIM stabilisers for a data range of 1.
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2


@functools.lru_cache(maxsize=8)
def _gaussian_1d(size: int, sigma: float, dtype: torch.dtype, device: str) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-(x**2) / (2.0 * sigma**2))
    return (g / g.sum()).to(dtype=dtype, device=device)


def _to_nchw(img: torch.Tensor) -> torch.Tensor:
    if img.dim() == 3:
        img = img[None]
    if img.dim() != 4:
        raise ValueError(f"expected [H, W, C] or [B, H, W, C], got {tuple(img.shape)}")
    return img.permute(0, 3, 1, 2)


def _blur(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' Gaussian filter of every channel of an NCHW tensor."""
    c = x.shape[1]
    k = window.numel()
    wx = window.view(1, 1, 1, k).expand(c, 1, 1, k)
    wy = window.view(1, 1, k, 1).expand(c, 1, k, 1)
    return F.conv2d(F.conv2d(x, wx, groups=c), wy, groups=c)


def ssim_map(pred: torch.Tensor, target: torch.Tensor, window_size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Per-pixel SSIM of channels-last images ``[H, W, C]`` or ``[B, H, W, C]`` in [0, 1].

    Gaussian window (11x11, sigma 1.5) applied separably with 'valid' borders
    (no padding), so the map is ``[B, C, H-10, W-10]``: padded borders would
    bias the statistics towards the zero padding.
    """
    if pred.shape != target.shape:
        raise ValueError(f"shape mismatch {tuple(pred.shape)} vs {tuple(target.shape)}")
    x, y = _to_nchw(pred), _to_nchw(target)
    if x.shape[-1] < window_size or x.shape[-2] < window_size:
        raise ValueError(f"image {tuple(x.shape[-2:])} smaller than the {window_size}px SSIM window")
    w = _gaussian_1d(window_size, sigma, x.dtype, str(x.device))
    mu_x, mu_y = _blur(x, w), _blur(y, w)
    sxx = _blur(x * x, w) - mu_x**2
    syy = _blur(y * y, w) - mu_y**2
    sxy = _blur(x * y, w) - mu_x * mu_y
    num = (2 * mu_x * mu_y + SSIM_C1) * (2 * sxy + SSIM_C2)
    den = (mu_x**2 + mu_y**2 + SSIM_C1) * (sxx + syy + SSIM_C2)
    return num / den


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean SSIM (differentiable scalar)."""
    return ssim_map(pred, target).mean()


@torch.no_grad()
def psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB for a data range of 1 (inf for identical images)."""
    if pred.shape != target.shape:
        raise ValueError(f"shape mismatch {tuple(pred.shape)} vs {tuple(target.shape)}")
    mse = torch.mean((pred.double().clamp(0, 1) - target.double().clamp(0, 1)) ** 2).item()
    if mse == 0:
        return math.inf
    return -10.0 * math.log10(mse)


@torch.no_grad()
def ssim_value(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean SSIM (Gaussian 11x11 window, sigma 1.5; as a float)."""
    return float(ssim(pred.clamp(0, 1), target.clamp(0, 1)).item())
