"""Tiled reference compositing against the brute-force renderer, and the compositing rules."""

from __future__ import annotations

import math

import pytest
import torch
from langfield_test_brute import brute_force_render  # registered by tests/render/conftest.py

from langfield.render import reference as ref


def make_scene(n: int, n_cams: int, width: int, height: int, seed: int, dtype=torch.float64, opaque: bool = False):
    """Random Gaussians around the origin seen by cameras at z = -4, some behind / beside the view."""
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g, dtype=dtype) - 0.5) * torch.tensor([3.0, 3.0, 2.0], dtype=dtype)
    if n >= 4:
        means[0] = torch.tensor([0.0, 0.0, -6.0], dtype=dtype)  # behind every camera
        means[1] = torch.tensor([30.0, 0.0, 0.0], dtype=dtype)  # far off-screen
        means[2] = torch.tensor([0.05, -0.02, -3.995], dtype=dtype)  # inside the near plane
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = torch.rand(n, 3, generator=g, dtype=dtype) * 0.25 + (0.3 if opaque else 0.02)
    low = 0.6 if opaque else 0.05
    opacities = torch.rand(n, generator=g, dtype=dtype) * (0.999 - low) + low
    viewmats = torch.eye(4, dtype=dtype).repeat(n_cams, 1, 1)
    viewmats[:, 2, 3] = 4.0
    viewmats[:, 0, 3] = torch.linspace(-0.3, 0.3, n_cams, dtype=dtype)
    Ks = torch.tensor([[1.2 * width, 0, width * 0.45], [0, 1.2 * width, height * 0.55], [0, 0, 1]], dtype=dtype)
    Ks = Ks.repeat(n_cams, 1, 1)
    radii, means2d, depths, conics = ref.project_gaussians(means, quats, scales, viewmats, Ks, width, height)
    opac = opacities[None].expand(n_cams, -1)
    return radii, means2d, depths, conics, opac, g


def tiled(means2d, conics, colors, opac, radii, depths, width, height, tile, backgrounds=None):
    n_cams = means2d.shape[0]
    tw, th = math.ceil(width / tile), math.ceil(height / tile)
    _, isect_ids, flatten_ids = ref.isect_tiles(means2d, radii, depths, tile, tw, th)
    offsets = ref.isect_offset_encode(isect_ids, n_cams, tw, th)
    return ref.rasterize_to_pixels(
        means2d, conics, colors, opac, radii, width, height, tile, offsets, flatten_ids, backgrounds
    )


@pytest.mark.parametrize("channels", [3, 16])
@pytest.mark.parametrize("width,height,tile", [(23, 17, 4), (40, 24, 16), (19, 33, 8), (10, 7, 16)])
def test_tiled_matches_brute_force(channels: int, width: int, height: int, tile: int):
    radii, means2d, depths, conics, opac, g = make_scene(40, 2, width, height, seed=width + channels)
    assert (radii == 0).any() and (radii > 0).sum() > 20  # culled and visible ones both present
    colors = torch.rand(2, 40, channels, generator=g, dtype=torch.float64)
    bg = torch.rand(2, channels, generator=g, dtype=torch.float64)
    img, alpha = tiled(means2d, conics, colors, opac, radii, depths, width, height, tile, bg)
    img_b, alpha_b = brute_force_render(means2d, conics, colors, opac, radii, depths, width, height, bg)
    assert img.shape == (2, height, width, channels) and alpha.shape == (2, height, width, 1)
    assert (img - img_b).abs().max() <= 1e-4
    assert (alpha - alpha_b).abs().max() <= 1e-4
    assert alpha.max() > 0.5  # something was actually drawn


def test_tiled_matches_brute_force_when_pixels_saturate_float32():
    """Many opaque layers: the stop rule fires in many pixels; float32 as in training."""
    width, height = 24, 20
    radii, means2d, depths, conics, opac, g = make_scene(120, 1, width, height, seed=3, dtype=torch.float32, opaque=True)
    colors = torch.rand(1, 120, 16, generator=g)
    img, alpha = tiled(means2d, conics, colors, opac, radii, depths, width, height, 8)
    img_b, alpha_b = brute_force_render(means2d, conics, colors, opac, radii, depths, width, height)
    # Pixels where the walk stopped end with T in [1e-4, ~1e-2): alpha that close to 1.
    assert (alpha > 0.999).sum() > 20
    assert (img - img_b).abs().max() <= 1e-4
    assert (alpha - alpha_b).abs().max() <= 1e-4


