"""Print JSON figures for the pure-PyTorch reference rasterizer.

Max abs errors of projection / 3D covariance / SH against gsplat's pure-torch
code, of the tiled compositor against the brute-force one (RGB and 16
channels), float64 gradcheck pass/fail per op, and the time of one
forward+backward of 2k Gaussians at 64x48.

Usage: python scripts/check_reference.py [--seed 0]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import time
from pathlib import Path

import torch
from torch.autograd import gradcheck

from langfield.render import reference as ref


def _load_brute():
    """The brute-force compositor: a test helper (tests/render/brute.py), not part of the package."""
    path = Path(__file__).resolve().parents[1] / "tests" / "render" / "brute.py"
    spec = importlib.util.spec_from_file_location("langfield_test_brute", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.brute_force_render


brute_force_render = _load_brute()


def scene(n: int, n_cams: int, width: int, height: int, dtype: torch.dtype, seed: int):
    """Random Gaussians in front of cameras at z = -4 (principal point at the image centre)."""
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g, dtype=dtype) - 0.5) * torch.tensor([3.0, 3.0, 2.0], dtype=dtype)
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = torch.rand(n, 3, generator=g, dtype=dtype) * 0.2 + 0.02
    opacities = torch.rand(n, generator=g, dtype=dtype) * 0.9 + 0.05
    viewmats = torch.eye(4, dtype=dtype).repeat(n_cams, 1, 1)
    viewmats[:, 2, 3] = 4.0
    viewmats[:, 0, 3] = torch.linspace(-0.5, 0.5, n_cams, dtype=dtype)
    f = 1.2 * width
    Ks = torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=dtype).repeat(n_cams, 1, 1)
    return means, quats, scales, opacities, viewmats, Ks, g


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max()) if a.numel() else 0.0


def vs_gsplat(seed: int) -> dict:
    from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci, _spherical_harmonics

    width, height = 64, 48
    means, quats, scales, _, viewmats, Ks, g = scene(2000, 2, width, height, torch.float32, seed)
    radii, means2d, depths, conics = ref.project_gaussians(means, quats, scales, viewmats, Ks, width, height)
    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    g_radii, g_means2d, g_depths, g_conics, _ = _fully_fused_projection(means, covars, viewmats, Ks, width, height)
    both = (radii > 0) & (g_radii > 0).all(-1)  # radius conventions differ (docs Note 2)
    dirs = torch.randn(2000, 3, generator=g) * 2
    coeffs = torch.randn(2000, 16, 3, generator=g)
    return {
        "dtype": "float32",
        "n_compared": int(both.sum()),
        "covariance": max_abs(ref.covariance_3d(quats, scales), covars),
        "means2d": max_abs(means2d[both], g_means2d[both]),
        "depths": max_abs(depths[both], g_depths[both]),
        "conics": max_abs(conics[both], g_conics[both]),
        "sh": {str(d): max_abs(ref.spherical_harmonics(d, dirs, coeffs), _spherical_harmonics(d, dirs, coeffs)) for d in range(4)},
    }


def tiled_vs_brute(seed: int) -> dict:
    width, height, tile = 45, 29, 16
    means, quats, scales, opacities, viewmats, Ks, g = scene(300, 2, width, height, torch.float32, seed)
    radii, means2d, depths, conics = ref.project_gaussians(means, quats, scales, viewmats, Ks, width, height)
    opac = opacities[None].expand(2, -1)
    tw, th = math.ceil(width / tile), math.ceil(height / tile)
    _, isect_ids, flatten_ids = ref.isect_tiles(means2d, radii, depths, tile, tw, th)
    offsets = ref.isect_offset_encode(isect_ids, 2, tw, th)
    result = {"dtype": "float32", "size": [width, height], "tile_size": tile}
    for name, ch in (("rgb", 3), ("channels16", 16)):
        colors = torch.rand(2, 300, ch, generator=g)
        bg = torch.rand(2, ch, generator=g)
        img, alpha = ref.rasterize_to_pixels(
            means2d, conics, colors, opac, radii, width, height, tile, offsets, flatten_ids, bg
        )
        img_b, alpha_b = brute_force_render(means2d, conics, colors, opac, radii, depths, width, height, bg)
        result[name] = max_abs(img, img_b)
        result[name + "_alpha"] = max_abs(alpha, alpha_b)
    return result


def gradchecks(seed: int) -> dict:
    f64 = torch.float64
    width, height, tile = 8, 6, 4
    means, quats, scales, opacities, viewmats, Ks, g = scene(4, 1, width, height, f64, seed)
    Ks[:, :2, :2] *= 0.5  # wider view so all four land in the 8x6 image

    def proj(m, q, s):
        return ref.project_gaussians(m, q, s, viewmats, Ks, width, height)[1:]

    radii, means2d, depths, conics = ref.project_gaussians(means, quats, scales, viewmats, Ks, width, height)
    tw, th = math.ceil(width / tile), math.ceil(height / tile)
    _, isect_ids, flatten_ids = ref.isect_tiles(means2d, radii, depths, tile, tw, th)
    offsets = ref.isect_offset_encode(isect_ids, 1, tw, th)
    colors = torch.rand(1, 4, 3, generator=g, dtype=f64)

    def raster(m2, con, col, op):
        return ref.rasterize_to_pixels(m2, con, col, op, radii, width, height, tile, offsets, flatten_ids, None)

    def check(fn, *tensors) -> bool:
        inputs = tuple(t.detach().clone().requires_grad_() for t in tensors)
        try:
            return bool(gradcheck(fn, inputs, eps=1e-6, atol=1e-6))
        except RuntimeError:
            return False

    dirs = torch.randn(5, 3, generator=g, dtype=f64)
    coeffs = torch.randn(5, 16, 3, generator=g, dtype=f64)
    return {
        "projection": check(proj, means, quats, scales),
        "spherical_harmonics": all(
            check(lambda d, c, deg=deg: ref.spherical_harmonics(deg, d, c), dirs, coeffs) for deg in range(4)
        ),
        "rasterize_to_pixels": check(raster, means2d, conics, colors, opacities[None]),
        "n_visible": int((radii > 0).sum()),
    }


def timing(seed: int) -> dict:
    width, height, tile = 64, 48, 16
    means, quats, scales, opacities, viewmats, Ks, g = scene(2000, 1, width, height, torch.float32, seed)
    leaves = [t.requires_grad_() for t in (means, quats, scales, opacities)]
    colors = torch.rand(1, 2000, 3, generator=g, requires_grad=True)
    start = time.perf_counter()
    radii, means2d, depths, conics = ref.project_gaussians(means, quats, scales, viewmats, Ks, width, height)
    tw, th = math.ceil(width / tile), math.ceil(height / tile)
    _, isect_ids, flatten_ids = ref.isect_tiles(means2d, radii, depths, tile, tw, th)
    offsets = ref.isect_offset_encode(isect_ids, 1, tw, th)
    img, alpha = ref.rasterize_to_pixels(
        means2d, conics, colors, opacities[None], radii, width, height, tile, offsets, flatten_ids, None
    )
    forward = time.perf_counter() - start
    (img.sum() + alpha.sum()).backward()
    total = time.perf_counter() - start
    assert all(t.grad is not None for t in leaves)
    return {"n": 2000, "size": [width, height], "n_isects": int(flatten_ids.numel()), "forward_s": round(forward, 4),
            "forward_backward_s": round(total, 4), "threads": torch.get_num_threads()}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="random seed of the test scenes")
    args = parser.parse_args()
    report = {
        "vs_gsplat": vs_gsplat(args.seed),
        "tiled_vs_brute": tiled_vs_brute(args.seed),
        "gradcheck_float64": gradchecks(args.seed),
        "timing_cpu": timing(args.seed),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
