// Pieces shared by the CPU rasterizers (rasterize.cpp: any tile size,
// Gaussian-outer; rasterize_rows.cpp: 16-pixel tiles, row-outer with the
// pixel state in registers): tile geometry, the per-Gaussian compositing
// record, the per-row pixel spans and the final gradient reduction.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <vector>

#include "../include/langfield_math.h"
#include "kernels_cpu.h"

namespace lf_cpu {
namespace raster {

struct TileRect {
    int cam, x0, x1, y0, y1;
    int64_t start, end;
};

inline TileRect tile_rect(const RasterArgs& a, int64_t b) {
    const int64_t n_tiles = (int64_t)a.tile_w * a.tile_h;
    const int64_t n_buckets = (int64_t)a.C * n_tiles;
    TileRect r;
    r.cam = (int)(b / n_tiles);
    int64_t t = b % n_tiles;
    int ty = (int)(t / a.tile_w), tx = (int)(t % a.tile_w);
    r.x0 = tx * a.tile_size; r.x1 = std::min(a.width, r.x0 + a.tile_size);
    r.y0 = ty * a.tile_size; r.y1 = std::min(a.height, r.y0 + a.tile_size);
    r.start = a.offsets[b];
    r.end = b + 1 < n_buckets ? a.offsets[b + 1] : a.M;
    return r;
}

// Pixels of one row worth evaluating: alpha >= 1/255 needs
// sigma <= log(255 o), an ellipse; solving the quadratic in dx per row skips
// most of the square box (the exact per-pixel tests still decide).
struct Footprint {
    float mx, my, r, A, B, C, o;
    float smax;   // sigma bound with a small margin for float rounding
    float inv_a;  // 1 / A
};

// One Gaussian's compositing data, built once per call rather than once per
// (tile, Gaussian) pair: the sorted loops then read one 64-byte record per
// pair instead of five scattered arrays, and the log and the bounding box of
// the alpha >= 1/255 ellipse are computed N times instead of M times.
struct alignas(64) Splat {
    Footprint f;
    // Inclusive pixel index box that can reach alpha >= 1/255: the radius box
    // |dx|, |dy| <= r of the definition cut down to the ellipse's bounding box,
    // one pixel of slack each side (the exact tests are done per pixel).
    // Empty (u0 > u1) for a Gaussian that is never drawn.
    int u0, u1, v0, v1;
};

inline void make_splat(const RasterArgs& a, int64_t g, Splat* s) {
    Footprint& f = s->f;
    s->u0 = s->v0 = 1;
    s->u1 = s->v1 = 0;
    f.r = (float)a.radii[g];
    f.o = a.opacities[g];
    if (f.r <= 0.f || !(f.o >= lf::ALPHA_MIN)) return;  // never reaches alpha >= 1/255
    f.mx = a.means2d[2 * g]; f.my = a.means2d[2 * g + 1];
    f.A = a.conics[3 * g]; f.B = a.conics[3 * g + 1]; f.C = a.conics[3 * g + 2];
    if (!(f.A > 0.f) || !std::isfinite(f.mx) || !std::isfinite(f.my)) return;
    f.smax = logf(255.f * f.o) * 1.001f + 1e-3f;
    f.inv_a = 1.f / f.A;
    // sigma = d^T Q d / 2 <= smax spans |dx| <= sqrt(2 smax (Q^-1)_xx), likewise dy.
    const float det = f.A * f.C - f.B * f.B;
    float ex = f.r, ey = f.r;
    if (det > 0.f) {
        ex = lf::minf(ex, sqrtf(2.f * f.smax * f.C / det) * 1.0001f + 0.01f);
        ey = lf::minf(ey, sqrtf(2.f * f.smax * f.A / det) * 1.0001f + 0.01f);
    }
    // Clamped to just outside the image so the int conversion is safe.
    const float W = (float)a.width, H = (float)a.height;
    s->u0 = (int)lf::maxf(-1.f, lf::minf(W, floorf(f.mx - ex - 0.5f)));
    s->u1 = (int)lf::maxf(-1.f, lf::minf(W, ceilf(f.mx + ex - 0.5f)));
    s->v0 = (int)lf::maxf(-1.f, lf::minf(H, floorf(f.my - ey - 0.5f)));
    s->v1 = (int)lf::maxf(-1.f, lf::minf(H, ceilf(f.my + ey - 0.5f)));
}

// Per-call buffer of splats, one per thread that calls in (no reallocation
// between calls of the same size).
inline const Splat* build_splats(const RasterArgs& a) {
    static thread_local std::vector<Splat> buf;
    const int64_t CN = (int64_t)a.C * a.N;
    if ((int64_t)buf.size() < CN) buf.resize(CN);
    Splat* s = buf.data();
#pragma omp parallel for schedule(static)
    for (int64_t g = 0; g < CN; ++g) make_splat(a, g, s + g);
    return s;
}

// Pixel box of splat s inside tile t; false when they do not meet.
inline bool splat_box(const Splat& s, const TileRect& t, int* ulo, int* uhi, int* vlo, int* vhi) {
    *ulo = std::max(s.u0, t.x0); *uhi = std::min(s.u1, t.x1 - 1);
    *vlo = std::max(s.v0, t.y0); *vhi = std::min(s.v1, t.y1 - 1);
    return *ulo <= *uhi && *vlo <= *vhi;
}

// Fetch the records of the pair kPrefetch ahead while this one is composited:
// the sorted order visits Gaussians at random places in memory.
constexpr int64_t kPrefetch = 8;
inline void prefetch_pair(const RasterArgs& a, const Splat* splats, int64_t j, int ch_off) {
    const int64_t g = a.flatten_ids[j];
    __builtin_prefetch(splats + g);
    __builtin_prefetch(a.colors + g * a.ch_total + ch_off);
}

constexpr int kMaxRow = 64;  // tile_size <= 64 (checked in Python)
constexpr int kVec = 8;      // lanes of the vectorised row loops

// Row spans [los[k], his[k]] (his < los: row skipped) of rows v = vlo + k,
// k < nrows, clipped to [ulo, uhi].  Per row, dx = u + 0.5 - mx lies in
// [(-B dy - sq) / A, (-B dy + sq) / A] with one pixel of slack.  All rows are
// solved in one vector loop: row by row, each square root ended a dependency
// chain and the scalar span maths was a fifth of the forward.
inline void row_spans(const Footprint& f, int vlo, int nrows, int ulo, int uhi, int* los, int* his) {
#pragma omp simd
    for (int k = 0; k < nrows; ++k) {
        const float dy = ((float)(vlo + k) + 0.5f) - f.my;
        const float bd = f.B * dy;
        const float disc = bd * bd - 2.f * f.A * (0.5f * f.C * dy * dy - f.smax);
        const float sq = sqrtf(disc >= 0.f ? disc : 0.f);
        const float l = floorf(f.mx - 0.5f + (-bd - sq) * f.inv_a) - 1.f;
        const float h = ceilf(f.mx - 0.5f + (-bd + sq) * f.inv_a) + 1.f;
        const int lo = (int)lf::maxf((float)ulo, lf::minf(l, (float)uhi + 1.f));
        const int hi = (int)lf::minf((float)uhi, lf::maxf(h, (float)ulo - 1.f));
        const bool ok = disc >= 0.f && fabsf(dy) <= f.r;  // NaN disc: skipped
        los[k] = lo;
        his[k] = ok ? hi : lo - 1;
    }
}

// Per-Gaussian gradient slot layout in the per-thread accumulation buffers:
// mean2d (2), conic (3), opacity (1), then the colours.  |mean2d| (AbsGS, 2
// slots) has buffers of its own, only when asked for.
constexpr int kGeo = 6;

// Race-free accumulation of the per-Gaussian gradients of one backward
// chunk: one private buffer per thread (S slots per Gaussian, |mean2d| in a
// buffer of its own), reduced into the outputs at the end; shared buffers
// with atomics only when the private ones would be too large.
class GradBuffers {
  public:
    GradBuffers(int64_t CN, int S, bool want_abs, float* v_means2d_abs)
        : CN_(CN), S_(S), want_abs_(want_abs), out_abs_(v_means2d_abs), nt_(omp_get_max_threads()) {
        private_ = (double)nt_ * CN * S * sizeof(float) <= private_limit_bytes();
        // Left uninitialised: each thread zeroes its own buffer in claim(),
        // in parallel (and on pages it touches first).
        bufs_.reset(new float[private_ ? (size_t)nt_ * CN * S : (size_t)CN * S]);
        if (want_abs && private_) abs_.reset(new float[(size_t)nt_ * CN * 2]);
        if (!private_) std::fill(bufs_.get(), bufs_.get() + (size_t)CN * S, 0.f);
        claimed_.assign(nt_, 0);
    }
    int threads() const { return nt_; }
    // The calling OpenMP thread's zeroed slots and |mean2d| slots (nullptr
    // without AbsGS); the parallel region must use threads() threads.
    void claim(float** slots, float** abs_slots) {
        const size_t t = (size_t)omp_get_thread_num();
        claimed_[t] = 1;  // a region given fewer threads leaves some buffers unused (and not zeroed)
        *slots = bufs_.get() + (private_ ? t * CN_ * S_ : 0);
        if (private_) std::fill(*slots, *slots + (size_t)CN_ * S_, 0.f);
        *abs_slots = nullptr;
        if (want_abs_) {
            *abs_slots = private_ ? abs_.get() + t * CN_ * 2 : out_abs_;
            if (private_) std::fill(*abs_slots, *abs_slots + (size_t)CN_ * 2, 0.f);
        }
    }
    // dst[k] += vals[k], k < n, into this thread's slots.
    void add(float* __restrict dst, const float* __restrict vals, int n) const {
        if (private_) {
#pragma omp simd
            for (int k = 0; k < n; ++k) dst[k] += vals[k];
        } else {
            for (int k = 0; k < n; ++k) {
#pragma omp atomic
                dst[k] += vals[k];
            }
        }
    }
    // Sums the threads' slots into the outputs: geometry added, colours of
    // channels [ch_off, ch_off + valid) written.
    void finish(int ch_total, int ch_off, int valid, float* v_means2d, float* v_conics, float* v_colors,
                float* v_opacities) const {
        const int nb = private_ ? nt_ : 1, S = S_;
        const float* base = bufs_.get();
        const int64_t CN = CN_;
#pragma omp parallel for schedule(static)
        for (int64_t g = 0; g < CN; ++g) {
            float sum[kMaxSlots];
            for (int k = 0; k < S; ++k) sum[k] = 0.f;
            for (int tt = 0; tt < nb; ++tt) {
                if (private_ && !claimed_[tt]) continue;
                const float* src = base + ((size_t)tt * CN + g) * S;
                for (int k = 0; k < S; ++k) sum[k] += src[k];
            }
            v_means2d[2 * g] += sum[0]; v_means2d[2 * g + 1] += sum[1];
            v_conics[3 * g] += sum[2]; v_conics[3 * g + 1] += sum[3]; v_conics[3 * g + 2] += sum[4];
            v_opacities[g] += sum[5];
            if (want_abs_ && private_)
                for (int k = 0; k < 2; ++k)
                    for (int tt = 0; tt < nb; ++tt)
                        if (claimed_[tt]) out_abs_[2 * g + k] += abs_[((size_t)tt * CN + g) * 2 + k];
            float* vc = v_colors + g * ch_total + ch_off;
            for (int c = 0; c < valid; ++c) vc[c] = sum[kGeo + c];
        }
    }

