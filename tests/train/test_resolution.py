"""Coarse-to-fine resolution: the schedule's factors and exact view downscaling."""

import pytest
import torch

from langfield.render import render
from langfield.train.resolution import ResolutionSchedule, downscale_view
from langfield.types import View


def test_schedule_goes_coarse_to_fine_within_the_fraction():
    s = ResolutionSchedule(levels=2, fraction=0.4)
    f = [s.factor(step, 1000, short_side=240) for step in range(1000)]
    assert f[0] == 4 and f[199] == 4 and f[200] == 2 and f[399] == 2 and f[400] == 1 and f[-1] == 1
    assert all(a >= b for a, b in zip(f, f[1:]))  # never back to coarse
    assert ResolutionSchedule(levels=0).factor(0, 1000, 240) == 1
    assert ResolutionSchedule(fraction=0.0).factor(0, 1000, 240) == 1
    # small images are not shrunk below min_side
    assert ResolutionSchedule(levels=2, fraction=0.5, min_side=16).factor(0, 100, short_side=40) == 2
    assert ResolutionSchedule(levels=2, fraction=0.5, min_side=16).factor(0, 100, short_side=20) == 1
    with pytest.raises(ValueError):
        ResolutionSchedule(fraction=1.0)


def test_downscaled_view_matches_an_area_averaged_render(make_gaussians):
    g = make_gaussians(300, seed=3, sh_degree=0)
    means = g["means"].detach()
    viewmat = torch.eye(4)
    viewmat[2, 3] = 3.0
    K = torch.tensor([[90.0, 0.0, 41.0], [0.0, 90.0, 30.0], [0.0, 0.0, 1.0]])
    W, H = 82, 61  # odd sizes: a trailing partial block is cropped

    def draw(k, w, h):
        return render(means, g["quats"].detach(), torch.exp(g["scales"].detach()),
                      torch.sigmoid(g["opacities"].detach()), viewmat[None], k[None], w, h,
                      sh_coeffs=torch.cat([g["sh0"], g["shN"]], 1).detach(), backend="torch")

    full = draw(K, W, H)
    depth = full.depth[0].clone()
    depth[5:9, 5:9] = 0.0  # a hole: the nearest valid depth of each block is kept
    view = View("v", viewmat, K, W, H, rgb=full.rgb[0], depth=depth, semantics=torch.arange(W * H).reshape(H, W))
    small = downscale_view(view, 2)
    assert (small.width, small.height) == (41, 30)
    assert torch.allclose(small.rgb, full.rgb[0, :60, :82].reshape(30, 2, 41, 2, 3).mean((1, 3)), atol=1e-6)
    blocks = depth[:60, :82, 0].reshape(30, 2, 41, 2).permute(0, 2, 1, 3).reshape(30, 41, 4)
    want = torch.where(blocks > 0, blocks, torch.full_like(blocks, 1e30)).min(-1).values
    want = torch.where(want < 1e30, want, torch.zeros_like(want))
    assert torch.equal(small.depth[..., 0], want)
    assert small.semantics.shape == (30, 41) and int(small.semantics[1, 1]) == 2 * W + 2
    # rendering with the scaled intrinsics agrees with averaging the full render (up to aliasing)
    direct = draw(small.K, small.width, small.height).rgb[0]
    assert (direct - small.rgb).abs().mean() < 0.02
    assert downscale_view(view, 1) is view
