"""The public ``langfield.render.render`` entry point and backend choice."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch.autograd import gradcheck

from langfield.gaussians.params import rgb_to_sh0
from langfield.render import backend as backend_mod
from langfield.render import render
from langfield.types import LangfieldError

W, H = 20, 14


def cameras(n_cams: int = 1, dtype=torch.float32):
    viewmats = torch.eye(4, dtype=dtype).repeat(n_cams, 1, 1)
    viewmats[:, 0, 3] = torch.linspace(0.0, 0.2, n_cams, dtype=dtype)
    Ks = torch.tensor([[18.0, 0.0, W / 2], [0.0, 18.0, H / 2], [0.0, 0.0, 1.0]], dtype=dtype).repeat(n_cams, 1, 1)
    return viewmats, Ks


def gaussians(n: int, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g, dtype=dtype) - 0.5) * torch.tensor([2.0, 1.5, 1.0], dtype=dtype)
    means[:, 2] += 3.0
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = torch.rand(n, 3, generator=g, dtype=dtype) * 0.2 + 0.05
    opacities = torch.rand(n, generator=g, dtype=dtype) * 0.8 + 0.1
    return means, quats, scales, opacities, g


def test_shapes_and_types():
    means, quats, scales, opac, g = gaussians(25)
    viewmats, Ks = cameras(2)
    sh = torch.randn(25, 16, 3, generator=g) * 0.3
    feats = torch.randn(25, 7, generator=g)
    out = render(means, quats, scales, opac, viewmats, Ks, W, H, sh_coeffs=sh, features=feats, backend="torch")
    assert out.rgb.shape == (2, H, W, 3) and out.alpha.shape == (2, H, W, 1)
    assert out.depth.shape == (2, H, W, 1) and out.features.shape == (2, H, W, 7)
    assert out.means2d.shape == (2, 25, 2) and out.radii.shape == (2, 25) and out.radii.dtype == torch.int32
    assert out.alpha.max() > 0.5 and (out.alpha >= 0).all() and (out.alpha < 1).all()
    assert (out.rgb >= 0).all()  # SH colours are clamped at 0 and the background is black


def test_empty_scene_is_the_background():
    viewmats, Ks = cameras(2)
    bg = torch.tensor([[0.1, 0.2, 0.3], [1.0, 0.5, 0.0]])
    e3 = torch.zeros(0, 3)
    out = render(e3, torch.zeros(0, 4), e3, torch.zeros(0), viewmats, Ks, W, H, colors=e3,
                 features=torch.zeros(0, 4), backgrounds=bg, backend="torch")  # fmt: skip
    assert torch.equal(out.rgb, bg[:, None, None, :].expand(2, H, W, 3))
    assert (out.alpha == 0).all() and (out.depth == 0).all() and (out.features == 0).all()
    assert out.means2d.shape == (2, 0, 2) and out.radii.shape == (2, 0)


def test_background_blends_with_transmittance():
    means, quats, scales, opac, g = gaussians(10, seed=1)
    viewmats, Ks = cameras(1)
    colors = torch.rand(10, 3, generator=g)
    bg = torch.tensor([[0.3, 0.6, 0.9]])
    black = render(means, quats, scales, opac, viewmats, Ks, W, H, colors=colors, backend="torch")
    with_bg = render(means, quats, scales, opac, viewmats, Ks, W, H, colors=colors, backgrounds=bg, backend="torch")
    expected = black.rgb + (1 - black.alpha) * bg[:, None, None, :]
    assert torch.allclose(with_bg.rgb, expected, atol=1e-6)
    assert (black.alpha < 1e-3).any()  # some pixels show mostly background


def test_depth_of_single_gaussian_at_known_depth():
    # A camera translated and rotated 90 degrees about y; the Gaussian sits 2.5 in front of it.
    viewmats = torch.eye(4)[None].clone()
    viewmats[0, :3, :3] = torch.tensor([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    centre = torch.tensor([1.0, 0.5, -2.0])
    viewmats[0, :3, 3] = -viewmats[0, :3, :3] @ centre
    _, Ks = cameras(1)
    forward = viewmats[0, 2, :3]  # camera z axis in world
    mean = (centre + 2.5 * forward)[None]
    out = render(mean, torch.tensor([[1.0, 0.0, 0.0, 0.0]]), torch.full((1, 3), 0.3), torch.tensor([0.95]),
                 viewmats, Ks, W, H, colors=torch.ones(1, 3), backend="torch")  # fmt: skip
    covered = out.alpha[0, ..., 0] > 0.01
    assert covered.sum() > 10 and not covered.all()
    assert torch.allclose(out.depth[0][covered], torch.full_like(out.depth[0][covered], 2.5), atol=1e-5)
    assert (out.depth[0][out.alpha[0] <= 1e-6] == 0).all()
    # The Gaussian projects to the principal point.
    assert torch.allclose(out.means2d[0, 0], torch.tensor([W / 2, H / 2]), atol=1e-5)


@pytest.mark.parametrize("d", [1, 3, 16])
def test_features_equal_rendering_the_same_values_as_colours(d: int):
    means, quats, scales, opac, g = gaussians(30, seed=2)
    viewmats, Ks = cameras(2)
    feats = torch.rand(30, d, generator=g)
    colors = torch.rand(30, 3, generator=g)
    out = render(means, quats, scales, opac, viewmats, Ks, W, H, colors=colors, features=feats,
                 backgrounds=torch.ones(2, 3), render_depth=False, backend="torch")  # fmt: skip
    assert out.depth is None
    for k in range(0, d, 3):
        chunk = feats[:, k : k + 3]
        chunk = torch.cat([chunk, torch.zeros(30, 3 - chunk.shape[1])], dim=1)
        as_rgb = render(means, quats, scales, opac, viewmats, Ks, W, H, colors=chunk, backend="torch")
        n = min(3, d - k)
        assert torch.allclose(out.features[..., k : k + n], as_rgb.rgb[..., :n], atol=1e-6)
    assert torch.allclose(out.alpha, as_rgb.alpha)


def test_sh_degree_zero_equals_direct_colours_and_degree_selects_coefficients():
    means, quats, scales, opac, g = gaussians(15, seed=3)
    viewmats, Ks = cameras(2)
    colors = torch.rand(15, 3, generator=g)
    sh = torch.randn(15, 9, 3, generator=g)
    sh[:, 0] = rgb_to_sh0(colors)
    direct = render(means, quats, scales, opac, viewmats, Ks, W, H, colors=colors, backend="torch")
    deg0 = render(means, quats, scales, opac, viewmats, Ks, W, H, sh_coeffs=sh, sh_degree=0, backend="torch")
    deg2 = render(means, quats, scales, opac, viewmats, Ks, W, H, sh_coeffs=sh, backend="torch")
    assert torch.allclose(direct.rgb, deg0.rgb, atol=1e-6)
    assert (deg2.rgb - deg0.rgb).abs().max() > 1e-2


def test_per_camera_colours_and_tile_size_independence():
    means, quats, scales, opac, g = gaussians(20, seed=4)
    viewmats, Ks = cameras(2)
    colors = torch.rand(2, 20, 3, generator=g)
    a = render(means, quats, scales, opac, viewmats, Ks, W, H, colors=colors, tile_size=16, backend="torch")
    b = render(means, quats, scales, opac, viewmats, Ks, W, H, colors=colors, tile_size=5, backend="torch")
    assert torch.allclose(a.rgb, b.rgb, atol=1e-6) and torch.allclose(a.depth, b.depth, atol=1e-5)
    one = render(means, quats, scales, opac, viewmats[1:], Ks[1:], W, H, colors=colors[1], backend="torch")
    assert torch.allclose(one.rgb[0], a.rgb[1], atol=1e-6)


def test_means2d_gradient_can_be_retained():
    means, quats, scales, opac, g = gaussians(12, seed=5)
    means.requires_grad_()
    viewmats, Ks = cameras(1)
    out = render(means, quats, scales, opac, viewmats, Ks, W, H, colors=torch.rand(12, 3, generator=g), backend="torch")
    out.means2d.retain_grad()
    (out.rgb.sum() + out.depth.sum()).backward()
    grad = out.means2d.grad
    assert grad is not None and grad.shape == (1, 12, 2)
    visible = out.radii[0] > 0
    assert grad[0][visible].abs().sum() > 0 and (grad[0][~visible] == 0).all()
    assert torch.isfinite(means.grad).all()


def _absgrad_render(backend: str, absgrad: bool):
    means, quats, scales, opac, g = gaussians(30, seed=8)
    means.requires_grad_()
    viewmats, Ks = cameras(2)
    out = render(means, quats, scales, opac, viewmats, Ks, W, H, colors=torch.rand(30, 3, generator=g),
                 backend=backend, absgrad=absgrad)
    out.means2d.retain_grad()
    v = torch.randn(out.rgb.shape, generator=g)
    return out, v


@pytest.mark.parametrize("backend", ["torch", pytest.param("cpu", marks=pytest.mark.skipif(
    not backend_mod._native_available("cpu")[0], reason="native CPU kernels not built"))])
def test_absgrad_is_an_output_of_render_filled_by_the_backward(backend: str):
    out, v = _absgrad_render(backend, absgrad=True)
    assert out.absgrad is not None and out.absgrad.shape == (2, 30, 2) and not out.absgrad.requires_grad
    assert not out.absgrad.any()  # zeros until the backward runs
    (out.rgb * v).sum().backward()
    grad, absgrad = out.means2d.grad, out.absgrad
    visible = out.radii > 0
    assert float(absgrad[visible].abs().sum()) > 0 and bool((absgrad[~visible] == 0).all())
    # |sum over pixels| <= sum over pixels of |.|: at least |grad|, more where pixels disagree
    assert bool((absgrad >= grad.abs() - 1e-6).all()) and float((absgrad - grad.abs()).max()) > 1e-4
    assert not hasattr(out.means2d, "absgrad")  # no attribute on the tensor any more
    plain, v2 = _absgrad_render(backend, absgrad=False)
    assert plain.absgrad is None
    (plain.rgb * v2).sum().backward()
    # Asking for the statistic leaves the gradients alone (up to the reference's summation order).
    torch.testing.assert_close(plain.means2d.grad, grad, rtol=1e-5, atol=1e-6)


def test_absgrad_of_torch_and_cpu_backends_agree():
    if not backend_mod._native_available("cpu")[0]:
        pytest.skip("native CPU kernels not built")
    results = []
    for backend in ("torch", "cpu"):
        out, v = _absgrad_render(backend, absgrad=True)
        (out.rgb * v).sum().backward()
        results.append(out.absgrad)
    torch.testing.assert_close(results[1], results[0], rtol=2e-3, atol=2e-4 * float(results[0].abs().max()))


def test_default_device_follows_the_backend_and_an_explicit_device(monkeypatch):
    assert backend_mod.default_device("torch", "cpu") == torch.device("cpu")
    assert backend_mod.default_device("auto", "cuda:1") == torch.device("cuda:1")  # explicit: as given
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert backend_mod.default_device("auto") == torch.device("cuda")
    assert backend_mod.default_device("cuda") == torch.device("cuda")
    assert backend_mod.default_device("cpu") == torch.device("cpu")  # the CPU kernels need CPU tensors
    assert backend_mod.default_device("torch") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert backend_mod.default_device("auto") == torch.device("cpu")


def test_render_gradcheck_float64():
    dt = torch.float64
    means, quats, scales, opac, g = gaussians(3, seed=6, dtype=dt)
    viewmats, Ks = cameras(1, dt)
    Ks = Ks * torch.tensor([[0.4], [0.4], [1.0]], dtype=dt)  # 8x6 image with the same field of view
    sh = torch.randn(3, 4, 3, generator=g, dtype=dt) * 0.2
    feats = torch.randn(3, 2, generator=g, dtype=dt)

    def fn(m, q, s, o, c, f):
        out = render(m, q, s, o, viewmats, Ks, 8, 6, sh_coeffs=c, features=f, tile_size=4, backend="torch")
        return out.rgb, out.depth, out.features

    inputs = tuple(t.clone().requires_grad_() for t in (means, quats, scales, opac, sh, feats))
    # fast_mode checks random directional derivatives: the per-op tests check every entry.
    assert gradcheck(fn, inputs, eps=1e-6, atol=1e-5, fast_mode=True)


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(means=torch.zeros(5, 2)), "means"),
        (dict(quats=torch.zeros(4, 4)), "quats"),
        (dict(opacities=torch.zeros(5, 1)), "opacities"),
        (dict(Ks=torch.zeros(2, 3, 3)), "Ks"),
        (dict(colors=None), "exactly one"),
        (dict(sh_coeffs=torch.zeros(5, 4, 3)), "exactly one"),
        (dict(colors=None, sh_coeffs=torch.zeros(5, 5, 3)), "sh_coeffs"),
        (dict(colors=None, sh_coeffs=torch.zeros(5, 4, 3), sh_degree=2), "sh_degree"),
        (dict(colors=torch.zeros(3, 5, 3)), "colors"),
        (dict(features=torch.zeros(5, 0)), "features"),
        (dict(features=torch.zeros(4, 8)), "features"),
        (dict(backgrounds=torch.zeros(1, 4)), "backgrounds"),
        (dict(width=0), "width"),
        (dict(scales=torch.zeros(5, 3, dtype=torch.int64)), "scales"),
        (dict(backend="opengl"), "backend"),
        (dict(quats=torch.ones(5, 4, device="meta")), "quats is on meta"),
    ],
)
def test_bad_inputs_raise_clear_errors(change: dict, message: str):
    viewmats, Ks = cameras(1)
    kwargs = dict(means=torch.zeros(5, 3), quats=torch.ones(5, 4), scales=torch.ones(5, 3), opacities=torch.rand(5),
                  viewmats=viewmats, Ks=Ks, width=W, height=H, colors=torch.zeros(5, 3), backend="torch")  # fmt: skip
    kwargs.update(change)
    with pytest.raises(ValueError, match=message):
        render(**kwargs)


# --------------------------------------------------------------------------- backend choice


def test_backend_torch_is_always_available():
    assert backend_mod.resolve_backend("torch", "cpu") == "torch"
    ops = backend_mod.get_ops("torch")
    assert all(callable(getattr(ops, name)) for name in backend_mod.OP_NAMES)


def test_auto_falls_back_to_torch_with_one_warning(monkeypatch):
    monkeypatch.setattr(backend_mod, "_load_native", lambda: (None, "ImportError: not built"))
    monkeypatch.setattr(backend_mod, "_warned_fallback", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert backend_mod.resolve_backend("auto", "cpu") == "torch"
        assert backend_mod.resolve_backend("auto", torch.device("cpu")) == "torch"
    assert len([w for w in caught if "reference" in str(w.message)]) == 1
    with pytest.raises(LangfieldError, match="unavailable"):
        backend_mod.resolve_backend("cpu", "cpu")
    with pytest.raises(LangfieldError, match="needs tensors on cuda"):
        backend_mod.resolve_backend("cuda", "cpu")


def test_auto_prefers_native_when_available(monkeypatch):
    class FakeNative:
        project_gaussians = spherical_harmonics = isect_tiles = None
        isect_offset_encode = rasterize_to_pixels = None

        @staticmethod
        def available(device: str) -> bool:
            return device == "cpu"

    monkeypatch.setattr(backend_mod, "_load_native", lambda: (FakeNative, ""))
    assert backend_mod.resolve_backend("auto", "cpu") == "cpu"
    assert backend_mod.resolve_backend("cpu", "cpu") == "cpu"
    assert backend_mod.get_ops("cpu") is FakeNative


def test_load_native_reports_missing_ops(monkeypatch):
    import sys
    import types

    fake = types.ModuleType("langfield.render.native")
    fake.available = lambda device: True
    monkeypatch.setitem(sys.modules, "langfield.render.native", fake)
    module, reason = backend_mod._import_native()
    assert module is None and "project_gaussians" in reason


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.cuda
def test_torch_backend_on_cuda_matches_cpu():
    means, quats, scales, opac, g = gaussians(20, seed=7)
    viewmats, Ks = cameras(1)
    colors = torch.rand(20, 3, generator=g)
    cpu = render(means, quats, scales, opac, viewmats, Ks, W, H, colors=colors, backend="torch")
    args = [t.cuda() for t in (means, quats, scales, opac, viewmats, Ks)]
    gpu = render(*args, W, H, colors=colors.cuda(), backend="torch")
    assert torch.allclose(gpu.rgb.cpu(), cpu.rgb, atol=1e-5)
    assert math.isclose(float(gpu.alpha.sum()), float(cpu.alpha.sum()), rel_tol=1e-4)
