"""SSIM / PSNR / losses against known properties and a straightforward scipy implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import correlate1d

from langfield.eval.metrics import psnr, ssim
from langfield.train.losses import dssim_loss, l1_loss, masked_depth_l1, photometric_loss, ssim as ssim_loss


def _scipy_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Textbook SSIM: 11x11 Gaussian (sigma 1.5) statistics, valid region only, mean over pixels and channels."""
    x = np.arange(11) - 5.0
    w = np.exp(-(x**2) / (2 * 1.5**2))
    w /= w.sum()

    def blur(img):  # img [H, W]; 'valid' = drop the 5-pixel border the window overhangs
        out = correlate1d(correlate1d(img, w, axis=0, mode="constant"), w, axis=1, mode="constant")
        return out[5:-5, 5:-5]

    vals = []
    for c in range(a.shape[-1]):
        p, q = a[..., c].astype(np.float64), b[..., c].astype(np.float64)
        mp, mq = blur(p), blur(q)
        vp, vq, cov = blur(p * p) - mp**2, blur(q * q) - mq**2, blur(p * q) - mp * mq
        c1, c2 = 0.01**2, 0.03**2
        vals.append(((2 * mp * mq + c1) * (2 * cov + c2)) / ((mp**2 + mq**2 + c1) * (vp + vq + c2)))
    return float(np.mean(vals))


@pytest.fixture
def images():
    g = torch.Generator().manual_seed(0)
    base = torch.rand(40, 50, 3, generator=g)
    # Smooth it a bit so structure exists for SSIM to measure.
    base = torch.nn.functional.avg_pool2d(base.permute(2, 0, 1)[None], 3, 1, 1)[0].permute(1, 2, 0)
    noisy = (base + 0.1 * torch.randn(base.shape, generator=g)).clamp(0, 1)
    return base, noisy


def test_ssim_identity_is_one(images):
    x, _ = images
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-6)
    assert dssim_loss(x, x).item() == pytest.approx(0.0, abs=1e-6)


def test_ssim_decreases_with_noise(images):
    x, _ = images
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(x.shape, generator=g)
    values = [ssim(x, (x + s * noise).clamp(0, 1)) for s in (0.0, 0.02, 0.05, 0.1, 0.3)]
    assert all(a > b for a, b in zip(values, values[1:])), values


def test_ssim_matches_scipy(images):
    x, y = images
    assert ssim(x, y) == pytest.approx(_scipy_ssim(x.numpy(), y.numpy()), abs=1e-4)
    # batched input gives the mean over the batch
    batch = torch.stack([x, y])
    assert ssim(batch, torch.stack([y, y])) == pytest.approx((_scipy_ssim(x.numpy(), y.numpy()) + 1) / 2, abs=1e-4)


def test_ssim_is_differentiable(images):
    x, y = images
    p = y.clone().requires_grad_(True)
    loss = dssim_loss(p, x)
    loss.backward()
    assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    # a small step against the gradient improves SSIM
    with torch.no_grad():
        better = (p - 1e-1 * p.grad / p.grad.abs().max()).clamp(0, 1)
    assert ssim(better, x) > ssim(y, x)


def test_ssim_rejects_tiny_images():
    with pytest.raises(ValueError):
        ssim(torch.zeros(8, 8, 3), torch.zeros(8, 8, 3))


def test_psnr_known_values():
    x = torch.zeros(10, 10, 3)
    assert psnr(x, x) == math.inf
    # uniform error 0.1 -> MSE 0.01 -> 20 dB
    assert psnr(x + 0.1, x) == pytest.approx(20.0, abs=1e-6)
    y = x.clone()
    y[0, 0, 0] = 1.0  # MSE = 1/300
    assert psnr(y, x) == pytest.approx(10 * math.log10(300), abs=1e-6)


def test_photometric_and_depth_losses():
    x = torch.full((16, 16, 3), 0.5)
    y = torch.full((16, 16, 3), 0.7)
    assert l1_loss(x, y).item() == pytest.approx(0.2, abs=1e-6)
    # lambda 0 is plain L1; lambda 1 is plain D-SSIM
    assert photometric_loss(x, y, 0.0).item() == pytest.approx(0.2, abs=1e-6)
    assert photometric_loss(x, y, 1.0).item() == pytest.approx(dssim_loss(x, y).item(), abs=1e-7)
    pred = torch.full((4, 4, 1), 2.0, requires_grad=True)
    target = torch.zeros(4, 4, 1)
    target[:2] = 3.0  # half the pixels known, error 1 there; unknown pixels must not count
    loss = masked_depth_l1(pred, target)
    assert loss.item() == pytest.approx(1.0)
    loss.backward()
    assert (pred.grad[2:] == 0).all() and (pred.grad[:2] != 0).all()
    assert masked_depth_l1(pred, torch.zeros(4, 4, 1)).item() == 0.0
