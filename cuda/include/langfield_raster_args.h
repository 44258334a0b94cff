// Filling a RasterArgs (the CPU's lf_cpu::RasterArgs or the CUDA's
// lf_cuda::RasterArgs: the same fields) from the flat C ABI arguments, for
// cuda/cpu/capi.cpp and cuda/emu/capi_emu.cpp.
#pragma once

#include <cstdint>

namespace lf {

template <typename Args>
inline Args make_raster_args(int C, int N, int width, int height, int tile_size, int tile_w, int tile_h, int64_t M,
                             int ch, const float* means2d, const float* conics, const float* colors,
                             const float* opacities, const int32_t* radii, const float* backgrounds,
                             const int32_t* offsets, const int32_t* flatten_ids) {
    Args a;
    a.C = C; a.N = N; a.width = width; a.height = height;
    a.tile_size = tile_size; a.tile_w = tile_w; a.tile_h = tile_h;
    a.M = M; a.ch_total = ch;
    a.means2d = means2d; a.conics = conics; a.colors = colors; a.opacities = opacities;
    a.radii = radii; a.backgrounds = backgrounds; a.offsets = offsets; a.flatten_ids = flatten_ids;
    return a;
}

}  // namespace lf
