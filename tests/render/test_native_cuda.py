"""Native CUDA kernels vs the pure-PyTorch reference: the checks of test_native_cpu.py.

Every test runs on two targets:

* ``gpu``: the CUDA extension on a GPU (skipped without one);
* ``emu``: the same ``cuda/cuda/*.cu`` sources compiled as C++ for the CPU
  emulator (``cuda/emu``, one fiber per CUDA thread), so the kernels' logic
  (indexing, batching through shared memory, barriers, warp reductions,
  atomics, chunked channel widths) is checked on machines without a GPU.
  The emulator also fails a launch on undefined behaviour that a GPU may
  hide: a barrier some threads skip, a warp collective naming a lane that
  does not exist or has exited.

Tolerances as in test_native_cpu.py (the CUDA kernels sum gradients in a
different order, by warp shuffles and atomics, so results differ from the
reference's by a few ulps).  That the CUDA sources compile with nvcc is
checked in CI by scripts/check_cuda_compile.py.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Any, Iterator

import pytest
import torch

import langfield_test_native_common as _common  # registered by tests/render/conftest.py

TILE, assert_grad_close, grads_of = _common.TILE, _common.assert_grad_close, _common.grads_of
make_scene, render_with = _common.make_scene, _common.render_with

REL_RASTER = 2e-3
REL_GEOM = 5e-3
GEOM_KEYS = ("means", "quats", "scales")


@dataclass
class Target:
    """Where the CUDA kernels run: the module whose ops to call and the tensors' device."""

    native: Any
    device: str


@pytest.fixture(scope="module", params=[pytest.param("gpu", marks=pytest.mark.cuda), "emu"])
def target(request) -> Iterator[Target]:
    from langfield.render import native

    if request.param == "gpu":
        if not torch.cuda.is_available():
            pytest.skip("needs a CUDA GPU")
        if not native.available("cuda"):
            pytest.fail(f"GPU present but CUDA kernels unavailable: {native.build_error('cuda')}")
        yield Target(native, "cuda")
        return
    import langfield_test_cuda_emu as cuda_emu  # registered by tests/render/conftest.py

    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("the CUDA emulator's context switch is x86-64 only")
    if not cuda_emu.available():
        pytest.fail(f"CUDA emulator did not build: {cuda_emu.build_error()}")
    # Native ops on CPU tensors run the emulated CUDA kernels for this module's tests.
    with cuda_emu.routed_to_emulator():
        yield Target(native, "cpu")


def ref():
    from langfield.render import reference

    return reference


