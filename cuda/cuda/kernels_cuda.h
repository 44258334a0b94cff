// Launchers of the CUDA kernels on raw device pointers (no torch headers), so
// the .cu files compile quickly; torch glue lives in bindings.cpp.  Shapes
// and semantics are those of docs/rasterizer.md and cuda/cpu/kernels_cpu.h.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

// Launch and dynamic shared memory through macros, so the same .cu files also
// compile as C++ for the CPU emulator (cuda/emu/), whose cuda_runtime.h
// defines them first.
#ifndef LF_LAUNCH
#define LF_LAUNCH(kernel, grid, block, shm, stream) kernel<<<grid, block, shm, stream>>>
#endif
#ifndef LF_DYN_SHARED
#define LF_DYN_SHARED(T, name) extern __shared__ T name[]
#endif

namespace lf_cuda {

void project_fwd(int C, int N, const float* means, const float* quats, const float* scales, const float* viewmats,
                 const float* Ks, int width, int height, float near_plane, float far_plane, float eps2d,
                 int32_t* radii, float* means2d, float* depths, float* conics, cudaStream_t stream);

void project_bwd(int C, int N, const float* means, const float* quats, const float* scales, const float* viewmats,
                 const float* Ks, int width, int height, float eps2d, const int32_t* radii, const float* v_means2d,
                 const float* v_depths, const float* v_conics, float* v_means, float* v_quats, float* v_scales,
                 float* v_viewmats /* nullable; [C,4,4] zeroed by the caller, accumulated with atomics */,
                 cudaStream_t stream);

void sh_fwd(int64_t B, int K, int degree, const float* dirs, const float* coeffs, float* out, cudaStream_t stream);
void sh_bwd(int64_t B, int K, int degree, const float* dirs, const float* coeffs, const float* v_out,
            float* v_coeffs, float* v_dirs, cudaStream_t stream);

// Writes tiles_per_gauss [C*N]; the caller forms the inclusive cumsum (int64).
void isect_count(int C, int N, const float* means2d, const int32_t* radii, int tile_size, int tile_w, int tile_h,
                 int32_t* tiles_per_gauss, cudaStream_t stream);
// Emits and radix-sorts the M intersections; cum_tiles is the inclusive cumsum.
void isect_fill(int C, int N, const float* means2d, const int32_t* radii, const float* depths, int tile_size,
                int tile_w, int tile_h, const int64_t* cum_tiles, int64_t M, int64_t* isect_ids,
                int32_t* flatten_ids, cudaStream_t stream);
void isect_offset_encode(int64_t M, const int64_t* isect_ids, int C, int tile_w, int tile_h, int32_t* offsets,
                         cudaStream_t stream);

struct RasterArgs {
    int C, N, width, height, tile_size, tile_w, tile_h;
    int64_t M;
    int ch_total;
    const float* means2d;
    const float* conics;
    const float* colors;
    const float* opacities;
    const int32_t* radii;
    const float* backgrounds;  // nullable
    const int32_t* offsets;
    const int32_t* flatten_ids;
};

void rasterize_fwd(const RasterArgs& a, float* out_colors, float* T_final, int32_t* last_ids, cudaStream_t stream);
// Gradient outputs must be zero-initialised (accumulated with atomics).
// v_means2d_abs (nullable): sum over pixels of |each pixel's share of v_means2d| (AbsGS).
void rasterize_bwd(const RasterArgs& a, const float* T_final, const int32_t* last_ids, const float* v_out,
                   const float* v_alphas, float* v_means2d, float* v_conics, float* v_colors, float* v_opacities,
                   float* v_means2d_abs, cudaStream_t stream);

}  // namespace lf_cuda
