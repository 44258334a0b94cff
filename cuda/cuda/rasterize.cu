// CUDA rasterization: one block per tile, one thread per pixel, Gaussians
// streamed through shared memory in batches of one block.  The backward walks
// each tile's list back to front and reduces per-Gaussian gradients over a
// warp before one atomicAdd per warp.
#include "../include/langfield_dispatch.h"
#include "../include/langfield_math.h"
#include "kernels_cuda.h"

namespace lf_cuda {
namespace {

struct SharedGauss {
    int32_t id;
    float mx, my, r, A, B, C, o;
};

__device__ inline int64_t tile_end(const RasterArgs& a, int64_t tile_id) {
    const int64_t n_buckets = (int64_t)a.C * a.tile_w * a.tile_h;
    return tile_id + 1 < n_buckets ? a.offsets[tile_id + 1] : a.M;
}

__device__ inline SharedGauss load_gauss(const RasterArgs& a, int64_t idx) {
    SharedGauss s;
    const int32_t g = a.flatten_ids[idx];
    s.id = g;
    s.mx = a.means2d[2 * g];
    s.my = a.means2d[2 * g + 1];
    s.r = (float)a.radii[g];
    s.A = a.conics[3 * g];
    s.B = a.conics[3 * g + 1];
    s.C = a.conics[3 * g + 2];
    s.o = a.opacities[g];
    return s;
}

// One thread per pixel of a tile, in a 1D block padded to whole warps: the
// backward's warp collectives use a full mask, which names lanes that would
// not exist in a partial last warp (tile sizes whose square is not a multiple
// of 32, e.g. 12).  Padding threads are outside pixels: they load batches and
// join every collective but own no pixel.
struct TileThread {
    int cam, u, v, tr, block_size;
    bool inside;
    int64_t start, end;
    float px, py;  // pixel centre
};

__host__ __device__ inline int threads_per_tile(int tile_size) { return (tile_size * tile_size + 31) / 32 * 32; }

__device__ inline TileThread tile_thread(const RasterArgs& a) {
    TileThread t;
    t.cam = blockIdx.z;
    t.tr = threadIdx.x;
    t.block_size = blockDim.x;
    const int ts = a.tile_size;
    const bool in_tile = t.tr < ts * ts;
    t.u = blockIdx.x * ts + (in_tile ? t.tr % ts : 0);
    t.v = blockIdx.y * ts + (in_tile ? t.tr / ts : 0);
    t.inside = in_tile && t.u < a.width && t.v < a.height;
    const int64_t tile_id = ((int64_t)t.cam * a.tile_h + blockIdx.y) * a.tile_w + blockIdx.x;
    t.start = a.offsets[tile_id];
    t.end = tile_end(a, tile_id);
    t.px = (float)t.u + 0.5f;
    t.py = (float)t.v + 0.5f;
    return t;
}

// Alpha of Gaussian s at pixel centre (px, py); 0 when the definition skips it.
__device__ inline float pixel_alpha(const SharedGauss& s, float px, float py, float* vis, float* dx, float* dy) {
    *dx = px - s.mx;
    *dy = py - s.my;
    if (!(s.r > 0.f) || fabsf(*dx) > s.r || fabsf(*dy) > s.r) return 0.f;
    const float sigma = lf::conic_sigma(s.A, s.B, s.C, *dx, *dy);
    return lf::blend_alpha(s.o, sigma, vis);
}

template <int CH>
__global__ void rasterize_fwd_kernel(RasterArgs a, int ch_off, int valid, float* out, float* T_final,
                                     int32_t* last_ids) {
    LF_DYN_SHARED(SharedGauss, batch);
    const TileThread t = tile_thread(a);

    float T = 1.f;
    float acc[CH];
    for (int c = 0; c < CH; ++c) acc[c] = 0.f;
    int64_t last = t.start;
    bool done = !t.inside;
    for (int64_t b = t.start; b < t.end; b += t.block_size) {
        if (__syncthreads_count(done) == t.block_size) break;
        if (b + t.tr < t.end) batch[t.tr] = load_gauss(a, b + t.tr);
        __syncthreads();
        const int n = (int)min((int64_t)t.block_size, t.end - b);
        for (int j = 0; j < n && !done; ++j) {
            const SharedGauss s = batch[j];
            float vis, dx, dy;
            const float alpha = pixel_alpha(s, t.px, t.py, &vis, &dx, &dy);
            if (alpha == 0.f) continue;
            const float Tn = T * (1.f - alpha);
            if (Tn < lf::T_MIN) {
                done = true;
                break;
            }
            const float w = alpha * T;
            const float* cp = a.colors + (int64_t)s.id * a.ch_total + ch_off;
            for (int c = 0; c < CH; ++c) acc[c] += c < valid ? w * cp[c] : 0.f;
            T = Tn;
            last = b + j + 1;
        }
        __syncthreads();
    }
    if (!t.inside) return;
    const int64_t pix = ((int64_t)t.cam * a.height + t.v) * a.width + t.u;
    const float* bg = a.backgrounds ? a.backgrounds + (int64_t)t.cam * a.ch_total + ch_off : nullptr;
    float* op = out + pix * a.ch_total + ch_off;
    for (int c = 0; c < CH; ++c)
        if (c < valid) op[c] = acc[c] + (bg ? T * bg[c] : 0.f);
    T_final[pix] = T;
    last_ids[pix] = (int32_t)last;
}

__device__ inline float warp_sum(float x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_down_sync(0xffffffffu, x, o);
    return x;
}

template <int CH>
__global__ void rasterize_bwd_kernel(RasterArgs a, int ch_off, int valid, bool use_valpha, const float* T_final,
                                     const int32_t* last_ids, const float* v_out, const float* v_alphas,
                                     float* v_means2d, float* v_conics, float* v_colors, float* v_opacities,
                                     float* v_means2d_abs) {
    LF_DYN_SHARED(SharedGauss, batch);
    const TileThread t = tile_thread(a);
    const int64_t pix = ((int64_t)t.cam * a.height + (t.inside ? t.v : 0)) * a.width + (t.inside ? t.u : 0);

    const float Tf = t.inside ? T_final[pix] : 1.f;
    float T = Tf;
    const int64_t last = t.inside ? (int64_t)last_ids[pix] : t.start;
    // The alpha gradient needs the colour composited behind each Gaussian, S,
    // only through D = v_out . S, so one scalar is kept instead of CH registers.
    float vo[CH];
    float D = 0.f;
    const float* bg = a.backgrounds ? a.backgrounds + (int64_t)t.cam * a.ch_total + ch_off : nullptr;
    for (int c = 0; c < CH; ++c) {
        vo[c] = (t.inside && c < valid) ? v_out[pix * a.ch_total + ch_off + c] : 0.f;
        if (bg && c < valid) D += vo[c] * Tf * bg[c];
    }
    const float va = (t.inside && use_valpha && v_alphas) ? v_alphas[pix] : 0.f;
    const int lane = t.tr % 32;

    // Block-wide end of contributions: max of the pixels' ranges.
    __shared__ int64_t block_last;
    if (t.tr == 0) block_last = t.start;
    __syncthreads();
    if (t.inside) atomicMax((unsigned long long*)&block_last, (unsigned long long)last);
    __syncthreads();
    const int64_t bend = block_last;

    for (int64_t hi = bend; hi > t.start; hi -= t.block_size) {
        const int64_t lo = hi - t.block_size > t.start ? hi - t.block_size : t.start;
        __syncthreads();
        // batch[k] holds isect hi-1-k (back to front).
        if (hi - 1 - t.tr >= lo) batch[t.tr] = load_gauss(a, hi - 1 - t.tr);
        __syncthreads();
        const int n = (int)(hi - lo);
        for (int j = 0; j < n; ++j) {
            const int64_t i = hi - 1 - j;
            const SharedGauss s = batch[j];
            float vis = 0.f, dx = 0.f, dy = 0.f;
            float alpha = i < last ? pixel_alpha(s, t.px, t.py, &vis, &dx, &dy) : 0.f;
            const bool ok = alpha > 0.f;
            float gcol[CH];
            float gm0 = 0.f, gm1 = 0.f, gc0 = 0.f, gc1 = 0.f, gc2 = 0.f, go = 0.f;
            for (int c = 0; c < CH; ++c) gcol[c] = 0.f;
            if (ok) {
                const float ra = 1.f / (1.f - alpha);
                const float Tk = T * ra;
                const float w = alpha * Tk;
                const float* cp = a.colors + (int64_t)s.id * a.ch_total + ch_off;
                float dot = 0.f;  // v_out . colour of this Gaussian
                for (int c = 0; c < CH; ++c) {
                    const float col = c < valid ? cp[c] : 0.f;
                    gcol[c] = w * vo[c];
                    dot += vo[c] * col;
                }
                const float v_alpha = Tk * dot - D * ra + va * Tf * ra;
                D += w * dot;
                T = Tk;
                float vm[2] = {0.f, 0.f}, vcn[3] = {0.f, 0.f, 0.f};
                lf::blend_alpha_vjp(s.o, vis, s.A, s.B, s.C, dx, dy, v_alpha, &go, vcn, vm);
                gm0 = vm[0]; gm1 = vm[1]; gc0 = vcn[0]; gc1 = vcn[1]; gc2 = vcn[2];
            }
            // Every lane takes part in the shuffles (no early exit above).
            if (!__any_sync(0xffffffffu, ok)) continue;
            // AbsGS: each pixel's |share| of the mean gradient, summed like the rest.
            const float ga0 = v_means2d_abs ? warp_sum(fabsf(gm0)) : 0.f;
            const float ga1 = v_means2d_abs ? warp_sum(fabsf(gm1)) : 0.f;
            gm0 = warp_sum(gm0); gm1 = warp_sum(gm1);
            gc0 = warp_sum(gc0); gc1 = warp_sum(gc1); gc2 = warp_sum(gc2);
            go = warp_sum(go);
            for (int c = 0; c < CH; ++c) gcol[c] = warp_sum(gcol[c]);
            if (lane == 0) {
                const int64_t g = s.id;
                atomicAdd(v_means2d + 2 * g, gm0);
                atomicAdd(v_means2d + 2 * g + 1, gm1);
                atomicAdd(v_conics + 3 * g, gc0);
                atomicAdd(v_conics + 3 * g + 1, gc1);
                atomicAdd(v_conics + 3 * g + 2, gc2);
                atomicAdd(v_opacities + g, go);
                if (v_means2d_abs) {
                    atomicAdd(v_means2d_abs + 2 * g, ga0);
                    atomicAdd(v_means2d_abs + 2 * g + 1, ga1);
                }
                float* vc = v_colors + g * a.ch_total + ch_off;
                for (int c = 0; c < CH; ++c)
                    if (c < valid) atomicAdd(vc + c, gcol[c]);
            }
        }
    }
}

template <int CH>
void launch_fwd(const RasterArgs& a, int off, int valid, float* out, float* T_final, int32_t* last_ids,
                cudaStream_t stream) {
    const int threads = threads_per_tile(a.tile_size);
    dim3 grid(a.tile_w, a.tile_h, a.C), block(threads);
    const size_t shm = sizeof(SharedGauss) * threads;
    LF_LAUNCH(rasterize_fwd_kernel<CH>, grid, block, shm, stream)(a, off, valid, out, T_final, last_ids);
}

template <int CH>
void launch_bwd(const RasterArgs& a, int off, int valid, bool use_valpha, const float* T_final,
                const int32_t* last_ids, const float* v_out, const float* v_alphas, float* v_means2d, float* v_conics,
                float* v_colors, float* v_opacities, float* v_means2d_abs, cudaStream_t stream) {
    const int threads = threads_per_tile(a.tile_size);
    dim3 grid(a.tile_w, a.tile_h, a.C), block(threads);
    const size_t shm = sizeof(SharedGauss) * threads;
    LF_LAUNCH(rasterize_bwd_kernel<CH>, grid, block, shm, stream)(a, off, valid, use_valpha, T_final, last_ids, v_out,
                                                                  v_alphas, v_means2d, v_conics, v_colors, v_opacities,
                                                                  v_means2d_abs);
}

}  // namespace

void rasterize_fwd(const RasterArgs& a, float* out_colors, float* T_final, int32_t* last_ids, cudaStream_t stream) {
    if (a.C == 0 || a.tile_w == 0 || a.tile_h == 0) return;
    if (a.ch_total == 0) {
        launch_fwd<1>(a, 0, 0, out_colors, T_final, last_ids, stream);
        return;
    }
    int off = 0;
    while (off < a.ch_total) {
        lf::Chunk ck = lf::next_chunk(a.ch_total - off);
        LF_DISPATCH_WIDTH(ck.width, launch_fwd<CH>(a, off, ck.valid, out_colors, T_final, last_ids, stream));
        off += ck.valid;
    }
}

void rasterize_bwd(const RasterArgs& a, const float* T_final, const int32_t* last_ids, const float* v_out,
                   const float* v_alphas, float* v_means2d, float* v_conics, float* v_colors, float* v_opacities,
                   float* v_means2d_abs, cudaStream_t stream) {
    if (a.C == 0 || a.tile_w == 0 || a.tile_h == 0) return;
    if (a.ch_total == 0) {
        launch_bwd<1>(a, 0, 0, true, T_final, last_ids, v_out, v_alphas, v_means2d, v_conics, v_colors, v_opacities,
                      v_means2d_abs, stream);
        return;
    }
    int off = 0;
    bool first = true;
    while (off < a.ch_total) {
        lf::Chunk ck = lf::next_chunk(a.ch_total - off);
        // The alpha-output gradient is counted once, in the first chunk.
        LF_DISPATCH_WIDTH(ck.width, launch_bwd<CH>(a, off, ck.valid, first, T_final, last_ids, v_out, v_alphas,
                                                   v_means2d, v_conics, v_colors, v_opacities, v_means2d_abs,
                                                   stream));
        off += ck.valid;
        first = false;
    }
}

}  // namespace lf_cuda
