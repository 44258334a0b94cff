// CPU rasterization for 16-pixel tiles, forward and backward: half-row
// outer, with the state of 8 pixels in vector registers.
//
// rasterize.cpp walks a tile Gaussian-outer and keeps the pixel state in
// memory, so every (Gaussian, row) pass loads, updates and stores all of the
// row's channel accumulators: at 16 channels the stores alone bound it.  Here
// a tile's sorted Gaussians are taken in batches.  A first pass bins each
// Gaussian of the batch into the half-rows (8 pixels) its footprint reaches,
// using the same row spans; a second pass walks each half-row's list with its
// 8 pixels as the 8 lanes of one vector and up to 16 channels of
// accumulators (or, backward, of output cotangents) held in registers for the
// whole list: one fused multiply-add per channel per (Gaussian, half-row),
// no stores.  Half rows rather than rows: most footprints are a few pixels
// wide, and half of the (Gaussian, row) spans lie in one half, so 16 lanes
// would compute a quarter more lanes for nothing.  Wider chunks (32, 64
// channels) run the other 16-channel blocks over the list again with the
// weights kept from the first block.
//
// The per-pixel definition (tests, order, stop rule, gradients) is the one
// of rasterize.cpp and docs/rasterizer.md; the alpha of a lane is computed by
// one function for the forward and the backward, so both agree on which
// pixels a Gaussian took part in.
#include <cstring>
#include <memory>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#include "../include/langfield_dispatch.h"
#include "raster_common.h"

