"""Initial Gaussians: from a point cloud, from posed depth maps, or at random.

Every initialiser returns a ``torch.nn.ParameterDict`` built by
``params.create_params`` (pre-activation values, see ``params.py``) and is
deterministic: any sampling takes an explicit ``seed``.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import numpy as np
import torch

from langfield.gaussians.knn import knn_distances
from langfield.gaussians.params import create_params, num_sh_bases, rgb_to_sh0
from langfield.types import DataError, View

ArrayLike = Union[torch.Tensor, np.ndarray]

# Neighbours averaged for the initial size, as in 3DGS.
_KNN = 3
# Smallest initial standard deviation, so duplicated points do not get log(0).
_MIN_SCALE = 1e-7


def _as_tensor(x: ArrayLike, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    if isinstance(x, torch.Tensor):
        return x
    raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")


def _colors_to_unit(colors: torch.Tensor) -> torch.Tensor:
    """Integer [0, 255] or float [0, 1] colours -> float32 in [0, 1]."""
    if colors.is_floating_point():
        return colors.to(torch.float32).clamp(0.0, 1.0)
    if colors.dtype == torch.bool or colors.is_complex():
        raise ValueError(f"colors must be integer (0..255) or floating point (0..1), got {colors.dtype}")
    return colors.to(torch.float32).clamp(0.0, 255.0) / 255.0


def init_from_points(
    points: ArrayLike,
    colors: Optional[ArrayLike] = None,
    *,
    sh_degree: int = 3,
    init_opacity: float = 0.1,
    init_scale: float = 1.0,
    latent_dim: int = 0,
) -> torch.nn.ParameterDict:
    """One isotropic Gaussian per point, sized by the local point spacing.

    Args:
        points: [P, 3] float world positions (tensor or array; the result lives
            on the tensor's device, CPU for arrays).
        colors: [P, 3] integer (0..255) or float (0..1) colours; None -> mid grey.
        sh_degree: SH degree the parameters can hold (0..3); higher bands start at 0.
        init_opacity: initial opacity in (0, 1), stored as its logit.
        init_scale: multiplier on the mean distance to the 3 nearest neighbours.
        latent_dim: width D of the zero-initialised language latents; 0 for none.

    Returns:
        ParameterDict with means, scales (log), quats (identity), opacities
        (logit), sh0, shN and, when ``latent_dim > 0``, latents.
    """
    pts = _as_tensor(points, "points")
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points must be [P, 3], got {tuple(pts.shape)}")
    if pts.shape[0] == 0:
        raise DataError("cannot initialise Gaussians from an empty point set")
    if not 0 <= sh_degree <= 3:
        raise ValueError(f"sh_degree must be in 0..3, got {sh_degree}")
    if not 0.0 < init_opacity < 1.0:
        raise ValueError(f"init_opacity must be in (0, 1), got {init_opacity}")
    if init_scale <= 0:
        raise ValueError(f"init_scale must be positive, got {init_scale}")
    if latent_dim < 0:
        raise ValueError(f"latent_dim must be >= 0, got {latent_dim}")
    pts = pts.to(torch.float32)
    device = pts.device
    n = pts.shape[0]
    if not torch.isfinite(pts).all():
        raise DataError("point set contains non-finite coordinates")

    if colors is None:
        rgb = torch.full((n, 3), 0.5, device=device)
    else:
        rgb = _colors_to_unit(_as_tensor(colors, "colors")).to(device)
        if rgb.shape != (n, 3):
            raise ValueError(f"colors must be [{n}, 3], got {tuple(rgb.shape)}")

    k = min(_KNN, n - 1)
    if k >= 1:
        dist = knn_distances(pts, k).mean(dim=1)
    else:
        # A single point has no spacing to measure; unit size is as good a guess as any.
        dist = torch.ones(n, device=device)
    log_scale = torch.log(dist.clamp_min(_MIN_SCALE) * init_scale)
    quats = torch.zeros(n, 4, device=device)
    quats[:, 0] = 1.0
    opacity_logit = torch.full((n,), math.log(init_opacity / (1.0 - init_opacity)), device=device)
    latents = torch.zeros(n, latent_dim, device=device) if latent_dim > 0 else None
    return create_params(
        means=pts,
        log_scales=log_scale[:, None].expand(n, 3),
        quats=quats,
        opacity_logits=opacity_logit,
        sh0=rgb_to_sh0(rgb)[:, None, :],
        shN=torch.zeros(n, num_sh_bases(sh_degree) - 1, 3, device=device),
        latents=latents,
    )


def backproject_depth(view: View, *, stride: int = 1) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """World points (and their RGB) of a view's valid depth pixels.

    Pixel (u, v) is taken at its centre (u + 0.5, v + 0.5); depth is the camera
    z (OpenCV axes), so ``X_cam = ((u + 0.5 - cx) / fx * z, (v + 0.5 - cy) / fy * z, z)``.
    Pixels with depth <= 0 or non-finite are skipped.

    Returns:
        points [M, 3] float32 and colours [M, 3] float32 in [0, 1] (None when
        the view has no RGB), on the view's device, in row-major pixel order.
    """
    if view.depth is None:
        raise DataError(f"view {view.name}: no depth map to back-project")
    depth = view.depth
    if depth.ndim == 3 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    if depth.shape != (view.height, view.width):
        raise DataError(
            f"view {view.name}: depth is {tuple(view.depth.shape)}, expected [{view.height}, {view.width}, 1]"
        )
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    device = depth.device
    vs = torch.arange(0, view.height, stride, device=device)
    us = torch.arange(0, view.width, stride, device=device)
    z = depth[vs][:, us].to(torch.float32)
    vv, uu = torch.meshgrid(vs.to(torch.float32), us.to(torch.float32), indexing="ij")
    valid = torch.isfinite(z) & (z > 0)
    K = view.K.to(device=device, dtype=torch.float32)
    z = z[valid]
    x = (uu[valid] + 0.5 - K[0, 2]) / K[0, 0] * z
    y = (vv[valid] + 0.5 - K[1, 2]) / K[1, 1] * z
    cam = torch.stack([x, y, z], dim=-1)
    # c2w = viewmat^-1; done in float64 so a far-off translation stays exact.
    c2w = torch.linalg.inv(view.viewmat.to(device=device, dtype=torch.float64))
    world = (cam.double() @ c2w[:3, :3].T + c2w[:3, 3]).to(torch.float32)
    rgb = None
    if view.rgb is not None:
        if tuple(view.rgb.shape[:2]) != (view.height, view.width):
            raise DataError(f"view {view.name}: rgb is {tuple(view.rgb.shape)}, expected [{view.height}, {view.width}, 3]")
        rgb = view.rgb[vs][:, us][valid].to(device=device, dtype=torch.float32)
    return world, rgb


def init_from_depth(
    views: Sequence[View],
    *,
    max_points: int = 100_000,
    stride: int = 4,
    seed: int = 0,
    sh_degree: int = 3,
    init_opacity: float = 0.1,
    init_scale: float = 1.0,
    latent_dim: int = 0,
) -> torch.nn.ParameterDict:
    """Gaussians at the back-projected depth pixels of posed views.

    Every ``stride``-th pixel (in u and v) with valid depth of every view that
    has depth becomes a candidate point coloured by its RGB (grey when a view
    has no RGB).  When there are more than ``max_points`` candidates a
    ``seed``-determined random subset is kept (in candidate order).  The rest
    is ``init_from_points`` (see there for the remaining arguments).
    """
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    with_depth = [v for v in views if v.depth is not None]
    if not with_depth:
        raise DataError("init_from_depth: none of the given views has a depth map")
    all_pts: list[torch.Tensor] = []
    all_rgb: list[torch.Tensor] = []
    for view in with_depth:
        pts, rgb = backproject_depth(view, stride=stride)
        all_pts.append(pts)
        all_rgb.append(rgb if rgb is not None else torch.full_like(pts, 0.5))
    device = all_pts[0].device
    points = torch.cat([p.to(device) for p in all_pts])
    colors = torch.cat([c.to(device) for c in all_rgb])
    if points.shape[0] == 0:
        raise DataError("init_from_depth: no pixel with valid (positive, finite) depth in any view")
    if points.shape[0] > max_points:
        gen = torch.Generator().manual_seed(seed)
        keep = torch.randperm(points.shape[0], generator=gen)[:max_points].sort().values.to(device)
        points, colors = points[keep], colors[keep]
    return init_from_points(
        points,
        colors,
        sh_degree=sh_degree,
        init_opacity=init_opacity,
        init_scale=init_scale,
        latent_dim=latent_dim,
    )


def init_random(
    n: int,
    bounds_min: Sequence[float],
    bounds_max: Sequence[float],
    *,
    seed: int,
    sh_degree: int = 3,
    init_opacity: float = 0.1,
    init_scale: float = 1.0,
    latent_dim: int = 0,
    device: Union[str, torch.device] = "cpu",
) -> torch.nn.ParameterDict:
    """``n`` Gaussians uniform in the axis-aligned box, with uniform random colours.

    The same ``seed`` gives the same Gaussians on any device (sampling happens
    on the CPU).  See ``init_from_points`` for the remaining arguments.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    lo = torch.as_tensor(bounds_min, dtype=torch.float32).reshape(-1)
    hi = torch.as_tensor(bounds_max, dtype=torch.float32).reshape(-1)
    if lo.shape != (3,) or hi.shape != (3,):
        raise ValueError("bounds_min and bounds_max must have 3 values each")
    if not bool((hi > lo).all()):
        raise ValueError(f"bounds_max {hi.tolist()} must exceed bounds_min {lo.tolist()} on every axis")
    gen = torch.Generator().manual_seed(seed)
    points = lo + (hi - lo) * torch.rand(n, 3, generator=gen)
    colors = torch.rand(n, 3, generator=gen)
    return init_from_points(
        points.to(device),
        colors.to(device),
        sh_degree=sh_degree,
        init_opacity=init_opacity,
        init_scale=init_scale,
        latent_dim=latent_dim,
    )
