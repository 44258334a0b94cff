// CPU projection and spherical harmonics, parallel over Gaussians.
#include <omp.h>

#include <cstring>
#include <vector>

#include "../include/langfield_math.h"
#include "kernels_cpu.h"

namespace lf_cpu {

int max_threads() { return omp_get_max_threads(); }

void project_fwd(int C, int N, const float* means, const float* quats, const float* scales, const float* viewmats,
                 const float* Ks, int width, int height, float near_plane, float far_plane, float eps2d,
                 int32_t* radii, float* means2d, float* depths, float* conics) {
    for (int c = 0; c < C; ++c) {
        lf::Camera cam = lf::make_camera(viewmats + 16 * c, Ks + 9 * c, width, height);
#pragma omp parallel for schedule(static)
        for (int g = 0; g < N; ++g) {
            lf::ProjOut o = lf::project_one(cam, means + 3 * g, quats + 4 * g, scales + 3 * g, near_plane, far_plane,
                                            eps2d);
            int64_t i = (int64_t)c * N + g;
            radii[i] = o.radius;
            means2d[2 * i] = o.mx;
            means2d[2 * i + 1] = o.my;
            depths[i] = o.depth;
            conics[3 * i] = o.A;
            conics[3 * i + 1] = o.B;
            conics[3 * i + 2] = o.C;
        }
    }
}

namespace {

// project_bwd with the pose gradient.  The pose gradient sums over Gaussians:
// one private [C,16] buffer per thread (static schedule), added in thread
// order afterwards, so a fixed thread count gives bit-identical results (what
// exact --resume needs).
void project_bwd_pose(int C, int N, const lf::Camera* cams, const float* means, const float* quats,
                      const float* scales, float eps2d, const int32_t* radii, const float* v_means2d,
                      const float* v_depths, const float* v_conics, float* v_means, float* v_quats, float* v_scales,
                      float* v_viewmats) {
    const int n_threads = omp_get_max_threads();
    std::vector<float> view_bufs((size_t)n_threads * C * 16, 0.f);
#pragma omp parallel num_threads(n_threads)
    {
        float* my_view = view_bufs.data() + (size_t)omp_get_thread_num() * C * 16;
#pragma omp for schedule(static)
        for (int g = 0; g < N; ++g) {
            float vm[3] = {0.f, 0.f, 0.f}, vq[4] = {0.f, 0.f, 0.f, 0.f}, vs[3] = {0.f, 0.f, 0.f};
            for (int c = 0; c < C; ++c) {
                int64_t i = (int64_t)c * N + g;
                float vd = v_depths ? v_depths[i] : 0.f;
                if (radii[i] <= 0) continue;
                lf::project_one_vjp_pose(cams[c], means + 3 * g, quats + 4 * g, scales + 3 * g, eps2d,
                                         v_means2d[2 * i], v_means2d[2 * i + 1], vd, v_conics[3 * i],
                                         v_conics[3 * i + 1], v_conics[3 * i + 2], vm, vq, vs, my_view + 16 * c);
            }
            for (int j = 0; j < 3; ++j) v_means[3 * g + j] = vm[j];
            for (int j = 0; j < 4; ++j) v_quats[4 * g + j] = vq[j];
            for (int j = 0; j < 3; ++j) v_scales[3 * g + j] = vs[j];
        }
    }
    std::memset(v_viewmats, 0, sizeof(float) * C * 16);
    for (int t = 0; t < n_threads; ++t)
        for (int k = 0; k < C * 16; ++k) v_viewmats[k] += view_bufs[(size_t)t * C * 16 + k];
}

}  // namespace

void project_bwd(int C, int N, const float* means, const float* quats, const float* scales, const float* viewmats,
                 const float* Ks, int width, int height, float eps2d, const int32_t* radii, const float* v_means2d,
                 const float* v_depths, const float* v_conics, float* v_means, float* v_quats, float* v_scales,
                 float* v_viewmats) {
    std::vector<lf::Camera> cams(C);
    for (int c = 0; c < C; ++c) cams[c] = lf::make_camera(viewmats + 16 * c, Ks + 9 * c, width, height);
    if (v_viewmats) {
        project_bwd_pose(C, N, cams.data(), means, quats, scales, eps2d, radii, v_means2d, v_depths, v_conics,
                         v_means, v_quats, v_scales, v_viewmats);
        return;
    }
    // Parallel over Gaussians, cameras inside: each Gaussian's gradient is
    // owned by one thread, so no reduction is needed.  (This loop is kept as
    // it was before pose gradients: its results are bit-identical.)
#pragma omp parallel for schedule(static)
    for (int g = 0; g < N; ++g) {
        float vm[3] = {0.f, 0.f, 0.f}, vq[4] = {0.f, 0.f, 0.f, 0.f}, vs[3] = {0.f, 0.f, 0.f};
        for (int c = 0; c < C; ++c) {
            int64_t i = (int64_t)c * N + g;
            float vd = v_depths ? v_depths[i] : 0.f;
            if (radii[i] <= 0) continue;  // culled: outputs are constant 0, no gradient
            lf::project_one_vjp(cams[c], means + 3 * g, quats + 4 * g, scales + 3 * g, eps2d, v_means2d[2 * i],
                                v_means2d[2 * i + 1], vd, v_conics[3 * i], v_conics[3 * i + 1], v_conics[3 * i + 2],
                                vm, vq, vs);
        }
        for (int j = 0; j < 3; ++j) v_means[3 * g + j] = vm[j];
        for (int j = 0; j < 4; ++j) v_quats[4 * g + j] = vq[j];
        for (int j = 0; j < 3; ++j) v_scales[3 * g + j] = vs[j];
    }
}

void sh_fwd(int64_t B, int K, int degree, const float* dirs, const float* coeffs, float* out) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < B; ++i) lf::sh_eval(degree, dirs + 3 * i, coeffs + (int64_t)K * 3 * i, out + 3 * i);
}

void sh_bwd(int64_t B, int K, int degree, const float* dirs, const float* coeffs, const float* v_out,
            float* v_coeffs, float* v_dirs) {
    std::memset(v_coeffs, 0, sizeof(float) * B * K * 3);
    if (v_dirs) std::memset(v_dirs, 0, sizeof(float) * B * 3);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < B; ++i)
        lf::sh_eval_vjp(degree, dirs + 3 * i, coeffs + (int64_t)K * 3 * i, v_out + 3 * i,
                        v_coeffs + (int64_t)K * 3 * i, v_dirs ? v_dirs + 3 * i : nullptr);
}

}  // namespace lf_cpu
