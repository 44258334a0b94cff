"""A 3D selection drawn through the rasterizer: per-Gaussian highlight channels, composited with depth.

The selected Gaussians carry four extra channels -- a 1 (their weight) and their tint colour --
that are composited in the frame's own rasterizer pass. A pixel then knows how much of its
colour came from selected Gaussians *in front of everything else*: an unselected surface in
front absorbs the weight of what lies behind it, so a selected chair behind the table stays
hidden (a point cloud drawn over the image cannot do that). "Selection only" renders the
selected Gaussians alone (``SceneField.render(subset=...)``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Optional

import torch

HIGHLIGHT_STRENGTH = 0.75
"""How far a fully selected pixel moves from its colour towards the tint (0 = invisible, 1 = tint only)."""
MIN_WEIGHT = 1.0 / 512.0
"""Pixels whose composited selection weight is below this stay exactly as rendered: the change there would
be under half a grey level (``HIGHLIGHT_STRENGTH * MIN_WEIGHT * 255 < 0.5``), so an opaque occluder's pixels
are bit-identical with and without a selection behind it."""
CHANNELS = 4
"""Extra channels a highlight adds to the pass: weight, then tint RGB premultiplied by the weight."""

_keys = itertools.count(1)


@dataclass(frozen=True, eq=False)
class Highlight:
    """Selected Gaussians and their tint; identity (``key``) is what frame caches see."""

    mask: torch.Tensor
    """[N] bool: the selected Gaussians (``LanguageField.select``'s mask)."""
    colors: torch.Tensor
    """[N, 3] float tint in [0, 1] of each Gaussian (only selected rows are used)."""
    version: int
    """``SceneField.version`` of the Gaussians the mask indexes (a live update makes it stale)."""
    key: int = field(default_factory=lambda: next(_keys))
    """Unique per highlight: part of the frame cache key."""
    _channels: list = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        n = self.mask.shape[0]
        if self.mask.dtype != torch.bool or self.mask.ndim != 1:
            raise ValueError(f"highlight mask must be [N] bool, got {tuple(self.mask.shape)} {self.mask.dtype}")
        if tuple(self.colors.shape) != (n, 3):
            raise ValueError(f"highlight colours must be [N={n}, 3], got {tuple(self.colors.shape)}")

    @property
    def count(self) -> int:
        return int(self.mask.sum())

    def channels(self, device: torch.device | str) -> torch.Tensor:
        """[N, 4] float32 per-Gaussian channels to composite: (selected, selected * tint), built once."""
        if not self._channels or self._channels[0].device != torch.device(device):
            w = self.mask.to(device=device, dtype=torch.float32)[:, None]
            self._channels[:] = [torch.cat([w, w * self.colors.to(device=device, dtype=torch.float32)], dim=1)]
        return self._channels[0]


def apply_highlight(image: torch.Tensor, composited: torch.Tensor,
                    strength: float = HIGHLIGHT_STRENGTH) -> torch.Tensor:
    """Tint [H, W, 3] ``image`` (float in [0, 1]) by the composited highlight channels [H, W, 4].

    Per pixel: ``image * (1 - s * w) + s * tint`` where ``w`` is the selected Gaussians' share of the
    pixel and ``tint`` their composited colour (so a fully selected pixel is ``(1 - s) image + s tint``).
    Pixels with ``w < MIN_WEIGHT`` are returned unchanged.
    """
    w = composited[..., :1].float().clamp(0.0, 1.0)
    tint = composited[..., 1:4].float().clamp_min(0.0)
    out = (image.float() * (1.0 - strength * w) + strength * tint).clamp(0.0, 1.0)
    return torch.where(w >= MIN_WEIGHT, out, image.float())


def tint_colors(relevancy: torch.Tensor, mask: torch.Tensor, colormap: Optional[str] = None) -> torch.Tensor:
    """[N, 3] tint of each Gaussian: its relevancy, min..max over the selected ones, through ``colormap``."""
    from langfield.viewer.colors import colormap_lut

    rel = relevancy.detach().float()
    sel = rel[mask] if bool(mask.any()) else rel.new_zeros(1)
    lo, hi = sel.min(), sel.max()
    t = ((rel - lo) / (hi - lo).clamp_min(1e-9)).clamp(0.0, 1.0)
    lut = colormap_lut(colormap or "turbo", rel.device)
    return lut[(t * (lut.shape[0] - 1) + 0.5).long()]