namespace lf_cpu {
// x86 with AVX2 + FMA only (the vector maths below uses their intrinsics).
#if defined(__AVX2__) && defined(__FMA__)
namespace {

using namespace raster;

#define LF_INLINE inline __attribute__((always_inline))

// GCC/Clang vector extensions, one AVX register each.
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef float v16f __attribute__((vector_size(64)));
// The same through pointers that need not be vector-aligned.
typedef float v8fu __attribute__((vector_size(32), aligned(4)));
typedef float v16fu __attribute__((vector_size(64), aligned(4)));

constexpr int kTile = 16;  // the tile size this file serves
constexpr int kHalf = 8;   // lanes: pixels of a half row
constexpr int kHalves = 2 * kTile;
constexpr int kBatch = 64;  // Gaussians binned per batch: one bit each in a 64-bit mask

template <int CH>
struct Dims {
    static constexpr int CB = CH < 16 ? CH : 16;   // channels of the register block
    static constexpr int NB = (CH + 15) / 16;      // register blocks (2 and 4 for 32, 64)
    // Backward: at most 8 channels reduce w * v_out across lanes; more use the
    // pixel-major copy of v_out (CHP floats per pixel), one FMA per pixel.
    static constexpr bool kReduceCols = CH <= 8;
    static constexpr int CHP = kReduceCols ? 8 : NB * 16;
    static constexpr int SP = 8 + CHP;  // per-batch gradient slots: geometry 6, |mean2d| 2, colours
};

LF_INLINE bool any_lane(v8i m) { return !_mm256_testz_si256((__m256i)m, (__m256i)m); }

// Lane k of the result = the sum of h[k]'s 8 lanes (a transpose-and-add).
LF_INLINE v8f sum8x8(const v8f* h) {
    const __m256 t0 = _mm256_hadd_ps(h[0], h[1]), t1 = _mm256_hadd_ps(h[2], h[3]);
    const __m256 t2 = _mm256_hadd_ps(h[4], h[5]), t3 = _mm256_hadd_ps(h[6], h[7]);
    const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

LF_INLINE v8f vabs(v8f x) { return (v8f)((v8i)x & 0x7fffffff); }

// sum_c V[c] cc[c] over n channels (lane-wise) in four independent chains:
// one chain of 16 dependent FMAs was the backward's critical path.
template <int n>
LF_INLINE v8f dot_channels(const v8f* V, const float* cc) {
    v8f p[4] = {};
    for (int c = 0; c < n; ++c) p[c & 3] += V[c] * cc[c];
    return (p[0] + p[1]) + (p[2] + p[3]);
}

// sum_k w[k] row[k * stride .. + 16] over the 8 pixels of a half row (the
// pixel-major v_out), in two chains.
template <int stride>
LF_INLINE v16f weighted_pixels(const float* w, const float* row) {
    v16f p[2] = {};
    for (int k = 0; k < kHalf; ++k) p[k & 1] += w[k] * *(const v16fu*)(row + k * stride);
    return p[0] + p[1];
}

// lf::exp_neg on 8 lanes (same polynomial and clamps).
LF_INLINE v8f exp_neg8(v8f s) {
    const v8f zero = {};
    v8f x = s > zero ? s : zero;
    x = x < 87.f ? x : 87.f;
    x = -x;
    const v8i ni = __builtin_convertvector(x * 1.44269504088896341f - 0.5f, v8i);
    const v8f n = __builtin_convertvector(ni, v8f);
    return lf::exp_poly(lf::exp_reduce(x, n)) * (v8f)((ni + 127) << 23);
}

// Alpha of one Gaussian at the 8 pixels of a half row (lane k at dx =
// dxb[k] - mx), zero where the definition skips the pixel: outside the row
// span (bit k of `lanes` for lane k; lanebits[k] = 1 << k), |dx| > radius,
// sigma < 0, alpha < 1/255.  vis = exp(-sigma).
LF_INLINE v8f eval_alpha(const Footprint& f, v8i lanebits, v8f dxb, float dy, uint32_t lanes, v8f* vis) {
    const v8f dx = dxb - f.mx;
    const v8f sigma = 0.5f * (f.A * dx * dx + f.C * dy * dy) + f.B * dx * dy;
    *vis = exp_neg8(sigma);
    const v8f ov = f.o * *vis;
    const v8f al = lf::ALPHA_MAX < ov ? lf::ALPHA_MAX : ov;  // lf::minf's NaN behaviour
    const v8i keep = ((lanebits & (int32_t)lanes) != 0) & (vabs(dx) <= f.r) & (sigma >= 0.f) & (al >= lf::ALPHA_MIN);
    return keep ? al : v8f{};
}

// row_spans for 8 rows of a tile at once (lane k = row y0 + r0 + k), as lane
// masks: bit k set when pixel x0 + k is in the row's span; rows outside
// [vlo, vhi] get none.  Same formulas and clamps as row_spans.
LF_INLINE v8i span_lanes8(const Footprint& f, const TileRect& t, int r0, int ulo, int uhi, int vlo, int vhi) {
    const v8f kf = {0, 1, 2, 3, 4, 5, 6, 7};
    const v8f rv = kf + (float)(t.y0 + r0);
    const v8f dy = (rv + 0.5f) - f.my;
    const v8f bd = f.B * dy;
    const v8f disc = bd * bd - 2.f * f.A * (0.5f * f.C * dy * dy - f.smax);
    const v8f sq = (v8f)_mm256_sqrt_ps((__m256)(disc >= 0.f ? disc : v8f{}));
    const v8f l = (v8f)_mm256_floor_ps((__m256)(f.mx - 0.5f + (-bd - sq) * f.inv_a)) - 1.f;
    const v8f h = (v8f)_mm256_ceil_ps((__m256)(f.mx - 0.5f + (-bd + sq) * f.inv_a)) + 1.f;
    // lf::minf / lf::maxf with their NaN behaviour (a NaN bound gives an empty row).
    const float flo = (float)ulo, fhi = (float)uhi;
    const v8f lc = l < fhi + 1.f ? l : fhi + 1.f;
    const v8f lo = flo > lc ? flo : lc;
    const v8f hc = h > flo - 1.f ? h : flo - 1.f;
    const v8f hi = fhi < hc ? fhi : hc;
    const v8i ok = (disc >= 0.f) & (vabs(dy) <= f.r) & (rv >= (float)vlo) & (rv <= (float)vhi) & (lo <= hi);
    const v8i lor = __builtin_convertvector(lo, v8i) - t.x0, hir = __builtin_convertvector(hi, v8i) - t.x0;
    const v8i one = v8i{} + 1;
    const v8i m = ((one << (ok ? hir + 1 : 0)) - 1) & ~((one << (ok ? lor : 0)) - 1);
    return ok ? m : v8i{};
}

// One batch of a tile's sorted Gaussians, binned into the half rows they
// reach: bit hr of reach[j] says slot j reaches half row hr, with lane mask
// lanes8[j][hr].  Binning is two stores per Gaussian; a half row's list is
// then read off the reach bits of all slots at once (appending to per-row
// lists, or setting per-row bitmaps, cost a loop per Gaussian over its rows
// with a mispredicted exit: a tenth of the forward).
template <int CH>
struct Batch {
    Footprint f[kBatch];
    int32_t g[kBatch];
    alignas(64) float col[kBatch * CH];  // colours of the chunk, zero past `valid`
    alignas(32) uint8_t lanes8[kBatch][kHalves];
    alignas(32) uint32_t reach[kBatch];
    uint8_t touched[kBatch];  // backward: took part in some pixel

    void clear() { std::fill(reach, reach + kBatch, 0u); }

    // Bins pair i (sorted index) as batch slot j.
    LF_INLINE void add(const RasterArgs& a, const Splat* splats, const TileRect& t, int64_t i, int j, int ch_off,
                       int valid) {
        const int32_t gi = a.flatten_ids[i];
        g[j] = gi;
        touched[j] = 0;
        int ulo, uhi, vlo, vhi;
        if (!splat_box(splats[gi], t, &ulo, &uhi, &vlo, &vhi)) return;  // reach[j] stays 0
        const Footprint fl = splats[gi].f;
        f[j] = fl;
        const float* cp = a.colors + (int64_t)gi * a.ch_total + ch_off;
        float* dst = col + j * CH;
        if (valid == CH) {
            std::memcpy(dst, cp, sizeof(float) * CH);
        } else {
            for (int c = 0; c < CH; ++c) dst[c] = c < valid ? cp[c] : 0.f;
        }
        // Lane masks of rows 0..7 and 8..15 (16 bits each, zero outside the box).
        const int r_lo = vlo - t.y0, r_hi = vhi - t.y0;
        const __m256i m0 = r_lo < 8 ? (__m256i)span_lanes8(fl, t, 0, ulo, uhi, vlo, vhi) : _mm256_setzero_si256();
        const __m256i m1 = r_hi >= 8 ? (__m256i)span_lanes8(fl, t, 8, ulo, uhi, vlo, vhi) : _mm256_setzero_si256();
        // Low 16 bits of each row's mask, in row order: byte 2 r + h is half h of row r.
        const __m256i bytes = _mm256_permute4x64_epi64(_mm256_packus_epi32(m0, m1), 0xd8);
        _mm256_store_si256((__m256i*)lanes8[j], bytes);
        reach[j] = ~(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(bytes, _mm256_setzero_si256()));
    }

    // Bit j: slot j reaches half row hr (bit hr of each reach, moved to the sign bit).
    LF_INLINE uint64_t members(int hr) const {
        const __m128i shift = _mm_cvtsi32_si128(31 - hr);
        uint64_t bits = 0;
        for (int q = 0; q < kBatch / 8; ++q) {
            const __m256i v = _mm256_sll_epi32(_mm256_load_si256((const __m256i*)(reach + 8 * q)), shift);
            bits |= (uint64_t)(uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(v)) << (8 * q);
        }
        return bits;
    }

    // The entries (j | lanes << 8) of half row hr among slots `keep`, in
    // increasing j, or decreasing with `back`; returns their number.
    LF_INLINE int list(int hr, uint64_t keep, bool back, uint32_t* ent) const {
        uint64_t bits = members(hr) & keep;
        const int ne = __builtin_popcountll(bits);
        for (int e = 0; bits; bits &= bits - 1, ++e) {
            const int j = __builtin_ctzll(bits);
            ent[back ? ne - 1 - e : e] = (uint32_t)j | (uint32_t)lanes8[j][hr] << 8;
        }
        return ne;
    }
};

// Lane constants.  Pixel state is kept by half row hr = 2 r + h (lane k =
// pixel x0 + 8 h + k of row y0 + r); accumulators at [c * kHalves + hr].
struct Lanes {
    v8f kf;        // 0..7
    v8i lanebits;  // 1 << k
    Lanes() {
        for (int k = 0; k < kHalf; ++k) kf[k] = (float)k, lanebits[k] = 1 << k;
    }
    v8f dxb(const TileRect& t, int h) const { return (kf + (float)(t.x0 + kHalf * h)) + 0.5f; }
};

template <int CH>
void fwd_rows(const RasterArgs& a, const Splat* splats, int ch_off, int valid, float* out, float* T_final,
              int32_t* last_ids) {
    using Dm = Dims<CH>;
    constexpr int CB = Dm::CB, NB = Dm::NB;
    const int64_t n_buckets = (int64_t)a.C * a.tile_w * a.tile_h;
    const int64_t HW = (int64_t)a.height * a.width;
    const Lanes L;
#pragma omp parallel
    {
        std::vector<v8f> Tst(kHalves), acc((size_t)CH * kHalves), wst(kBatch), alb(kBatch);
        std::vector<v8i> dnst(kHalves), lastst(kHalves);
        uint32_t ent[kBatch];
        std::unique_ptr<Batch<CH>> bp(new Batch<CH>);
        Batch<CH>& bt = *bp;
#pragma omp for schedule(dynamic, 1)
        for (int64_t b = 0; b < n_buckets; ++b) {
            const TileRect t = tile_rect(a, b);
            const int tw = t.x1 - t.x0, th = t.y1 - t.y0;
            if (tw <= 0 || th <= 0) continue;
            // A half row is skipped once all its pixels have stopped; halves
            // past the image's right edge never start.
            bool fin[kHalves];
            int nfin = 0;
            for (int hr = 0; hr < kHalves; ++hr) {
                fin[hr] = hr >= 2 * th || kHalf * (hr & 1) >= tw;
                nfin += fin[hr];
                Tst[hr] = v8f{} + 1.f;
                dnst[hr] = v8i{};
                lastst[hr] = v8i{} + (int32_t)t.start;
            }
            std::fill(acc.begin(), acc.end(), v8f{});
            for (int64_t i0 = t.start; i0 < t.end && nfin < kHalves; i0 += kBatch) {
                const int nb = (int)std::min<int64_t>(kBatch, t.end - i0);
                bt.clear();
                for (int j = 0; j < nb; ++j) {
                    if (i0 + j + kPrefetch < t.end) prefetch_pair(a, splats, i0 + j + kPrefetch, ch_off);
                    bt.add(a, splats, t, i0 + j, j, ch_off, valid);
                }
                for (int hr = 0; hr < 2 * th; ++hr) {
                    if (fin[hr]) continue;
                    const int ne = bt.list(hr, ~0ull, false, ent);
                    if (ne == 0) continue;
                    const float vy = (float)(t.y0 + hr / 2) + 0.5f;
                    const v8f dxb = L.dxb(t, hr & 1);
                    // Alphas first, all independent (their exp chains overlap),
                    // then the front-to-back pass.  Entries with no lane left
                    // (the spans have a pixel of slack) are dropped here, without
                    // a branch, so the pass below has none to mispredict.
                    int nk = 0;
                    for (int e = 0; e < ne; ++e) {
                        const Footprint& f = bt.f[ent[e] & 0xff];
                        v8f vis;
                        const v8f al = eval_alpha(f, L.lanebits, dxb, vy - f.my, ent[e] >> 8, &vis);
                        alb[nk] = al;
                        ent[nk] = ent[e];
                        nk += any_lane(al > 0.f);
                    }
                    if (nk == 0) continue;
                    v8f T = Tst[hr];
                    v8i dn = dnst[hr], last = lastst[hr];
                    v8f ac[CB];
                    for (int c = 0; c < CB; ++c) ac[c] = acc[(size_t)c * kHalves + hr];
                    for (int e = 0; e < nk; ++e) {
                        const int j = ent[e] & 0xff;
                        const v8f al = alb[e];
                        const v8i m = (al > 0.f) & (dn == 0);
                        // A pixel whose T would drop below T_MIN stops before
                        // this Gaussian; otherwise it composites it.
                        const v8f Tn = T * (1.f - al);
                        const v8i small = Tn < lf::T_MIN;
                        const v8i add = m & ~small;
                        dn |= m & small;
                        const v8f w = add ? al * T : v8f{};
                        T = add ? Tn : T;
                        last = add ? (v8i{} + (int32_t)(i0 + j + 1)) : last;
                        if (NB > 1) wst[e] = w;
                        const float* cc = bt.col + j * CH;
                        for (int c = 0; c < CB; ++c) ac[c] += w * cc[c];
                    }
                    Tst[hr] = T;
                    dnst[hr] = dn;
                    lastst[hr] = last;
                    for (int c = 0; c < CB; ++c) acc[(size_t)c * kHalves + hr] = ac[c];
                    // The other 16-channel blocks reuse the weights.
                    for (int blk = 1; blk < NB; ++blk) {
                        v8f ab[16];
                        for (int c = 0; c < 16; ++c) ab[c] = acc[(size_t)(blk * 16 + c) * kHalves + hr];
                        for (int e = 0; e < nk; ++e) {
                            const v8f w = wst[e];
                            const float* cc = bt.col + (ent[e] & 0xff) * CH + blk * 16;
                            for (int c = 0; c < 16; ++c) ab[c] += w * cc[c];
                        }
                        for (int c = 0; c < 16; ++c) acc[(size_t)(blk * 16 + c) * kHalves + hr] = ab[c];
                    }
                    const int nvalid = std::min(kHalf, tw - kHalf * (hr & 1));
                    if (!fin[hr] && __builtin_popcount(_mm256_movemask_ps((__m256)dn)) >= nvalid) {
                        fin[hr] = true;
                        ++nfin;
                    }
                }
            }
            const float* bg = a.backgrounds ? a.backgrounds + (int64_t)t.cam * a.ch_total + ch_off : nullptr;
            for (int r = 0; r < th; ++r)
                for (int u = 0; u < tw; ++u) {
                    const int hr = 2 * r + u / kHalf, k = u % kHalf;
                    const int64_t pix = (int64_t)t.cam * HW + (int64_t)(t.y0 + r) * a.width + t.x0 + u;
                    float* op = out + pix * a.ch_total + ch_off;
                    const float Tp = Tst[hr][k];
                    for (int c = 0; c < valid; ++c) op[c] = acc[(size_t)c * kHalves + hr][k] + (bg ? Tp * bg[c] : 0.f);
                    T_final[pix] = Tp;
                    last_ids[pix] = lastst[hr][k];
                }
        }
    }
}

// Backward tile state by half row: T (running), D = v_out . S (S: the colour
// behind, background included), vaTf = v_alpha T_final, range ends; v_out
// channel-major (Vc, [c * kHalves + hr]) and pixel-major (Vp, CHP floats per
// pixel p = 16 r + u).  Scratch: per list entry alpha, vis, weight and q.
template <int CH>
struct BwdTile {
    std::vector<v8f> T, D, vaTf, Vc;
    std::vector<v8i> last;
    std::vector<v16f> Vp_;
    v8f al[kBatch], vis[kBatch], w[kBatch], q[kBatch];
    BwdTile()
        : T(kHalves), D(kHalves), vaTf(kHalves), Vc((size_t)CH * kHalves), last(kHalves),
          Vp_((size_t)kTile * kTile * Dims<CH>::CHP / 16 + 1) {}
    float* Vp() { return (float*)Vp_.data(); }
};

template <int CH, bool ABS>
void bwd_half_row(Batch<CH>& bt, BwdTile<CH>& st, int hr, int32_t hr_last, int64_t i0, const TileRect& t,
                  const Lanes& L, float* pbuf) {
    using Dm = Dims<CH>;
    constexpr int CB = Dm::CB, NB = Dm::NB, CHP = Dm::CHP, SP = Dm::SP;
    // Slots past the half row's last range end take part nowhere in it.
    const int64_t upto = std::min<int64_t>(kBatch, std::max<int64_t>(0, hr_last - i0));
    uint32_t ent[kBatch];
    const int ne = bt.list(hr, upto >= 64 ? ~0ull : (1ull << upto) - 1, true, ent);
    if (ne == 0) return;
    const float vy = (float)(t.y0 + hr / 2) + 0.5f;
    const v8f dxb = L.dxb(t, hr & 1);
    const v8i last = st.last[hr];
    // Alphas first (independent, so the exp chains overlap); lanes past their
    // pixel's range end take no part.
    // Entries with no lane left are dropped (branch-free, as in the forward).
    int nk = 0;
    for (int e = 0; e < ne; ++e) {
        const int j = ent[e] & 0xff;
        const Footprint& f = bt.f[j];
        const v8f al = eval_alpha(f, L.lanebits, dxb, vy - f.my, ent[e] >> 8, &st.vis[nk]);
        const v8f alz = last > (int32_t)(i0 + j) ? al : v8f{};
        st.al[nk] = alz;
        ent[nk] = ent[e];
        nk += any_lane(alz > 0.f);
    }
    // The other blocks' share of q = v_out . c_g: the alpha gradient needs all of it.
    for (int blk = 1; blk < NB; ++blk) {
        v8f V[16];
        for (int c = 0; c < 16; ++c) V[c] = st.Vc[(size_t)(blk * 16 + c) * kHalves + hr];
        for (int e = 0; e < nk; ++e) {
            const v8f q = dot_channels<16>(V, bt.col + (ent[e] & 0xff) * CH + blk * 16);
            st.q[e] = blk == 1 ? q : st.q[e] + q;
        }
    }
    // Pixel-major v_out of this half row's first pixel.
    const float* vp = st.Vp() + (size_t)((hr / 2) * kTile + kHalf * (hr & 1)) * CHP;
    v8f T = st.T[hr], D = st.D[hr];
    const v8f vaTf = st.vaTf[hr];
    v8f V[CB];
    for (int c = 0; c < CB; ++c) V[c] = st.Vc[(size_t)c * kHalves + hr];
    alignas(32) float wa[kHalf];
    for (int e = 0; e < nk; ++e) {
        const int j = ent[e] & 0xff;
        const v8f alz = st.al[e];
        const v8i ok = alz > 0.f;
        bt.touched[j] = 1;
        const Footprint& f = bt.f[j];
        const float dy = vy - f.my;
        const v8f ra = 1.f / (1.f - alz);
        const v8f Tk = T * ra;  // T in front of this Gaussian
        const v8f w = ok ? alz * Tk : v8f{};
        T = ok ? Tk : T;
        v8f q = dot_channels<CB>(V, bt.col + j * CH);
        if (NB > 1) q += st.q[e];
        // d alpha: T_k (v_out . c_g) - (v_out . S) / (1 - alpha), S before this Gaussian; then S += w c_g.
        const v8f va = ok ? vaTf * ra + (Tk * q - D * ra) : v8f{};
        D += w * q;
        // Through alpha = min(0.99, o vis) (no gradient where clamped) to sigma.
        const v8f vis = st.vis[e];
        const v8f gv = f.o * vis <= lf::ALPHA_MAX ? va : v8f{};
        const v8f vs = -f.o * vis * gv;
        const v8f dx = dxb - f.mx;
        const v8f sx = f.A * dx + f.B * dy, sy = f.B * dx + f.C * dy;
        v8f gl[8];
        gl[0] = -(vs * sx);
        gl[1] = -(vs * sy);
        gl[2] = 0.5f * dx * dx * vs;
        gl[3] = dx * dy * vs;
        gl[4] = (0.5f * dy * dy) * vs;
        gl[5] = vis * gv;
        if (ABS) {
            gl[6] = vabs(vs) * vabs(sx);
            gl[7] = vabs(vs) * vabs(sy);
        } else {
            gl[6] = gl[7] = v8f{};
        }
        float* slot = pbuf + j * SP;
        *(v8fu*)slot += sum8x8(gl);
        if (Dm::kReduceCols) {
            for (int c = 0; c < 8; ++c) gl[c] = c < CB ? w * V[c < CB ? c : 0] : v8f{};
            *(v8fu*)(slot + 8) += sum8x8(gl);
        } else {
            // sum_p w_p v_out_p: the pixel-major copy, one FMA per pixel.
            *(v8f*)wa = w;
            *(v16fu*)(slot + 8) += weighted_pixels<CHP>(wa, vp);
        }
        if (NB > 1) st.w[e] = w;
    }
    st.T[hr] = T;
    st.D[hr] = D;
    for (int blk = 1; blk < NB; ++blk) {
        for (int e = 0; e < nk; ++e) {
            *(v8f*)wa = st.w[e];
            *(v16fu*)(pbuf + (ent[e] & 0xff) * SP + 8 + blk * 16) += weighted_pixels<CHP>(wa, vp + blk * 16);
        }
    }
}

template <int CH>
void bwd_rows(const RasterArgs& a, const Splat* splats, int ch_off, int valid, bool use_valpha, const float* T_final,
              const int32_t* last_ids, const float* v_out, const float* v_alphas, float* v_means2d, float* v_conics,
              float* v_colors, float* v_opacities, float* v_means2d_abs) {
    using Dm = Dims<CH>;
    constexpr int CHP = Dm::CHP, SP = Dm::SP, S = kGeo + CH;
    const bool want_abs = v_means2d_abs != nullptr;
    const int64_t n_buckets = (int64_t)a.C * a.tile_w * a.tile_h;
    const int64_t HW = (int64_t)a.height * a.width;
    const int64_t CN = (int64_t)a.C * a.N;
    const Lanes L;
    GradBuffers gb(CN, S, want_abs, v_means2d_abs);
#pragma omp parallel num_threads(gb.threads())
    {
        float *mybuf, *myabs;
        gb.claim(&mybuf, &myabs);
        std::unique_ptr<BwdTile<CH>> sp(new BwdTile<CH>);
        std::unique_ptr<Batch<CH>> bp(new Batch<CH>);
        BwdTile<CH>& st = *sp;
        Batch<CH>& bt = *bp;
        std::vector<v8f> pb((size_t)kBatch * SP / 8 + 1);
        float* pbuf = (float*)pb.data();
        float* Vp = st.Vp();
        // Static round-robin, not dynamic: which thread owns a tile decides which
        // private buffer its gradients are summed into, so a fixed assignment
        // makes the float sums (and a resumed run) reproducible.
#pragma omp for schedule(static, 1)
        for (int64_t b = 0; b < n_buckets; ++b) {
            const TileRect t = tile_rect(a, b);
            const int tw = t.x1 - t.x0, th = t.y1 - t.y0;
            if (tw <= 0 || th <= 0 || t.end <= t.start) continue;
            const float* bg = a.backgrounds ? a.backgrounds + (int64_t)t.cam * a.ch_total + ch_off : nullptr;
            // Lanes outside the image keep T = 1, last = start: they never take part.
            int32_t hr_last[kHalves];
            int64_t max_last = t.start;
            std::fill(st.Vc.begin(), st.Vc.end(), v8f{});
            std::memset(Vp, 0, sizeof(float) * kTile * kTile * CHP);
            for (int hr = 0; hr < kHalves; ++hr) {
                v8f T = v8f{} + 1.f, D = {}, vt = {};
                v8i last = v8i{} + (int32_t)t.start;
                const int r = hr / 2;
                for (int k = 0; r < th && k < kHalf && kHalf * (hr & 1) + k < tw; ++k) {
                    const int u = kHalf * (hr & 1) + k;
                    const int64_t pix = (int64_t)t.cam * HW + (int64_t)(t.y0 + r) * a.width + t.x0 + u;
                    T[k] = T_final[pix];
                    last[k] = last_ids[pix];
                    vt[k] = (use_valpha && v_alphas ? v_alphas[pix] : 0.f) * T[k];
                    const float* vo = v_out + pix * a.ch_total + ch_off;
                    float dbg = 0.f;
                    for (int c = 0; c < valid; ++c) {
                        st.Vc[(size_t)c * kHalves + hr][k] = vo[c];
                        Vp[((size_t)r * kTile + u) * CHP + c] = vo[c];
                        dbg += bg ? vo[c] * bg[c] : 0.f;
                    }
                    D[k] = T[k] * dbg;
                }
                st.T[hr] = T;
                st.D[hr] = D;
                st.vaTf[hr] = vt;
                st.last[hr] = last;
                int32_t rl = t.start;
                for (int k = 0; k < kHalf; ++k) rl = std::max(rl, last[k]);
                hr_last[hr] = rl;
                max_last = std::max<int64_t>(max_last, rl);
            }
            for (int64_t i1 = max_last; i1 > t.start; i1 -= kBatch) {
                const int64_t i0 = std::max<int64_t>(t.start, i1 - kBatch);
                const int nb = (int)(i1 - i0);
                bt.clear();
                for (int j = nb - 1; j >= 0; --j) {
                    if (i0 + j - kPrefetch >= t.start) prefetch_pair(a, splats, i0 + j - kPrefetch, ch_off);
                    bt.add(a, splats, t, i0 + j, j, ch_off, valid);
                    // This pair's gradient slots are added to at the end of the batch.
                    const float* slot = mybuf + (size_t)bt.g[j] * S;
                    __builtin_prefetch(slot, 1);
                    __builtin_prefetch(slot + S - 1, 1);
                }
                std::memset(pbuf, 0, sizeof(float) * nb * SP);
                for (int hr = 0; hr < 2 * th; ++hr) {
                    if (hr_last[hr] <= i0) continue;
                    if (want_abs) {
                        bwd_half_row<CH, true>(bt, st, hr, hr_last[hr], i0, t, L, pbuf);
                    } else {
                        bwd_half_row<CH, false>(bt, st, hr, hr_last[hr], i0, t, L, pbuf);
                    }
                }
                for (int j = 0; j < nb; ++j) {
                    if (!bt.touched[j]) continue;
                    const float* slot = pbuf + j * SP;
                    float* dst = mybuf + (size_t)bt.g[j] * S;
                    gb.add(dst, slot, kGeo);
                    gb.add(dst + kGeo, slot + 8, CH);
                    if (want_abs) gb.add(myabs + 2 * (size_t)bt.g[j], slot + kGeo, 2);
                }
            }
        }
    }
    gb.finish(a.ch_total, ch_off, valid, v_means2d, v_conics, v_colors, v_opacities);
}

}  // namespace
#endif  // AVX2 + FMA

bool row_kernels_built() {
#if defined(__AVX2__) && defined(__FMA__)
    return true;
#else
    return false;
#endif
}

bool rasterize_rows_fwd(const RasterArgs& a, const raster::Splat* splats, int width, int ch_off, int valid,
                        float* out, float* T_final, int32_t* last_ids) {
#if defined(__AVX2__) && defined(__FMA__)
    if (a.tile_size != kTile) return false;
    LF_DISPATCH_WIDTH(width, fwd_rows<CH>(a, splats, ch_off, valid, out, T_final, last_ids); return true);
#endif
    return false;
}

bool rasterize_rows_bwd(const RasterArgs& a, const raster::Splat* splats, int width, int ch_off, int valid,
                        bool use_valpha, const float* T_final, const int32_t* last_ids, const float* v_out,
                        const float* v_alphas, float* v_means2d, float* v_conics, float* v_colors,
                        float* v_opacities, float* v_means2d_abs) {
#if defined(__AVX2__) && defined(__FMA__)
    if (a.tile_size != kTile) return false;
    LF_DISPATCH_WIDTH(width, bwd_rows<CH>(a, splats, ch_off, valid, use_valpha, T_final, last_ids, v_out, v_alphas,
                                          v_means2d, v_conics, v_colors, v_opacities, v_means2d_abs);
                      return true);
#endif
    return false;
}

}  // namespace lf_cpu
