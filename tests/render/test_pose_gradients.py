"""Gradients with respect to the world->camera ``viewmats`` (camera-pose gradients).

* the reference: float64 ``gradcheck`` of the projection (means2d, depths, conics) and of the
  SH view directions, and a finite-difference check of a whole rendered image along SE(3)
  perturbations of the pose;
* native CPU kernels and the CUDA kernels (on a GPU when there is one, and on the CPU
  emulator always): ``v_viewmats`` against the reference's autograd, with the forward and
  the other gradients unchanged;
* when ``viewmats`` does not require grad, the kernels are not asked for the pose gradient
  (no reduction over Gaussians) and nothing is returned for it.
"""

from __future__ import annotations

import platform

import pytest
import torch

import langfield_test_native_common as _common  # registered by tests/render/conftest.py
from langfield.render import native, render
from langfield.render import reference as ref

make_scene = _common.make_scene
REL = 5e-3  # as for means/quats/scales in test_native_cpu.py: long chains in float32


def _render_loss(s, viewmats, backend, means=None, seed=3):
    """A fixed random linear functional of the rendered rgb + depth through ``render()``."""
    out = render(s.means if means is None else means, s.quats, s.scales, s.opacities, viewmats, s.Ks, s.width,
                 s.height, sh_coeffs=s.sh, render_depth=True, backend=backend)
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(out.rgb.shape, generator=g, dtype=out.rgb.dtype)
    vd = torch.randn(out.depth.shape, generator=g, dtype=out.rgb.dtype)
    return (out.rgb * v).sum() + (out.depth * vd).sum(), out


def _pose_grads(s, backend):
    vm = s.viewmats.clone().requires_grad_(True)
    means = s.means.clone().requires_grad_(True)
    loss, out = _render_loss(s, vm, backend, means=means)
    loss.backward()
    return vm.grad, means.grad, out.rgb.detach(), out.depth.detach()


def _assert_close(name, got, want, rel=REL):
    scale = float(want.abs().max())
    assert scale > 0, f"{name}: the reference gradient is zero (test scene too weak)"
    err = (got - want).abs()
    assert float(err.max()) <= rel * scale, f"{name}: max err {float(err.max()):.3g} > {rel} * {scale:.3g}"
    assert float((got - want).norm()) <= rel * float(want.norm()), f"{name}: norm err too large"


# ----------------------------------------------------------------- reference


def test_reference_projection_pose_gradcheck_float64():
    s = make_scene(12, seed=2, width=20, height=14, n_cams=2)
    means, quats, scales = s.means.double(), s.quats.double(), s.scales.double()
    Ks = s.Ks.double()
    vm = s.viewmats.double().requires_grad_(True)
    radii = ref.project_gaussians(means, quats, scales, vm, Ks, s.width, s.height)[0]
    assert int((radii > 0).sum()) >= 12  # most Gaussians visible: the check covers real work

    def proj(viewmats):
        _, m2d, depths, conics = ref.project_gaussians(means, quats, scales, viewmats, Ks, s.width, s.height)
        return m2d, depths, conics

    assert torch.autograd.gradcheck(proj, (vm,), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_reference_view_direction_pose_gradcheck_float64():
    from langfield.render import camera_centres

    s = make_scene(10, seed=4, n_cams=2)
    vm = s.viewmats.double().requires_grad_(True)
    sh = s.sh.double()

    def colour(viewmats):
        dirs = s.means.double()[None] - camera_centres(viewmats)[:, None]
        return ref.spherical_harmonics(3, dirs, sh[None].expand(2, -1, -1, -1))

    assert torch.autograd.gradcheck(colour, (vm,), eps=1e-6, atol=1e-5, rtol=1e-4)


def _hat(w):
    x, y, z = w.tolist()
    return torch.tensor([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]], dtype=w.dtype)


def _se3_perturbed(viewmats, xi, eps):
    """viewmats with camera 0 moved by exp(eps * xi) on the left (camera frame)."""
    d = torch.eye(4, dtype=viewmats.dtype)
    d[:3, :3] = torch.linalg.matrix_exp(_hat(eps * xi[:3]))
    d[:3, 3] = eps * xi[3:]
    out = viewmats.clone()
    out[0] = d @ viewmats[0]
    return out


