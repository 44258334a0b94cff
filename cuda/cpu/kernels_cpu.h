// CPU kernels on raw pointers (no torch headers, so they compile quickly).
// All float tensors are contiguous float32; shapes follow docs/rasterizer.md.
#pragma once

#include <cstdint>
#include <vector>

namespace lf_cpu {

int max_threads();

// Whether this build has the half-row rasterizer for 16-pixel tiles (x86 AVX2 + FMA).
bool row_kernels_built();

void project_fwd(int C, int N, const float* means, const float* quats, const float* scales, const float* viewmats,
                 const float* Ks, int width, int height, float near_plane, float far_plane, float eps2d,
                 int32_t* radii, float* means2d, float* depths, float* conics);

// Gradients are written (not accumulated) into v_means[N,3], v_quats[N,4], v_scales[N,3] and, when
// v_viewmats is not null, v_viewmats[C,4,4] (bottom rows 0); null skips the pose gradient entirely.
void project_bwd(int C, int N, const float* means, const float* quats, const float* scales, const float* viewmats,
                 const float* Ks, int width, int height, float eps2d, const int32_t* radii, const float* v_means2d,
                 const float* v_depths, const float* v_conics, float* v_means, float* v_quats, float* v_scales,
                 float* v_viewmats /* nullable */);

// B directions, K coefficients per direction.
void sh_fwd(int64_t B, int K, int degree, const float* dirs, const float* coeffs, float* out);
void sh_bwd(int64_t B, int K, int degree, const float* dirs, const float* coeffs, const float* v_out,
            float* v_coeffs, float* v_dirs /* nullable */);

// Tile intersection, two calls: the count writes tiles_per_gauss [C*N] and
// returns M; the fill writes the sorted isect_ids [M] and flatten_ids [M].
int64_t isect_count(int C, int N, const float* means2d, const int32_t* radii, int tile_size, int tile_w, int tile_h,
                    int32_t* tiles_per_gauss);
void isect_fill(int C, int N, const float* means2d, const int32_t* radii, const float* depths, int tile_size,
                int tile_w, int tile_h, const int32_t* tiles_per_gauss, int64_t M, int64_t* isect_ids,
                int32_t* flatten_ids);

void isect_offset_encode(int64_t M, const int64_t* isect_ids, int C, int tile_w, int tile_h, int32_t* offsets);

struct RasterArgs {
    int C, N, width, height, tile_size, tile_w, tile_h;
    int64_t M;
    int ch_total;  // channel stride of colors / backgrounds / outputs
    const float* means2d;
    const float* conics;
    const float* colors;
    const float* opacities;
    const int32_t* radii;
    const float* backgrounds;  // [C, ch_total] or nullptr
    const int32_t* offsets;    // [C, tile_h, tile_w]
    const int32_t* flatten_ids;
};

// Forward: out_colors [C,H,W,ch_total], T_final [C,H,W], last_ids [C,H,W]
// (exclusive end of the contributing isect range of each pixel).
void rasterize_fwd(const RasterArgs& a, float* out_colors, float* T_final, int32_t* last_ids);

// Backward: gradients written into v_means2d [C*N,2], v_conics [C*N,3],
// v_colors [C*N,ch_total], v_opacities [C*N].  v_alphas may be nullptr.
// v_means2d_abs [C*N,2] (nullable): the sum over pixels of |each pixel's share
// of the v_means2d gradient| (AbsGS, gsplat's absgrad).
void rasterize_bwd(const RasterArgs& a, const float* T_final, const int32_t* last_ids, const float* v_out,
                   const float* v_alphas, float* v_means2d, float* v_conics, float* v_colors, float* v_opacities,
                   float* v_means2d_abs);

}  // namespace lf_cpu
