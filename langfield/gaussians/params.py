"""Gaussian parameters, stored pre-activation, and the one function that activates them.

Parameters live in a ``torch.nn.ParameterDict`` keyed by name so that a
densification strategy can resize every tensor (and its optimizer state)
uniformly, the way gsplat's strategies do:

=========== ============ =========================================
key         shape        stored as
=========== ============ =========================================
means       [N, 3]       world position
scales      [N, 3]       log of the standard deviations
quats       [N, 4]       unnormalised quaternion (w, x, y, z)
opacities   [N]          logit of opacity
sh0         [N, 1, 3]    DC spherical-harmonic coefficient
shN         [N, K-1, 3]  higher SH coefficients, K = (max_degree+1)^2
latents     [N, D]       optional language latents (all levels concatenated)
=========== ============ =========================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from langfield.geometry import SH_C0

PARAM_KEYS = ("means", "scales", "quats", "opacities", "sh0", "shN")


def rgb_to_sh0(rgb: torch.Tensor) -> torch.Tensor:
    """Colour in [0, 1] -> DC coefficient such that SH eval + 0.5 gives the colour back."""
    return (rgb - 0.5) / SH_C0


def sh0_to_rgb(sh0: torch.Tensor) -> torch.Tensor:
    """Inverse of ``rgb_to_sh0``."""
    return sh0 * SH_C0 + 0.5


def num_sh_bases(degree: int) -> int:
    return (degree + 1) ** 2


def create_params(
    means: torch.Tensor,
    log_scales: torch.Tensor,
    quats: torch.Tensor,
    opacity_logits: torch.Tensor,
    sh0: torch.Tensor,
    shN: torch.Tensor,
    latents: Optional[torch.Tensor] = None,
) -> torch.nn.ParameterDict:
    """Wrap pre-activation tensors as trainable parameters (shapes in the module docstring)."""
    n = means.shape[0]
    tensors = {
        "means": means,
        "scales": log_scales,
        "quats": quats,
        "opacities": opacity_logits,
        "sh0": sh0,
        "shN": shN,
    }
    if latents is not None:
        tensors["latents"] = latents
    for key, t in tensors.items():
        if t.shape[0] != n:
            raise ValueError(f"parameter {key!r} has {t.shape[0]} rows, expected {n}")
    return torch.nn.ParameterDict(
        {k: torch.nn.Parameter(v.detach().clone().float().contiguous()) for k, v in tensors.items()}
    )


def sh_degree_of(params: torch.nn.ParameterDict) -> int:
    """Largest SH degree the stored coefficients support."""
    k = 1 + params["shN"].shape[1]
    degree = int(round(k**0.5)) - 1
    if num_sh_bases(degree) != k:
        raise ValueError(f"shN holds {k - 1} coefficients, not (d+1)^2-1 for any degree")
    return degree


@dataclass
class ActivatedGaussians:
    """Render-ready values (the rasterizer takes these)."""

    means: torch.Tensor
    """[N, 3] world positions."""
    quats: torch.Tensor
    """[N, 4] unit quaternions (w, x, y, z)."""
    scales: torch.Tensor
    """[N, 3] positive standard deviations."""
    opacities: torch.Tensor
    """[N] opacities in (0, 1)."""
    sh: torch.Tensor
    """[N, K, 3] SH coefficients (DC first)."""
    latents: Optional[torch.Tensor] = None
    """[N, D] language latents, or None."""


def activate(params: torch.nn.ParameterDict) -> ActivatedGaussians:
    """The single place where stored parameters become render-ready values."""
    quats = params["quats"]
    return ActivatedGaussians(
        means=params["means"],
        quats=quats / quats.norm(dim=-1, keepdim=True).clamp_min(1e-12),
        scales=torch.exp(params["scales"]),
        opacities=torch.sigmoid(params["opacities"]),
        sh=torch.cat([params["sh0"], params["shN"]], dim=1),
        latents=params["latents"] if "latents" in params else None,
    )
