"""Native CUDA kernels vs the pure-PyTorch reference (on CPU): same checks as test_native_cpu.py.

Skipped without a GPU.  Tolerances as in test_native_cpu.py (the CUDA kernels
use expf and atomics, so sums differ from the reference's order by a few ulps).
That the CUDA sources compile is checked in CI by scripts/check_cuda_compile.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


import langfield_test_native_common as _common  # registered by tests/render/conftest.py

TILE, assert_grad_close, grads_of = _common.TILE, _common.assert_grad_close, _common.grads_of
make_scene, render_with = _common.make_scene, _common.render_with

REL_RASTER = 2e-3
REL_GEOM = 5e-3
GEOM_KEYS = ("means", "quats", "scales")


@pytest.fixture(scope="module")
def native():
    from langfield.render import native as mod

    if not mod.available("cuda"):
        pytest.fail(f"GPU present but CUDA kernels unavailable: {mod.build_error('cuda')}")
    return mod


def ref():
    from langfield.render import reference

    return reference


def check_forward(native, s, **kw):
    o_ref, a_ref, m_ref, r_ref = render_with(ref(), s, **kw)
    o_nat, a_nat, m_nat, r_nat = render_with(native, s.to("cuda"), **kw)
    assert torch.equal(r_ref, r_nat.cpu())
    torch.testing.assert_close(m_nat.cpu(), m_ref, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(o_nat.cpu(), o_ref, rtol=0, atol=2e-4)
    torch.testing.assert_close(a_nat.cpu(), a_ref, rtol=0, atol=2e-4)
    return o_ref, a_ref


def check_backward(native, s, seed=7, **kw):
    g_ref = grads_of(ref(), s, seed, **kw)
    g_nat = grads_of(native, s.to("cuda"), seed, **kw)
    for k in g_ref:
        assert_grad_close(k, g_nat[k], g_ref[k], REL_GEOM if k in GEOM_KEYS else REL_RASTER)


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_forward_rgb_sh_degrees(native, degree):
    s = make_scene(250, seed=degree, sh_degree=3)
    _, alpha = check_forward(native, s, sh_degree=degree, with_depth=False)
    assert 0.2 < float(alpha.mean()) < 1.0


@pytest.mark.parametrize("ch", [1, 3, 8, 16, 33, 64, 70])
def test_forward_channel_counts(native, ch):
    s = make_scene(200, seed=10 + ch, n_features=ch)
    out, _ = check_forward(native, s, sh_degree=None, with_depth=False, n_features=ch)
    assert out.shape[-1] == ch


def test_forward_depth_alpha_background_multi_camera(native):
    s = make_scene(300, seed=3, n_cams=2)
    bg = torch.tensor([[0.2, 0.5, 0.9, 0.0, 0.0, 0.0], [1.0, 0.0, 0.3, 0.0, 0.0, 0.0]])
    o_ref, a_ref, _, _ = render_with(ref(), s, sh_degree=2, n_features=2, backgrounds=bg)
    o_nat, a_nat, _, _ = render_with(native, s.to("cuda"), sh_degree=2, n_features=2, backgrounds=bg.cuda())
    torch.testing.assert_close(o_nat.cpu(), o_ref, rtol=0, atol=2e-4)
    torch.testing.assert_close(a_nat.cpu(), a_ref, rtol=0, atol=2e-4)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_forward_tiny_counts(native, n):
    check_forward(native, make_scene(n, seed=4), n_features=3)


def test_forward_culling_edge_cases(native):
    s = make_scene(120, seed=5, width=45, height=19)
    s.means[0, 2] = -3.0
    s.means[1, 2] = 0.005
    s.means[2] = torch.tensor([100.0, 0.0, 3.0])
    s.means[3] = torch.tensor([0.0, 0.0, 1e11])
    s.scales[4] = 50.0
    s.scales[5] = 1e-6
    check_forward(native, s, n_features=4)


def test_isect_tiles_exact(native):
    s = make_scene(300, seed=9, n_cams=2, width=53, height=35)
    radii, means2d, depths, _ = ref().project_gaussians(
        s.means, s.quats, s.scales, s.viewmats, s.Ks, s.width, s.height
    )
    depths[0, :10] = depths[0, 10]
    tw, th = (s.width + TILE - 1) // TILE, (s.height + TILE - 1) // TILE
    got = native.isect_tiles(means2d.cuda(), radii.cuda(), depths.cuda(), TILE, tw, th)
    want = ref().isect_tiles(means2d, radii, depths, TILE, tw, th)
    for g, w in zip(got, want):
        assert torch.equal(g.cpu(), w)
    assert torch.equal(
        native.isect_offset_encode(got[1], 2, tw, th).cpu(), ref().isect_offset_encode(want[1], 2, tw, th)
    )


@pytest.mark.parametrize("degree", [0, 3])
def test_backward_rgb_depth_features(native, degree):
    check_backward(native, make_scene(200, seed=20 + degree, n_cams=2), sh_degree=degree, n_features=5)


@pytest.mark.parametrize("ch", [1, 16, 33, 70])
def test_backward_channel_counts(native, ch):
    s = make_scene(150, seed=30 + ch, n_features=ch, width=35, height=21)
    check_backward(native, s, sh_degree=None, with_depth=False, n_features=ch)


def test_cpu_and_cuda_agree_on_a_larger_scene(native):
    s = make_scene(3000, seed=70, width=96, height=64, n_features=16)
    o_cpu, a_cpu, _, _ = render_with(native, s, n_features=16)
    o_gpu, a_gpu, _, _ = render_with(native, s.to("cuda"), n_features=16)
    torch.testing.assert_close(o_gpu.cpu(), o_cpu, rtol=0, atol=5e-4)
    torch.testing.assert_close(a_gpu.cpu(), a_cpu, rtol=0, atol=5e-4)
