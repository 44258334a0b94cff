"""Photometric and depth losses (differentiable, channels-last images)."""

from __future__ import annotations

import torch

from langfield.render.image_metrics import ssim

def l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error."""
    return (pred - target).abs().mean()


def dssim_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Structural dissimilarity ``1 - SSIM``."""
    return 1.0 - ssim(pred, target)


def photometric_loss(pred: torch.Tensor, target: torch.Tensor, ssim_lambda: float) -> torch.Tensor:
    """The 3DGS colour loss ``(1 - lambda) * L1 + lambda * (1 - SSIM)``."""
    loss = (1.0 - ssim_lambda) * l1_loss(pred, target)
    if ssim_lambda > 0:
        loss = loss + ssim_lambda * dssim_loss(pred, target)
    return loss


def masked_depth_l1(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean |pred - target| over pixels with known depth (target > 0, and ``valid`` if given).

    Returns 0 (still differentiable) when no pixel is valid.
    """
    mask = target > 0
    if valid is not None:
        mask = mask & valid
    n = mask.sum()
    if n == 0:
        return pred.sum() * 0.0
    return ((pred - target).abs() * mask).sum() / n
