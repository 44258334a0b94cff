"""Shared scenes and parity checks for the native CPU and CUDA test files.

Both test_native_cpu.py and test_native_cuda.py run the same checks on their
device against the pure-PyTorch reference (the oracle, on CPU).  This module
holds no tests itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from langfield.render import reference as ref

TILE = 16


@dataclass
class Scene:
    """Activated Gaussians and cameras (CPU tensors; moved by ``to``)."""

    means: torch.Tensor
    quats: torch.Tensor
    scales: torch.Tensor
    opacities: torch.Tensor
    sh: torch.Tensor
    features: torch.Tensor
    viewmats: torch.Tensor
    Ks: torch.Tensor
    width: int
    height: int

    def to(self, device: str) -> "Scene":
        kw = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return Scene(**kw)


def look_at(eye: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """World->camera 4x4 (OpenCV axes) looking from eye at target, world -y up."""
    fwd = target - eye
    fwd = fwd / fwd.norm()
    right = torch.linalg.cross(fwd, torch.tensor([0.0, -1.0, 0.0]))
    if right.norm() < 1e-6:
        right = torch.tensor([1.0, 0.0, 0.0])
    right = right / right.norm()
    down = torch.linalg.cross(fwd, right)
    R = torch.stack([right, down, fwd])
    m = torch.eye(4)
    m[:3, :3] = R
    m[:3, 3] = -R @ eye
    return m


def make_scene(
    n: int,
    seed: int = 0,
    width: int = 40,
    height: int = 28,
    n_cams: int = 1,
    sh_degree: int = 3,
    n_features: int = 5,
    scale_range: tuple[float, float] = (0.03, 0.25),
    depth_range: tuple[float, float] = (2.0, 6.0),
) -> Scene:
    """Random Gaussians in a box in front of camera 0 (a few to tens of pixels each)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.rand(n, generator=g) * (depth_range[1] - depth_range[0]) + depth_range[0]
    fx = 0.8 * width
    xy = (torch.rand(n, 2, generator=g) * 2 - 1) * z[:, None] * torch.tensor([0.6 * width / fx, 0.6 * height / fx])
    means = torch.cat([xy, z[:, None]], 1)
    quats = torch.randn(n, 4, generator=g)
    lo, hi = math.log(scale_range[0]), math.log(scale_range[1])
    scales = torch.exp(torch.rand(n, 3, generator=g) * (hi - lo) + lo)
    opacities = torch.rand(n, generator=g) * 0.9 + 0.05
    sh = torch.randn(n, (sh_degree + 1) ** 2, 3, generator=g) * 0.4
    features = torch.randn(n, n_features, generator=g)
    mats = [torch.eye(4)]
    for i in range(1, n_cams):
        a = 0.15 * i
        eye = torch.tensor([3.0 * math.sin(a), 0.1 * i, 4.0 - 3.0 * math.cos(a) - 0.0])
        mats.append(look_at(eye, torch.tensor([0.0, 0.0, 4.0])))
    viewmats = torch.stack(mats)
    K = torch.tensor([[fx, 0.0, width / 2 + 0.3], [0.0, fx * 1.05, height / 2 - 0.2], [0.0, 0.0, 1.0]])
    Ks = K.repeat(n_cams, 1, 1)
    return Scene(means, quats, scales, opacities, sh, features, viewmats, Ks, width, height)


def render_with(
    mod,
    s: Scene,
    sh_degree: Optional[int] = 3,
    with_depth: bool = True,
    n_features: int = 0,
    colors: Optional[torch.Tensor] = None,
    backgrounds: Optional[torch.Tensor] = None,
    tile_size: int = TILE,
):
    """Run the five ops of ``mod`` like render() does; returns (out, alphas, means2d, radii)."""
    C = s.viewmats.shape[0]
    radii, means2d, depths, conics = mod.project_gaussians(
        s.means, s.quats, s.scales, s.viewmats, s.Ks, s.width, s.height
    )
    if means2d.requires_grad:
        means2d.retain_grad()
    parts = []
    if colors is not None:
        parts.append(colors)
    if sh_degree is not None:
        campos = torch.linalg.inv(s.viewmats)[:, :3, 3]
        dirs = s.means[None] - campos[:, None]
        rgb = mod.spherical_harmonics(sh_degree, dirs, s.sh[None].expand(C, -1, -1, -1)) + 0.5
        parts.append(rgb.clamp_min(0.0))
    if with_depth:
        parts.append(depths[..., None])
    if n_features:
        parts.append(s.features[None, :, :n_features].expand(C, -1, -1))
    cols = torch.cat(parts, -1)
    tw = (s.width + tile_size - 1) // tile_size
    th = (s.height + tile_size - 1) // tile_size
    _, isect_ids, flatten_ids = mod.isect_tiles(means2d, radii, depths, tile_size, tw, th)
    offsets = mod.isect_offset_encode(isect_ids, C, tw, th)
    opac = s.opacities[None].expand(C, -1)
    out, alphas = mod.rasterize_to_pixels(
        means2d, conics, cols, opac, radii, s.width, s.height, tile_size, offsets, flatten_ids, backgrounds
    )
    return out, alphas, means2d, radii


