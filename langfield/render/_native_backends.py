"""Tensor-level adapters over the two native libraries (no autograd here).

``CpuKernels`` calls the ctypes C ABI of ``cuda/cpu/capi.cpp`` (Python
allocates every output); ``CudaKernels`` calls the torch extension built from
``cuda/cuda``.  Both expose the same methods, all taking contiguous float32 /
int32 / int64 tensors on their device, so ``native.py`` is device-agnostic.
"""

from __future__ import annotations

import ctypes
from typing import Any, Optional

import torch

_P = ctypes.c_void_p
_I = ctypes.c_int
_L = ctypes.c_int64
_F = ctypes.c_float

_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "lf_abi_version": (_I, []),
    "lf_num_threads": (_I, []),
    "lf_project_fwd": (None, [_I, _I, _P, _P, _P, _P, _P, _I, _I, _F, _F, _F, _P, _P, _P, _P]),
    "lf_project_bwd": (None, [_I, _I, _P, _P, _P, _P, _P, _I, _I, _F, _P, _P, _P, _P, _P, _P, _P, _P]),
    "lf_sh_fwd": (None, [_L, _I, _I, _P, _P, _P]),
    "lf_sh_bwd": (None, [_L, _I, _I, _P, _P, _P, _P, _P]),
    "lf_isect_count": (_L, [_I, _I, _P, _P, _I, _I, _I, _P]),
    "lf_isect_fill": (None, [_I, _I, _P, _P, _P, _I, _I, _I, _P, _L, _P, _P]),
    "lf_isect_offset_encode": (None, [_L, _P, _I, _I, _I, _P]),
    # (C, N, W, H, tile, tile_w, tile_h) int, M int64, ch int, then pointers.
    "lf_rasterize_fwd": (None, [_I] * 7 + [_L, _I] + [_P] * 11),
    "lf_rasterize_bwd": (None, [_I] * 7 + [_L, _I] + [_P] * 17),
}

ABI_VERSION = 3  # 2: lf_rasterize_bwd takes v_means2d_abs; 3: lf_project_bwd takes v_viewmats


def _ptr(t: Optional[torch.Tensor]) -> Optional[int]:
    return None if t is None or t.numel() == 0 else t.data_ptr()