def test_result_independent_of_tile_size():
    width, height = 30, 21
    radii, means2d, depths, conics, opac, g = make_scene(50, 1, width, height, seed=11)
    colors = torch.rand(1, 50, 5, generator=g, dtype=torch.float64)
    images = [tiled(means2d, conics, colors, opac, radii, depths, width, height, t)[0] for t in (1, 3, 16, 64)]
    for other in images[1:]:
        assert (other - images[0]).abs().max() <= 1e-12


@pytest.mark.parametrize("n", [0, 1])
def test_tiny_scenes_match_brute_force(n: int):
    width, height = 12, 9
    means2d = torch.tensor([[[5.2, 4.1]]], dtype=torch.float64)[:, :n]
    conics = torch.tensor([[[0.3, 0.05, 0.2]]], dtype=torch.float64)[:, :n]
    radii = torch.tensor([[6]], dtype=torch.int32)[:, :n]
    depths = torch.tensor([[2.0]], dtype=torch.float64)[:, :n]
    opac = torch.tensor([[0.8]], dtype=torch.float64)[:, :n]
    colors = torch.tensor([[[0.2, 0.9, 0.4]]], dtype=torch.float64)[:, :n]
    bg = torch.tensor([[0.5, 0.25, 1.0]], dtype=torch.float64)
    img, alpha = tiled(means2d, conics, colors, opac, radii, depths, width, height, 4, bg)
    img_b, alpha_b = brute_force_render(means2d, conics, colors, opac, radii, depths, width, height, bg)
    assert torch.allclose(img, img_b, atol=1e-12) and torch.allclose(alpha, alpha_b, atol=1e-12)
    if n == 0:
        assert (alpha == 0).all() and torch.equal(img, bg[:, None, None, :].expand_as(img))
    else:
        assert alpha.max() > 0.7


def _point_layers(opacities: list[float], colors: list[list[float]]):
    """Gaussians stacked on one pixel with near-flat conics so alpha = min(0.99, opacity) there."""
    n = len(opacities)
    means2d = torch.full((1, n, 2), 1.5, dtype=torch.float64)
    conics = torch.tensor([[1e-9, 0.0, 1e-9]], dtype=torch.float64).repeat(1, n, 1)
    radii = torch.full((1, n), 1, dtype=torch.int32)
    depths = torch.arange(1, n + 1, dtype=torch.float64)[None]
    opac = torch.tensor([opacities], dtype=torch.float64)
    col = torch.tensor([colors], dtype=torch.float64)
    return means2d, conics, col, opac, radii, depths


