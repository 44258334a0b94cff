"""Pure-PyTorch reference of the rasterizer ops (the oracle for the native kernels).

Every function here implements one op of ``docs/rasterizer.md`` with the same
name, signature and result as the native CPU/CUDA kernels.  It is written to
be read: plain tensor code, differentiable by autograd in float32 and float64.
Decisions the contract left open are listed in the "Notes" section at the end
of ``docs/rasterizer.md``; comments here point at them as (Note n).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

# SH constants and the quaternion rotation live in langfield.geometry (one copy for every layer).
from langfield.geometry import SH_C0, SH_C1, SH_C2, SH_C3, quat_to_rotmat  # noqa: F401 (re-exported)

# Compositing constants of the definition (docs/rasterizer.md, step 3).
ALPHA_MAX = 0.99
ALPHA_MIN = 1.0 / 255.0
T_MIN = 1e-4
# Gaussians of one tile composited per vectorised step; bounds memory at
# tile_size^2 * CHUNK values per intermediate without changing the result.
CHUNK = 256


# --------------------------------------------------------------------------- projection


def covariance_3d(quats: Tensor, scales: Tensor) -> Tensor:
    """World-space covariance ``R_q S S^T R_q^T``: [N, 4], [N, 3] -> [N, 3, 3]."""
    m = quat_to_rotmat(quats) * scales[..., None, :]  # R_q S (scales the columns)
    return m @ m.transpose(-1, -2)


def project_gaussians(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    near: float = 0.01,
    far: float = 1e10,
    eps2d: float = 0.3,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """EWA projection of N Gaussians into C pinhole cameras.

    Returns ``radii [C,N] int32, means2d [C,N,2], depths [C,N], conics [C,N,3]``.
    Culled Gaussians have radius 0 and zero means2d/depths/conics (Note 1).
    """
    rot = viewmats[:, None, :3, :3]  # [C, 1, 3, 3]
    trans = viewmats[:, None, :3, 3]  # [C, 1, 3]
    t = (rot @ means[None, :, :, None])[..., 0] + trans  # camera-space means [C, N, 3]
    sigma_cam = rot @ covariance_3d(quats, scales)[None] @ rot.transpose(-1, -2)  # [C, N, 3, 3]

    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]  # [C, 1]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    tx, ty, tz = t.unbind(-1)  # [C, N]

    in_depth = (tz > near) & (tz < far)
    # Divide by a harmless z for culled Gaussians so no inf/nan reaches autograd.
    z = torch.where(in_depth, tz, torch.ones_like(tz))

    # Clamp the Jacobian's evaluation point to 1.3x the field of view (3DGS).
    lim_x = 1.3 * (0.5 * width / fx)
    lim_y = 1.3 * (0.5 * height / fy)
    x = z * torch.maximum(torch.minimum(tx / z, lim_x), -lim_x)
    y = z * torch.maximum(torch.minimum(ty / z, lim_y), -lim_y)
    zero = torch.zeros_like(z)
    jac = torch.stack(
        [fx / z, zero, -fx * x / (z * z), zero, fy / z, -fy * y / (z * z)], dim=-1
    ).reshape(t.shape[:-1] + (2, 3))
    cov2d = jac @ sigma_cam @ jac.transpose(-1, -2)
    a = cov2d[..., 0, 0] + eps2d
    b = 0.5 * (cov2d[..., 0, 1] + cov2d[..., 1, 0])  # symmetric up to rounding
    c = cov2d[..., 1, 1] + eps2d
    det = a * c - b * b

    valid = in_depth & (det > 0)
    det_safe = torch.where(valid, det, torch.ones_like(det))
    conics = torch.stack([c / det_safe, -b / det_safe, a / det_safe], dim=-1)
    means2d = torch.stack([fx * tx / z + cx, fy * ty / z + cy], dim=-1)

    with torch.no_grad():  # the radius is an integer: no gradient (Note 2)
        mid = 0.5 * (a + c)
        lambda_max = mid + torch.sqrt(torch.clamp_min(mid * mid - det, 0.0))
        radius = torch.ceil(3.0 * torch.sqrt(torch.clamp_min(lambda_max, 0.0)))
        mx, my = means2d[..., 0], means2d[..., 1]
        outside = (mx + radius <= 0) | (mx - radius >= width) | (my + radius <= 0) | (my - radius >= height)
        keep = valid & ~outside
        radii = torch.where(keep, radius, torch.zeros_like(radius)).to(torch.int32)

    keep_f = keep.unsqueeze(-1)
    means2d = torch.where(keep_f, means2d, torch.zeros_like(means2d))
    conics = torch.where(keep_f, conics, torch.zeros_like(conics))
    depths = torch.where(keep, tz, torch.zeros_like(tz))
    return radii, means2d, depths, conics


# --------------------------------------------------------------------------- colour


def sh_basis(degree: int, dirs: Tensor) -> Tensor:
    """Real SH basis up to ``degree`` (0..3) at unit ``dirs [..., 3]`` -> [..., (degree+1)^2]."""
    basis = [torch.full_like(dirs[..., 0], SH_C0)]
    if degree >= 1:
        x, y, z = dirs.unbind(-1)
        basis += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        basis += [
            SH_C2[0] * x * y,
            SH_C2[1] * y * z,
            SH_C2[2] * (2 * zz - xx - yy),
            SH_C2[3] * x * z,
            SH_C2[4] * (xx - yy),
        ]
    if degree >= 3:
        basis += [
            SH_C3[0] * y * (3 * xx - yy),
            SH_C3[1] * x * y * z,
            SH_C3[2] * y * (4 * zz - xx - yy),
            SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy),
            SH_C3[4] * x * (4 * zz - xx - yy),
            SH_C3[5] * z * (xx - yy),
            SH_C3[6] * x * (xx - 3 * yy),
        ]
    return torch.stack(basis, dim=-1)


def spherical_harmonics(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """Raw SH sum ``sum_k basis_k(dir) coeffs[k]``: dirs [..., 3], coeffs [..., K, 3] -> [..., 3].

    ``dirs`` need not be unit length: they are normalised here (Note 6).  Only
    the first ``(degree+1)^2`` coefficients are used; no +0.5, no clamp.
    """
    if not 0 <= degree <= 3:
        raise ValueError(f"SH degree must be in 0..3, got {degree}")
    n_basis = (degree + 1) ** 2
    if coeffs.shape[-2] < n_basis:
        raise ValueError(f"SH degree {degree} needs {n_basis} coefficients, got {coeffs.shape[-2]}")
    basis = sh_basis(degree, F.normalize(dirs, dim=-1))  # [..., n_basis]
    return (basis[..., None] * coeffs[..., :n_basis, :]).sum(dim=-2)


# --------------------------------------------------------------------------- tile binning


def tile_bits(tile_width: int, tile_height: int) -> int:
    """Bits of an isect_id that hold the tile index (gsplat's convention)."""
    return (tile_width * tile_height).bit_length()


def depth_keys(depths: Tensor) -> Tensor:
    """Float32 bit pattern of positive depths as non-negative int64 (sorts like the depths)."""
    return depths.detach().to(torch.float32).contiguous().view(torch.int32).to(torch.int64) & 0xFFFFFFFF


def tile_ranges(means2d: Tensor, radii: Tensor, tile_size: int, tile_width: int, tile_height: int) -> tuple[Tensor, ...]:
    """Half-open tile ranges ``[x0, x1) x [y0, y1)`` each Gaussian's box touches (Note 4)."""
    m = means2d.detach()
    r = radii.to(m.dtype)
    x0 = torch.floor((m[..., 0] - r) / tile_size).clamp(0, tile_width).long()
    x1 = torch.ceil((m[..., 0] + r) / tile_size).clamp(0, tile_width).long()
    y0 = torch.floor((m[..., 1] - r) / tile_size).clamp(0, tile_height).long()
    y1 = torch.ceil((m[..., 1] + r) / tile_size).clamp(0, tile_height).long()
    return x0, x1, y0, y1


@torch.no_grad()
def isect_tiles(
    means2d: Tensor,
    radii: Tensor,
    depths: Tensor,
    tile_size: int,
    tile_width: int,
    tile_height: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Gaussian/tile intersections sorted by (camera, tile, depth, Gaussian index).

    Returns ``tiles_per_gauss [C,N] int32, isect_ids [M] int64, flatten_ids [M] int32``.
    """
    n_cams, n = radii.shape
    device = means2d.device
    x0, x1, y0, y1 = tile_ranges(means2d, radii, tile_size, tile_width, tile_height)
    counts = (x1 - x0) * (y1 - y0) * (radii > 0)  # [C, N]

    # Enumerate every (Gaussian, tile) pair, Gaussian-major then row-major tiles.
    flat_counts = counts.reshape(-1)
    gauss = torch.repeat_interleave(torch.arange(n_cams * n, device=device), flat_counts)  # [M]
    first = torch.cumsum(flat_counts, 0) - flat_counts  # first pair of each Gaussian
    local = torch.arange(gauss.numel(), device=device) - first[gauss]
    box_w = (x1 - x0).reshape(-1)[gauss]
    tx = x0.reshape(-1)[gauss] + local % box_w.clamp_min(1)
    ty = y0.reshape(-1)[gauss] + local // box_w.clamp_min(1)
    tile_id = ty * tile_width + tx
    cam = gauss // max(n, 1)

    bits = tile_bits(tile_width, tile_height)
    keys = depth_keys(depths).reshape(-1)[gauss]
    isect_ids = (cam << (bits + 32)) | (tile_id << 32) | keys
    # A stable sort keeps equal ids in Gaussian-index order (the tie rule).
    isect_ids, order = torch.sort(isect_ids, stable=True)
    flatten_ids = gauss[order].to(torch.int32)
    return counts.to(torch.int32), isect_ids, flatten_ids


@torch.no_grad()
def isect_offset_encode(isect_ids: Tensor, C: int, tile_width: int, tile_height: int) -> Tensor:
    """Index of each tile's first intersection in ``isect_ids`` -> [C, TH, TW] int32.

    A tile's intersections are ``[offsets[t], offsets[t+1])`` in flattened
    (camera, tile) order, the last one ending at M; empty tiles have an empty range.
    """
    bits = tile_bits(tile_width, tile_height)
    cam = isect_ids >> (bits + 32)
    tile = (isect_ids >> 32) & ((1 << bits) - 1)
    n_tiles = tile_width * tile_height
    counts = torch.bincount(cam * n_tiles + tile, minlength=C * n_tiles)
    offsets = torch.cumsum(counts, 0) - counts
    return offsets.to(torch.int32).reshape(C, tile_height, tile_width)


# --------------------------------------------------------------------------- compositing


class _AbsGradTap(torch.autograd.Function):
    """A tile's 2D means [G, 2] repeated for each of its P pixels -> [P, G, 2].

    The identity for the forward; the backward gets each pixel's own share of
    the means' gradient, returns their sum (the ordinary gradient) and adds
    the sum of their absolute values into ``sink[ids]``: the AbsGS statistic
    (Ye et al. 2024; gsplat's ``means2d.absgrad``).
    """

    @staticmethod
    def forward(ctx, means: Tensor, n_pix: int, sink: Tensor, ids: Tensor) -> Tensor:  # type: ignore[override]
        ctx.sink, ctx.ids = sink, ids
        return means[None].expand(n_pix, -1, -1).clone()

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        ctx.sink.index_add_(0, ctx.ids, grad.abs().sum(0).to(ctx.sink.dtype))
        return grad.sum(0), None, None, None


def _composite_tile(
    px: Tensor,
    py: Tensor,
    means2d: Tensor,
    conics: Tensor,
    colors: Tensor,
    opacities: Tensor,
    radii: Tensor,
) -> tuple[Tensor, Tensor]:
    """Front-to-back compositing of depth-sorted Gaussians at pixel centres ``(px, py)`` [P].

    Inputs are the tile's Gaussians in compositing order; ``means2d`` is
    [G, 2], or [P, G, 2] with a copy per pixel (see ``_AbsGradTap``).
    Returns the accumulated channels [P, ch] and the final transmittance [P].
    """
    n_pix = px.shape[0]
    m = means2d if means2d.dim() == 3 else means2d[None]
    acc = colors.new_zeros(n_pix, colors.shape[-1])
    t_final = px.new_ones(n_pix)  # T over the Gaussians actually added
    # T over every used Gaussian, *including* the one that triggers the stop:
    # it decides the stop rule and is monotone, so "T_next >= T_MIN" marks
    # exactly the Gaussians before the first stop, across chunks too.
    t_run = px.new_ones(n_pix)
    for k in range(0, m.shape[1], CHUNK):
        sl = slice(k, k + CHUNK)
        dx = px[:, None] - m[:, sl, 0]  # [P, G]
        dy = py[:, None] - m[:, sl, 1]
        r = radii[None, sl]
        in_box = (r > 0) & (dx.abs() <= r) & (dy.abs() <= r)
        con = conics[sl]
        sigma = 0.5 * (con[:, 0] * dx * dx + con[:, 2] * dy * dy) + con[:, 1] * dx * dy
        # sigma < 0 is skipped anyway; clamping keeps exp() finite so no nan reaches the backward.
        alpha = torch.clamp_max(opacities[None, sl] * torch.exp(-sigma.clamp_min(0.0)), ALPHA_MAX)
        used = in_box & (sigma >= 0) & (alpha >= ALPHA_MIN)
        alpha = torch.where(used, alpha, torch.zeros_like(alpha))

        run = t_run[:, None] * torch.cumprod(1.0 - alpha, dim=1)  # T_next of each Gaussian
        run_before = torch.cat([t_run[:, None], run[:, :-1]], dim=1)  # its T
        added = used & (run >= T_MIN)
        weight = torch.where(added, alpha * run_before, torch.zeros_like(alpha))
        acc = acc + weight @ colors[sl]
        t_final = t_final * torch.where(added, 1.0 - alpha, torch.ones_like(alpha)).prod(dim=1)
        t_run = run[:, -1]
        if bool((t_run < T_MIN).all()):
            break  # every pixel of the tile has stopped
    return acc, t_final


def rasterize_to_pixels(
    means2d: Tensor,
    conics: Tensor,
    colors: Tensor,
    opacities: Tensor,
    radii: Tensor,
    width: int,
    height: int,
    tile_size: int,
    isect_offsets: Tensor,
    flatten_ids: Tensor,
    backgrounds: Optional[Tensor] = None,
    absgrad_out: Optional[Tensor] = None,
) -> tuple[Tensor, Tensor]:
    """Composite every tile's sorted Gaussians: -> colours [C,H,W,ch], alphas [C,H,W,1].

    ``absgrad_out``: a contiguous [C, N, 2] tensor (zeros) into which the
    backward adds the sum over pixels of the absolute value of each pixel's
    share of the means2d gradient (AbsGS).
    """
    n_cams, n = means2d.shape[:2]
    ch = colors.shape[-1]
    tile_height, tile_width = isect_offsets.shape[1:]
    n_isects = flatten_ids.shape[0]
    # Flatten to the C*N indexing flatten_ids uses.
    means_f = means2d.reshape(-1, 2)
    conics_f = conics.reshape(-1, 3)
    colors_f = colors.reshape(-1, ch)
    opac_f = opacities.reshape(-1)
    radii_f = radii.reshape(-1)
    offsets = isect_offsets.reshape(-1).tolist() + [n_isects]
    ids = flatten_ids.long()

    out = colors.new_zeros(n_cams, height, width, ch)
    trans = colors.new_ones(n_cams, height, width)
    sink = None
    if absgrad_out is not None:
        if absgrad_out.shape != (n_cams, n, 2) or not absgrad_out.is_contiguous():
            raise ValueError(f"absgrad_out must be a contiguous [{n_cams}, {n}, 2] tensor, got {list(absgrad_out.shape)}")
        sink = absgrad_out.view(n_cams * n, 2)
    for c in range(n_cams):
        for ty in range(tile_height):
            for tx in range(tile_width):
                t = (c * tile_height + ty) * tile_width + tx
                start, end = offsets[t], offsets[t + 1]
                if start == end:
                    continue
                y_lo, y_hi = ty * tile_size, min((ty + 1) * tile_size, height)
                x_lo, x_hi = tx * tile_size, min((tx + 1) * tile_size, width)
                if y_lo >= y_hi or x_lo >= x_hi:
                    continue
                ys = torch.arange(y_lo, y_hi, device=colors.device, dtype=colors.dtype) + 0.5
                xs = torch.arange(x_lo, x_hi, device=colors.device, dtype=colors.dtype) + 0.5
                py, px = torch.meshgrid(ys, xs, indexing="ij")
                g = ids[start:end]
                m = means_f[g]
                if sink is not None:
                    m = _AbsGradTap.apply(m, px.numel(), sink, g)
                acc, t_fin = _composite_tile(
                    px.reshape(-1), py.reshape(-1), m, conics_f[g], colors_f[g], opac_f[g], radii_f[g]
                )
                out[c, y_lo:y_hi, x_lo:x_hi] = acc.reshape(y_hi - y_lo, x_hi - x_lo, ch)
                trans[c, y_lo:y_hi, x_lo:x_hi] = t_fin.reshape(y_hi - y_lo, x_hi - x_lo)
    if backgrounds is not None:
        out = out + trans[..., None] * backgrounds[:, None, None, :]
    alphas = (1.0 - trans)[..., None]
    return out, alphas
