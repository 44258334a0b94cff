"""Turning rendered non-colour channels into RGB: PCA of latent features, colourised depth."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

# Gaussians used to fit a PCA basis: plenty for 3 components, bounded for million-Gaussian scenes.
_PCA_SAMPLES = 100_000
# Pixels whose accumulated opacity is below this are background (shown black).
_MIN_ALPHA = 1e-3


def to_uint8(rgb: torch.Tensor | np.ndarray) -> np.ndarray:
    """[H, W, 3] float in [0, 1] -> uint8."""
    a = rgb.detach().float().cpu().numpy() if isinstance(rgb, torch.Tensor) else np.asarray(rgb, np.float32)
    return (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


@dataclass(frozen=True)
class PcaBasis:
    """Linear map from C-dim latents to 3 colour channels, fitted once per scene (and level).

    Fitting on the Gaussians rather than on a rendered view keeps the colours of
    a surface fixed while the camera moves.
    """

    mean: torch.Tensor
    """[C] mean latent of the fitted Gaussians."""
    components: torch.Tensor
    """[C, 3] principal directions (zero columns when C < 3)."""
    lo: torch.Tensor
    """[3] 1st percentile of the fitted projections (maps to colour 0)."""
    hi: torch.Tensor
    """[3] 99th percentile of the fitted projections (maps to colour 1)."""

    @staticmethod
    def fit(latents: torch.Tensor, weights: Optional[torch.Tensor] = None) -> "PcaBasis":
        """Fit on per-Gaussian latents [N, C]; ``weights`` [N] (opacities) drop near-transparent Gaussians.

        Deterministic: a fixed stride subsample and a sign convention per component
        (its largest-magnitude coefficient is positive), so two fits agree exactly.
        """
        x = latents.detach().float().cpu()
        if weights is not None:
            keep = weights.detach().cpu() > 0.1
            if int(keep.sum()) >= 3:
                x = x[keep]
        if x.shape[0] > _PCA_SAMPLES:
            x = x[:: int(np.ceil(x.shape[0] / _PCA_SAMPLES))]
        c = x.shape[1]
        mean = x.mean(dim=0) if len(x) else torch.zeros(c)
        centred = x - mean
        comps = torch.zeros(c, 3)
        if len(x) >= 2:
            # eigh of the C x C covariance: C is tiny (levels * latent_dim) so this is exact and cheap.
            _, vecs = torch.linalg.eigh(centred.T.double() @ centred.double())
            top = vecs.flip(-1)[:, : min(3, c)].float()
            idx = top.abs().argmax(dim=0)
            top = top * torch.sign(top[idx, torch.arange(top.shape[1])])[None]
            comps[:, : top.shape[1]] = top
        proj = centred @ comps if len(x) else torch.zeros(1, 3)
        lo = torch.quantile(proj, 0.01, dim=0)
        hi = torch.quantile(proj, 0.99, dim=0)
        return PcaBasis(mean, comps, lo, torch.maximum(hi, lo + 1e-6))

    def colorize(self, latents: torch.Tensor, alpha: torch.Tensor) -> np.ndarray:
        """Rendered latents [H, W, C] (alpha-composited sums) + alpha [H, W] -> uint8 [H, W, 3].

        Composited latents are ``alpha * mean latent``; dividing by alpha first
        colours a surface the same whatever its coverage, then alpha fades the
        result into the black background.
        """
        a = alpha.detach().float().cpu()[..., None]
        lat = latents.detach().float().cpu() / a.clamp_min(_MIN_ALPHA)
        t = ((lat - self.mean) @ self.components - self.lo) / (self.hi - self.lo)
        rgb = t.clamp(0, 1) * a.clamp(0, 1)
        return to_uint8(rgb)


def colorize_depth(depth: torch.Tensor, alpha: torch.Tensor) -> np.ndarray:
    """[H, W] camera depth + alpha -> uint8 [H, W, 3]: turbo over the view's near..far, near = red, empty = black.

    The rule of ``langfield render``'s depth PNGs (``langfield.render.colorize``), so both show depth alike.
    """
    from langfield.render.colorize import colorize_depth as _colorize

    d = depth.detach().float().cpu().numpy().copy()
    d[alpha.detach().float().cpu().numpy() < 0.05] = 0.0  # nearly empty pixels carry noisy depth
    return _colorize(d)
