// CPU rasterization, forward and backward, parallel over tiles: the
// Gaussian-major kernels, for any tile size and any CPU.  16-pixel tiles on
// x86 with AVX2 + FMA go to the half-row kernels of rasterize_rows.cpp
// instead (the dispatch at the end of this file).
//
// Within a tile the loop order is Gaussian-outer / pixel-inner: each Gaussian
// touches only the pixels of its box (the definition's per-pixel box test),
// its per-tile gradient is summed in registers and written once per
// (tile, Gaussian) pair.  The forward stores each pixel's final T and the end
// of its contributing range (like 3DGS) so the backward walks back to front,
// recovering T by division.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#if defined(__AVX__)
#include <immintrin.h>
#endif

#include "../include/langfield_dispatch.h"
#include "../include/langfield_math.h"
#include "kernels_cpu.h"
#include "raster_common.h"

namespace lf_cpu {
namespace {

using namespace raster;

// The lanes of pixel row v that one Gaussian's pass visits (forward and
// backward alike): its row span [rlo, rhi]; the lanes processed are the whole
// tile row when TS > 0 (masked, vectorised), else just the span; p0 indexes
// the first lane in the tile's pixel state.  False when the row is skipped.
// (Measured slower: only the aligned 8-lane blocks covering the span, with a
// run-time or a two-way compile-time width.)
struct RowLanes {
    float dy;
    int rlo, rhi, ubase, n, p0;
};

template <int TS>
inline bool row_lanes(const Footprint& f, const TileRect& t, int ts, int v, int rlo, int rhi, RowLanes* L) {
    if (rlo > rhi) return false;
    L->dy = ((float)v + 0.5f) - f.my;
    L->rlo = rlo;
    L->rhi = rhi;
    L->ubase = TS ? t.x0 : rlo;
    L->n = TS ? TS : rhi - rlo + 1;
    L->p0 = (v - t.y0) * ts + (L->ubase - t.x0);
    return true;
}

// Alpha of one Gaussian at lanes u = ubase + k (k < n) of a row, 0 where the
// definition skips the pixel (outside [rlo, rhi] or the box, sigma < 0,
// alpha < 1/255).  Written as float selects so it vectorises.
inline void alpha_row(int n, int ubase, int rlo, int rhi, const Footprint& f, float dy, float* arow, float* visrow) {
    const float flo = (float)rlo, fhi = (float)rhi;
#pragma omp simd
    for (int k = 0; k < n; ++k) {
        const float uf = (float)(ubase + k);
        const float dx = (uf + 0.5f) - f.mx;
        const float sigma = lf::conic_sigma(f.A, f.B, f.C, dx, dy);
        const float vis = lf::exp_neg(sigma);
        float al = lf::minf(lf::ALPHA_MAX, f.o * vis);
        al = uf >= flo ? al : 0.f;
        al = uf <= fhi ? al : 0.f;
        al = fabsf(dx) <= f.r ? al : 0.f;
        al = sigma >= 0.f ? al : 0.f;
        al = al >= lf::ALPHA_MIN ? al : 0.f;
        arow[k] = al;
        visrow[k] = vis;
    }
}

// TS > 0: the tile size is the compile-time TS and every row loop runs over
// the whole tile row (masked), which vectorises without remainder loops;
// TS == 0: any tile size, loops over the row span only.
// GCC/Clang vector extensions (portable across x86 and ARM): the state
// updates below have data-dependent selects that the auto-vectoriser leaves
// scalar.  8 lanes (one AVX register; two SSE/NEON ones elsewhere), so n
// must be a multiple of 8.
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

template <typename V, typename T>
inline V vload(const T* p) {
    V v;
    std::memcpy(&v, p, sizeof(V));
    return v;
}

template <typename V, typename T>
inline void vstore(T* p, const V& v) {
    std::memcpy(p, &v, sizeof(V));
}

inline v8f vselect(v8i m, v8f a, v8f b) { return (v8f)(((v8i)a & m) | ((v8i)b & ~m)); }

inline int lane_sum(v8i v) {
    int s = 0;
    for (int k = 0; k < kVec; ++k) s += v[k];
    return s;
}

// out[k] = sum of the kVec lanes in[k * kVec ..], k < NS.  With AVX, eight
// rows at a time by a transpose-and-add (7 instructions per 8 sums instead of
// 56 dependent scalar adds); the order of the additions is fixed either way.
template <int NS>
inline void lane_sums(const float* in, float* out) {
    int k = 0;
#if defined(__AVX__)
    for (; k + 8 <= NS; k += 8) {
        const float* r = in + k * kVec;
        const __m256 t0 = _mm256_hadd_ps(_mm256_loadu_ps(r), _mm256_loadu_ps(r + 8));
        const __m256 t1 = _mm256_hadd_ps(_mm256_loadu_ps(r + 16), _mm256_loadu_ps(r + 24));
        const __m256 t2 = _mm256_hadd_ps(_mm256_loadu_ps(r + 32), _mm256_loadu_ps(r + 40));
        const __m256 t3 = _mm256_hadd_ps(_mm256_loadu_ps(r + 48), _mm256_loadu_ps(r + 56));
        const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
        const __m256 sum = _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
        _mm256_storeu_ps(out + k, sum);
    }
#endif
    for (; k < NS; ++k) {
        float sum = 0.f;
        for (int j = 0; j < kVec; ++j) sum += in[k * kVec + j];
        out[k] = sum;
    }
}

// Forward state update of a row (see the scalar branch in fwd_chunk).
inline int update_front8(int n, const float* arow, float* Tr, int32_t* dr, int32_t* lr, float* wrow,
                         int32_t next) {
    v8i nstop = {};
    const v8f zero = {}, one = zero + 1.f, tmin = zero + lf::T_MIN;
    const v8i vnext = v8i{} + next, ione = v8i{} + 1;
    for (int k = 0; k < n; k += kVec) {
        const v8i d = vload<v8i>(dr + k);
        const v8f al = vload<v8f>(arow + k);
        const v8f T = vload<v8f>(Tr + k);
        const v8i l = vload<v8i>(lr + k);
        const v8i pos = (al > zero) & (d == 0);
        const v8f Tn = T * (one - al);
        const v8i small = Tn < tmin;
        const v8i stop = pos & small, add = pos & ~small;
        nstop -= stop;  // masks are -1
        vstore(dr + k, d | (stop & ione));
        vstore(wrow + k, vselect(add, al * T, zero));
        vstore(Tr + k, vselect(add, Tn, T));
        vstore(lr + k, (vnext & add) | (l & ~add));
    }
    return lane_sum(nstop);
}

// Backward state update of a row (see the scalar branch in bwd_chunk).
inline int update_back8(int n, const float* arow, int32_t i32, const int32_t* lr, float* Tr, const float* Tfr,
                        const float* var, float* okrow, float* rarow, float* Tkrow, float* wrow, float* varow) {
    v8i nok = {};
    const v8f zero = {}, one = zero + 1.f;
    const v8i vi = v8i{} + i32;
    for (int k = 0; k < n; k += kVec) {
        const v8i live = vload<v8i>(lr + k) > vi;
        const v8f al = vselect(live, vload<v8f>(arow + k), zero);
        const v8i ok = al > zero;
        const v8f okf = vselect(ok, one, zero);
        const v8f ra = one / (one - al);
        const v8f T = vload<v8f>(Tr + k);
        const v8f Tk = T * ra;
        vstore(okrow + k, okf);
        vstore(rarow + k, ra);
        vstore(Tkrow + k, Tk);
        vstore(wrow + k, okf * al * Tk);
        vstore(varow + k, okf * vload<v8f>(var + k) * vload<v8f>(Tfr + k) * ra);
        vstore(Tr + k, vselect(ok, Tk, T));
        nok -= ok;
    }
    return lane_sum(nok);
}

template <int CH, int TS>
void fwd_chunk(const RasterArgs& a, const Splat* splats, int ch_off, int valid, float* out, float* T_final,
               int32_t* last_ids) {
    const int64_t n_buckets = (int64_t)a.C * a.tile_w * a.tile_h;
    const int ts = TS ? TS : a.tile_size;
    const int max_px = ts * ts;
    const int64_t HW = (int64_t)a.height * a.width;
#pragma omp parallel
    {
        // Structure-of-arrays pixel state so the per-row loops vectorise.
        std::vector<float> T(max_px), acc((size_t)max_px * CH);
        std::vector<int32_t> last(max_px), done(max_px);
        float wrow[kMaxRow], arow[kMaxRow], visrow[kMaxRow];
#pragma omp for schedule(dynamic, 1)
        for (int64_t b = 0; b < n_buckets; ++b) {
            TileRect t = tile_rect(a, b);
            int tw = t.x1 - t.x0, th = t.y1 - t.y0;
            if (tw <= 0 || th <= 0) continue;
            // Pixel p = (v - y0) * ts + (u - x0): full rows even at the image border.
            int npix = tw * th, ndone = 0;
            // Pixels of each row still compositing: a row whose pixels have
            // all stopped is skipped before its alphas are computed.
            int row_live[kMaxRow];
            std::fill(row_live, row_live + th, tw);
            std::fill(T.begin(), T.end(), 1.f);
            std::fill(acc.begin(), acc.end(), 0.f);
            std::fill(last.begin(), last.end(), (int32_t)t.start);
            std::fill(done.begin(), done.end(), 0);
            for (int64_t i = t.start; i < t.end && ndone < npix; ++i) {
                if (i + kPrefetch < t.end) prefetch_pair(a, splats, i + kPrefetch, ch_off);
                const int32_t g = a.flatten_ids[i];
                int ulo, uhi, vlo, vhi;
                if (!splat_box(splats[g], t, &ulo, &uhi, &vlo, &vhi)) continue;
                const Footprint f = splats[g].f;
                float col[CH];
                const float* cp = a.colors + (int64_t)g * a.ch_total + ch_off;
                for (int c = 0; c < CH; ++c) col[c] = c < valid ? cp[c] : 0.f;
                const int32_t next = (int32_t)(i + 1);
                int los[kMaxRow], his[kMaxRow];
                row_spans(f, vlo, vhi - vlo + 1, ulo, uhi, los, his);
                for (int v = vlo; v <= vhi; ++v) {
                    RowLanes L;
                    if (row_live[v - t.y0] == 0) continue;
                    if (!row_lanes<TS>(f, t, ts, v, los[v - vlo], his[v - vlo], &L)) continue;
                    const float dy = L.dy;
                    const int rlo = L.rlo, rhi = L.rhi, ubase = L.ubase, n = L.n, p0 = L.p0;
                    float* Tr = T.data() + p0;
                    int32_t* dr = done.data() + p0;
                    int32_t* lr = last.data() + p0;
                    alpha_row(n, ubase, rlo, rhi, f, dy, arow, visrow);
                    // Pass 2: front-to-back update of the pixels' state.
                    int nstop = 0;
                    if (TS % kVec == 0 && TS > 0) {
                        nstop = update_front8(n, arow, Tr, dr, lr, wrow, next);
                    } else {
                        for (int k = 0; k < n; ++k) {
                            const float alpha = dr[k] == 0 ? arow[k] : 0.f;
                            const float Tp = Tr[k];
                            const float Tn = Tp * (1.f - alpha);
                            const bool pos = alpha > 0.f;
                            const bool stop = pos && Tn < lf::T_MIN;
                            const bool add = pos && !stop;
                            nstop += stop ? 1 : 0;
                            dr[k] |= stop ? 1 : 0;
                            wrow[k] = add ? alpha * Tp : 0.f;
                            Tr[k] = add ? Tn : Tp;
                            lr[k] = add ? next : lr[k];
                        }
                    }
                    ndone += nstop;
                    row_live[v - t.y0] -= nstop;
                    for (int c = 0; c < CH; ++c) {
                        float* ar = acc.data() + (size_t)c * max_px + p0;
                        const float cc = col[c];
#pragma omp simd
                        for (int k = 0; k < n; ++k) ar[k] += wrow[k] * cc;
                    }
                }
            }
            const float* bg = a.backgrounds ? a.backgrounds + (int64_t)t.cam * a.ch_total + ch_off : nullptr;
            for (int v = t.y0; v < t.y1; ++v)
                for (int u = t.x0; u < t.x1; ++u) {
                    const int p = (v - t.y0) * ts + (u - t.x0);
                    const int64_t pix = (int64_t)t.cam * HW + (int64_t)v * a.width + u;
                    float* op = out + pix * a.ch_total + ch_off;
                    for (int c = 0; c < valid; ++c) op[c] = acc[(size_t)c * max_px + p] + (bg ? T[p] * bg[c] : 0.f);
                    T_final[pix] = T[p];
                    last_ids[pix] = last[p];
                }
        }
    }
}

// The alpha gradient of a lane as it reaches the Gaussian's opacity and
// sigma: alpha = min(0.99, o vis) passes no gradient through the clamp, and
// lanes that took no part (ok == 0) pass none at all.
inline float lane_v_alpha(float o, float vis, float v_alpha, float ok) {
    const float gv = o * vis <= lf::ALPHA_MAX ? v_alpha : 0.f;
    return ok != 0.f ? gv : 0.f;
}

// One row's lanes into the geometry partials (lane k feeds partial k mod
// kVec): mean2d, conic and opacity gradients of the alpha gradient varow, and
// with ABS also each pixel's |share| of the mean2d gradient (AbsGS) into pabs.
// ABS is a template parameter so the row loop without it stays as it was (a
// run-time test inside the vector loop made the backward 55% slower).
template <int TS, bool ABS>
inline void geo_lanes(const Footprint& f, float dy, int ubase, int n, const float* visrow, const float* varow,
                      const float* okrow, float* pgeo, float* pabs) {
    for (int k0 = 0; k0 < n; k0 += kVec) {
        const int m = (TS % kVec == 0 && TS > 0) ? kVec : std::min(kVec, n - k0);
#pragma omp simd
        for (int j = 0; j < m; ++j) {
            const int k = k0 + j;
            const float dx = ((float)(ubase + k) + 0.5f) - f.mx;
            const float vis = visrow[k], gv = lane_v_alpha(f.o, vis, varow[k], okrow[k]);
            const float vs = -f.o * vis * gv;
            const float sx = f.A * dx + f.B * dy, sy = f.B * dx + f.C * dy;
            pgeo[0 * kVec + j] -= vs * sx;
            pgeo[1 * kVec + j] -= vs * sy;
            pgeo[2 * kVec + j] += 0.5f * dx * dx * vs;
            pgeo[3 * kVec + j] += dx * dy * vs;
            pgeo[4 * kVec + j] += 0.5f * dy * dy * vs;
            pgeo[5 * kVec + j] += vis * gv;
            if (ABS) {
                // |vs| |s| is |vs s| exactly (rounding is symmetric in sign), and
                // leaves vs * s a single use, so it still fuses into the update
                // above as without ABS: the ordinary gradients stay bit-identical.
                pabs[0 * kVec + j] += fabsf(vs) * fabsf(sx);
                pabs[1 * kVec + j] += fabsf(vs) * fabsf(sy);
            }
        }
    }
}


template <int CH, int TS>
void bwd_chunk(const RasterArgs& a, const Splat* splats, int ch_off, int valid, bool use_valpha, const float* T_final,
               const int32_t* last_ids, const float* v_out, const float* v_alphas, float* v_means2d, float* v_conics,
               float* v_colors, float* v_opacities, float* v_means2d_abs) {
    const bool want_abs = v_means2d_abs != nullptr;
    const int64_t n_buckets = (int64_t)a.C * a.tile_w * a.tile_h;
    const int ts = TS ? TS : a.tile_size;
    const int max_px = ts * ts;
    const int64_t HW = (int64_t)a.height * a.width;
    const int64_t CN = (int64_t)a.C * a.N;
    constexpr int S = kGeo + CH;
    GradBuffers gb(CN, S, want_abs, v_means2d_abs);
#pragma omp parallel num_threads(gb.threads())
    {
        float *mybuf, *myabs;
        gb.claim(&mybuf, &myabs);
        // SoA pixel state: T (running, back to front), final T, D = v_out . S
        // where S is the colour composited behind the current Gaussian (incl.
        // background), output cotangent, alpha cotangent, range end.  Only
        // the dot product D is needed, never S itself: S grows by w c_g, so D
        // grows by w (v_out . c_g), one scalar per pixel instead of CH.
        std::vector<float> T(max_px), Tf(max_px), D(max_px), vo((size_t)max_px * CH), va(max_px);
        std::vector<int32_t> last(max_px);
        float wrow[kMaxRow], rarow[kMaxRow], Tkrow[kMaxRow], okrow[kMaxRow], varow[kMaxRow], arow[kMaxRow],
            visrow[kMaxRow];
        // Static round-robin, not dynamic: which thread owns a tile decides which
        // private buffer its gradients are summed into, so a fixed assignment
        // makes the float sums (and a resumed run) reproducible.
#pragma omp for schedule(static, 1)
        for (int64_t b = 0; b < n_buckets; ++b) {
            TileRect t = tile_rect(a, b);
            int tw = t.x1 - t.x0, th = t.y1 - t.y0;
            if (tw <= 0 || th <= 0 || t.end <= t.start) continue;
            const float* bg = a.backgrounds ? a.backgrounds + (int64_t)t.cam * a.ch_total + ch_off : nullptr;
            int64_t max_last = t.start;
            // Per row, the end of the furthest contributing range: a row whose
            // pixels all stopped before Gaussian i is skipped before its alphas.
            int32_t row_last[kMaxRow];
            std::fill(row_last, row_last + th, (int32_t)t.start);
            // Lanes outside the image keep last = start, so they never take part.
            std::fill(last.begin(), last.end(), (int32_t)t.start);
            std::fill(T.begin(), T.end(), 1.f);
            std::fill(Tf.begin(), Tf.end(), 1.f);
            std::fill(va.begin(), va.end(), 0.f);
            std::fill(vo.begin(), vo.end(), 0.f);
            std::fill(D.begin(), D.end(), 0.f);
            for (int v = t.y0; v < t.y1; ++v)
                for (int u = t.x0; u < t.x1; ++u) {
                    const int p = (v - t.y0) * ts + (u - t.x0);
                    const int64_t pix = (int64_t)t.cam * HW + (int64_t)v * a.width + u;
                    T[p] = Tf[p] = T_final[pix];
                    last[p] = last_ids[pix];
                    max_last = std::max<int64_t>(max_last, last[p]);
                    row_last[v - t.y0] = std::max(row_last[v - t.y0], last[p]);
                    va[p] = use_valpha && v_alphas ? v_alphas[pix] : 0.f;
                    const float* vp = v_out + pix * a.ch_total + ch_off;
                    float dbg = 0.f;
                    for (int c = 0; c < CH; ++c) {
                        vo[(size_t)c * max_px + p] = c < valid ? vp[c] : 0.f;
                        dbg += (bg && c < valid) ? vp[c] * bg[c] : 0.f;
                    }
                    D[p] = Tf[p] * dbg;
                }
            for (int64_t i = max_last - 1; i >= t.start; --i) {
                if (i - kPrefetch >= t.start) {
                    prefetch_pair(a, splats, i - kPrefetch, ch_off);
                    const float* slot = mybuf + (size_t)a.flatten_ids[i - kPrefetch] * S;
                    __builtin_prefetch(slot, 1);
                    __builtin_prefetch(slot + S - 1, 1);
                }
                const int32_t g = a.flatten_ids[i];
                int ulo, uhi, vlo, vhi;
                if (!splat_box(splats[g], t, &ulo, &uhi, &vlo, &vhi)) continue;
                const Footprint f = splats[g].f;
                float col[CH];
                const float* cp = a.colors + (int64_t)g * a.ch_total + ch_off;
                for (int c = 0; c < CH; ++c) col[c] = c < valid ? cp[c] : 0.f;
                // Per-lane partial sums of the S gradient slots (lane = k mod
                // kVec), reduced once per (tile, Gaussian): reducing across
                // lanes in every row was a quarter of the backward.
                float part[S * kVec];
                std::fill(part, part + S * kVec, 0.f);
                float pabs[2 * kVec];
                if (want_abs) std::fill(pabs, pabs + 2 * kVec, 0.f);
                float* const pgeo = part;                // slots 0..5: mean2d, conic, opacity
                float* const pcol = part + kGeo * kVec;  // slots 6..: colour channels
                int nany = 0;
                int los[kMaxRow], his[kMaxRow];
                row_spans(f, vlo, vhi - vlo + 1, ulo, uhi, los, his);
                for (int v = vlo; v <= vhi; ++v) {
                    RowLanes L;
                    if (row_last[v - t.y0] <= i) continue;
                    if (!row_lanes<TS>(f, t, ts, v, los[v - vlo], his[v - vlo], &L)) continue;
                    const float dy = L.dy;
                    const int rlo = L.rlo, rhi = L.rhi, ubase = L.ubase, n = L.n, p0 = L.p0;
                    float* Tr = T.data() + p0;
                    const int32_t* lr = last.data() + p0;
                    const float* Tfr = Tf.data() + p0;
                    const float* var = va.data() + p0;
                    alpha_row(n, ubase, rlo, rhi, f, dy, arow, visrow);
                    const int32_t i32 = (int32_t)i;
                    int nok = 0;
                    if (TS % kVec == 0 && TS > 0) {
                        nok = update_back8(n, arow, i32, lr, Tr, Tfr, var, okrow, rarow, Tkrow, wrow, varow);
                    } else {
                        for (int k = 0; k < n; ++k) {
                            const float alpha = lr[k] > i32 ? arow[k] : 0.f;
                            const float okf = alpha > 0.f ? 1.f : 0.f;
                            const float ra = 1.f / (1.f - alpha);
                            const float Tk = Tr[k] * ra;  // T in front of this Gaussian
                            okrow[k] = okf;
                            rarow[k] = ra;
                            Tkrow[k] = Tk;
                            wrow[k] = okf * alpha * Tk;
                            varow[k] = okf * var[k] * Tfr[k] * ra;  // from the alpha output
                            Tr[k] = okf != 0.f ? Tk : Tr[k];
                            nok += okf != 0.f ? 1 : 0;
                        }
                    }
                    if (nok == 0) continue;
                    nany += nok;
                    // Per channel: the colour gradient w v_out (into lane
                    // partials: lane k feeds partial k mod kVec) and q = v_out .
                    // c_g, which is all the alpha gradient needs of the channels.
                    // Channel-outer, like the pixel state's layout; lanes in
                    // blocks of kVec, full vectors when TS is a multiple of kVec.
                    constexpr int NV = TS > 0 ? TS : kMaxRow;
                    float q[NV];
                    for (int k = 0; k < n; ++k) q[k] = 0.f;
                    for (int c = 0; c < CH; ++c) {
                        const float* vr = vo.data() + (size_t)c * max_px + p0;
                        float* pc = pcol + c * kVec;
                        const float cc = col[c];
                        for (int k0 = 0; k0 < n; k0 += kVec) {
                            const int m = (TS % kVec == 0 && TS > 0) ? kVec : std::min(kVec, n - k0);
#pragma omp simd
                            for (int j = 0; j < m; ++j) {
                                const int k = k0 + j;
                                pc[j] += wrow[k] * vr[k];
                                q[k] += vr[k] * cc;
                            }
                        }
                    }
                    // d alpha: T_k (v_out . c_g) - (v_out . S) / (1 - alpha),
                    // with S before this Gaussian; then S += w c_g.
                    float* Dr = D.data() + p0;
#pragma omp simd
                    for (int k = 0; k < n; ++k) {
                        varow[k] += okrow[k] * (Tkrow[k] * q[k] - Dr[k] * rarow[k]);
                        Dr[k] += wrow[k] * q[k];
                    }
                    if (want_abs) {
                        geo_lanes<TS, true>(f, dy, ubase, n, visrow, varow, okrow, pgeo, pabs);
                    } else {
                        geo_lanes<TS, false>(f, dy, ubase, n, visrow, varow, okrow, pgeo, pabs);
                    }
                }
                if (nany == 0) continue;
                if (want_abs) {
                    float av[2];
                    lane_sums<2>(pabs, av);
                    gb.add(myabs + 2 * (size_t)g, av, 2);
                }
                float vals[S];
                lane_sums<S>(part, vals);
                gb.add(mybuf + (size_t)g * S, vals, S);
            }
        }
    }
    gb.finish(a.ch_total, ch_off, valid, v_means2d, v_conics, v_colors, v_opacities);
}

}  // namespace

void rasterize_fwd(const RasterArgs& a, float* out_colors, float* T_final, int32_t* last_ids) {
    const Splat* splats = build_splats(a);
    int off = 0;
    if (a.ch_total == 0) {
        // Still produce alphas / T: run one padded chunk with no valid channel.
        fwd_chunk<1, 0>(a, splats, 0, 0, out_colors, T_final, last_ids);
        return;
    }
    while (off < a.ch_total) {
        lf::Chunk ck = lf::next_chunk(a.ch_total - off);
        if (rasterize_rows_fwd(a, splats, ck.width, off, ck.valid, out_colors, T_final, last_ids)) {
            // done by the half-row kernels
        } else if (a.tile_size == 16) {
            LF_DISPATCH_WIDTH(ck.width, fwd_chunk<CH, 16>(a, splats, off, ck.valid, out_colors, T_final, last_ids));
        } else {
            LF_DISPATCH_WIDTH(ck.width, fwd_chunk<CH, 0>(a, splats, off, ck.valid, out_colors, T_final, last_ids));
        }
        off += ck.valid;
    }
}

void rasterize_bwd(const RasterArgs& a, const float* T_final, const int32_t* last_ids, const float* v_out,
                   const float* v_alphas, float* v_means2d, float* v_conics, float* v_colors, float* v_opacities,
                   float* v_means2d_abs) {
    const int64_t CN = (int64_t)a.C * a.N;
    std::memset(v_means2d, 0, sizeof(float) * CN * 2);
    if (v_means2d_abs) std::memset(v_means2d_abs, 0, sizeof(float) * CN * 2);
    std::memset(v_conics, 0, sizeof(float) * CN * 3);
    std::memset(v_opacities, 0, sizeof(float) * CN);
    const Splat* splats = build_splats(a);
    if (a.ch_total == 0) {
        bwd_chunk<1, 0>(a, splats, 0, 0, true, T_final, last_ids, v_out, v_alphas, v_means2d, v_conics, v_colors,
                        v_opacities, v_means2d_abs);
        return;
    }
    int off = 0;
    bool first = true;
    while (off < a.ch_total) {
        lf::Chunk ck = lf::next_chunk(a.ch_total - off);
        // The alpha-output gradient is counted once, in the first chunk.  Past
        // 64 channels |mean2d| sums each chunk's share of a pixel's gradient
        // separately (as gsplat's channel chunks do): exact up to 64.
        if (rasterize_rows_bwd(a, splats, ck.width, off, ck.valid, first, T_final, last_ids, v_out, v_alphas,
                               v_means2d, v_conics, v_colors, v_opacities, v_means2d_abs)) {
            // done by the half-row kernels
        } else if (a.tile_size == 16) {
            LF_DISPATCH_WIDTH(ck.width, bwd_chunk<CH, 16>(a, splats, off, ck.valid, first, T_final, last_ids, v_out,
                                                          v_alphas, v_means2d, v_conics, v_colors, v_opacities,
                                                         v_means2d_abs));
        } else {
            LF_DISPATCH_WIDTH(ck.width, bwd_chunk<CH, 0>(a, splats, off, ck.valid, first, T_final, last_ids, v_out,
                                                         v_alphas, v_means2d, v_conics, v_colors, v_opacities,
                                                         v_means2d_abs));
        }
        off += ck.valid;
        first = false;
    }
}

}  // namespace lf_cpu
