"""Native CPU kernels vs the pure-PyTorch reference (forward and backward parity).

Tolerances (float32 both sides):
* forward colours / alphas / depth: abs 2e-4 (Note 7 of docs/rasterizer.md:
  a pixel at the stop threshold may differ by ~1e-4 * |colour|);
* projection outputs: rel 1e-5; radii and intersection lists: exact;
* gradients: elementwise <= REL * max|ref| and in norm <= REL * ||ref|| with
  REL = 2e-3 for the compositing inputs (means2d, opacities, colours,
  features, SH) and 5e-3 for means / quats / scales (longer chains; the
  backward recovers T by division, which loses a few ulps per step).
"""

from __future__ import annotations

import pytest
import torch

from langfield.render import _build, native
from langfield.render import reference as ref


import langfield_test_native_common as _common  # registered by tests/render/conftest.py

TILE, assert_grad_close, grads_of = _common.TILE, _common.assert_grad_close, _common.grads_of
make_scene, render_with = _common.make_scene, _common.render_with
absgrad_of = _common.absgrad_of

pytestmark = pytest.mark.skipif(not native.available("cpu"), reason=f"native CPU kernels: {native.build_error('cpu')}")


@pytest.fixture(scope="module", autouse=True, params=["auto", "avx2", "portable"])
def cpu_build(request):
    """Every test runs on three builds of the CPU kernels: the one this machine
    gets (``auto``: on x86 with AVX2 + FMA, the half-row rasterizer for
    16-pixel tiles, cuda/cpu/rasterize_rows.cpp; with AVX-512 flags where the
    CPU has them), ``avx2`` (the same without AVX-512, as on most laptops:
    half the vector registers) and ``portable`` (no vector ISA flags, as on
    ARM or an old x86: the Gaussian-major rasterizer of
    cuda/cpu/rasterize.cpp for every tile size)."""
    if request.param == "auto":
        yield native._kernels(torch.device("cpu"))
        return
    from langfield.render._native_backends import CpuKernels

    kernels = CpuKernels(_build.cpu_library("generic" if request.param == "portable" else request.param))
    saved = native._KERNELS["cpu"]
    native._KERNELS["cpu"] = kernels
    try:
        yield kernels
    finally:
        native._KERNELS["cpu"] = saved

REL_RASTER = 2e-3
REL_GEOM = 5e-3
GEOM_KEYS = ("means", "quats", "scales")