  private:
    // 1 GB, or LANGFIELD_CPU_PRIVATE_GRAD_BYTES (tests set 0 to run the atomic path).
    static double private_limit_bytes() {
        const char* env = std::getenv("LANGFIELD_CPU_PRIVATE_GRAD_BYTES");
        return env && *env ? std::atof(env) : 1.0e9;
    }
    static constexpr int kMaxSlots = kGeo + 64;
    int64_t CN_;
    int S_;
    bool want_abs_;
    float* out_abs_;
    int nt_;
    bool private_ = true;
    std::unique_ptr<float[]> bufs_, abs_;
    std::vector<char> claimed_;
};

}  // namespace raster

// 16-pixel tiles (rasterize_rows.cpp): false, having done nothing, for any
// other tile size or channel width (the caller then runs rasterize.cpp's).
bool rasterize_rows_fwd(const RasterArgs& a, const raster::Splat* splats, int width, int ch_off, int valid,
                        float* out, float* T_final, int32_t* last_ids);
bool rasterize_rows_bwd(const RasterArgs& a, const raster::Splat* splats, int width, int ch_off, int valid,
                        bool use_valpha, const float* T_final, const int32_t* last_ids, const float* v_out,
                        const float* v_alphas, float* v_means2d, float* v_conics, float* v_colors,
                        float* v_opacities, float* v_means2d_abs);

}  // namespace lf_cpu
