"""Image-quality metrics (no gradients): PSNR and SSIM on channels-last images in [0, 1]."""

from __future__ import annotations

import math

import torch

from langfield.train.losses import ssim as _ssim


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
def ssim(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean SSIM (Gaussian 11x11 window, sigma 1.5; the training loss' implementation)."""
    return float(_ssim(pred.clamp(0, 1), target.clamp(0, 1)).item())
