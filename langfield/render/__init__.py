"""langfield.render: rasterize activated Gaussians into RGB, depth and feature images.

``render(...)`` is the one public entry point; the ops it runs (docs/rasterizer.md)
come from the backend chosen in ``backend.py``.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from langfield.render.backend import default_device, get_ops, resolve_backend
from langfield.types import RenderOutput

__all__ = ["render", "resolve_backend", "get_ops", "default_device"]

# Alpha below which a pixel's expected depth is reported as 0 (docs, step 4).
DEPTH_ALPHA_MIN = 1e-6


def _check_shape(name: str, t: Tensor, shape: tuple) -> None:
    """Raise ValueError unless ``t`` matches ``shape`` (ints fixed, None free)."""
    if not isinstance(t, Tensor):
        raise ValueError(f"render: {name} must be a torch.Tensor, got {type(t).__name__}")
    ok = t.dim() == len(shape) and all(s is None or s == d for s, d in zip(shape, t.shape))
    if not ok:
        want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"render: {name} must have shape {want}, got {list(t.shape)}")


def _validate(
    means: Tensor,
    tensors: dict[str, Optional[Tensor]],
) -> None:
    """Every given tensor is floating point and on means' device."""
    if not means.is_floating_point():
        raise ValueError(f"render: means must be a floating-point tensor, got {means.dtype}")
    for name, t in tensors.items():
        if t is None:
            continue
        if not t.is_floating_point():
            raise ValueError(f"render: {name} must be a floating-point tensor, got {t.dtype}")
        if t.device != means.device:
            raise ValueError(f"render: {name} is on {t.device} but means is on {means.device}")


def camera_centres(viewmats: Tensor) -> Tensor:
    """World positions [C, 3] of the cameras of world->camera ``viewmats [C, 4, 4]``."""
    rot = viewmats[:, :3, :3]
    trans = viewmats[:, :3, 3]
    return -(rot.transpose(-1, -2) @ trans[..., None])[..., 0]