def check_forward(s, **kw):
    o_ref, a_ref, m_ref, r_ref = render_with(ref, s, **kw)
    o_nat, a_nat, m_nat, r_nat = render_with(native, s, **kw)
    assert torch.equal(r_ref, r_nat)
    torch.testing.assert_close(m_nat, m_ref, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(o_nat, o_ref, rtol=0, atol=2e-4)
    torch.testing.assert_close(a_nat, a_ref, rtol=0, atol=2e-4)
    return o_ref, a_ref


def check_backward(s, seed=7, **kw):
    g_ref = grads_of(ref, s, seed, **kw)
    g_nat = grads_of(native, s, seed, **kw)
    for k in g_ref:
        assert_grad_close(k, g_nat[k], g_ref[k], REL_GEOM if k in GEOM_KEYS else REL_RASTER)


# ----------------------------------------------------------------- forward


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_forward_rgb_sh_degrees(degree):
    s = make_scene(250, seed=degree, sh_degree=3)
    out, alpha = check_forward(s, sh_degree=degree, with_depth=False)
    assert out.shape == (1, s.height, s.width, 3)
    assert 0.2 < float(alpha.mean()) < 1.0  # the scene actually covers the image


@pytest.mark.parametrize("ch", [1, 3, 8, 16, 33, 64, 70])
def test_forward_channel_counts(ch):
    s = make_scene(200, seed=10 + ch, n_features=ch)
    out, _ = check_forward(s, sh_degree=None, with_depth=False, n_features=ch)
    assert out.shape[-1] == ch


def test_forward_depth_alpha_background_multi_camera():
    s = make_scene(300, seed=3, n_cams=2)
    bg = torch.tensor([[0.2, 0.5, 0.9, 0.0, 0.0, 0.0], [1.0, 0.0, 0.3, 0.0, 0.0, 0.0]])
    out, alpha = check_forward(s, sh_degree=2, with_depth=True, n_features=2, backgrounds=bg)
    # Background shows where alpha is small.
    empty = alpha[..., 0] < 1e-3
    if bool(empty.any()):
        torch.testing.assert_close(out[empty][:, :3], bg[:, :3].unsqueeze(1).expand(2, *out.shape[1:3], 3)[empty])


@pytest.mark.parametrize("n", [0, 1, 2])
def test_forward_tiny_counts(n):
    s = make_scene(n, seed=4)
    out, alpha = check_forward(s, n_features=3)
    if n == 0:
        assert float(alpha.abs().max()) == 0.0 and float(out.abs().max()) == 0.0


def test_forward_culling_edge_cases():
    s = make_scene(120, seed=5, width=45, height=19)  # non-square, not a multiple of 16
    means = s.means.clone()
    means[0, 2] = -3.0  # behind the camera
    means[1, 2] = 0.005  # closer than near
    means[2] = torch.tensor([100.0, 0.0, 3.0])  # far off-screen
    means[3] = torch.tensor([0.0, 0.0, 1e11])  # beyond far
    scales = s.scales.clone()
    scales[4] = 50.0  # huge: covers the whole image
    scales[5] = 1e-6  # tiny: only the 0.3 px low-pass remains
    s.means, s.scales = means, scales
    check_forward(s, n_features=4)
    radii = native.project_gaussians(s.means, s.quats, s.scales, s.viewmats, s.Ks, s.width, s.height)[0]
    assert radii[0, :4].tolist() == [0, 0, 0, 0]
    assert int(radii[0, 4]) > s.width and int(radii[0, 5]) >= 1


def test_forward_backward_needles_and_faint_gaussians():
    """Thin, rotated Gaussians and opacities near 1/255: the native kernels cut
    each Gaussian's pixel box down to its alpha >= 1/255 ellipse, which here is
    far smaller than the 3-sigma radius box; the result must not change."""
    s = make_scene(160, seed=8, width=51, height=37)
    g = torch.Generator().manual_seed(8)
    s.scales = torch.stack([torch.full((160,), 0.4), torch.full((160,), 0.006), torch.full((160,), 0.01)], 1)
    s.scales = s.scales * torch.exp(torch.randn(160, 3, generator=g) * 0.2)
    s.opacities = torch.cat([torch.rand(80, generator=g) * 0.03 + 0.003, torch.rand(80, generator=g) * 0.9 + 0.05])
    check_forward(s, sh_degree=1, n_features=3)
    check_backward(s, sh_degree=1, with_depth=True, n_features=3)


@pytest.mark.parametrize("tile_size", [8, 16, 32])
def test_forward_independent_of_tile_size(tile_size):
    s = make_scene(150, seed=6, width=37, height=23)
    out16, a16, _, _ = render_with(native, s, n_features=3, tile_size=16)
    out_t, a_t, _, _ = render_with(native, s, n_features=3, tile_size=tile_size)
    torch.testing.assert_close(out_t, out16, rtol=0, atol=1e-5)
    torch.testing.assert_close(a_t, a16, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "n_features,sh_degree,with_depth",
    # 16 channels, 4 (RGB + depth), 9, and 37 (a padded 64-wide chunk: four 16-channel blocks)
    [(16, None, False), (0, 1, True), (5, 0, True), (33, 1, True)],
)
def test_dense_scene_batches_and_early_stops(n_features, sh_degree, with_depth):
    """Hundreds of Gaussians per tile: the half-row kernels bin them in
    several batches of 64, and most pixels stop early (the done / last_ids
    paths, and half rows that stop being binned)."""
    s = make_scene(1500, seed=70, width=48, height=40, n_features=max(n_features, 1), scale_range=(0.1, 0.5))
    _, a_ref = check_forward(s, sh_degree=sh_degree, with_depth=with_depth, n_features=n_features)
    assert float((a_ref > 0.999).float().mean()) > 0.9
    radii, means2d, depths, _ = ref.project_gaussians(s.means, s.quats, s.scales, s.viewmats, s.Ks, 48, 40)
    tiles_per_gauss, _, _ = ref.isect_tiles(means2d, radii, depths, TILE, 3, 3)
    assert int(tiles_per_gauss.sum()) > 9 * 3 * 64  # more than three batches per tile on average
    check_backward(s, sh_degree=sh_degree, with_depth=with_depth, n_features=n_features)


@pytest.mark.parametrize("n_features", [1, 12])
def test_dense_scene_absgrad(n_features):
    """AbsGS on the dense scene, two cameras: channel counts that reduce the
    colour gradient across lanes (5) and that take the pixel-major path (16)."""
    s = make_scene(900, seed=71, width=48, height=40, n_cams=2, n_features=n_features, scale_range=(0.1, 0.5))
    a_ref, g_ref = absgrad_of(ref, s)
    a_nat, g_nat = absgrad_of(native, s)
    assert_grad_close("absgrad", a_nat, a_ref, REL_RASTER)
    assert_grad_close("means2d", g_nat, g_ref, REL_RASTER)


# ----------------------------------------------------------------- single ops


def test_projection_and_sh_ops_match_reference():
    s = make_scene(400, seed=8, n_cams=3)
    got = native.project_gaussians(s.means, s.quats, s.scales, s.viewmats, s.Ks, s.width, s.height)
    want = ref.project_gaussians(s.means, s.quats, s.scales, s.viewmats, s.Ks, s.width, s.height)
    assert torch.equal(got[0], want[0])
    for g, w in zip(got[1:], want[1:]):
        torch.testing.assert_close(g, w, rtol=2e-5, atol=1e-4)
    dirs = torch.randn(50, 3)
    coeffs = torch.randn(50, 16, 3)
    for deg in range(4):
        d1, c1 = dirs.clone().requires_grad_(), coeffs.clone().requires_grad_()
        d2, c2 = dirs.clone().requires_grad_(), coeffs.clone().requires_grad_()
        o1 = native.spherical_harmonics(deg, d1, c1)
        o2 = ref.spherical_harmonics(deg, d2, c2)
        torch.testing.assert_close(o1, o2, rtol=1e-5, atol=1e-5)
        v = torch.randn_like(o1)
        (o1 * v).sum().backward()
        (o2 * v).sum().backward()
        torch.testing.assert_close(c1.grad, c2.grad, rtol=1e-5, atol=1e-5)
        # Degree 0 does not depend on the direction (the reference gives None, native zeros).
        g2 = d2.grad if d2.grad is not None else torch.zeros_like(dirs)
        torch.testing.assert_close(d1.grad, g2, rtol=1e-4, atol=1e-5)


def test_isect_tiles_exact():
    s = make_scene(300, seed=9, n_cams=2, width=53, height=35)
    radii, means2d, depths, _ = ref.project_gaussians(s.means, s.quats, s.scales, s.viewmats, s.Ks, s.width, s.height)
    depths[0, :10] = depths[0, 10]  # ties must keep Gaussian index order
    tw, th = (s.width + TILE - 1) // TILE, (s.height + TILE - 1) // TILE
    got = native.isect_tiles(means2d, radii, depths, TILE, tw, th)
    want = ref.isect_tiles(means2d, radii, depths, TILE, tw, th)
    for g, w in zip(got, want):
        assert torch.equal(g, w)
    assert torch.equal(
        native.isect_offset_encode(got[1], 2, tw, th), ref.isect_offset_encode(want[1], 2, tw, th)
    )


def test_isect_tiles_exact_wide_depth_range():
    """Depths over six decades (every radix digit of the depth key differs) with ties."""
    s = make_scene(3000, seed=10, n_cams=2, width=97, height=61)
    radii, means2d, depths, _ = ref.project_gaussians(s.means, s.quats, s.scales, s.viewmats, s.Ks, s.width, s.height)
    g = torch.Generator().manual_seed(3)
    depths = 10.0 ** (torch.rand(depths.shape, generator=g) * 6 - 2)
    depths[:, ::7] = depths[:, 1:2]  # many exact ties, across both cameras
    tw, th = (s.width + TILE - 1) // TILE, (s.height + TILE - 1) // TILE
    got = native.isect_tiles(means2d, radii, depths, TILE, tw, th)
    want = ref.isect_tiles(means2d, radii, depths, TILE, tw, th)
    assert want[1].numel() > 1000
    for a, b in zip(got, want):
        assert torch.equal(a, b)


# ----------------------------------------------------------------- backward


@pytest.mark.parametrize("degree", [0, 3])
def test_backward_rgb_depth_features(degree):
    s = make_scene(200, seed=20 + degree, n_cams=2)
    check_backward(s, sh_degree=degree, with_depth=True, n_features=5)


@pytest.mark.parametrize("tile_size", [8, 12, 32])
def test_backward_other_tile_sizes(tile_size):
    """Tile sizes other than 16 take the generic kernels (run-time row width;
    12 leaves a partial block of lanes); gradients must still match."""
    s = make_scene(150, seed=44, width=37, height=29)
    g_ref = grads_of(ref, s, 3, sh_degree=1, n_features=4, tile_size=tile_size)
    g_nat = grads_of(native, s, 3, sh_degree=1, n_features=4, tile_size=tile_size)
    for k in g_ref:
        assert_grad_close(k, g_nat[k], g_ref[k], REL_GEOM if k in GEOM_KEYS else REL_RASTER)


@pytest.mark.parametrize("ch", [1, 2, 9, 16, 33, 70])
def test_backward_channel_counts(ch):
    s = make_scene(150, seed=30 + ch, n_features=ch, width=35, height=21)
    check_backward(s, sh_degree=None, with_depth=False, n_features=ch)


def test_backward_background_and_edge_cases():
    s = make_scene(150, seed=41, width=29, height=33)
    s.means[0, 2] = -2.0
    s.scales[1] = 10.0
    s.scales[2] = 1e-5
    bg = torch.tensor([[0.3, 0.6, 0.1, 0.0]], requires_grad=True)
    bg2 = bg.detach().clone().requires_grad_()
    g_ref = grads_of(ref, s, 5, sh_degree=1, backgrounds=bg)
    g_nat = grads_of(native, s, 5, sh_degree=1, backgrounds=bg2)
    for k in g_ref:
        assert_grad_close(k, g_nat[k], g_ref[k], REL_GEOM if k in GEOM_KEYS else REL_RASTER)
    torch.testing.assert_close(bg2.grad, bg.grad, rtol=1e-4, atol=1e-4)
    assert float(g_nat["means"][0].abs().max()) == 0.0  # culled: no gradient


def test_backward_shared_gradient_buffers(monkeypatch):
    """Past a size limit (1 GB) the backward sums into one shared buffer with
    atomics instead of one buffer per thread; the limit set to 0 runs that path."""
    monkeypatch.setenv("LANGFIELD_CPU_PRIVATE_GRAD_BYTES", "0")
    s = make_scene(600, seed=46, width=40, height=36, n_cams=2, n_features=12, scale_range=(0.1, 0.4))
    check_backward(s, sh_degree=1, n_features=12)
    a_ref, g_ref = absgrad_of(ref, s)
    a_nat, g_nat = absgrad_of(native, s)
    assert_grad_close("absgrad", a_nat, a_ref, REL_RASTER)


@pytest.mark.parametrize("tile_size", [16, 12])
def test_absgrad_matches_reference(tile_size):
    s = make_scene(200, seed=52, n_cams=2, width=37, height=29, n_features=6)
    a_ref, g_ref = absgrad_of(ref, s, tile_size=tile_size)
    a_nat, g_nat = absgrad_of(native, s, tile_size=tile_size)
    assert_grad_close("absgrad", a_nat, a_ref, REL_RASTER)
    assert_grad_close("means2d", g_nat, g_ref, REL_RASTER)
    assert float((a_ref - g_ref.abs()).max()) > 0  # a statistic of its own, not |grad|


def test_absgrad_leaves_the_gradients_unchanged_and_is_off_by_default():
    s = make_scene(120, seed=53, n_features=3)
    a_off, g_off = absgrad_of(native, s, absgrad=False)
    a_on, g_on = absgrad_of(native, s)
    assert a_off is None  # not asked for: no output
    assert torch.equal(g_on, g_off)
    assert a_on.shape == (1, 120, 2) and float(a_on.max()) > 0


def test_means2d_grad_and_radii_for_densification():
    s = make_scene(100, seed=50)
    ls = s
    ls.means.requires_grad_(True)
    out, _, means2d, radii = render_with(native, ls)
    out.sum().backward()
    assert means2d.grad is not None and means2d.grad.shape == (1, 100, 2)
    visible = radii[0] > 0
    assert bool((means2d.grad[0][~visible] == 0).all())
    assert float(means2d.grad[0][visible].abs().sum()) > 0


# ----------------------------------------------------------------- plumbing


def test_debug_dump_on_injected_failure(tmp_path, monkeypatch):
    s = make_scene(60, seed=60)
    monkeypatch.setenv("LANGFIELD_DEBUG_DUMP", str(tmp_path))
    radii, means2d, depths, conics = native.project_gaussians(
        s.means, s.quats, s.scales, s.viewmats, s.Ks, s.width, s.height
    )
    tw, th = (s.width + TILE - 1) // TILE, (s.height + TILE - 1) // TILE
    _, ids, flat = native.isect_tiles(means2d, radii, depths, TILE, tw, th)
    offsets = native.isect_offset_encode(ids, 1, tw, th)
    colors = torch.rand(1, 60, 3)
    opac = s.opacities[None]
    assert not list(tmp_path.iterdir())  # healthy calls dump nothing

    kernels = native._kernels(torch.device("cpu"))

    def broken(*a, **k):
        raise RuntimeError("injected failure")

    monkeypatch.setattr(kernels, "rasterize_fwd", broken)
    with pytest.raises(RuntimeError, match="injected"):
        native.rasterize_to_pixels(means2d, conics, colors, opac, radii, s.width, s.height, TILE, offsets, flat)
    dumps = list(tmp_path.glob("rasterize_to_pixels-*.pt"))
    assert len(dumps) == 1
    op, args = native.load_dump(dumps[0])
    assert op == "rasterize_to_pixels"
    out, alpha = getattr(ref, op)(**args)  # replays through the reference
    monkeypatch.undo()
    want, _ = native.rasterize_to_pixels(means2d, conics, colors, opac, radii, s.width, s.height, TILE, offsets, flat)
    torch.testing.assert_close(out, want, rtol=0, atol=2e-4)


def test_debug_dump_on_non_finite_output(tmp_path, monkeypatch):
    s = make_scene(10, seed=61)
    monkeypatch.setenv("LANGFIELD_DEBUG_DUMP", str(tmp_path))
    colors = torch.rand(1, 10, 3)
    colors[0, :] = float("nan")
    radii, means2d, depths, conics = native.project_gaussians(
        s.means, s.quats, s.scales, s.viewmats, s.Ks, s.width, s.height
    )
    tw, th = (s.width + TILE - 1) // TILE, (s.height + TILE - 1) // TILE
    _, ids, flat = native.isect_tiles(means2d, radii, depths, TILE, tw, th)
    offsets = native.isect_offset_encode(ids, 1, tw, th)
    native.rasterize_to_pixels(means2d, conics, colors, s.opacities[None], radii, s.width, s.height, TILE, offsets, flat)
    (dump,) = tmp_path.glob("rasterize_to_pixels-*.pt")
    op, args = native.load_dump(dump)
    assert torch.isnan(args["colors"]).all()


def test_render_entry_point_cpu_backend_matches_torch():
    from langfield.render import render

    s = make_scene(300, seed=80, n_features=6, sh_degree=2)
    kw = dict(sh_coeffs=s.sh, sh_degree=2, features=s.features, render_depth=True)
    args = (s.means, s.quats, s.scales, s.opacities, s.viewmats, s.Ks, s.width, s.height)
    want = render(*args, backend="torch", **kw)
    got = render(*args, backend="cpu", **kw)
    assert got.extras["backend"] == "cpu"
    for name in ("rgb", "alpha", "depth", "features"):
        torch.testing.assert_close(getattr(got, name), getattr(want, name), rtol=0, atol=5e-4)
    assert torch.equal(got.radii, want.radii)


def test_backward_through_alpha_only():
    s = make_scene(80, seed=90)
    g_ref = grads_of_alpha(ref, s)
    g_nat = grads_of_alpha(native, s)
    for k in ("means", "scales", "opacities"):
        assert_grad_close(k, g_nat[k], g_ref[k], REL_GEOM)


def grads_of_alpha(mod, s):
    """Gradients of alpha.sum() alone (the colour output gets no cotangent)."""
    ls = _common.leaf_scene(s)
    _, alpha, _, _ = render_with(mod, ls, sh_degree=0, with_depth=False)
    alpha.sum().backward()
    return {k: getattr(ls, k).grad for k in ("means", "scales", "opacities")}
