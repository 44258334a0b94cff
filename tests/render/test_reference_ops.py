"""Reference ops: gradients (gradcheck in float64), agreement with gsplat's torch code, tile binning."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd import gradcheck

from langfield.render import reference as ref

f64 = torch.float64


def look_at_viewmats(n_cams: int, dtype: torch.dtype, distance: float = 4.0) -> torch.Tensor:
    """World->camera matrices of cameras on a small arc looking at the origin (OpenCV axes)."""
    mats = []
    for i in range(n_cams):
        angle = 0.3 * i
        centre = torch.tensor([distance * math.sin(angle), 0.2 * i, -distance * math.cos(angle)], dtype=dtype)
        forward = -centre / centre.norm()
        right = torch.linalg.cross(torch.tensor([0.0, 1.0, 0.0], dtype=dtype), forward)
        right = right / right.norm()
        down = torch.linalg.cross(forward, right)
        rot = torch.stack([right, down, forward])  # rows: camera axes in world
        m = torch.eye(4, dtype=dtype)
        m[:3, :3] = rot
        m[:3, 3] = -rot @ centre
        mats.append(m)
    return torch.stack(mats)


def intrinsics(n_cams: int, width: int, height: int, dtype: torch.dtype, focal: float = 30.0) -> torch.Tensor:
    K = torch.tensor([[focal, 0.0, width / 2], [0.0, focal * 1.1, height / 2], [0.0, 0.0, 1.0]], dtype=dtype)
    return K.repeat(n_cams, 1, 1)


def random_gaussians(n: int, dtype: torch.dtype, seed: int, spread: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g, dtype=dtype) - 0.5) * 2 * spread
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = torch.rand(n, 3, generator=g, dtype=dtype) * 0.15 + 0.03
    return means, quats, scales


# --------------------------------------------------------------------------- gradcheck


def test_projection_gradcheck():
    width, height = 8, 6
    means, quats, scales = random_gaussians(4, f64, seed=1, spread=0.4)
    means[3] = torch.tensor([0.0, 0.0, -10.0], dtype=f64)  # behind the first camera: culled
    viewmats, Ks = look_at_viewmats(2, f64), intrinsics(2, width, height, f64, focal=8.0)
    radii = ref.project_gaussians(means, quats, scales, viewmats, Ks, width, height)[0]
    assert (radii[:, :3] > 0).all() and radii[0, 3] == 0

    def fn(m, q, s):
        _, means2d, depths, conics = ref.project_gaussians(m, q, s, viewmats, Ks, width, height)
        return means2d, depths, conics

    inputs = tuple(t.clone().requires_grad_() for t in (means, quats, scales))
    assert gradcheck(fn, inputs, eps=1e-6, atol=1e-6)
    # No nan/inf may leak from the culled Gaussian into any gradient.
    sum(o.sum() for o in fn(*inputs)).backward()
    assert all(torch.isfinite(t.grad).all() for t in inputs)
    assert inputs[0].grad[3].abs().max() == 0 or radii[1, 3] > 0


def test_projection_gradcheck_through_fov_clamp():
    """A Gaussian whose Jacobian point is clamped (|x/z| > 1.3 tan_fov) but that still touches the image."""
    width, height = 8, 6
    viewmats = torch.eye(4, dtype=f64)[None]
    Ks = intrinsics(1, width, height, f64, focal=8.0)
    means = torch.tensor([[3.5, 0.1, 4.0], [0.1, -0.2, 3.0]], dtype=f64)  # x/z = 0.875 > 1.3 * 0.5 = 0.65
    quats = torch.tensor([[1.0, 0.2, 0.1, 0.0], [0.9, 0.0, 0.3, 0.1]], dtype=f64)
    scales = torch.tensor([[1.5, 1.2, 1.0], [0.2, 0.1, 0.15]], dtype=f64)
    radii = ref.project_gaussians(means, quats, scales, viewmats, Ks, width, height)[0]
    assert (radii > 0).all()

    def fn(m, q, s):
        return ref.project_gaussians(m, q, s, viewmats, Ks, width, height)[1:]

    assert gradcheck(fn, tuple(t.clone().requires_grad_() for t in (means, quats, scales)), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_spherical_harmonics_gradcheck(degree: int):
    g = torch.Generator().manual_seed(degree)
    dirs = torch.randn(5, 3, generator=g, dtype=f64).requires_grad_()
    coeffs = torch.randn(5, 16, 3, generator=g, dtype=f64).requires_grad_()
    assert gradcheck(lambda d, c: ref.spherical_harmonics(degree, d, c), (dirs, coeffs), eps=1e-6, atol=1e-6)


def test_rasterize_gradcheck():
    width, height, tile = 8, 6, 4
    means, quats, scales = random_gaussians(5, f64, seed=3, spread=0.5)
    viewmats, Ks = look_at_viewmats(1, f64), intrinsics(1, width, height, f64, focal=8.0)
    radii, means2d, depths, conics = ref.project_gaussians(means, quats, scales, viewmats, Ks, width, height)
    assert (radii > 0).sum() >= 4
    tw, th = math.ceil(width / tile), math.ceil(height / tile)
    _, isect_ids, flatten_ids = ref.isect_tiles(means2d, radii, depths, tile, tw, th)
    offsets = ref.isect_offset_encode(isect_ids, 1, tw, th)
    g = torch.Generator().manual_seed(4)
    colors = torch.rand(1, 5, 3, generator=g, dtype=f64)
    opacities = torch.rand(1, 5, generator=g, dtype=f64) * 0.8 + 0.1
    background = torch.rand(1, 3, generator=g, dtype=f64)

    def fn(m2, con, col, op):
        return ref.rasterize_to_pixels(m2, con, col, op, radii, width, height, tile, offsets, flatten_ids, background)

    inputs = tuple(t.detach().clone().requires_grad_() for t in (means2d, conics, colors, opacities))
    assert gradcheck(fn, inputs, eps=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- gsplat agreement


def test_covariance_matches_gsplat():
    from gsplat.cuda._torch_impl import _quat_scale_to_covar_preci

    _, quats, scales = random_gaussians(200, torch.float32, seed=5)
    theirs, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    assert (ref.covariance_3d(quats, scales) - theirs).abs().max() <= 1e-6


@pytest.mark.parametrize("dtype", [torch.float32, f64])
def test_projection_matches_gsplat(dtype: torch.dtype):
    from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci

    width, height = 40, 30  # principal point at the centre: both clamp conventions coincide (Note 3)
    means, quats, scales = random_gaussians(300, dtype, seed=6, spread=2.0)
    viewmats, Ks = look_at_viewmats(3, dtype), intrinsics(3, width, height, dtype)
    radii, means2d, depths, conics = ref.project_gaussians(means, quats, scales, viewmats, Ks, width, height)
    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    g_radii, g_means2d, g_depths, g_conics, _ = _fully_fused_projection(means, covars, viewmats, Ks, width, height)
    # Radii/culling use different conventions (Note 2): compare where both keep the Gaussian.
    both = (radii > 0) & (g_radii > 0).all(-1)
    assert both.sum() > 0.8 * (radii > 0).sum() > 100
    assert (means2d - g_means2d)[both].abs().max() <= 1e-4
    assert (depths - g_depths)[both].abs().max() <= 1e-4
    assert (conics - g_conics)[both].abs().max() <= 1e-4
    # Depth culling is defined the same way.
    in_front = (depths > 0.01) | (radii == 0)
    assert ((g_radii > 0).all(-1) <= in_front).all()


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_spherical_harmonics_matches_gsplat(degree: int):
    from gsplat.cuda._torch_impl import _spherical_harmonics

    g = torch.Generator().manual_seed(10 + degree)
    dirs = torch.randn(500, 3, generator=g) * 3.0  # not unit: both normalise (Note 6)
    coeffs = torch.randn(500, 16, 3, generator=g)
    ours = ref.spherical_harmonics(degree, dirs, coeffs)
    assert (ours - _spherical_harmonics(degree, dirs, coeffs)).abs().max() <= 1e-4
    # Only the first (degree+1)^2 coefficients matter.
    changed = coeffs.clone()
    changed[:, (degree + 1) ** 2 :] += 1.0
    assert torch.equal(ours, ref.spherical_harmonics(degree, dirs, changed))


def test_spherical_harmonics_rejects_bad_degree():
    with pytest.raises(ValueError):
        ref.spherical_harmonics(4, torch.zeros(1, 3), torch.zeros(1, 25, 3))
    with pytest.raises(ValueError):
        ref.spherical_harmonics(2, torch.zeros(1, 3), torch.zeros(1, 4, 3))


# --------------------------------------------------------------------------- tile binning


def test_isect_tiles_lists_every_touching_gaussian_in_depth_order():
    width, height, tile = 37, 23, 8
    means, quats, scales = random_gaussians(80, torch.float32, seed=7, spread=2.0)
    viewmats, Ks = look_at_viewmats(2, torch.float32), intrinsics(2, width, height, torch.float32)
    radii, means2d, depths, _ = ref.project_gaussians(means, quats, scales, viewmats, Ks, width, height)
    tw, th = math.ceil(width / tile), math.ceil(height / tile)
    tiles_per_gauss, isect_ids, flatten_ids = ref.isect_tiles(means2d, radii, depths, tile, tw, th)
    offsets = ref.isect_offset_encode(isect_ids, 2, tw, th)

    assert tiles_per_gauss.dtype == torch.int32 and flatten_ids.dtype == torch.int32
    assert isect_ids.dtype == torch.int64 and offsets.dtype == torch.int32 and offsets.shape == (2, th, tw)
    assert int(tiles_per_gauss.sum()) == isect_ids.numel() == flatten_ids.numel()
    assert (tiles_per_gauss[radii == 0] == 0).all()
    assert (isect_ids[1:] >= isect_ids[:-1]).all()

    bounds = offsets.reshape(-1).tolist() + [isect_ids.numel()]
    n = radii.shape[1]
    for c in range(2):
        for ty in range(th):
            for tx in range(tw):
                t = (c * th + ty) * tw + tx
                listed = flatten_ids[bounds[t] : bounds[t + 1]].long()
                assert (listed // n == c).all()
                # Every Gaussian whose per-pixel box covers a pixel centre of this tile is listed.
                xs = torch.arange(tx * tile, min((tx + 1) * tile, width)) + 0.5
                ys = torch.arange(ty * tile, min((ty + 1) * tile, height)) + 0.5
                r = radii[c].float()
                hit_x = ((xs[None] - means2d[c, :, :1]).abs() <= r[:, None]).any(1)
                hit_y = ((ys[None] - means2d[c, :, 1:]).abs() <= r[:, None]).any(1)
                needed = torch.nonzero((radii[c] > 0) & hit_x & hit_y).reshape(-1) + c * n
                assert set(needed.tolist()) <= set(listed.tolist())
                # Listed in depth order, ties by index.
                d = depths.reshape(-1)[listed]
                assert (d[1:] >= d[:-1]).all()


def test_isect_ties_keep_gaussian_index_order():
    means2d = torch.tensor([[[10.0, 10.0], [11.0, 9.0], [9.0, 10.0]]])
    radii = torch.tensor([[3, 3, 3]], dtype=torch.int32)
    depths = torch.tensor([[2.0, 1.0, 2.0]])
    _, isect_ids, flatten_ids = ref.isect_tiles(means2d, radii, depths, 16, 2, 2)
    offsets = ref.isect_offset_encode(isect_ids, 1, 2, 2)
    assert offsets[0, 0, 0] == 0
    first_tile = flatten_ids[: int(offsets.reshape(-1)[1])].tolist()
    assert first_tile == [1, 0, 2]


def test_isect_empty():
    tiles_per_gauss, isect_ids, flatten_ids = ref.isect_tiles(
        torch.zeros(2, 0, 2), torch.zeros(2, 0, dtype=torch.int32), torch.zeros(2, 0), 16, 3, 2
    )
    offsets = ref.isect_offset_encode(isect_ids, 2, 3, 2)
    assert tiles_per_gauss.shape == (2, 0) and isect_ids.numel() == 0 and flatten_ids.numel() == 0
    assert offsets.shape == (2, 2, 3) and (offsets == 0).all()
