"""Brute-force compositing: every Gaussian at every pixel, no tiles.

The independent check of the tiled path in ``reference.rasterize_to_pixels``:
it sorts each camera's Gaussians itself and walks them one at a time with the
plain sequential rule of docs/rasterizer.md (step 3), vectorised only over
pixels.  Slow (a Python loop over N), so for tests and small inputs only: it lives
under tests/ (loaded by tests/render/conftest.py as ``langfield_test_brute``; the
package never ships or imports it).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from langfield.render.reference import ALPHA_MAX, ALPHA_MIN, T_MIN


def compositing_order(depths: Tensor, radii: Tensor) -> Tensor:
    """Indices of one camera's visible Gaussians by float32 depth, ties by index (Note 5)."""
    visible = torch.nonzero(radii > 0).reshape(-1)
    key = depths.detach().to(torch.float32)[visible]
    order = torch.sort(key, stable=True).indices
    return visible[order]


def brute_force_render(
    means2d: Tensor,
    conics: Tensor,
    colors: Tensor,
    opacities: Tensor,
    radii: Tensor,
    depths: Tensor,
    width: int,
    height: int,
    backgrounds: Optional[Tensor] = None,
) -> tuple[Tensor, Tensor]:
    """Composite [C,N,...] projected Gaussians -> colours [C,H,W,ch], alphas [C,H,W,1].

    Same inputs as ``rasterize_to_pixels`` except that the order comes from
    ``depths [C,N]`` instead of tile lists.  Differentiable by autograd.
    """
    n_cams = means2d.shape[0]
    ch = colors.shape[-1]
    ys = torch.arange(height, device=means2d.device, dtype=means2d.dtype) + 0.5
    xs = torch.arange(width, device=means2d.device, dtype=means2d.dtype) + 0.5
    py, px = (g.reshape(-1) for g in torch.meshgrid(ys, xs, indexing="ij"))

    images, alphas = [], []
    for c in range(n_cams):
        out = colors.new_zeros(height * width, ch)
        T = colors.new_ones(height * width)
        stopped = torch.zeros(height * width, dtype=torch.bool, device=colors.device)
        for i in compositing_order(depths[c], radii[c]).tolist():
            dx = px - means2d[c, i, 0]
            dy = py - means2d[c, i, 1]
            r = radii[c, i]
            A, B, C = conics[c, i]
            sigma = 0.5 * (A * dx * dx + C * dy * dy) + B * dx * dy
            alpha = torch.clamp_max(opacities[c, i] * torch.exp(-sigma.clamp_min(0.0)), ALPHA_MAX)
            used = (dx.abs() <= r) & (dy.abs() <= r) & (sigma >= 0) & (alpha >= ALPHA_MIN) & ~stopped
            T_next = T * (1.0 - alpha)
            stop = used & (T_next < T_MIN)
            add = used & ~stop
            out = out + torch.where(add, T * alpha, torch.zeros_like(T))[:, None] * colors[c, i]
            T = torch.where(add, T_next, T)
            stopped = stopped | stop
        if backgrounds is not None:
            out = out + T[:, None] * backgrounds[c]
        images.append(out.reshape(height, width, ch))
        alphas.append((1.0 - T).reshape(height, width, 1))
    return torch.stack(images), torch.stack(alphas)
