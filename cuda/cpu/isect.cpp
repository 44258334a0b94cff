// CPU tile intersection: a stable counting sort by (camera, tile) followed by
// a per-tile sort by (depth, Gaussian index).  This yields exactly the
// globally sorted 64-bit keys of the contract without a global sort.
#include <omp.h>

#include <algorithm>

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

void isect_fill(int C, int N, const float* means2d, const int32_t* radii, const float* depths, int tile_size,
                int tile_w, int tile_h, const int32_t* tiles_per_gauss, int64_t M, int64_t* isect_ids,
                int32_t* flatten_ids) {
    const int64_t CN = (int64_t)C * N;
    const int64_t n_tiles = (int64_t)tile_w * tile_h;
    const int64_t n_buckets = (int64_t)C * n_tiles;
    const int tile_bits = lf::bit_width_u32((uint32_t)n_tiles);
    const int nt = omp_get_max_threads();
    // counts[t][bucket]: per-thread histograms over contiguous Gaussian chunks,
    // so the scatter below keeps Gaussian index order inside each bucket.
    std::vector<int64_t> counts((size_t)nt * n_buckets + 1, 0);
    std::vector<int64_t> chunk_begin(nt + 1);
    for (int t = 0; t <= nt; ++t) chunk_begin[t] = CN * t / nt;

    // Chunks, not threads, own the histograms: if the runtime grants fewer
    // threads than asked (nested or dynamic teams), every chunk still runs.
#pragma omp parallel num_threads(nt)
    for (int t = omp_get_thread_num(); t < nt; t += omp_get_num_threads()) {
        int64_t* cnt = counts.data() + (size_t)t * n_buckets;
        for (int64_t i = chunk_begin[t]; i < chunk_begin[t + 1]; ++i) {
            if (tiles_per_gauss[i] == 0) continue;
            int x0, x1, y0, y1;
            lf::tile_range(means2d[2 * i], means2d[2 * i + 1], radii[i], tile_size, tile_w, tile_h, &x0, &x1, &y0,
                           &y1);
            int64_t base = (i / N) * n_tiles;
            for (int y = y0; y < y1; ++y)
                for (int x = x0; x < x1; ++x) cnt[base + (int64_t)y * tile_w + x]++;
        }
    }
    // Exclusive prefix over (bucket, thread): thread t's entries in bucket b
    // start after all earlier buckets and after threads < t in bucket b.
    std::vector<int64_t> bucket_start(n_buckets + 1);
    int64_t run = 0;
    for (int64_t b = 0; b < n_buckets; ++b) {
        bucket_start[b] = run;
        for (int t = 0; t < nt; ++t) {
            int64_t c = counts[(size_t)t * n_buckets + b];
            counts[(size_t)t * n_buckets + b] = run;
            run += c;
        }
    }
    bucket_start[n_buckets] = run;
    if (run != M) return;  // caller passed a stale M; nothing sensible to write
    // key64 = depth bits << 32 | flat index (unique; sorts by depth then index).
    std::vector<uint64_t> keys(M);
#pragma omp parallel num_threads(nt)
    for (int t = omp_get_thread_num(); t < nt; t += omp_get_num_threads()) {
        int64_t* pos = counts.data() + (size_t)t * n_buckets;
        for (int64_t i = chunk_begin[t]; i < chunk_begin[t + 1]; ++i) {
            if (tiles_per_gauss[i] == 0) continue;
            int x0, x1, y0, y1;
            lf::tile_range(means2d[2 * i], means2d[2 * i + 1], radii[i], tile_size, tile_w, tile_h, &x0, &x1, &y0,
                           &y1);
            uint64_t key = ((uint64_t)(uint32_t)lf::depth_key(depths[i]) << 32) | (uint64_t)i;
            int64_t base = (i / N) * n_tiles;
            for (int y = y0; y < y1; ++y)
                for (int x = x0; x < x1; ++x) keys[pos[base + (int64_t)y * tile_w + x]++] = key;
        }
    }
#pragma omp parallel for schedule(dynamic, 4)
    for (int64_t b = 0; b < n_buckets; ++b) {
        int64_t s = bucket_start[b], e = bucket_start[b + 1];
        if (e - s > 1) std::sort(keys.begin() + s, keys.begin() + e);
        int64_t cam = b / n_tiles, tile = b % n_tiles;
        int64_t hi = (cam << (tile_bits + 32)) | (tile << 32);
        for (int64_t j = s; j < e; ++j) {
            isect_ids[j] = hi | (int64_t)(keys[j] >> 32);
            flatten_ids[j] = (int32_t)(keys[j] & 0xffffffffu);
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
