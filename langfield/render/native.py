"""Native (C++/OpenMP and CUDA) implementations of the rasterizer ops.

Same op names, signatures and results as ``langfield.render.reference`` (the
contract is docs/rasterizer.md).  Each differentiable op is one
``torch.autograd.Function`` around the kernels; the device of the inputs picks
the CPU or the CUDA library.  The libraries are built on first use (see
``_build.py``); ``available(device)`` says whether that worked, and
``build_error(device)`` why not.

Debugging: with ``LANGFIELD_DEBUG_DUMP=DIR`` set, a native call that raises
or returns non-finite values saves its inputs to ``DIR/<op>-<pid>-<n>.pt``
(``torch.save`` of ``{"op": name, "args": {...}, "reason": str}``), which
``load_dump`` reads back so the same call can be replayed through the
reference.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any, Callable, Optional, Union

import torch

from langfield.io import atomic_torch_save
from langfield.render import _build
from langfield.render._native_backends import CpuKernels, CudaKernels
from langfield.types import LangfieldError

__all__ = [
    "available",
    "build_error",
    "num_threads",
    "project_gaussians",
    "spherical_harmonics",
    "isect_tiles",
    "isect_offset_encode",
    "rasterize_to_pixels",
    "load_dump",
]

_KERNELS: dict[str, Union[CpuKernels, CudaKernels, None]] = {}
_DUMP_COUNTER = itertools.count()


def _device_kind(device: Union[str, torch.device]) -> str:
    kind = torch.device(device).type
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"native kernels support cpu and cuda devices, not {kind!r}")
    return kind


def _kernels_for(kind: str) -> Union[CpuKernels, CudaKernels, None]:
    if kind not in _KERNELS:
        lib = _build.load(kind)
        k: Union[CpuKernels, CudaKernels, None] = None
        if lib is not None:
            try:
                k = CpuKernels(lib) if kind == "cpu" else CudaKernels(lib)
            except Exception as exc:  # a stale or foreign library in the cache
                _build._STATE[kind].error = f"native {kind} kernels unusable: {exc}"
        _KERNELS[kind] = k
    return _KERNELS[kind]


def available(device: Union[str, torch.device]) -> bool:
    """Whether the native kernels for ``device`` ("cpu", "cuda", "cuda:1" ...) can run here.

    Builds the library on first call (seconds for CPU, minutes for CUDA).
    Never raises: a missing compiler or toolkit just gives False.
    """
    try:
        kind = _device_kind(device)
    except (ValueError, RuntimeError):
        return False
    if kind == "cuda" and not torch.cuda.is_available():
        return False
    return _kernels_for(kind) is not None


def build_error(device: Union[str, torch.device]) -> Optional[str]:
    """One-line reason why ``available(device)`` is False (None if it is True or was not asked)."""
    return _build.error(_device_kind(device))


def num_threads() -> int:
    """OpenMP threads the CPU kernels use (``OMP_NUM_THREADS`` / ``torch.set_num_threads``)."""
    k = _kernels_for("cpu")
    return k.num_threads() if k is not None else 0


def _kernels(device: torch.device) -> Union[CpuKernels, CudaKernels]:
    kind = _device_kind(device)
    k = _kernels_for(kind)
    if k is None:
        raise LangfieldError(build_error(kind) or f"native {kind} kernels unavailable")
    return k


# ---------------------------------------------------------------------------
# Debug dumps


def _finite(x: Any) -> bool:
    if isinstance(x, torch.Tensor):
        return not x.is_floating_point() or bool(torch.isfinite(x).all())
    if isinstance(x, (tuple, list)):
        return all(_finite(v) for v in x)
    return True


def _dump(directory: str, op: str, args: dict[str, Any], reason: str) -> Path:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    payload = {
        "op": op,
        "reason": reason,
        "args": {k: (v.detach().cpu().clone() if isinstance(v, torch.Tensor) else v) for k, v in args.items()},
    }
    path = d / f"{op}-{os.getpid()}-{next(_DUMP_COUNTER)}.pt"
    return atomic_torch_save(path, payload)


def _guarded(op: str, args: dict[str, Any], fn: Callable[[], Any]) -> Any:
    """Run ``fn``; under LANGFIELD_DEBUG_DUMP, save ``args`` when it fails or returns non-finite values."""
    directory = os.environ.get("LANGFIELD_DEBUG_DUMP")
    if not directory:
        return fn()
    try:
        out = fn()
    except Exception as exc:
        _dump(directory, op, args, f"exception: {exc!r}")
        raise
    if not _finite(out):
        _dump(directory, op, args, "non-finite output")
    return out


def load_dump(path: Union[str, Path]) -> tuple[str, dict[str, Any]]:
    """Read a debug dump: ``(op name, keyword arguments)`` ready for ``getattr(reference, op)(**args)``."""
    payload = torch.load(path, weights_only=True)
    return payload["op"], payload["args"]


# ---------------------------------------------------------------------------
# Validation helpers


def _f32(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float32).contiguous()


def _expect(name: str, t: torch.Tensor, shape: tuple[Optional[int], ...], device: torch.device) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(t).__name__}")
    if t.dim() != len(shape) or any(s is not None and s != d for s, d in zip(shape, t.shape)):
        want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"{name} has shape {list(t.shape)}, expected {want}")
    if t.device != device:
        raise ValueError(f"{name} is on {t.device}, expected {device}")


# ---------------------------------------------------------------------------
# Projection


class _ProjectGaussians(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, quats, scales, viewmats, Ks, width, height, near, far, eps2d):  # type: ignore[override]
        k = _kernels(means.device)
        radii, means2d, depths, conics = k.project_fwd(means, quats, scales, viewmats, Ks, width, height, near, far,
                                                       eps2d)
        ctx.save_for_backward(means, quats, scales, viewmats, Ks, radii)
        ctx.geom = (width, height, eps2d)
        ctx.mark_non_differentiable(radii)
        return radii, means2d, depths, conics

    @staticmethod
    def backward(ctx, v_radii, v_means2d, v_depths, v_conics):  # type: ignore[override]
        means, quats, scales, viewmats, Ks, radii = ctx.saved_tensors
        width, height, eps2d = ctx.geom
        C, N = radii.shape
        z = lambda shape, g: (torch.zeros(shape, device=means.device) if g is None else _f32(g))  # noqa: E731
        k = _kernels(means.device)
        # The pose gradient costs a reduction over Gaussians: only when the caller asked for it.
        need_v_viewmats = bool(ctx.needs_input_grad[3])
        args = (means, quats, scales, viewmats, Ks, width, height, eps2d, radii, z((C, N, 2), v_means2d),
                z((C, N), v_depths), z((C, N, 3), v_conics), need_v_viewmats)
        v_means, v_quats, v_scales, v_viewmats = _guarded(
            "project_gaussians.backward", dict(zip(_PROJ_BWD_NAMES, args)), lambda: k.project_bwd(*args)
        )
        return v_means, v_quats, v_scales, v_viewmats, None, None, None, None, None, None


_PROJ_BWD_NAMES = ("means", "quats", "scales", "viewmats", "Ks", "width", "height", "eps2d", "radii", "v_means2d",
                   "v_depths", "v_conics", "need_v_viewmats")


def project_gaussians(
    means: torch.Tensor,
    quats: torch.Tensor,
    scales: torch.Tensor,
    viewmats: torch.Tensor,
    Ks: torch.Tensor,
    width: int,
    height: int,
    near: float = 0.01,
    far: float = 1e10,
    eps2d: float = 0.3,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Project N Gaussians into C cameras -> (radii[C,N] int32, means2d[C,N,2], depths[C,N], conics[C,N,3]).

    ``quats`` need not be normalised; ``scales`` are activated (positive).
    Differentiable w.r.t. means, quats, scales and viewmats (the pose gradient is computed only when
    ``viewmats`` requires grad).
    """
    dev = means.device
    _expect("means", means, (None, 3), dev)
    n = means.shape[0]
    _expect("quats", quats, (n, 4), dev)
    _expect("scales", scales, (n, 3), dev)
    _expect("viewmats", viewmats, (None, 4, 4), dev)
    _expect("Ks", Ks, (viewmats.shape[0], 3, 3), dev)
    args = dict(means=means, quats=quats, scales=scales, viewmats=viewmats, Ks=Ks, width=int(width),
                height=int(height), near=float(near), far=float(far), eps2d=float(eps2d))
    return _guarded(
        "project_gaussians",
        args,
        lambda: _ProjectGaussians.apply(_f32(means), _f32(quats), _f32(scales), _f32(viewmats),
                                        _f32(Ks.detach()), int(width), int(height), float(near), float(far),
                                        float(eps2d)),
    )