class CpuKernels:
    """The native CPU kernels (OpenMP) through ctypes."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        for name, (res, args) in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.restype = res
            fn.argtypes = args
        if lib.lf_abi_version() != ABI_VERSION:
            raise RuntimeError("native CPU library has an unexpected ABI version; clear the cache and rebuild")
        self.lib = lib

    def num_threads(self) -> int:
        return int(self.lib.lf_num_threads())

    def raster_variant(self) -> str:
        """Which CPU rasterizer serves 16-pixel tiles: "half-row" (x86 AVX2 + FMA builds) or "gaussian-major"."""
        fn = getattr(self.lib, "lf_row_kernels", None)  # absent from the emulator's library
        if fn is None:
            return "gaussian-major"
        fn.restype, fn.argtypes = ctypes.c_int, []
        return "half-row" if fn() else "gaussian-major"

    def project_fwd(self, means, quats, scales, viewmats, Ks, width, height, near, far, eps2d):
        C, N = viewmats.shape[0], means.shape[0]
        radii = torch.empty((C, N), dtype=torch.int32)
        means2d = torch.empty((C, N, 2))
        depths = torch.empty((C, N))
        conics = torch.empty((C, N, 3))
        self.lib.lf_project_fwd(C, N, _ptr(means), _ptr(quats), _ptr(scales), _ptr(viewmats), _ptr(Ks), width,
                                height, near, far, eps2d, _ptr(radii), _ptr(means2d), _ptr(depths), _ptr(conics))
        return radii, means2d, depths, conics

    def project_bwd(self, means, quats, scales, viewmats, Ks, width, height, eps2d, radii, v_means2d, v_depths,
                    v_conics, need_v_viewmats=False):
        """-> (v_means, v_quats, v_scales, v_viewmats [C,4,4] or None)."""
        C, N = viewmats.shape[0], means.shape[0]
        v_means, v_quats, v_scales = torch.empty_like(means), torch.empty_like(quats), torch.empty_like(scales)
        # The kernels write every entry (the emulator's glue zeroes it before its atomics).
        v_viewmats = torch.empty((C, 4, 4)) if need_v_viewmats else None
        self.lib.lf_project_bwd(C, N, _ptr(means), _ptr(quats), _ptr(scales), _ptr(viewmats), _ptr(Ks), width,
                                height, eps2d, _ptr(radii), _ptr(v_means2d), _ptr(v_depths), _ptr(v_conics),
                                _ptr(v_means), _ptr(v_quats), _ptr(v_scales), _ptr(v_viewmats))
        return v_means, v_quats, v_scales, v_viewmats

    def sh_fwd(self, degree, dirs, coeffs):
        B, K = dirs.shape[0], coeffs.shape[1]
        out = torch.empty((B, 3))
        self.lib.lf_sh_fwd(B, K, degree, _ptr(dirs), _ptr(coeffs), _ptr(out))
        return out

    def sh_bwd(self, degree, dirs, coeffs, v_out, need_v_dirs):
        B, K = dirs.shape[0], coeffs.shape[1]
        v_coeffs = torch.empty_like(coeffs)
        v_dirs = torch.empty_like(dirs) if need_v_dirs else None
        self.lib.lf_sh_bwd(B, K, degree, _ptr(dirs), _ptr(coeffs), _ptr(v_out), _ptr(v_coeffs), _ptr(v_dirs))
        return v_coeffs, v_dirs

    def isect_tiles(self, means2d, radii, depths, tile_size, tile_w, tile_h):
        C, N = radii.shape
        tiles_per_gauss = torch.empty((C, N), dtype=torch.int32)
        M = int(self.lib.lf_isect_count(C, N, _ptr(means2d), _ptr(radii), tile_size, tile_w, tile_h,
                                        _ptr(tiles_per_gauss)))
        isect_ids = torch.empty((M,), dtype=torch.int64)
        flatten_ids = torch.empty((M,), dtype=torch.int32)
        if M > 0:
            self.lib.lf_isect_fill(C, N, _ptr(means2d), _ptr(radii), _ptr(depths), tile_size, tile_w, tile_h,
                                   _ptr(tiles_per_gauss), M, _ptr(isect_ids), _ptr(flatten_ids))
        return tiles_per_gauss, isect_ids, flatten_ids

    def isect_offset_encode(self, isect_ids, C, tile_w, tile_h):
        offsets = torch.empty((C, tile_h, tile_w), dtype=torch.int32)
        self.lib.lf_isect_offset_encode(isect_ids.numel(), _ptr(isect_ids), C, tile_w, tile_h, _ptr(offsets))
        return offsets

    def _geom(self, radii, width, height, tile_size, offsets, flatten_ids, colors):
        C, N = radii.shape
        return [C, N, width, height, tile_size, offsets.shape[2], offsets.shape[1], flatten_ids.numel(),
                colors.shape[2]]

    def rasterize_fwd(self, means2d, conics, colors, opacities, radii, backgrounds, width, height, tile_size,
                      offsets, flatten_ids):
        C = radii.shape[0]
        ch = colors.shape[2]
        out = torch.empty((C, height, width, ch))
        T_final = torch.empty((C, height, width))
        last_ids = torch.empty((C, height, width), dtype=torch.int32)
        self.lib.lf_rasterize_fwd(*self._geom(radii, width, height, tile_size, offsets, flatten_ids, colors),
                                  _ptr(means2d), _ptr(conics), _ptr(colors), _ptr(opacities), _ptr(radii),
                                  _ptr(backgrounds), _ptr(offsets), _ptr(flatten_ids), _ptr(out), _ptr(T_final),
                                  _ptr(last_ids))
        return out, T_final, last_ids

    def rasterize_bwd(self, means2d, conics, colors, opacities, radii, backgrounds, width, height, tile_size,
                      offsets, flatten_ids, T_final, last_ids, v_out, v_alphas, absgrad=False):
        """-> (v_means2d, v_conics, v_colors, v_opacities, v_means2d_abs or None)."""
        v_means2d, v_conics = torch.empty_like(means2d), torch.empty_like(conics)
        v_colors, v_opacities = torch.empty_like(colors), torch.empty_like(opacities)
        v_abs = torch.empty_like(means2d) if absgrad else None
        self.lib.lf_rasterize_bwd(*self._geom(radii, width, height, tile_size, offsets, flatten_ids, colors),
                                  _ptr(means2d), _ptr(conics), _ptr(colors), _ptr(opacities), _ptr(radii),
                                  _ptr(backgrounds), _ptr(offsets), _ptr(flatten_ids), _ptr(T_final),
                                  _ptr(last_ids), _ptr(v_out), _ptr(v_alphas), _ptr(v_means2d), _ptr(v_conics),
                                  _ptr(v_colors), _ptr(v_opacities), _ptr(v_abs))
        return v_means2d, v_conics, v_colors, v_opacities, v_abs


class CudaKernels:
    """The CUDA kernels (torch extension); same methods as ``CpuKernels``."""

    def __init__(self, module: Any) -> None:
        self.m = module

    def num_threads(self) -> int:
        return 0

    def project_fwd(self, means, quats, scales, viewmats, Ks, width, height, near, far, eps2d):
        return tuple(self.m.project_fwd(means, quats, scales, viewmats, Ks, width, height, near, far, eps2d))

    def project_bwd(self, means, quats, scales, viewmats, Ks, width, height, eps2d, radii, v_means2d, v_depths,
                    v_conics, need_v_viewmats=False):
        out = self.m.project_bwd(means, quats, scales, viewmats, Ks, width, height, eps2d, radii, v_means2d,
                                 v_depths, v_conics, bool(need_v_viewmats))
        return tuple(out[:3]) + ((out[3] if need_v_viewmats else None),)

    def sh_fwd(self, degree, dirs, coeffs):
        return self.m.sh_fwd(degree, dirs, coeffs)

    def sh_bwd(self, degree, dirs, coeffs, v_out, need_v_dirs):
        v_coeffs, v_dirs = self.m.sh_bwd(degree, dirs, coeffs, v_out, need_v_dirs)
        return v_coeffs, (v_dirs if need_v_dirs else None)

    def isect_tiles(self, means2d, radii, depths, tile_size, tile_w, tile_h):
        return tuple(self.m.isect_tiles(means2d, radii, depths, tile_size, tile_w, tile_h))

    def isect_offset_encode(self, isect_ids, C, tile_w, tile_h):
        return self.m.isect_offset_encode(isect_ids, C, tile_w, tile_h)

    def rasterize_fwd(self, means2d, conics, colors, opacities, radii, backgrounds, width, height, tile_size,
                      offsets, flatten_ids):
        return tuple(self.m.rasterize_fwd(means2d, conics, colors, opacities, radii, backgrounds, width, height,
                                          tile_size, offsets, flatten_ids))

    def rasterize_bwd(self, means2d, conics, colors, opacities, radii, backgrounds, width, height, tile_size,
                      offsets, flatten_ids, T_final, last_ids, v_out, v_alphas, absgrad=False):
        out = self.m.rasterize_bwd(means2d, conics, colors, opacities, radii, backgrounds, width, height, tile_size,
                                   offsets, flatten_ids, T_final, last_ids, v_out, v_alphas, bool(absgrad))
        return tuple(out[:4]) + ((out[4] if absgrad else None),)
