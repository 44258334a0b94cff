// CPU tile intersection: the Gaussians are radix-sorted by (depth, index)
// once, then their (Gaussian, tile) pairs are scattered in that order by a
// stable counting sort on (camera, tile).  This yields exactly the globally
// sorted 64-bit keys of the contract without sorting the M pairs.
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "../include/langfield_math.h"
#include "kernels_cpu.h"

namespace lf_cpu {

int64_t isect_count(int C, int N, const float* means2d, const int32_t* radii, int tile_size, int tile_w, int tile_h,
                    int32_t* tiles_per_gauss) {
    const int64_t CN = (int64_t)C * N;
    int64_t total = 0;
#pragma omp parallel for schedule(static) reduction(+ : total)
    for (int64_t i = 0; i < CN; ++i) {
        int x0 = 0, x1 = 0, y0 = 0, y1 = 0;
        if (radii[i] > 0)
            lf::tile_range(means2d[2 * i], means2d[2 * i + 1], radii[i], tile_size, tile_w, tile_h, &x0, &x1, &y0, &y1);
        tiles_per_gauss[i] = (x1 - x0) * (y1 - y0);
        total += tiles_per_gauss[i];
    }
    return total;
}

namespace {

// Indices i < CN with tiles_per_gauss[i] > 0, in (depth, index) order: an
// LSD radix sort on the 32-bit depth key (positive float bits sort like the
// floats), stable, so equal depths keep index order.  Scattering pairs in
// this order fills every tile already sorted, with no per-tile sort.
std::vector<int32_t> depth_order(int64_t CN, const float* depths, const int32_t* tiles_per_gauss) {
    std::vector<int32_t> idx;
    idx.reserve(CN);
    for (int64_t i = 0; i < CN; ++i)
        if (tiles_per_gauss[i] > 0) idx.push_back((int32_t)i);
    const size_t n = idx.size();
    std::vector<uint32_t> key(n), key2(n);
    for (size_t j = 0; j < n; ++j) key[j] = (uint32_t)lf::depth_key(depths[idx[j]]);
    std::vector<int32_t> idx2(n);
    constexpr int kBits = 11, kBuckets = 1 << kBits;
    for (int shift = 0; shift < 32; shift += kBits) {
        size_t count[kBuckets + 1] = {0};
        for (size_t j = 0; j < n; ++j) count[((key[j] >> shift) & (kBuckets - 1)) + 1]++;
        // Every key has the same digit here (e.g. the high exponent bits of
        // nearby depths): the pass would not move anything.
        if (n == 0 || count[((key[0] >> shift) & (kBuckets - 1)) + 1] == n) continue;
        for (int d = 0; d < kBuckets; ++d) count[d + 1] += count[d];
        for (size_t j = 0; j < n; ++j) {
            const size_t dst = count[(key[j] >> shift) & (kBuckets - 1)]++;
            key2[dst] = key[j];
            idx2[dst] = idx[j];
        }
        key.swap(key2);
        idx.swap(idx2);
    }
    return idx;
}

}  // namespace

void isect_fill(int C, int N, const float* means2d, const int32_t* radii, const float* depths, int tile_size,
                int tile_w, int tile_h, const int32_t* tiles_per_gauss, int64_t M, int64_t* isect_ids,
                int32_t* flatten_ids) {
    const int64_t CN = (int64_t)C * N;
    const int64_t n_tiles = (int64_t)tile_w * tile_h;
    const int64_t n_buckets = (int64_t)C * n_tiles;
    const int tile_bits = lf::bit_width_u32((uint32_t)n_tiles);
    const int nt = omp_get_max_threads();
    const std::vector<int32_t> order = depth_order(CN, depths, tiles_per_gauss);
    const int64_t n_order = (int64_t)order.size();
    // counts[t][bucket]: per-chunk histograms over contiguous pieces of the
    // depth order, so the scatter below keeps that order inside each bucket.
    std::vector<int64_t> counts((size_t)nt * n_buckets + 1, 0);
    std::vector<int64_t> chunk_begin(nt + 1);
    for (int t = 0; t <= nt; ++t) chunk_begin[t] = n_order * t / nt;

    // Chunks, not threads, own the histograms: if the runtime grants fewer
    // threads than asked (nested or dynamic teams), every chunk still runs.
#pragma omp parallel num_threads(nt)
    for (int t = omp_get_thread_num(); t < nt; t += omp_get_num_threads()) {
        int64_t* cnt = counts.data() + (size_t)t * n_buckets;
        for (int64_t j = chunk_begin[t]; j < chunk_begin[t + 1]; ++j) {
            const int64_t i = order[j];
            int x0, x1, y0, y1;
            lf::tile_range(means2d[2 * i], means2d[2 * i + 1], radii[i], tile_size, tile_w, tile_h, &x0, &x1, &y0,
                           &y1);
            int64_t base = (i / N) * n_tiles;
            for (int y = y0; y < y1; ++y)
                for (int x = x0; x < x1; ++x) cnt[base + (int64_t)y * tile_w + x]++;
        }
    }
    // Exclusive prefix over (bucket, chunk): chunk t's entries in bucket b
    // start after all earlier buckets and after chunks < t in bucket b.
    int64_t run = 0;
    for (int64_t b = 0; b < n_buckets; ++b) {
        for (int t = 0; t < nt; ++t) {
            int64_t c = counts[(size_t)t * n_buckets + b];
            counts[(size_t)t * n_buckets + b] = run;
            run += c;
        }
    }
    if (run != M) return;  // caller passed a stale M; nothing sensible to write
#pragma omp parallel num_threads(nt)
    for (int t = omp_get_thread_num(); t < nt; t += omp_get_num_threads()) {
        int64_t* pos = counts.data() + (size_t)t * n_buckets;
        for (int64_t j = chunk_begin[t]; j < chunk_begin[t + 1]; ++j) {
            const int64_t i = order[j];
            int x0, x1, y0, y1;
            lf::tile_range(means2d[2 * i], means2d[2 * i + 1], radii[i], tile_size, tile_w, tile_h, &x0, &x1, &y0,
                           &y1);
            const int64_t cam = i / N, base = cam * n_tiles;
            const int64_t key = (int64_t)(uint32_t)lf::depth_key(depths[i]);
            for (int y = y0; y < y1; ++y)
                for (int x = x0; x < x1; ++x) {
                    const int64_t tile = (int64_t)y * tile_w + x;
                    const int64_t dst = pos[base + tile]++;
                    isect_ids[dst] = (cam << (tile_bits + 32)) | (tile << 32) | key;
                    flatten_ids[dst] = (int32_t)i;
                }
        }
    }
}

void isect_offset_encode(int64_t M, const int64_t* isect_ids, int C, int tile_w, int tile_h, int32_t* offsets) {
    const int64_t n_tiles = (int64_t)tile_w * tile_h;
    const int tile_bits = lf::bit_width_u32((uint32_t)n_tiles);
    const int64_t n_buckets = (int64_t)C * n_tiles;
    // offsets[b] = first isect whose (camera, tile) is >= b; empty tiles get
    // the start of the next non-empty one, so [offsets[b], offsets[b+1]) works.
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < n_buckets; ++b) {
        int64_t cam = b / n_tiles, tile = b % n_tiles;
        int64_t target = (cam << tile_bits) | tile;
        int64_t lo = 0, hi = M;
        while (lo < hi) {
            int64_t mid = (lo + hi) / 2;
            if ((isect_ids[mid] >> 32) < target) lo = mid + 1; else hi = mid;
        }
        offsets[b] = (int32_t)lo;
    }
}

}  // namespace lf_cpu