# ---------------------------------------------------------------------------
# Spherical harmonics


class _SphericalHarmonics(torch.autograd.Function):
    @staticmethod
    def forward(ctx, degree, dirs, coeffs):  # type: ignore[override]
        out = _kernels(dirs.device).sh_fwd(degree, dirs, coeffs)
        ctx.save_for_backward(dirs, coeffs)
        ctx.degree = degree
        return out

    @staticmethod
    def backward(ctx, v_out):  # type: ignore[override]
        dirs, coeffs = ctx.saved_tensors
        k = _kernels(dirs.device)
        v_coeffs, v_dirs = k.sh_bwd(ctx.degree, dirs, coeffs, _f32(v_out), ctx.needs_input_grad[1])
        return None, v_dirs, v_coeffs


def spherical_harmonics(degree: int, dirs: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """Raw SH sum (no +0.5 / clamp): dirs[..., 3], coeffs[..., K, 3] -> colors[..., 3].

    Directions are normalised inside; the first (degree+1)^2 coefficients are
    used.  Leading dimensions of dirs and coeffs broadcast.
    """
    if not 0 <= int(degree) <= 3:
        raise ValueError(f"SH degree must be 0..3, got {degree}")
    degree = int(degree)
    if dirs.shape[-1:] != (3,) or coeffs.dim() < 2 or coeffs.shape[-1] != 3:
        raise ValueError(f"dirs must be [..., 3] and coeffs [..., K, 3]; got {list(dirs.shape)}, {list(coeffs.shape)}")
    if dirs.device != coeffs.device:
        raise ValueError(f"dirs on {dirs.device} but coeffs on {coeffs.device}")
    K = coeffs.shape[-2]
    if K < (degree + 1) ** 2:
        raise ValueError(f"coeffs has {K} SH bases, degree {degree} needs {(degree + 1) ** 2}")
    batch = torch.broadcast_shapes(dirs.shape[:-1], coeffs.shape[:-2])
    d = _f32(dirs.expand(*batch, 3)).reshape(-1, 3)
    c = _f32(coeffs.expand(*batch, K, 3)).reshape(-1, K, 3)
    args = dict(degree=degree, dirs=dirs, coeffs=coeffs)
    out = _guarded("spherical_harmonics", args, lambda: _SphericalHarmonics.apply(degree, d, c))
    return out.reshape(*batch, 3)


# ---------------------------------------------------------------------------
# Tile intersection (not differentiable)


def isect_tiles(
    means2d: torch.Tensor,
    radii: torch.Tensor,
    depths: torch.Tensor,
    tile_size: int,
    tile_width: int,
    tile_height: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (tiles_per_gauss[C,N] int32, isect_ids[M] int64 sorted, flatten_ids[M] int32); see docs/rasterizer.md."""
    dev = means2d.device
    _expect("means2d", means2d, (None, None, 2), dev)
    C, N = means2d.shape[:2]
    _expect("radii", radii, (C, N), dev)
    _expect("depths", depths, (C, N), dev)
    n_tiles = int(tile_width) * int(tile_height)
    if C > 0 and (C - 1).bit_length() + n_tiles.bit_length() > 31:
        raise ValueError(f"{C} cameras x {n_tiles} tiles do not fit the 64-bit intersection key")
    args = dict(means2d=means2d, radii=radii, depths=depths, tile_size=int(tile_size), tile_width=int(tile_width),
                tile_height=int(tile_height))
    k = _kernels(dev)
    with torch.no_grad():
        out = _guarded(
            "isect_tiles",
            args,
            lambda: k.isect_tiles(_f32(means2d), radii.to(torch.int32).contiguous(), _f32(depths), int(tile_size),
                                  int(tile_width), int(tile_height)),
        )
    if out[1].numel() >= 2**31 - 1:  # offsets and per-pixel ranges are int32
        raise LangfieldError(f"{out[1].numel()} tile intersections exceed the int32 limit; render fewer cameras at once")
    return out


def isect_offset_encode(isect_ids: torch.Tensor, C: int, tile_width: int, tile_height: int) -> torch.Tensor:
    """-> offsets[C, tile_height, tile_width] int32: first intersection of each tile (empty tiles: the next one's)."""
    _expect("isect_ids", isect_ids, (None,), isect_ids.device)
    k = _kernels(isect_ids.device)
    return k.isect_offset_encode(isect_ids.to(torch.int64).contiguous(), int(C), int(tile_width), int(tile_height))


# ---------------------------------------------------------------------------
# Rasterization


class _AbsGradOut:
    """The caller's absgrad output tensor, handed through autograd.Function.apply as a plain object (not an input)."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


class _RasterizeToPixels(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, backgrounds, radii, width, height, tile_size, offsets,
                flatten_ids, absgrad_out):  # type: ignore[override]
        k = _kernels(means2d.device)
        out, T_final, last_ids = k.rasterize_fwd(means2d, conics, colors, opacities, radii, backgrounds, width,
                                                 height, tile_size, offsets, flatten_ids)
        ctx.save_for_backward(means2d, conics, colors, opacities, backgrounds, radii, offsets, flatten_ids, T_final,
                              last_ids)
        ctx.geom = (width, height, tile_size)
        ctx.absgrad_out = absgrad_out
        alphas = (1.0 - T_final).unsqueeze(-1)
        return out, alphas

    @staticmethod
    def backward(ctx, v_out, v_alphas):  # type: ignore[override]
        means2d, conics, colors, opacities, backgrounds, radii, offsets, flatten_ids, T_final, last_ids = (
            ctx.saved_tensors
        )
        width, height, tile_size = ctx.geom
        if v_out is None:  # only the alphas were used downstream
            v_out = colors.new_zeros(colors.shape[0], height, width, colors.shape[2])
        else:
            v_out = _f32(v_out)
        v_alpha = None if v_alphas is None else _f32(v_alphas[..., 0])
        k = _kernels(means2d.device)
        args = (means2d, conics, colors, opacities, radii, backgrounds, width, height, tile_size, offsets,
                flatten_ids, T_final, last_ids, v_out, v_alpha)
        target = ctx.absgrad_out
        v_means2d, v_conics, v_colors, v_opacities, v_abs = _guarded(
            "rasterize_to_pixels.backward", dict(zip(_RAST_BWD_NAMES, args)),
            lambda: k.rasterize_bwd(*args, absgrad=target is not None),
        )
        if target is not None:  # summed into, like .grad (the reference does the same)
            target.tensor.add_(v_abs.view(target.tensor.shape).to(target.tensor.dtype))
        v_bg = None
        if backgrounds is not None and ctx.needs_input_grad[4]:
            v_bg = (v_out * T_final.unsqueeze(-1)).sum(dim=(1, 2))
        return v_means2d, v_conics, v_colors, v_opacities, v_bg, None, None, None, None, None, None, None


_RAST_BWD_NAMES = ("means2d", "conics", "colors", "opacities", "radii", "backgrounds", "width", "height",
                   "tile_size", "isect_offsets", "flatten_ids", "T_final", "last_ids", "v_colors", "v_alphas")


def rasterize_to_pixels(
    means2d: torch.Tensor,
    conics: torch.Tensor,
    colors: torch.Tensor,
    opacities: torch.Tensor,
    radii: torch.Tensor,
    width: int,
    height: int,
    tile_size: int,
    isect_offsets: torch.Tensor,
    flatten_ids: torch.Tensor,
    backgrounds: Optional[torch.Tensor] = None,
    absgrad_out: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Composite -> (render_colors[C,H,W,ch], render_alphas[C,H,W,1]).

    Differentiable w.r.t. means2d, conics, colors, opacities and backgrounds.
    Any channel count works (RGB, depth and features in one pass).
    ``absgrad_out``: a [C, N, 2] tensor (zeros) into which the backward adds the
    sum over pixels of |each pixel's share of the means2d gradient| (AbsGS, as
    gsplat; past 64 channels each 64-channel chunk's share is taken apart).
    """
    dev = means2d.device
    _expect("means2d", means2d, (None, None, 2), dev)
    C, N = means2d.shape[:2]
    _expect("conics", conics, (C, N, 3), dev)
    _expect("colors", colors, (C, N, None), dev)
    _expect("opacities", opacities, (C, N), dev)
    _expect("radii", radii, (C, N), dev)
    max_tile = 32 if dev.type == "cuda" else 64  # CUDA: one thread per pixel (<= 1024 a block)
    if not 1 <= int(tile_size) <= max_tile:
        raise ValueError(f"tile_size must be in 1..{max_tile} for the native {dev.type} kernels, got {tile_size}")
    tile_w = (int(width) + int(tile_size) - 1) // int(tile_size)
    tile_h = (int(height) + int(tile_size) - 1) // int(tile_size)
    _expect("isect_offsets", isect_offsets, (C, tile_h, tile_w), dev)
    _expect("flatten_ids", flatten_ids, (None,), dev)
    ch = colors.shape[2]
    if backgrounds is not None:
        _expect("backgrounds", backgrounds, (C, ch), dev)
    if absgrad_out is not None:
        _expect("absgrad_out", absgrad_out, (C, N, 2), dev)
    if dev.type == "cpu" and flatten_ids.numel():
        # The C++ kernels index with these without bounds checks; O(M) to verify.
        lo, hi = int(flatten_ids.min()), int(flatten_ids.max())
        if lo < 0 or hi >= C * N:
            raise ValueError(f"flatten_ids range [{lo}, {hi}] outside the {C * N} projected Gaussians")
        if int(isect_offsets.min()) < 0 or int(isect_offsets.max()) > flatten_ids.numel():
            raise ValueError("isect_offsets point outside flatten_ids")
    args = dict(means2d=means2d, conics=conics, colors=colors, opacities=opacities, radii=radii, width=int(width),
                height=int(height), tile_size=int(tile_size), isect_offsets=isect_offsets, flatten_ids=flatten_ids,
                backgrounds=backgrounds)
    return _guarded(
        "rasterize_to_pixels",
        args,
        lambda: _RasterizeToPixels.apply(
            _f32(means2d), _f32(conics), _f32(colors), _f32(opacities),
            None if backgrounds is None else _f32(backgrounds), radii.to(torch.int32).contiguous(), int(width),
            int(height), int(tile_size), isect_offsets.to(torch.int32).contiguous(),
            flatten_ids.to(torch.int32).contiguous(), None if absgrad_out is None else _AbsGradOut(absgrad_out),
        ),
    )
