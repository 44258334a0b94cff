// CUDA tile intersection: count per Gaussian, emit (key, index) pairs in
// Gaussian order at the cumsum offsets, then one stable cub radix sort over
// the used key bits (stability keeps Gaussian order for equal keys).
#include <cub/cub.cuh>

#include "../include/langfield_math.h"
#include "kernels_cuda.h"

namespace lf_cuda {
namespace {

constexpr int kThreads = 256;

inline int blocks_for(int64_t n) { return (int)((n + kThreads - 1) / kThreads); }

__global__ void count_kernel(int64_t CN, const float* means2d, const int32_t* radii, int tile_size, int tile_w,
                             int tile_h, int32_t* tiles_per_gauss) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= CN) return;
    int x0 = 0, x1 = 0, y0 = 0, y1 = 0;
    if (radii[i] > 0)
        lf::tile_range(means2d[2 * i], means2d[2 * i + 1], radii[i], tile_size, tile_w, tile_h, &x0, &x1, &y0, &y1);
    tiles_per_gauss[i] = (x1 - x0) * (y1 - y0);
}

__global__ void fill_kernel(int64_t CN, int N, const float* means2d, const int32_t* radii, const float* depths,
                            int tile_size, int tile_w, int tile_h, int tile_bits, const int64_t* cum_tiles,
                            int64_t* keys, int32_t* values) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= CN || radii[i] <= 0) return;
    int x0, x1, y0, y1;
    lf::tile_range(means2d[2 * i], means2d[2 * i + 1], radii[i], tile_size, tile_w, tile_h, &x0, &x1, &y0, &y1);
    int64_t pos = i == 0 ? 0 : cum_tiles[i - 1];
    const int64_t cam = i / N;
    const int64_t depth = (int64_t)(uint32_t)lf::depth_key(depths[i]);
    for (int y = y0; y < y1; ++y)
        for (int x = x0; x < x1; ++x) {
            const int64_t tile = (int64_t)y * tile_w + x;
            keys[pos] = (cam << (32 + tile_bits)) | (tile << 32) | depth;
            values[pos] = (int32_t)i;
            ++pos;
        }
}

__global__ void offsets_kernel(int64_t M, const int64_t* isect_ids, int64_t n_buckets, int64_t n_tiles,
                               int tile_bits, int32_t* offsets) {
    // Thread i (0..M) owns buckets (bucket(i-1), bucket(i)]: they start at i.
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i > M) return;
    auto bucket = [&](int64_t j) {
        const int64_t id = isect_ids[j];
        const int64_t cam = id >> (32 + tile_bits);
        const int64_t tile = (id >> 32) & ((1ll << tile_bits) - 1);
        return cam * n_tiles + tile;
    };
    const int64_t cur = i < M ? bucket(i) : n_buckets;
    const int64_t prev = i > 0 ? bucket(i - 1) : -1;
    for (int64_t b = prev + 1; b <= cur && b < n_buckets; ++b) offsets[b] = (int32_t)i;
}

}  // namespace

void isect_count(int C, int N, const float* means2d, const int32_t* radii, int tile_size, int tile_w, int tile_h,
                 int32_t* tiles_per_gauss, cudaStream_t stream) {
    const int64_t CN = (int64_t)C * N;
    if (CN == 0) return;
    LF_LAUNCH(count_kernel, blocks_for(CN), kThreads, 0, stream)(CN, means2d, radii, tile_size, tile_w, tile_h,
                                                                 tiles_per_gauss);
}

void isect_fill(int C, int N, const float* means2d, const int32_t* radii, const float* depths, int tile_size,
                int tile_w, int tile_h, const int64_t* cum_tiles, int64_t M, int64_t* isect_ids,
                int32_t* flatten_ids, cudaStream_t stream) {
    if (M == 0) return;
    const int64_t CN = (int64_t)C * N;
    const int tile_bits = lf::bit_width_u32((uint32_t)(tile_w * tile_h));
    const int cam_bits = lf::bit_width_u32((uint32_t)C);
    int64_t* keys_in = nullptr;
    int32_t* vals_in = nullptr;
    cudaMallocAsync(&keys_in, sizeof(int64_t) * M, stream);
    cudaMallocAsync(&vals_in, sizeof(int32_t) * M, stream);
    LF_LAUNCH(fill_kernel, blocks_for(CN), kThreads, 0, stream)(CN, N, means2d, radii, depths, tile_size, tile_w,
                                                                tile_h, tile_bits, cum_tiles, keys_in, vals_in);
    const int end_bit = 32 + tile_bits + cam_bits;
    size_t temp_bytes = 0;
    cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, keys_in, isect_ids, vals_in, flatten_ids, (int)M, 0,
                                    end_bit, stream);
    void* temp = nullptr;
    cudaMallocAsync(&temp, temp_bytes, stream);
    cub::DeviceRadixSort::SortPairs(temp, temp_bytes, keys_in, isect_ids, vals_in, flatten_ids, (int)M, 0, end_bit,
                                    stream);
    cudaFreeAsync(temp, stream);
    cudaFreeAsync(keys_in, stream);
    cudaFreeAsync(vals_in, stream);
}

void isect_offset_encode(int64_t M, const int64_t* isect_ids, int C, int tile_w, int tile_h, int32_t* offsets,
                         cudaStream_t stream) {
    const int64_t n_tiles = (int64_t)tile_w * tile_h;
    const int64_t n_buckets = (int64_t)C * n_tiles;
    if (n_buckets == 0) return;
    const int tile_bits = lf::bit_width_u32((uint32_t)n_tiles);
    LF_LAUNCH(offsets_kernel, blocks_for(M + 1), kThreads, 0, stream)(M, isect_ids, n_buckets, n_tiles, tile_bits,
                                                                      offsets);
}

}  // namespace lf_cuda
