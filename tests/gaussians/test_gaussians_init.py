"""Initialisation from points, depth maps and at random."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from langfield.gaussians.init import backproject_depth, init_from_depth, init_from_points, init_random
from langfield.gaussians.knn import knn_distances
from langfield.gaussians.params import activate, sh0_to_rgb, sh_degree_of
from langfield.types import DataError, View


def _grid(n: int, spacing: float, origin=(5.0, -3.0, 10.0)) -> torch.Tensor:
    ax = torch.arange(n, dtype=torch.float32) * spacing
    g = torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), dim=-1).reshape(-1, 3)
    return g + torch.tensor(origin)


def test_grid_spacing_gives_log_spacing_scale():
    spacing = 0.03
    pts = _grid(5, spacing)  # every grid point has >= 3 neighbours at exactly `spacing`
    params = init_from_points(pts, init_scale=2.0)
    expected = math.log(spacing * 2.0)
    torch.testing.assert_close(params["scales"], torch.full((125, 3), expected), atol=1e-4, rtol=0)


def test_init_from_points_fields():
    pts = torch.randn(50, 3, generator=torch.Generator().manual_seed(1))
    colors = torch.randint(0, 256, (50, 3), generator=torch.Generator().manual_seed(2), dtype=torch.uint8)
    params = init_from_points(pts, colors.numpy(), sh_degree=2, init_opacity=0.3, latent_dim=6)
    g = activate(params)
    assert torch.equal(params["means"], pts)
    torch.testing.assert_close(sh0_to_rgb(params["sh0"][:, 0]), colors.float() / 255)
    torch.testing.assert_close(g.opacities, torch.full((50,), 0.3))
    torch.testing.assert_close(g.quats, torch.tensor([1.0, 0, 0, 0]).expand(50, 4))
    assert sh_degree_of(params) == 2 and not params["shN"].any()
    assert params["latents"].shape == (50, 6)
    # isotropic
    assert torch.equal(params["scales"][:, 0], params["scales"][:, 2])


def test_knn_matches_brute_force_and_chunking():
    pts = torch.rand(300, 3, generator=torch.Generator().manual_seed(0)) * 4 + 100
    pts[7] = pts[8]  # a duplicate: neighbour at distance 0, no log(0) trouble
    d = torch.cdist(pts.double(), pts.double())
    d.fill_diagonal_(float("inf"))
    expected = d.topk(3, largest=False).values.float()
    for kw in ({"chunk": 7, "backend": "torch"}, {"backend": "torch"}, {"backend": "scipy"}):
        torch.testing.assert_close(knn_distances(pts, 3, **kw), expected, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(init_from_points(pts)["scales"]).all()


def _plane_view(depth_value: float, c2w: torch.Tensor, w: int = 16, h: int = 12) -> View:
    K = torch.tensor([[20.0, 0, 7.5], [0, 22.0, 6.0], [0, 0, 1]])
    depth = torch.full((h, w, 1), depth_value)
    depth[0, 0] = 0.0  # unknown depth must be skipped
    rgb = torch.rand(h, w, 3, generator=torch.Generator().manual_seed(3))
    return View(name="plane", viewmat=torch.linalg.inv(c2w), K=K, width=w, height=h, rgb=rgb, depth=depth)


def _pose(angle: float, t) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    c2w = torch.eye(4)
    c2w[:3, :3] = torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    c2w[:3, 3] = torch.tensor(t)
    return c2w


def test_depth_plane_backprojects_onto_plane():
    c2w = _pose(0.4, [1.0, -2.0, 0.5])
    view = _plane_view(2.0, c2w)
    pts, rgb = backproject_depth(view, stride=1)
    assert pts.shape == (16 * 12 - 1, 3) and rgb.shape == pts.shape
    cam = pts @ view.viewmat[:3, :3].T + view.viewmat[:3, 3]
    torch.testing.assert_close(cam[:, 2], torch.full((pts.shape[0],), 2.0), atol=1e-5, rtol=0)
    # projecting back lands on pixel centres (u + 0.5, v + 0.5), row-major, (0, 0) skipped
    uv = (cam @ view.K.T)[:, :2] / cam[:, 2:]
    vv, uu = torch.meshgrid(torch.arange(12.0), torch.arange(16.0), indexing="ij")
    centres = torch.stack([uu, vv], dim=-1).reshape(-1, 2)[1:] + 0.5
    torch.testing.assert_close(uv, centres, atol=1e-4, rtol=0)
    torch.testing.assert_close(rgb, view.rgb.reshape(-1, 3)[1:])


def test_init_from_depth_subsamples_deterministically():
    views = [_plane_view(2.0, _pose(0.0, [0, 0, 0])), _plane_view(3.0, _pose(0.3, [0.5, 0, 0]))]
    views.append(View(name="nodepth", viewmat=torch.eye(4), K=views[0].K, width=16, height=12))
    a = init_from_depth(views, max_points=40, stride=2, seed=5, sh_degree=0)
    b = init_from_depth(views, max_points=40, stride=2, seed=5, sh_degree=0)
    c = init_from_depth(views, max_points=40, stride=2, seed=6, sh_degree=0)
    assert a["means"].shape == (40, 3)
    assert torch.equal(a["means"], b["means"]) and torch.equal(a["sh0"], b["sh0"])
    assert not torch.equal(a["means"], c["means"])
    everything = init_from_depth(views, max_points=10_000, stride=2, sh_degree=0)
    assert everything["means"].shape[0] == 2 * (8 * 6 - 1)
    # the subset is made of candidate points
    diff = (a["means"][:, None, :] - everything["means"][None, :, :]).abs().amax(dim=-1)
    assert (diff.min(dim=1).values == 0).all()


def test_init_from_depth_without_depth_raises():
    view = View(name="x", viewmat=torch.eye(4), K=torch.eye(3), width=4, height=4)
    with pytest.raises(DataError):
        init_from_depth([view])


def test_init_random_bounds_and_determinism():
    lo, hi = [-1.0, 0.0, 2.0], [1.0, 0.5, 3.0]
    a = init_random(200, lo, hi, seed=3)
    b = init_random(200, lo, hi, seed=3)
    c = init_random(200, lo, hi, seed=4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["means"], c["means"])
    m = a["means"]
    assert (m >= torch.tensor(lo)).all() and (m <= torch.tensor(hi)).all()
    rgb = sh0_to_rgb(a["sh0"][:, 0])
    assert rgb.min() >= -1e-6 and rgb.max() <= 1 + 1e-6 and rgb.std() > 0.1


def test_init_from_points_rejects_empty():
    with pytest.raises(DataError):
        init_from_points(np.zeros((0, 3), np.float32))


def test_integer_and_float_colours_agree():
    pts = _grid(3, 0.1)
    ints = torch.randint(0, 256, (27, 3), generator=torch.Generator().manual_seed(0))
    a = init_from_points(pts, ints)  # int64 0..255
    b = init_from_points(pts, ints.float() / 255)
    torch.testing.assert_close(a["sh0"], b["sh0"])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_init_matches_cpu():
    pts = torch.rand(500, 3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(knn_distances(pts.cuda(), 3).cpu(), knn_distances(pts, 3, backend="torch"))
    view = _plane_view(2.0, _pose(0.4, [1.0, -2.0, 0.5]))
    gpu_view = View(name=view.name, viewmat=view.viewmat.cuda(), K=view.K.cuda(), width=view.width,
                    height=view.height, rgb=view.rgb.cuda(), depth=view.depth.cuda())
    a = init_from_depth([view], max_points=50, seed=1)
    b = init_from_depth([gpu_view], max_points=50, seed=1)
    assert b["means"].is_cuda
    for key in a:
        torch.testing.assert_close(b[key].cpu(), a[key], msg=key)