def check_forward(t: Target, s, **kw):
    o_ref, a_ref, m_ref, r_ref = render_with(ref(), s, **kw)
    o_nat, a_nat, m_nat, r_nat = render_with(t.native, s.to(t.device), **kw)
    assert torch.equal(r_ref, r_nat.cpu())
    torch.testing.assert_close(m_nat.cpu(), m_ref, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(o_nat.cpu(), o_ref, rtol=0, atol=2e-4)
    torch.testing.assert_close(a_nat.cpu(), a_ref, rtol=0, atol=2e-4)
    return o_ref, a_ref


def check_backward(t: Target, s, seed=7, **kw):
    g_ref = grads_of(ref(), s, seed, **kw)
    g_nat = grads_of(t.native, s.to(t.device), seed, **{k: _to(v, t.device) for k, v in kw.items()})
    for k in g_ref:
        assert_grad_close(k, g_nat[k], g_ref[k], REL_GEOM if k in GEOM_KEYS else REL_RASTER)


def _to(v, device):
    return v.to(device) if isinstance(v, torch.Tensor) else v


# ----------------------------------------------------------------- forward


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_forward_rgb_sh_degrees(target, degree):
    s = make_scene(250, seed=degree, sh_degree=3)
    _, alpha = check_forward(target, s, sh_degree=degree, with_depth=False)
    assert 0.2 < float(alpha.mean()) < 1.0


@pytest.mark.parametrize("ch", [1, 3, 8, 16, 33, 64, 70])
def test_forward_channel_counts(target, ch):
    s = make_scene(200, seed=10 + ch, n_features=ch)
    out, _ = check_forward(target, s, sh_degree=None, with_depth=False, n_features=ch)
    assert out.shape[-1] == ch


def test_forward_depth_alpha_background_multi_camera(target):
    s = make_scene(300, seed=3, n_cams=2)
    bg = torch.tensor([[0.2, 0.5, 0.9, 0.0, 0.0, 0.0], [1.0, 0.0, 0.3, 0.0, 0.0, 0.0]])
    o_ref, a_ref, _, _ = render_with(ref(), s, sh_degree=2, n_features=2, backgrounds=bg)
    o_nat, a_nat, _, _ = render_with(target.native, s.to(target.device), sh_degree=2, n_features=2,
                                     backgrounds=bg.to(target.device))
    torch.testing.assert_close(o_nat.cpu(), o_ref, rtol=0, atol=2e-4)
    torch.testing.assert_close(a_nat.cpu(), a_ref, rtol=0, atol=2e-4)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_forward_tiny_counts(target, n):
    check_forward(target, make_scene(n, seed=4), n_features=3)


def test_forward_culling_edge_cases(target):
    s = make_scene(120, seed=5, width=45, height=19)
    s.means[0, 2] = -3.0
    s.means[1, 2] = 0.005
    s.means[2] = torch.tensor([100.0, 0.0, 3.0])
    s.means[3] = torch.tensor([0.0, 0.0, 1e11])
    s.scales[4] = 50.0
    s.scales[5] = 1e-6
    check_forward(target, s, n_features=4)


def test_forward_backward_needles_and_faint_gaussians(target):
    s = make_scene(160, seed=8, width=51, height=37)
    g = torch.Generator().manual_seed(8)
    s.scales = torch.stack([torch.full((160,), 0.4), torch.full((160,), 0.006), torch.full((160,), 0.01)], 1)
    s.scales = s.scales * torch.exp(torch.randn(160, 3, generator=g) * 0.2)
    s.opacities = torch.cat([torch.rand(80, generator=g) * 0.03 + 0.003, torch.rand(80, generator=g) * 0.9 + 0.05])
    check_forward(target, s, sh_degree=1, n_features=3)
    check_backward(target, s, sh_degree=1, with_depth=True, n_features=3)


@pytest.mark.parametrize("tile_size", [8, 12, 32])
def test_forward_backward_other_tile_sizes(target, tile_size):
    """12 x 12 = 144 threads is not a whole number of warps: the kernels pad the
    block to 160 so the full-mask warp reductions name only existing lanes."""
    s = make_scene(150, seed=44, width=37, height=29)
    check_forward(target, s, sh_degree=1, n_features=4, tile_size=tile_size)
    check_backward(target, s, seed=3, sh_degree=1, n_features=4, tile_size=tile_size)


# ----------------------------------------------------------------- single ops


def test_projection_and_sh_ops_match_reference(target):
    s = make_scene(400, seed=8, n_cams=3)
    d = s.to(target.device)
    got = target.native.project_gaussians(d.means, d.quats, d.scales, d.viewmats, d.Ks, s.width, s.height)
    want = ref().project_gaussians(s.means, s.quats, s.scales, s.viewmats, s.Ks, s.width, s.height)
    assert torch.equal(got[0].cpu(), want[0])
    for g, w in zip(got[1:], want[1:]):
        torch.testing.assert_close(g.cpu(), w, rtol=2e-5, atol=1e-4)
    dirs = torch.randn(300, 3)  # more than one 256-thread block
    coeffs = torch.randn(300, 16, 3)
    for deg in range(4):
        d1 = dirs.clone().to(target.device).requires_grad_()
        c1 = coeffs.clone().to(target.device).requires_grad_()
        d2, c2 = dirs.clone().requires_grad_(), coeffs.clone().requires_grad_()
        o1 = target.native.spherical_harmonics(deg, d1, c1)
        o2 = ref().spherical_harmonics(deg, d2, c2)
        torch.testing.assert_close(o1.cpu(), o2, rtol=1e-5, atol=1e-5)
        v = torch.randn_like(o2)
        (o1 * v.to(target.device)).sum().backward()
        (o2 * v).sum().backward()
        torch.testing.assert_close(c1.grad.cpu(), c2.grad, rtol=1e-5, atol=1e-5)
        g2 = d2.grad if d2.grad is not None else torch.zeros_like(dirs)
        torch.testing.assert_close(d1.grad.cpu(), g2, rtol=1e-4, atol=1e-5)


def test_isect_tiles_exact(target):
    s = make_scene(300, seed=9, n_cams=2, width=53, height=35)
    radii, means2d, depths, _ = ref().project_gaussians(
        s.means, s.quats, s.scales, s.viewmats, s.Ks, s.width, s.height
    )
    depths[0, :10] = depths[0, 10]  # ties keep Gaussian order (stable sort)
    depths[1, :50] = depths[1, :50] * torch.logspace(-3, 3, 50)  # every radix digit in use
    tw, th = (s.width + TILE - 1) // TILE, (s.height + TILE - 1) // TILE
    dev = target.device
    got = target.native.isect_tiles(means2d.to(dev), radii.to(dev), depths.to(dev), TILE, tw, th)
    want = ref().isect_tiles(means2d, radii, depths, TILE, tw, th)
    for g, w in zip(got, want):
        assert torch.equal(g.cpu(), w)
    assert torch.equal(
        target.native.isect_offset_encode(got[1], 2, tw, th).cpu(), ref().isect_offset_encode(want[1], 2, tw, th)
    )


# ----------------------------------------------------------------- backward


@pytest.mark.parametrize("degree", [0, 3])
def test_backward_rgb_depth_features(target, degree):
    check_backward(target, make_scene(200, seed=20 + degree, n_cams=2), sh_degree=degree, n_features=5)


@pytest.mark.parametrize("ch", [1, 16, 33, 70])
def test_backward_channel_counts(target, ch):
    s = make_scene(150, seed=30 + ch, n_features=ch, width=35, height=21)
    check_backward(target, s, sh_degree=None, with_depth=False, n_features=ch)


def test_backward_background_and_edge_cases(target):
    s = make_scene(150, seed=41, width=29, height=33)
    s.means[0, 2] = -2.0
    s.scales[1] = 10.0
    s.scales[2] = 1e-5
    bg = torch.tensor([[0.3, 0.6, 0.1, 0.0]], requires_grad=True)
    bg2 = bg.detach().clone().to(target.device).requires_grad_()
    g_ref = grads_of(ref(), s, 5, sh_degree=1, backgrounds=bg)
    g_nat = grads_of(target.native, s.to(target.device), 5, sh_degree=1, backgrounds=bg2)
    for k in g_ref:
        assert_grad_close(k, g_nat[k], g_ref[k], REL_GEOM if k in GEOM_KEYS else REL_RASTER)
    torch.testing.assert_close(bg2.grad.cpu(), bg.grad, rtol=1e-4, atol=1e-4)
    assert float(g_nat["means"][0].abs().max()) == 0.0  # culled: no gradient


def test_backward_through_alpha_only(target):
    s = make_scene(80, seed=90)

    def grads_of_alpha(mod, sc):
        ls = _common.leaf_scene(sc)
        _, alpha, _, _ = render_with(mod, ls, sh_degree=0, with_depth=False)
        alpha.sum().backward()
        return {k: getattr(ls, k).grad.cpu() for k in ("means", "scales", "opacities")}

    g_ref = grads_of_alpha(ref(), s)
    g_nat = grads_of_alpha(target.native, s.to(target.device))
    for k in g_ref:
        assert_grad_close(k, g_nat[k], g_ref[k], REL_GEOM)


def test_means2d_grad_and_radii_for_densification(target):
    s = make_scene(100, seed=50).to(target.device)
    s.means.requires_grad_(True)
    out, _, means2d, radii = render_with(target.native, s)
    out.sum().backward()
    assert means2d.grad is not None and means2d.grad.shape == (1, 100, 2)
    visible = radii[0] > 0
    assert bool((means2d.grad[0][~visible] == 0).all())
    assert float(means2d.grad[0][visible].abs().sum()) > 0


@pytest.mark.parametrize("tile_size", [16, 12])
def test_absgrad_matches_reference(target, tile_size):
    s = make_scene(200, seed=52, n_cams=2, width=37, height=29, n_features=6)
    a_ref, g_ref = _common.absgrad_of(ref(), s, tile_size=tile_size)
    a_nat, g_nat = _common.absgrad_of(target.native, s.to(target.device), tile_size=tile_size)
    assert_grad_close("absgrad", a_nat, a_ref, REL_RASTER)
    assert_grad_close("means2d", g_nat, g_ref, REL_RASTER)


def test_agrees_with_reference_on_a_larger_scene(target):
    """Many Gaussians per tile: several shared-memory batches per tile and early termination."""
    s = make_scene(1500, seed=70, width=48, height=40, n_features=16, scale_range=(0.1, 0.5))
    _, a_ref = check_forward(target, s, n_features=16)
    # Most pixels are opaque, so most stop early (the done / last_ids paths), and tiles hold
    # more Gaussians than one 256-slot batch.
    assert float((a_ref > 0.999).float().mean()) > 0.9
    radii, means2d, depths, _ = ref().project_gaussians(s.means, s.quats, s.scales, s.viewmats, s.Ks, 48, 40)
    tiles_per_gauss, _, _ = ref().isect_tiles(means2d, radii, depths, TILE, 3, 3)
    assert int(tiles_per_gauss.sum()) > 3 * 256 * 9 // 2
    check_backward(target, s, n_features=16)
