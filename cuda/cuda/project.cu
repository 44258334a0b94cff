// CUDA projection and spherical harmonics: one thread per Gaussian (or
// direction); the math is the shared header's.
#include "../include/langfield_math.h"
#include "kernels_cuda.h"

namespace lf_cuda {
namespace {

constexpr int kThreads = 256;

inline int blocks_for(int64_t n) { return (int)((n + kThreads - 1) / kThreads); }

__global__ void project_fwd_kernel(int C, int N, const float* means, const float* quats, const float* scales,
                                   const float* viewmats, const float* Ks, int width, int height, float near_plane,
                                   float far_plane, float eps2d, int32_t* radii, float* means2d, float* depths,
                                   float* conics) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)C * N) return;
    const int c = (int)(i / N), g = (int)(i % N);
    lf::Camera cam = lf::make_camera(viewmats + 16 * c, Ks + 9 * c, width, height);
    lf::ProjOut o = lf::project_one(cam, means + 3 * g, quats + 4 * g, scales + 3 * g, near_plane, far_plane, eps2d);
    radii[i] = o.radius;
    means2d[2 * i] = o.mx;
    means2d[2 * i + 1] = o.my;
    depths[i] = o.depth;
    conics[3 * i] = o.A;
    conics[3 * i + 1] = o.B;
    conics[3 * i + 2] = o.C;
}

// One thread per Gaussian, cameras in a loop: no atomics needed for the
// per-Gaussian gradients.  The pose gradient (v_viewmats != nullptr) sums over
// Gaussians: per camera a warp reduction, then one atomicAdd per warp and
// entry.  Threads past N therefore do not return early: every warp reaches
// the full-mask shuffles with all 32 lanes (blocks are whole warps).
__global__ void project_bwd_kernel(int C, int N, const float* means, const float* quats, const float* scales,
                                   const float* viewmats, const float* Ks, int width, int height, float eps2d,
                                   const int32_t* radii, const float* v_means2d, const float* v_depths,
                                   const float* v_conics, float* v_means, float* v_quats, float* v_scales,
                                   float* v_viewmats) {
    const int g = blockIdx.x * blockDim.x + threadIdx.x;
    const bool active = g < N;
    if (!active && !v_viewmats) return;
    float vm[3] = {0.f, 0.f, 0.f}, vq[4] = {0.f, 0.f, 0.f, 0.f}, vs[3] = {0.f, 0.f, 0.f};
    for (int c = 0; c < C; ++c) {
        const int64_t i = (int64_t)c * N + g;
        float vv[16];
        for (int k = 0; k < 16; ++k) vv[k] = 0.f;
        if (active && radii[i] > 0) {
            lf::Camera cam = lf::make_camera(viewmats + 16 * c, Ks + 9 * c, width, height);
            if (v_viewmats)
                lf::project_one_vjp_pose(cam, means + 3 * g, quats + 4 * g, scales + 3 * g, eps2d, v_means2d[2 * i],
                                         v_means2d[2 * i + 1], v_depths[i], v_conics[3 * i], v_conics[3 * i + 1],
                                         v_conics[3 * i + 2], vm, vq, vs, vv);
            else
                lf::project_one_vjp(cam, means + 3 * g, quats + 4 * g, scales + 3 * g, eps2d, v_means2d[2 * i],
                                    v_means2d[2 * i + 1], v_depths[i], v_conics[3 * i], v_conics[3 * i + 1],
                                    v_conics[3 * i + 2], vm, vq, vs);
        }
        if (v_viewmats) {
            // Rows 0..2 only: the bottom row of a viewmat gets no gradient.
            for (int k = 0; k < 12; ++k) {
                float x = vv[k];
                for (int off = 16; off > 0; off >>= 1) x += __shfl_down_sync(0xffffffffu, x, off);
                vv[k] = x;
            }
            if ((threadIdx.x & 31) == 0)
                for (int k = 0; k < 12; ++k)
                    if (vv[k] != 0.f) atomicAdd(v_viewmats + 16 * c + k, vv[k]);
        }
    }
    if (!active) return;
    for (int j = 0; j < 3; ++j) v_means[3 * g + j] = vm[j];
    for (int j = 0; j < 4; ++j) v_quats[4 * g + j] = vq[j];
    for (int j = 0; j < 3; ++j) v_scales[3 * g + j] = vs[j];
}

__global__ void sh_fwd_kernel(int64_t B, int K, int degree, const float* dirs, const float* coeffs, float* out) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= B) return;
    lf::sh_eval(degree, dirs + 3 * i, coeffs + (int64_t)K * 3 * i, out + 3 * i);
}

__global__ void sh_bwd_kernel(int64_t B, int K, int degree, const float* dirs, const float* coeffs,
                              const float* v_out, float* v_coeffs, float* v_dirs) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= B) return;
    float* vc = v_coeffs + (int64_t)K * 3 * i;
    for (int k = 0; k < K * 3; ++k) vc[k] = 0.f;
    float vd[3] = {0.f, 0.f, 0.f};
    lf::sh_eval_vjp(degree, dirs + 3 * i, coeffs + (int64_t)K * 3 * i, v_out + 3 * i, vc, v_dirs ? vd : nullptr);
    if (v_dirs)
        for (int j = 0; j < 3; ++j) v_dirs[3 * i + j] = vd[j];
}

}  // namespace

void project_fwd(int C, int N, const float* means, const float* quats, const float* scales, const float* viewmats,
                 const float* Ks, int width, int height, float near_plane, float far_plane, float eps2d,
                 int32_t* radii, float* means2d, float* depths, float* conics, cudaStream_t stream) {
    const int64_t n = (int64_t)C * N;
    if (n == 0) return;
    LF_LAUNCH(project_fwd_kernel, blocks_for(n), kThreads, 0, stream)(C, N, means, quats, scales, viewmats, Ks, width,
                                                                      height, near_plane, far_plane, eps2d, radii,
                                                                      means2d, depths, conics);
}

void project_bwd(int C, int N, const float* means, const float* quats, const float* scales, const float* viewmats,
                 const float* Ks, int width, int height, float eps2d, const int32_t* radii, const float* v_means2d,
                 const float* v_depths, const float* v_conics, float* v_means, float* v_quats, float* v_scales,
                 float* v_viewmats, cudaStream_t stream) {
    if (N == 0) return;
    LF_LAUNCH(project_bwd_kernel, blocks_for(N), kThreads, 0, stream)(C, N, means, quats, scales, viewmats, Ks, width,
                                                                      height, eps2d, radii, v_means2d, v_depths,
                                                                      v_conics, v_means, v_quats, v_scales,
                                                                      v_viewmats);
}

void sh_fwd(int64_t B, int K, int degree, const float* dirs, const float* coeffs, float* out, cudaStream_t stream) {
    if (B == 0) return;
    LF_LAUNCH(sh_fwd_kernel, blocks_for(B), kThreads, 0, stream)(B, K, degree, dirs, coeffs, out);
}

void sh_bwd(int64_t B, int K, int degree, const float* dirs, const float* coeffs, const float* v_out,
            float* v_coeffs, float* v_dirs, cudaStream_t stream) {
    if (B == 0) return;
    LF_LAUNCH(sh_bwd_kernel, blocks_for(B), kThreads, 0, stream)(B, K, degree, dirs, coeffs, v_out, v_coeffs, v_dirs);
}

}  // namespace lf_cuda
