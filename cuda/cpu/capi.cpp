// Plain C ABI of the CPU kernels, called from Python through ctypes
// (langfield/render/native.py).  No torch or pybind headers: the library
// builds in seconds and does not depend on torch's C++ ABI.  ctypes releases
// the GIL during each call.  Python allocates every output tensor.
#include <cstdint>

#include "../include/langfield_raster_args.h"
#include "kernels_cpu.h"

extern "C" {

int lf_abi_version() { return 3; }  // 3: lf_project_bwd takes v_viewmats

int lf_num_threads() { return lf_cpu::max_threads(); }

// 1 when the half-row kernels for 16-pixel tiles (rasterize_rows.cpp, AVX2 +
// FMA builds) serve tile size 16; 0 when the Gaussian-major ones do.
int lf_row_kernels() { return lf_cpu::row_kernels_built() ? 1 : 0; }

void lf_project_fwd(int C, int N, const float* means, const float* quats, const float* scales, const float* viewmats,
                    const float* Ks, int width, int height, float near_plane, float far_plane, float eps2d,
                    int32_t* radii, float* means2d, float* depths, float* conics) {
    lf_cpu::project_fwd(C, N, means, quats, scales, viewmats, Ks, width, height, near_plane, far_plane, eps2d, radii,
                        means2d, depths, conics);
}

void lf_project_bwd(int C, int N, const float* means, const float* quats, const float* scales, const float* viewmats,
                    const float* Ks, int width, int height, float eps2d, const int32_t* radii, const float* v_means2d,
                    const float* v_depths, const float* v_conics, float* v_means, float* v_quats, float* v_scales,
                    float* v_viewmats) {
    lf_cpu::project_bwd(C, N, means, quats, scales, viewmats, Ks, width, height, eps2d, radii, v_means2d, v_depths,
                        v_conics, v_means, v_quats, v_scales, v_viewmats);
}

void lf_sh_fwd(int64_t B, int K, int degree, const float* dirs, const float* coeffs, float* out) {
    lf_cpu::sh_fwd(B, K, degree, dirs, coeffs, out);
}

void lf_sh_bwd(int64_t B, int K, int degree, const float* dirs, const float* coeffs, const float* v_out,
               float* v_coeffs, float* v_dirs) {
    lf_cpu::sh_bwd(B, K, degree, dirs, coeffs, v_out, v_coeffs, v_dirs);
}

int64_t lf_isect_count(int C, int N, const float* means2d, const int32_t* radii, int tile_size, int tile_w,
                       int tile_h, int32_t* tiles_per_gauss) {
    return lf_cpu::isect_count(C, N, means2d, radii, tile_size, tile_w, tile_h, tiles_per_gauss);
}

void lf_isect_fill(int C, int N, const float* means2d, const int32_t* radii, const float* depths, int tile_size,
                   int tile_w, int tile_h, const int32_t* tiles_per_gauss, int64_t M, int64_t* isect_ids,
                   int32_t* flatten_ids) {
    lf_cpu::isect_fill(C, N, means2d, radii, depths, tile_size, tile_w, tile_h, tiles_per_gauss, M, isect_ids,
                       flatten_ids);
}

void lf_isect_offset_encode(int64_t M, const int64_t* isect_ids, int C, int tile_w, int tile_h, int32_t* offsets) {
    lf_cpu::isect_offset_encode(M, isect_ids, C, tile_w, tile_h, offsets);
}

void lf_rasterize_fwd(int C, int N, int width, int height, int tile_size, int tile_w, int tile_h, int64_t M, int ch,
                      const float* means2d, const float* conics, const float* colors, const float* opacities,
                      const int32_t* radii, const float* backgrounds, const int32_t* offsets,
                      const int32_t* flatten_ids, float* out_colors, float* T_final, int32_t* last_ids) {
    const auto a = lf::make_raster_args<lf_cpu::RasterArgs>(C, N, width, height, tile_size, tile_w, tile_h, M, ch,
        means2d, conics, colors, opacities, radii, backgrounds, offsets, flatten_ids);
    lf_cpu::rasterize_fwd(a, out_colors, T_final, last_ids);
}

void lf_rasterize_bwd(int C, int N, int width, int height, int tile_size, int tile_w, int tile_h, int64_t M, int ch,
                      const float* means2d, const float* conics, const float* colors, const float* opacities,
                      const int32_t* radii, const float* backgrounds, const int32_t* offsets,
                      const int32_t* flatten_ids, const float* T_final, const int32_t* last_ids, const float* v_out,
                      const float* v_alphas, float* v_means2d, float* v_conics, float* v_colors,
                      float* v_opacities, float* v_means2d_abs) {
    const auto a = lf::make_raster_args<lf_cpu::RasterArgs>(C, N, width, height, tile_size, tile_w, tile_h, M, ch,
        means2d, conics, colors, opacities, radii, backgrounds, offsets, flatten_ids);
    lf_cpu::rasterize_bwd(a, T_final, last_ids, v_out, v_alphas, v_means2d, v_conics, v_colors, v_opacities,
                          v_means2d_abs);
}

}  // extern "C"