def render(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    *,
    sh_coeffs: Optional[Tensor] = None,
    sh_degree: Optional[int] = None,
    colors: Optional[Tensor] = None,
    features: Optional[Tensor] = None,
    backgrounds: Optional[Tensor] = None,
    render_depth: bool = True,
    near: float = 0.01,
    far: float = 1e10,
    eps2d: float = 0.3,
    tile_size: int = 16,
    backend: str = "auto",
    absgrad: bool = False,
) -> RenderOutput:
    """Render N activated Gaussians into C cameras (OpenCV axes, pixel centres at +0.5).

    Args:
        means: [N, 3] world positions.
        quats: [N, 4] rotations (w, x, y, z), any norm.
        scales: [N, 3] positive standard deviations.
        opacities: [N] opacities in (0, 1).
        viewmats: [C, 4, 4] world->camera transforms.
        Ks: [C, 3, 3] pinhole intrinsics in pixels.
        width, height: image size in pixels.
        sh_coeffs: [N, K, 3] SH coefficients (DC first); colour = SH + 0.5, clamped at 0.
        sh_degree: SH degree to evaluate (0..3, at most sqrt(K) - 1; default the largest).
        colors: [N, 3] or [C, N, 3] colours instead of ``sh_coeffs`` (exactly one is given).
        features: [N, D] extra channels composited in the same pass (background 0).
        backgrounds: [C, 3] RGB background (default black).
        render_depth: also composite camera depth and return it normalised by alpha.
        near, far: depth culling planes; eps2d: screen-space blur added to cov2d.
        tile_size: tile edge in pixels (the result does not depend on it).
        backend: ``auto | torch | cpu | cuda`` (see ``langfield.render.backend``).
        absgrad: also return ``absgrad`` [C, N, 2], which the backward fills with the sum
            over pixels of |each pixel's share of the means2d gradient| (AbsGS densification).

    Returns:
        ``RenderOutput`` with rgb [C,H,W,3], alpha [C,H,W,1], depth [C,H,W,1] or
        None, features [C,H,W,D] or None, means2d [C,N,2] (the tensor fed to the
        rasterizer: call ``.retain_grad()`` on it before backward to read its
        gradient), radii [C,N] int32 and, with ``absgrad``, absgrad [C,N,2].
    """
    # ---- validation: shapes, dtypes, devices, exclusive options
    if not isinstance(means, Tensor):
        raise ValueError(f"render: means must be a torch.Tensor, got {type(means).__name__}")
    _check_shape("means", means, (None, 3))
    n = means.shape[0]
    _check_shape("quats", quats, (n, 4))
    _check_shape("scales", scales, (n, 3))
    _check_shape("opacities", opacities, (n,))
    _check_shape("viewmats", viewmats, (None, 4, 4))
    n_cams = viewmats.shape[0]
    if n_cams == 0:
        raise ValueError("render: viewmats must hold at least one camera, got 0")
    _check_shape("Ks", Ks, (n_cams, 3, 3))
    for name, value in (("width", width), ("height", height), ("tile_size", tile_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"render: {name} must be a positive int, got {value!r}")
    if (sh_coeffs is None) == (colors is None):
        raise ValueError("render: give exactly one of sh_coeffs and colors")
    if sh_coeffs is not None:
        _check_shape("sh_coeffs", sh_coeffs, (n, None, 3))
        k = sh_coeffs.shape[1]
        max_degree = math.isqrt(k) - 1
        if k == 0 or (max_degree + 1) ** 2 != k or max_degree > 3:
            raise ValueError(f"render: sh_coeffs must hold (d+1)^2 coefficients for d in 0..3, got {k}")
        if sh_degree is None:
            sh_degree = max_degree
        if not 0 <= sh_degree <= max_degree:
            raise ValueError(f"render: sh_degree must be in 0..{max_degree} for {k} coefficients, got {sh_degree}")
    elif sh_degree is not None:
        raise ValueError("render: sh_degree is only meaningful with sh_coeffs")
    if colors is not None and colors.dim() == 2:
        _check_shape("colors", colors, (n, 3))
    elif colors is not None:
        _check_shape("colors", colors, (n_cams, n, 3))
    if features is not None:
        _check_shape("features", features, (n, None))
        if features.shape[1] == 0:
            raise ValueError("render: features must have at least one channel, got [N, 0]")
    if backgrounds is not None:
        _check_shape("backgrounds", backgrounds, (n_cams, 3))
    _validate(
        means,
        {
            "quats": quats,
            "scales": scales,
            "opacities": opacities,
            "viewmats": viewmats,
            "Ks": Ks,
            "sh_coeffs": sh_coeffs,
            "colors": colors,
            "features": features,
            "backgrounds": backgrounds,
        },
    )
    dtype = means.dtype
    viewmats = viewmats.to(dtype)
    Ks = Ks.to(dtype)

    name = resolve_backend(backend, means.device)
    ops = get_ops(name)

    # ---- projection and per-camera colours
    radii, means2d, depths, conics = ops.project_gaussians(
        means, quats, scales, viewmats, Ks, width, height, near=near, far=far, eps2d=eps2d
    )
    if sh_coeffs is not None:
        dirs = means[None, :, :] - camera_centres(viewmats)[:, None, :]  # [C, N, 3]
        coeffs = sh_coeffs[None].expand(n_cams, -1, -1, -1)
        rgb = torch.clamp_min(ops.spherical_harmonics(sh_degree, dirs, coeffs) + 0.5, 0.0)
    else:
        rgb = colors if colors.dim() == 3 else colors[None].expand(n_cams, -1, -1)

    # ---- one compositing pass over [rgb | depth | features]
    channels = [rgb.to(dtype)]
    if render_depth:
        channels.append(depths[..., None])
    if features is not None:
        channels.append(features.to(dtype)[None].expand(n_cams, -1, -1))
    stacked = torch.cat(channels, dim=-1)
    ch = stacked.shape[-1]
    bg = stacked.new_zeros(n_cams, ch)
    if backgrounds is not None:
        bg = torch.cat([backgrounds.to(dtype), bg[:, 3:]], dim=-1)

    tile_width = math.ceil(width / tile_size)
    tile_height = math.ceil(height / tile_size)
    # The AbsGS statistic is an output the backward writes into (every backend's rasterize_to_pixels).
    absgrad_out = means2d.new_zeros(means2d.shape) if absgrad else None
    _, isect_ids, flatten_ids = ops.isect_tiles(means2d, radii, depths, tile_size, tile_width, tile_height)
    isect_offsets = ops.isect_offset_encode(isect_ids, n_cams, tile_width, tile_height)
    image, alpha = ops.rasterize_to_pixels(
        means2d,
        conics,
        stacked,
        opacities[None].expand(n_cams, -1),
        radii,
        width,
        height,
        tile_size,
        isect_offsets,
        flatten_ids,
        bg,
        absgrad_out=absgrad_out,
    )

    # ---- split the channels back
    depth = None
    first_feature = 3
    if render_depth:
        acc_depth = image[..., 3:4]
        has_alpha = alpha > DEPTH_ALPHA_MIN
        # Safe denominator: the unselected branch must not produce inf/nan gradients.
        depth = torch.where(has_alpha, acc_depth / torch.where(has_alpha, alpha, torch.ones_like(alpha)), 0.0)
        first_feature = 4
    return RenderOutput(
        rgb=image[..., :3],
        alpha=alpha,
        depth=depth,
        features=image[..., first_feature:] if features is not None else None,
        means2d=means2d,
        radii=radii,
        absgrad=absgrad_out,
        extras={"backend": name, "depths": depths, "conics": conics, "n_isects": int(flatten_ids.shape[0])},
    )