def test_stop_rule_excludes_the_gaussian_that_crosses_the_threshold():
    means2d, conics, col, opac, radii, depths = _point_layers([0.995, 0.995, 0.995], [[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    img, alpha = tiled(means2d, conics, col, opac, radii, depths, 3, 3, 2)
    a = 0.99  # clamped alpha
    # T after two layers is (1-a)^2 = 1e-4 (not < 1e-4: added); a third would make it < 1e-4: stop.
    expected = torch.tensor([a, (1 - a) * a, 0.0], dtype=torch.float64)
    assert torch.allclose(img[0, 1, 1], expected, atol=1e-12)
    assert torch.allclose(alpha[0, 1, 1, 0], torch.tensor(1 - (1 - a) ** 2, dtype=torch.float64), atol=1e-12)


def test_skip_rules_low_alpha_and_outside_radius():
    # The first layer is too faint (alpha < 1/255) and is skipped; the second counts.
    means2d, conics, col, opac, radii, depths = _point_layers([0.5 / 255, 0.5], [[1, 1, 1], [0, 1, 0]])
    img, alpha = tiled(means2d, conics, col, opac, radii, depths, 4, 4, 2)
    assert torch.allclose(img[0, 1, 1], torch.tensor([0.0, 0.5, 0.0], dtype=torch.float64), atol=1e-12)
    # Radius 1 around (1.5, 1.5): pixel centre (3.5, 1.5) is 2 px away: untouched despite the flat conic.
    assert alpha[0, 1, 3, 0] == 0 and alpha[0, 1, 2, 0] > 0


def test_backward_runs_in_float32_and_matches_float64():
    width, height = 16, 12
    radii, means2d, depths, conics, opac, g = make_scene(30, 1, width, height, seed=21)
    colors = torch.rand(1, 30, 3, generator=g, dtype=torch.float64)
    v = torch.rand(1, height, width, 3, generator=g, dtype=torch.float64)
    grads = []
    for dtype in (torch.float64, torch.float32):
        inputs = [t.detach().to(dtype).requires_grad_() for t in (means2d, conics, colors, opac)]
        img, _ = tiled(*inputs[:2], inputs[2], inputs[3], radii, depths.to(dtype), width, height, 4)
        (img * v.to(dtype)).sum().backward()
        grads.append([t.grad.double() for t in inputs])
    for g64, g32 in zip(*grads):
        assert torch.allclose(g64, g32, atol=1e-3, rtol=1e-3)


def test_indefinite_conic_is_skipped_without_nan_gradients():
    """A conic that is not positive definite gives sigma < 0 on some pixels: skipped, finite gradients."""
    means2d = torch.tensor([[[4.0, 4.0], [3.0, 5.0]]], dtype=torch.float64, requires_grad=True)
    conics = torch.tensor([[[0.5, 60.0, 0.5], [0.4, 0.0, 0.4]]], dtype=torch.float64, requires_grad=True)
    radii = torch.tensor([[40, 3]], dtype=torch.int32)
    depths = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    opac = torch.tensor([[0.9, 0.7]], dtype=torch.float64, requires_grad=True)
    colors = torch.rand(1, 2, 3, dtype=torch.float64, requires_grad=True)
    img, alpha = tiled(means2d, conics, colors, opac, radii, depths, 9, 9, 4)
    img_b, _ = brute_force_render(means2d, conics, colors, opac, radii, depths, 9, 9)
    assert torch.allclose(img, img_b, atol=1e-12)
    (img.sum() + alpha.sum()).backward()
    assert all(torch.isfinite(t.grad).all() for t in (means2d, conics, opac, colors))


def test_tiled_gradients_match_brute_force():
    """The cumulative-product backward of the tiled path equals the sequential walk's (float64)."""
    width, height = 14, 11
    radii, means2d, depths, conics, opac, g = make_scene(25, 2, width, height, seed=31, opaque=True)
    colors = torch.rand(2, 25, 4, generator=g, dtype=torch.float64)
    bg = torch.rand(2, 4, generator=g, dtype=torch.float64)
    v = torch.rand(2, height, width, 4, generator=g, dtype=torch.float64)
    w = torch.rand(2, height, width, 1, generator=g, dtype=torch.float64)
    grads = []
    for fn in ("tiled", "brute"):
        inputs = [t.detach().clone().requires_grad_() for t in (means2d, conics, colors, opac)]
        if fn == "tiled":
            img, alpha = tiled(*inputs[:3], inputs[3], radii, depths, width, height, 4, bg)
        else:
            img, alpha = brute_force_render(*inputs[:3], inputs[3], radii, depths, width, height, bg)
        ((img * v).sum() + (alpha * w).sum()).backward()
        grads.append([t.grad for t in inputs])
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-9)
    assert grads[0][0].abs().sum() > 0


def test_absgrad_is_the_sum_over_pixels_of_each_pixels_absolute_mean_gradient():
    """AbsGS: absgrad = sum_p |d L_p / d means2d|, checked against one autograd call per pixel."""
    width, height = 13, 9
    radii, means2d, depths, conics, opac, g = make_scene(18, 2, width, height, seed=41, opaque=True)
    colors = torch.rand(2, 18, 3, generator=g, dtype=torch.float64)
    v = torch.randn(2, height, width, 3, generator=g, dtype=torch.float64)
    w = torch.randn(2, height, width, 1, generator=g, dtype=torch.float64)
    m = means2d.detach().clone().requires_grad_()
    img, alpha = tiled(m, conics, colors, opac, radii, depths, width, height, 4)
    want = torch.zeros_like(m)
    for c in range(2):
        for y in range(height):
            for x in range(width):
                loss_p = (img[c, y, x] * v[c, y, x]).sum() + (alpha[c, y, x] * w[c, y, x]).sum()
                (grad_p,) = torch.autograd.grad(loss_p, m, retain_graph=True)
                want += grad_p.abs()
    m2 = means2d.detach().clone().requires_grad_()
    n_cams, n = m2.shape[:2]
    tw, th = math.ceil(width / 4), math.ceil(height / 4)
    _, isect_ids, flatten_ids = ref.isect_tiles(m2, radii, depths, 4, tw, th)
    offsets = ref.isect_offset_encode(isect_ids, n_cams, tw, th)
    absgrad = torch.zeros(n_cams, n, 2, dtype=m2.dtype)
    img2, alpha2 = ref.rasterize_to_pixels(m2, conics, colors, opac, radii, width, height, 4, offsets, flatten_ids,
                                           absgrad_out=absgrad)
    assert torch.equal(img2, img)
    assert not absgrad.any()  # filled by the backward only
    ((img2 * v).sum() + (alpha2 * w).sum()).backward()
    torch.testing.assert_close(absgrad, want, rtol=1e-10, atol=1e-12)
    # Cancellation across pixels: |sum| <= sum |.|, strictly for some Gaussians.
    assert bool((absgrad >= m2.grad.abs() - 1e-12).all())
    assert float((absgrad - m2.grad.abs()).max()) > 1e-3
