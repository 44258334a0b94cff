// The CUDA kernels (cuda/cuda/*.cu, compiled as C++ against shim/) behind the
// same plain C ABI as the CPU library (cuda/cpu/capi.cpp), so the Python
// adapter for the CPU kernels drives them unchanged.  The glue mirrors
// cuda/cuda/bindings.cpp: outputs are allocated by the caller (zeroed for the
// backward, whose kernels accumulate with atomics), and the tile counts'
// inclusive cumsum is formed here as bindings.cpp does with torch::cumsum.
// Errors never cross the C ABI as exceptions: a failed call records its
// message, which lf_emu_take_error() returns (empty when none).
#include <cstdint>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "../cuda/kernels_cuda.h"
#include "../include/langfield_raster_args.h"

namespace {

thread_local std::string g_error, g_taken;

template <typename F>
void guarded(F&& f) {
    try {
        f();
    } catch (const std::exception& e) {
        g_error = e.what();
    } catch (...) {
        g_error = "CUDA emulator: unknown C++ exception";
    }
}


}  // namespace

extern "C" {

int lf_abi_version() { return 3; }  // 3: lf_project_bwd takes v_viewmats

int lf_num_threads() { return 1; }

const char* lf_emu_take_error() {
    g_taken.swap(g_error);
    g_error.clear();
    return g_taken.c_str();
}

void lf_project_fwd(int C, int N, const float* means, const float* quats, const float* scales, const float* viewmats,
                    const float* Ks, int width, int height, float near_plane, float far_plane, float eps2d,
                    int32_t* radii, float* means2d, float* depths, float* conics) {
    guarded([&] {
        lf_cuda::project_fwd(C, N, means, quats, scales, viewmats, Ks, width, height, near_plane, far_plane, eps2d,
                             radii, means2d, depths, conics, nullptr);
    });
}

void lf_project_bwd(int C, int N, const float* means, const float* quats, const float* scales, const float* viewmats,
                    const float* Ks, int width, int height, float eps2d, const int32_t* radii, const float* v_means2d,
                    const float* v_depths, const float* v_conics, float* v_means, float* v_quats, float* v_scales,
                    float* v_viewmats) {
    guarded([&] {
        // The kernel accumulates the pose gradient with atomics (bindings.cpp zeroes it too).
        if (v_viewmats) std::memset(v_viewmats, 0, sizeof(float) * 16 * C);
        lf_cuda::project_bwd(C, N, means, quats, scales, viewmats, Ks, width, height, eps2d, radii, v_means2d,
                             v_depths, v_conics, v_means, v_quats, v_scales, v_viewmats, nullptr);
    });
}

void lf_sh_fwd(int64_t B, int K, int degree, const float* dirs, const float* coeffs, float* out) {
    guarded([&] { lf_cuda::sh_fwd(B, K, degree, dirs, coeffs, out, nullptr); });
}

void lf_sh_bwd(int64_t B, int K, int degree, const float* dirs, const float* coeffs, const float* v_out,
               float* v_coeffs, float* v_dirs) {
    guarded([&] { lf_cuda::sh_bwd(B, K, degree, dirs, coeffs, v_out, v_coeffs, v_dirs, nullptr); });
}

int64_t lf_isect_count(int C, int N, const float* means2d, const int32_t* radii, int tile_size, int tile_w,
                       int tile_h, int32_t* tiles_per_gauss) {
    int64_t M = 0;
    guarded([&] {
        lf_cuda::isect_count(C, N, means2d, radii, tile_size, tile_w, tile_h, tiles_per_gauss, nullptr);
        for (int64_t i = 0; i < (int64_t)C * N; ++i) M += tiles_per_gauss[i];
    });
    return M;
}

void lf_isect_fill(int C, int N, const float* means2d, const int32_t* radii, const float* depths, int tile_size,
                   int tile_w, int tile_h, const int32_t* tiles_per_gauss, int64_t M, int64_t* isect_ids,
                   int32_t* flatten_ids) {
    guarded([&] {
        std::vector<int64_t> cum((size_t)C * N);
        int64_t run = 0;
        for (size_t i = 0; i < cum.size(); ++i) cum[i] = run += tiles_per_gauss[i];
        lf_cuda::isect_fill(C, N, means2d, radii, depths, tile_size, tile_w, tile_h, cum.data(), M, isect_ids,
                            flatten_ids, nullptr);
    });
}

void lf_isect_offset_encode(int64_t M, const int64_t* isect_ids, int C, int tile_w, int tile_h, int32_t* offsets) {
    guarded([&] { lf_cuda::isect_offset_encode(M, isect_ids, C, tile_w, tile_h, offsets, nullptr); });
}

void lf_rasterize_fwd(int C, int N, int width, int height, int tile_size, int tile_w, int tile_h, int64_t M, int ch,
                      const float* means2d, const float* conics, const float* colors, const float* opacities,
                      const int32_t* radii, const float* backgrounds, const int32_t* offsets,
                      const int32_t* flatten_ids, float* out_colors, float* T_final, int32_t* last_ids) {
    guarded([&] {
        const auto a = lf::make_raster_args<lf_cuda::RasterArgs>(C, N, width, height, tile_size, tile_w, tile_h, M, ch,
            means2d, conics, colors, opacities, radii, backgrounds, offsets, flatten_ids);
        lf_cuda::rasterize_fwd(a, out_colors, T_final, last_ids, nullptr);
    });
}

void lf_rasterize_bwd(int C, int N, int width, int height, int tile_size, int tile_w, int tile_h, int64_t M, int ch,
                      const float* means2d, const float* conics, const float* colors, const float* opacities,
                      const int32_t* radii, const float* backgrounds, const int32_t* offsets,
                      const int32_t* flatten_ids, const float* T_final, const int32_t* last_ids, const float* v_out,
                      const float* v_alphas, float* v_means2d, float* v_conics, float* v_colors,
                      float* v_opacities, float* v_means2d_abs) {
    guarded([&] {
        // The CUDA backward accumulates with atomics into zeroed outputs (bindings.cpp uses zeros_like).
        const int64_t CN = (int64_t)C * N;
        if (v_means2d) std::memset(v_means2d, 0, sizeof(float) * 2 * CN);
        if (v_conics) std::memset(v_conics, 0, sizeof(float) * 3 * CN);
        if (v_colors) std::memset(v_colors, 0, sizeof(float) * (size_t)ch * CN);
        if (v_opacities) std::memset(v_opacities, 0, sizeof(float) * CN);
        if (v_means2d_abs) std::memset(v_means2d_abs, 0, sizeof(float) * 2 * CN);
        const auto a = lf::make_raster_args<lf_cuda::RasterArgs>(C, N, width, height, tile_size, tile_w, tile_h, M, ch,
            means2d, conics, colors, opacities, radii, backgrounds, offsets, flatten_ids);
        lf_cuda::rasterize_bwd(a, T_final, last_ids, v_out, v_alphas, v_means2d, v_conics, v_colors, v_opacities,
                               v_means2d_abs, nullptr);
    });
}

}  // extern "C"
