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
    """[H, W, 3] float in [0, 1] -> uint8 (a tensor is converted on its device: a quarter of the bytes to copy)."""
    if isinstance(rgb, torch.Tensor):
        return (rgb.detach().float().clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()
    a = np.asarray(rgb, np.float32)
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


# --------------------------------------------------------------------------- relevancy colours

COLORMAPS: tuple[str, ...] = ("turbo", "hot", "gray")
"""Colormaps of the relevancy heatmap (turbo is ``langfield query``'s)."""
LUT_SIZE = 1024
"""Entries of a colormap table: turbo's steepest slope moves under half a grey level per entry."""
OVERLAY_OPACITY = 0.6
"""Heatmap weight over RGB on relevant pixels (``langfield.query.heatmap_overlay``'s default)."""
OVERLAY_DIM = 0.3
"""Brightness of the RGB on the other pixels (``heatmap_overlay``'s default)."""


def _colormap(name: str, t: np.ndarray) -> np.ndarray:
    """[T] in [0, 1] -> [T, 3] float32 colours of ``name``."""
    from langfield.query import turbo_colormap

    if name == "turbo":
        return turbo_colormap(t)
    if name == "hot":  # black -> red -> yellow -> white
        return np.clip(np.stack([3 * t, 3 * t - 1, 3 * t - 2], axis=-1), 0, 1).astype(np.float32)
    if name == "gray":
        return np.repeat(t[:, None], 3, axis=1).astype(np.float32)
    raise ValueError(f"unknown colormap {name!r} (one of {', '.join(COLORMAPS)})")


_LUTS: dict[tuple[str, str], torch.Tensor] = {}


def colormap_lut(name: str, device: torch.device | str = "cpu") -> torch.Tensor:
    """[LUT_SIZE, 3] float32 table of colormap ``name`` on ``device`` (built once): index round(v * (LUT_SIZE-1))."""
    key = (name, str(torch.device(device)))
    if key not in _LUTS:
        t = np.linspace(0.0, 1.0, LUT_SIZE)
        _LUTS[key] = torch.from_numpy(_colormap(name, t)).to(device)
    return _LUTS[key]


@dataclass(frozen=True)
class RelevancyStyle:
    """How raw relevancy becomes heatmap colours."""

    colormap: str = "turbo"
    """One of ``COLORMAPS``."""
    range: Optional[tuple[float, float]] = None
    """Raw LERF relevancy (lo, hi) mapped to the colormap's ends, the same in every view; None = LERF's
    per-view rule (``normalize_relevancy(r, "lerf")``: 0.5 .. the view's maximum)."""

    def __post_init__(self) -> None:
        if self.colormap not in COLORMAPS:
            raise ValueError(f"unknown colormap {self.colormap!r} (one of {', '.join(COLORMAPS)})")
        if self.range is not None and not self.range[0] < self.range[1]:
            raise ValueError(f"relevancy range must have lo < hi, got {self.range}")


def relevancy_overlay(rgb: torch.Tensor, rel: torch.Tensor, style: RelevancyStyle = RelevancyStyle()) -> np.ndarray:
    """Heatmap of raw relevancy ``rel`` [H, W] over ``rgb`` [H, W, 3] in [0, 1] -> uint8 [H, W, 3].

    ``langfield.query.heatmap_overlay``'s rule (relevant pixels ``0.4 rgb + 0.6 colour``, the rest
    ``0.3 rgb``; with the default style the same image to within one grey level), computed in torch
    on the render's device with a colormap table: no per-pixel polynomial, no float64 copies.
    """
    from langfield.query import normalize_relevancy

    r = rel.float()
    if style.range is None:
        v = normalize_relevancy(r, "lerf")
    else:
        lo, hi = style.range
        v = ((r - lo) / (hi - lo)).clamp(0.0, 1.0)
    hot = v > 0
    # per pixel: base * (0.4 if hot else 0.3) + (0.6 * colour if hot else 0); the cold pixels index an
    # extra all-zero row of the table, so every step is a 2D op or one [H, W, 3] multiply-add
    idx = torch.where(hot, (v * (LUT_SIZE - 1) + 0.5).long(), LUT_SIZE)
    table = _overlay_table(style.colormap, r.device)
    colour = table.index_select(0, idx.reshape(-1)).reshape(*idx.shape, 3)
    keep = torch.where(hot, 1.0 - OVERLAY_OPACITY, OVERLAY_DIM)[..., None]
    out = rgb.float().clamp(0.0, 1.0) * keep + colour
    return to_uint8(out)


def _overlay_table(name: str, device: torch.device | str) -> torch.Tensor:
    """[LUT_SIZE + 1, 3]: ``OVERLAY_OPACITY`` times the colormap, then a zero row for pixels left cold."""
    key = (f"overlay:{name}", str(torch.device(device)))
    if key not in _LUTS:
        lut = colormap_lut(name, device)
        _LUTS[key] = torch.cat([OVERLAY_OPACITY * lut, lut.new_zeros(1, 3)])
    return _LUTS[key]