def test_reference_render_pose_gradient_matches_finite_differences():
    """Whole image (projection + SH colour + compositing) along 4 random SE(3) directions, float64."""
    s = make_scene(60, seed=5, width=24, height=18, n_cams=2)
    s = type(s)(**{k: (v.double() if isinstance(v, torch.Tensor) else v) for k, v in s.__dict__.items()})
    vm = s.viewmats.clone().requires_grad_(True)
    loss, _ = _render_loss(s, vm, "torch")
    (grad,) = torch.autograd.grad(loss, vm)
    g = torch.Generator().manual_seed(0)
    for _ in range(4):
        xi = torch.randn(6, generator=g, dtype=torch.float64) * torch.tensor([0.02] * 3 + [0.05] * 3,
                                                                              dtype=torch.float64)
        h = 1e-4
        with torch.no_grad():
            fd = (_render_loss(s, _se3_perturbed(s.viewmats, xi, h), "torch")[0]
                  - _render_loss(s, _se3_perturbed(s.viewmats, xi, -h), "torch")[0]) / (2 * h)
        # Directional derivative of the pose: d/deps of exp(eps xi) V at 0 is xi^ V.
        xi_hat = torch.zeros(4, 4, dtype=torch.float64)
        xi_hat[:3, :3] = _hat(xi[:3])
        xi_hat[:3, 3] = xi[3:]
        analytic = float((grad[0] * (xi_hat @ s.viewmats[0])).sum())
        assert abs(float(fd)) > 1e-3  # the loss does depend on the pose
        # Compositing has hard cut-offs (alpha >= 1/255, radius boxes): allow a little slack.
        assert abs(analytic - float(fd)) <= 2e-3 * max(1.0, abs(float(fd))), (analytic, float(fd))


# ----------------------------------------------------------------- native backends


def _check_parity(s, backend):
    vm_ref, m_ref, rgb_ref, d_ref = _pose_grads(s, "torch")
    vm_nat, m_nat, rgb_nat, d_nat = _pose_grads(s, backend)
    torch.testing.assert_close(rgb_nat.cpu(), rgb_ref, rtol=0, atol=2e-4)  # forward unchanged
    torch.testing.assert_close(d_nat.cpu(), d_ref, rtol=0, atol=2e-3)
    _assert_close("means", m_nat.cpu(), m_ref)
    _assert_close("viewmats", vm_nat.cpu(), vm_ref)
    assert float(vm_nat[:, 3].abs().max()) == 0.0  # the bottom row is constant
    return vm_nat


cpu_only = pytest.mark.skipif(not native.available("cpu"), reason=f"native CPU: {native.build_error('cpu')}")


@cpu_only
@pytest.mark.parametrize("n_cams", [1, 3])
def test_cpu_pose_gradient_matches_reference(n_cams):
    _check_parity(make_scene(300, seed=n_cams, n_cams=n_cams), "cpu")


@cpu_only
def test_cpu_pose_gradient_is_deterministic():
    s = make_scene(400, seed=9, n_cams=2)
    a, b = _pose_grads(s, "cpu")[0], _pose_grads(s, "cpu")[0]
    assert torch.equal(a, b)


@pytest.fixture(scope="module")
def emulated():
    import langfield_test_cuda_emu as cuda_emu  # registered by tests/render/conftest.py

    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("the CUDA emulator's context switch is x86-64 only")
    if not cuda_emu.available():
        pytest.fail(f"CUDA emulator did not build: {cuda_emu.build_error()}")
    return cuda_emu


def test_emulated_cuda_pose_gradient_matches_reference(emulated):
    # 300 Gaussians: two blocks of 256 threads, the second with idle lanes in its warp reductions.
    s = make_scene(300, seed=11, n_cams=2)
    with emulated.routed_to_emulator():
        _check_parity(s, "cpu")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_pose_gradient_matches_reference():
    s = make_scene(3000, seed=12, n_cams=2)
    vm_ref = _pose_grads(s, "torch")[0]
    vm_gpu = _pose_grads(s.to("cuda"), "cuda")[0]
    _assert_close("viewmats", vm_gpu.cpu(), vm_ref)


@cpu_only
def test_no_pose_gradient_requested_without_requires_grad(monkeypatch):
    """viewmats without requires_grad: the kernel is told not to compute it, and returns nothing for it."""
    k = native._kernels(torch.device("cpu"))
    asked = []
    original = k.project_bwd

    def spy(*args):
        result = original(*args)
        asked.append((args[-1], result[3]))
        return result

    monkeypatch.setattr(k, "project_bwd", spy)
    s = make_scene(200, seed=13)
    means = s.means.clone().requires_grad_(True)
    loss, _ = _render_loss(s, s.viewmats, "cpu", means=means)
    loss.backward()
    assert asked == [(False, None)]
    plain = means.grad.clone()
    asked.clear()
    _, m_with, _, _ = _pose_grads(s, "cpu")
    assert asked[0][0] is True and asked[0][1] is not None
    # The other gradients are the same (up to rounding: the pose variant is compiled separately).
    torch.testing.assert_close(m_with, plain, rtol=1e-5, atol=1e-6)