def leaf_scene(s: Scene) -> Scene:
    """Copy with fresh leaf tensors that require grad (float params only)."""
    kw = {}
    for k, v in s.__dict__.items():
        if isinstance(v, torch.Tensor) and k not in ("viewmats", "Ks"):
            kw[k] = v.detach().clone().requires_grad_(True)
        else:
            kw[k] = v
    return Scene(**kw)


GRAD_KEYS = ("means", "quats", "scales", "opacities", "sh", "features")


def grads_of(mod, s: Scene, seed: int, **kw):
    """Gradients of (out * v).sum() + (alpha * va).sum() for a fixed random cotangent."""
    ls = leaf_scene(s)
    out, alphas, means2d, _ = render_with(mod, ls, **kw)
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(out.shape, generator=g).to(out.device)
    va = torch.randn(alphas.shape, generator=g).to(out.device)
    ((out * v).sum() + (alphas * va).sum()).backward()
    res = {k: getattr(ls, k).grad for k in GRAD_KEYS}
    res["means2d"] = means2d.grad
    return {k: (None if t is None else t.detach().cpu()) for k, t in res.items()}


def assert_grad_close(name: str, got: Optional[torch.Tensor], want: Optional[torch.Tensor], rel: float) -> None:
    """Per-quantity tolerance: elementwise within rel * max|want| and total error within rel * ||want||."""
    if want is None or float(want.abs().max()) == 0.0:
        assert got is None or float(got.abs().max()) <= 1e-6, f"{name}: expected no gradient"
        return
    assert got is not None, f"{name}: missing gradient"
    scale = float(want.abs().max())
    err = (got - want).abs()
    assert float(err.max()) <= rel * scale, f"{name}: max err {float(err.max()):.3g} > {rel} * {scale:.3g}"
    assert float((got - want).norm()) <= rel * float(want.norm()), f"{name}: norm err too large"


def absgrad_of(mod, s: Scene, seed: int = 11, tile_size: int = TILE, absgrad: bool = True):
    """(the AbsGS statistic or None, means2d.grad) after the backward of a random cotangent."""
    ls = leaf_scene(s)
    tile = tile_size
    C = s.viewmats.shape[0]
    radii, means2d, depths, conics = mod.project_gaussians(ls.means, ls.quats, ls.scales, ls.viewmats, ls.Ks,
                                                           s.width, s.height)
    means2d.retain_grad()
    cols = torch.cat([ls.sh[None, :, 0, :].expand(C, -1, -1) + 0.5, depths[..., None],
                      ls.features[None].expand(C, -1, -1)], -1)
    tw, th = (s.width + tile - 1) // tile, (s.height + tile - 1) // tile
    _, ids, flat = mod.isect_tiles(means2d, radii, depths, tile, tw, th)
    offsets = mod.isect_offset_encode(ids, C, tw, th)
    sink = torch.zeros_like(means2d, requires_grad=False) if absgrad else None
    out, alpha = mod.rasterize_to_pixels(means2d, conics, cols, ls.opacities[None].expand(C, -1), radii, s.width,
                                         s.height, tile, offsets, flat, absgrad_out=sink)
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(out.shape, generator=g).to(out.device)
    va = torch.randn(alpha.shape, generator=g).to(out.device)
    ((out * v).sum() + (alpha * va).sum()).backward()
    assert not hasattr(means2d, "absgrad")  # an output of its own, never an attribute of means2d
    return (None if sink is None else sink.cpu()), means2d.grad.detach().cpu()
