// torch glue for the CUDA kernels (compiled by the host compiler; the .cu
// files stay free of torch headers).  Inputs are validated in Python
// (langfield/render/native.py); the checks here only guard memory safety.
// c10's stream/guard headers only: ATen/cuda/CUDAContext.h pulls in cuSPARSE
// and cuBLAS headers that a minimal toolkit may lack.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/extension.h>

#include "kernels_cuda.h"

namespace {

using torch::Tensor;

void check(const Tensor& t, const char* name, c10::ScalarType dt = torch::kFloat32) {
    TORCH_CHECK(t.is_cuda(), name, " must be a CUDA tensor");
    TORCH_CHECK(t.scalar_type() == dt, name, " has dtype ", t.scalar_type(), ", expected ", dt);
    TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

cudaStream_t stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

template <typename T>
T* ptr(const Tensor& t) {
    return t.numel() ? t.data_ptr<T>() : nullptr;
}

std::vector<Tensor> project_fwd(Tensor means, Tensor quats, Tensor scales, Tensor viewmats, Tensor Ks, int64_t width,
                                int64_t height, double near_plane, double far_plane, double eps2d) {
    check(means, "means"); check(quats, "quats"); check(scales, "scales"); check(viewmats, "viewmats");
    check(Ks, "Ks");
    const c10::cuda::CUDAGuard guard(means.device());
    const int64_t N = means.size(0), C = viewmats.size(0);
    auto f = means.options();
    Tensor radii = torch::empty({C, N}, f.dtype(torch::kInt32));
    Tensor means2d = torch::empty({C, N, 2}, f), depths = torch::empty({C, N}, f), conics = torch::empty({C, N, 3}, f);
    lf_cuda::project_fwd((int)C, (int)N, ptr<float>(means), ptr<float>(quats), ptr<float>(scales),
                         ptr<float>(viewmats), ptr<float>(Ks), (int)width, (int)height, (float)near_plane,
                         (float)far_plane, (float)eps2d, ptr<int32_t>(radii), ptr<float>(means2d),
                         ptr<float>(depths), ptr<float>(conics), stream());
    return {radii, means2d, depths, conics};
}

std::vector<Tensor> project_bwd(Tensor means, Tensor quats, Tensor scales, Tensor viewmats, Tensor Ks, int64_t width,
                                int64_t height, double eps2d, Tensor radii, Tensor v_means2d, Tensor v_depths,
                                Tensor v_conics, bool need_v_viewmats) {
    check(means, "means"); check(radii, "radii", torch::kInt32); check(v_means2d, "v_means2d");
    check(v_depths, "v_depths"); check(v_conics, "v_conics");
    const c10::cuda::CUDAGuard guard(means.device());
    const int64_t N = means.size(0), C = viewmats.size(0);
    Tensor v_means = torch::empty_like(means), v_quats = torch::empty_like(quats), v_scales = torch::empty_like(scales);
    // Accumulated with atomics; an empty tensor (null pointer) skips the pose gradient.
    Tensor v_viewmats = need_v_viewmats ? torch::zeros({C, 4, 4}, means.options()) : torch::empty({0}, means.options());
    lf_cuda::project_bwd((int)C, (int)N, ptr<float>(means), ptr<float>(quats), ptr<float>(scales),
                         ptr<float>(viewmats), ptr<float>(Ks), (int)width, (int)height, (float)eps2d,
                         ptr<int32_t>(radii), ptr<float>(v_means2d), ptr<float>(v_depths), ptr<float>(v_conics),
                         ptr<float>(v_means), ptr<float>(v_quats), ptr<float>(v_scales), ptr<float>(v_viewmats),
                         stream());
    return {v_means, v_quats, v_scales, v_viewmats};
}

Tensor sh_fwd(int64_t degree, Tensor dirs, Tensor coeffs) {
    check(dirs, "dirs"); check(coeffs, "coeffs");
    const c10::cuda::CUDAGuard guard(dirs.device());
    const int64_t B = dirs.size(0), K = coeffs.size(1);
    Tensor out = torch::empty({B, 3}, dirs.options());
    lf_cuda::sh_fwd(B, (int)K, (int)degree, ptr<float>(dirs), ptr<float>(coeffs), ptr<float>(out), stream());
    return out;
}

std::vector<Tensor> sh_bwd(int64_t degree, Tensor dirs, Tensor coeffs, Tensor v_out, bool need_v_dirs) {
    check(dirs, "dirs"); check(coeffs, "coeffs"); check(v_out, "v_out");
    const c10::cuda::CUDAGuard guard(dirs.device());
    const int64_t B = dirs.size(0), K = coeffs.size(1);
    Tensor v_coeffs = torch::empty_like(coeffs);
    Tensor v_dirs = torch::empty_like(dirs);
    lf_cuda::sh_bwd(B, (int)K, (int)degree, ptr<float>(dirs), ptr<float>(coeffs), ptr<float>(v_out),
                    ptr<float>(v_coeffs), need_v_dirs ? ptr<float>(v_dirs) : nullptr, stream());
    return {v_coeffs, v_dirs};
}

std::vector<Tensor> isect_tiles(Tensor means2d, Tensor radii, Tensor depths, int64_t tile_size, int64_t tile_w,
                                int64_t tile_h) {
    check(means2d, "means2d"); check(radii, "radii", torch::kInt32); check(depths, "depths");
    const c10::cuda::CUDAGuard guard(means2d.device());
    const int64_t C = radii.size(0), N = radii.size(1);
    Tensor tiles_per_gauss = torch::empty({C, N}, radii.options());
    lf_cuda::isect_count((int)C, (int)N, ptr<float>(means2d), ptr<int32_t>(radii), (int)tile_size, (int)tile_w,
                         (int)tile_h, ptr<int32_t>(tiles_per_gauss), stream());
    Tensor cum = torch::cumsum(tiles_per_gauss.view({-1}), 0, torch::kInt64);
    const int64_t M = C * N > 0 ? cum[-1].item<int64_t>() : 0;  // host sync: M sizes the outputs
    Tensor isect_ids = torch::empty({M}, radii.options().dtype(torch::kInt64));
    Tensor flatten_ids = torch::empty({M}, radii.options());
    lf_cuda::isect_fill((int)C, (int)N, ptr<float>(means2d), ptr<int32_t>(radii), ptr<float>(depths),
                        (int)tile_size, (int)tile_w, (int)tile_h, ptr<int64_t>(cum), M, ptr<int64_t>(isect_ids),
                        ptr<int32_t>(flatten_ids), stream());
    return {tiles_per_gauss, isect_ids, flatten_ids};
}

Tensor isect_offset_encode(Tensor isect_ids, int64_t C, int64_t tile_w, int64_t tile_h) {
    check(isect_ids, "isect_ids", torch::kInt64);
    const c10::cuda::CUDAGuard guard(isect_ids.device());
    Tensor offsets = torch::empty({C, tile_h, tile_w}, isect_ids.options().dtype(torch::kInt32));
    lf_cuda::isect_offset_encode(isect_ids.numel(), ptr<int64_t>(isect_ids), (int)C, (int)tile_w, (int)tile_h,
                                 ptr<int32_t>(offsets), stream());
    return offsets;
}

lf_cuda::RasterArgs make_args(const Tensor& means2d, const Tensor& conics, const Tensor& colors,
                              const Tensor& opacities, const Tensor& radii, const c10::optional<Tensor>& backgrounds,
                              int64_t width, int64_t height, int64_t tile_size, const Tensor& offsets,
                              const Tensor& flatten_ids) {
    check(means2d, "means2d"); check(conics, "conics"); check(colors, "colors"); check(opacities, "opacities");
    check(radii, "radii", torch::kInt32); check(offsets, "isect_offsets", torch::kInt32);
    check(flatten_ids, "flatten_ids", torch::kInt32);
    TORCH_CHECK(tile_size * tile_size <= 1024, "tile_size must be <= 32 on CUDA");
    lf_cuda::RasterArgs a;
    a.C = (int)radii.size(0); a.N = (int)radii.size(1);
    a.width = (int)width; a.height = (int)height; a.tile_size = (int)tile_size;
    a.tile_h = (int)offsets.size(1); a.tile_w = (int)offsets.size(2);
    a.M = flatten_ids.numel();
    a.ch_total = (int)colors.size(2);
    a.means2d = ptr<float>(means2d); a.conics = ptr<float>(conics); a.colors = ptr<float>(colors);
    a.opacities = ptr<float>(opacities); a.radii = ptr<int32_t>(radii);
    a.backgrounds = nullptr;
    if (backgrounds.has_value() && backgrounds->defined()) {
        check(*backgrounds, "backgrounds");
        a.backgrounds = ptr<float>(*backgrounds);
    }
    a.offsets = ptr<int32_t>(offsets); a.flatten_ids = ptr<int32_t>(flatten_ids);
    return a;
}

std::vector<Tensor> rasterize_fwd(Tensor means2d, Tensor conics, Tensor colors, Tensor opacities, Tensor radii,
                                  c10::optional<Tensor> backgrounds, int64_t width, int64_t height, int64_t tile_size,
                                  Tensor offsets, Tensor flatten_ids) {
    const c10::cuda::CUDAGuard guard(means2d.device());
    lf_cuda::RasterArgs a = make_args(means2d, conics, colors, opacities, radii, backgrounds, width, height,
                                      tile_size, offsets, flatten_ids);
    auto f = colors.options();
    Tensor out = torch::empty({a.C, height, width, a.ch_total}, f);
    Tensor T_final = torch::empty({a.C, height, width}, f);
    Tensor last_ids = torch::empty({a.C, height, width}, f.dtype(torch::kInt32));
    lf_cuda::rasterize_fwd(a, ptr<float>(out), ptr<float>(T_final), ptr<int32_t>(last_ids), stream());
    return {out, T_final, last_ids};
}

std::vector<Tensor> rasterize_bwd(Tensor means2d, Tensor conics, Tensor colors, Tensor opacities, Tensor radii,
                                  c10::optional<Tensor> backgrounds, int64_t width, int64_t height, int64_t tile_size,
                                  Tensor offsets, Tensor flatten_ids, Tensor T_final, Tensor last_ids, Tensor v_out,
                                  c10::optional<Tensor> v_alphas, bool absgrad) {
    const c10::cuda::CUDAGuard guard(means2d.device());
    lf_cuda::RasterArgs a = make_args(means2d, conics, colors, opacities, radii, backgrounds, width, height,
                                      tile_size, offsets, flatten_ids);
    check(T_final, "T_final"); check(last_ids, "last_ids", torch::kInt32); check(v_out, "v_out");
    const float* va = nullptr;
    if (v_alphas.has_value() && v_alphas->defined()) {
        check(*v_alphas, "v_alphas");
        va = ptr<float>(*v_alphas);
    }
    Tensor v_means2d = torch::zeros_like(means2d), v_conics = torch::zeros_like(conics);
    Tensor v_colors = torch::zeros_like(colors), v_opacities = torch::zeros_like(opacities);
    Tensor v_abs = absgrad ? torch::zeros_like(means2d) : torch::Tensor();
    lf_cuda::rasterize_bwd(a, ptr<float>(T_final), ptr<int32_t>(last_ids), ptr<float>(v_out), va,
                           ptr<float>(v_means2d), ptr<float>(v_conics), ptr<float>(v_colors),
                           ptr<float>(v_opacities), absgrad ? ptr<float>(v_abs) : nullptr, stream());
    return {v_means2d, v_conics, v_colors, v_opacities, v_abs};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "langfield native CUDA rasterizer kernels";
    m.def("project_fwd", &project_fwd);
    m.def("project_bwd", &project_bwd);
    m.def("sh_fwd", &sh_fwd);
    m.def("sh_bwd", &sh_bwd);
    m.def("isect_tiles", &isect_tiles);
    m.def("isect_offset_encode", &isect_offset_encode);
    m.def("rasterize_fwd", &rasterize_fwd);
    m.def("rasterize_bwd", &rasterize_bwd);
}
