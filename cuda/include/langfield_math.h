// Per-Gaussian math shared by the CPU (C++/OpenMP) and CUDA kernels.
//
// Everything here is a pure inline function on floats, forward AND backward,
// so the two implementations cannot drift apart.  The definition these
// functions implement is docs/rasterizer.md; the pure-PyTorch reference
// (langfield/render/reference.py) is the oracle the tests compare against.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define LF_HD __host__ __device__ __forceinline__
#else
#define LF_HD inline
#endif

namespace lf {

// Compositing constants of the definition (3DGS values).
constexpr float ALPHA_MAX = 0.99f;
constexpr float ALPHA_MIN = 1.0f / 255.0f;
constexpr float T_MIN = 1e-4f;

// min/max as plain selects: fminf/fmaxf are libm calls on x86 (NaN rules),
// which block inlining and vectorisation.
LF_HD float minf(float a, float b) { return a < b ? a : b; }
LF_HD float maxf(float a, float b) { return a > b ? a : b; }

struct Vec3 {
    float x, y, z;
};

// Row-major 3x3 matrix.
struct Mat3 {
    float m[3][3];
};

LF_HD Mat3 mat3_zero() {
    Mat3 r;
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) r.m[i][j] = 0.f;
    return r;
}

LF_HD Mat3 matmul(const Mat3& a, const Mat3& b) {
    Mat3 r;
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) {
            float s = 0.f;
            for (int k = 0; k < 3; ++k) s += a.m[i][k] * b.m[k][j];
            r.m[i][j] = s;
        }
    return r;
}

LF_HD Mat3 transpose(const Mat3& a) {
    Mat3 r;
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) r.m[i][j] = a.m[j][i];
    return r;
}

// ---------------------------------------------------------------------------
// Quaternion (w, x, y, z), not necessarily normalised -> rotation matrix.
LF_HD Mat3 quat_to_rotmat(const float* q) {
    float w = q[0], x = q[1], y = q[2], z = q[3];
    float inv = 1.f / sqrtf(w * w + x * x + y * y + z * z);
    w *= inv; x *= inv; y *= inv; z *= inv;
    Mat3 R;
    R.m[0][0] = 1.f - 2.f * (y * y + z * z);
    R.m[0][1] = 2.f * (x * y - w * z);
    R.m[0][2] = 2.f * (x * z + w * y);
    R.m[1][0] = 2.f * (x * y + w * z);
    R.m[1][1] = 1.f - 2.f * (x * x + z * z);
    R.m[1][2] = 2.f * (y * z - w * x);
    R.m[2][0] = 2.f * (x * z - w * y);
    R.m[2][1] = 2.f * (y * z + w * x);
    R.m[2][2] = 1.f - 2.f * (x * x + y * y);
    return R;
}

// VJP of quat_to_rotmat, including the normalisation: v_q is added to.
LF_HD void quat_to_rotmat_vjp(const float* q, const Mat3& v, float* v_q) {
    float w = q[0], x = q[1], y = q[2], z = q[3];
    float inv = 1.f / sqrtf(w * w + x * x + y * y + z * z);
    w *= inv; x *= inv; y *= inv; z *= inv;
    const float(*g)[3] = v.m;
    // Gradient w.r.t. the normalised quaternion.
    float gw = 2.f * (-z * g[0][1] + y * g[0][2] + z * g[1][0] - x * g[1][2] - y * g[2][0] + x * g[2][1]);
    float gx = 2.f * (y * g[0][1] + z * g[0][2] + y * g[1][0] - 2.f * x * g[1][1] - w * g[1][2] + z * g[2][0] +
                      w * g[2][1] - 2.f * x * g[2][2]);
    float gy = 2.f * (-2.f * y * g[0][0] + x * g[0][1] + w * g[0][2] + x * g[1][0] + z * g[1][2] - w * g[2][0] +
                      z * g[2][1] - 2.f * y * g[2][2]);
    float gz = 2.f * (-2.f * z * g[0][0] - w * g[0][1] + x * g[0][2] + w * g[1][0] - 2.f * z * g[1][1] +
                      y * g[1][2] + x * g[2][0] + y * g[2][1]);
    // Through q / |q|: (g - qn (qn . g)) / |q|.
    float d = w * gw + x * gx + y * gy + z * gz;
    v_q[0] += (gw - w * d) * inv;
    v_q[1] += (gx - x * d) * inv;
    v_q[2] += (gy - y * d) * inv;
    v_q[3] += (gz - z * d) * inv;
}

// ---------------------------------------------------------------------------
// Camera of one view, unpacked from viewmat [4,4] and K [3,3].
struct Camera {
    Mat3 R;          // world->camera rotation
    Vec3 T;          // world->camera translation
    float fx, fy, cx, cy;
    int width, height;
};

LF_HD Camera make_camera(const float* viewmat, const float* K, int width, int height) {
    Camera c;
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) c.R.m[i][j] = viewmat[i * 4 + j];
    c.T = {viewmat[3], viewmat[7], viewmat[11]};
    c.fx = K[0]; c.cx = K[2]; c.fy = K[4]; c.cy = K[5];
    c.width = width; c.height = height;
    return c;
}

struct ProjOut {
    int radius;        // 0 = culled
    float mx, my;      // mean2d, pixels
    float depth;       // camera z
    float A, B, C;     // conic
};

// Forward projection of one Gaussian (docs/rasterizer.md, step 1).
LF_HD ProjOut project_one(const Camera& cam, const float* mean, const float* quat, const float* scale, float near_plane,
                          float far_plane, float eps2d) {
    ProjOut o;
    o.radius = 0; o.mx = o.my = o.depth = o.A = o.B = o.C = 0.f;
    const Mat3& W = cam.R;
    float tx = W.m[0][0] * mean[0] + W.m[0][1] * mean[1] + W.m[0][2] * mean[2] + cam.T.x;
    float ty = W.m[1][0] * mean[0] + W.m[1][1] * mean[1] + W.m[1][2] * mean[2] + cam.T.y;
    float tz = W.m[2][0] * mean[0] + W.m[2][1] * mean[1] + W.m[2][2] * mean[2] + cam.T.z;
    // Culled Gaussians keep all outputs 0 (docs/rasterizer.md, Note 1).
    if (!(tz > near_plane && tz < far_plane)) return o;  // also rejects NaN
    // Sigma = M M^T with M = R_q S.
    Mat3 Rq = quat_to_rotmat(quat);
    Mat3 M;
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) M.m[i][j] = Rq.m[i][j] * scale[j];
    Mat3 Sigma = matmul(M, transpose(M));
    Mat3 covc = matmul(matmul(W, Sigma), transpose(W));
    float tan_x = 0.5f * cam.width / cam.fx, tan_y = 0.5f * cam.height / cam.fy;
    float lim_x = 1.3f * tan_x, lim_y = 1.3f * tan_y;
    float rz = 1.f / tz;
    float cxz = minf(maxf(tx * rz, -lim_x), lim_x) * tz;
    float cyz = minf(maxf(ty * rz, -lim_y), lim_y) * tz;
    // J is 2x3: [[fx/z, 0, -fx cx/z^2], [0, fy/z, -fy cy/z^2]].
    float J00 = cam.fx * rz, J02 = -cam.fx * cxz * rz * rz;
    float J11 = cam.fy * rz, J12 = -cam.fy * cyz * rz * rz;
    // cov2d = J covc J^T (exploit J's zeros).
    float r0[3] = {J00 * covc.m[0][0] + J02 * covc.m[2][0], J00 * covc.m[0][1] + J02 * covc.m[2][1],
                   J00 * covc.m[0][2] + J02 * covc.m[2][2]};
    float r1[3] = {J11 * covc.m[1][0] + J12 * covc.m[2][0], J11 * covc.m[1][1] + J12 * covc.m[2][1],
                   J11 * covc.m[1][2] + J12 * covc.m[2][2]};
    float a = r0[0] * J00 + r0[2] * J02 + eps2d;
    float b = r0[1] * J11 + r0[2] * J12;
    float c = r1[1] * J11 + r1[2] * J12 + eps2d;
    float det = a * c - b * b;
    if (!(det > 0.f)) return o;
    float mx = cam.fx * tx * rz + cam.cx;
    float my = cam.fy * ty * rz + cam.cy;
    float half = 0.5f * (a + c);
    float lam = half + sqrtf(maxf(half * half - det, 0.f));
    float radius = ceilf(3.f * sqrtf(lam));
    if (mx + radius <= 0.f || mx - radius >= (float)cam.width || my + radius <= 0.f ||
        my - radius >= (float)cam.height)
        return o;
    if (!(radius > 0.f) || !(radius < 2.0e9f)) return o;  // non-finite inputs
    float idet = 1.f / det;
    o.radius = (int)radius;
    o.depth = tz;
    o.mx = mx; o.my = my;
    o.A = c * idet; o.B = -b * idet; o.C = a * idet;
    return o;
}

// VJP of project_one for a Gaussian that was not culled.  Adds into v_mean,
// v_quat, v_scale and, with kPose, into the world->camera pose v_view[16]
// (viewmat layout, row-major 4x4; the bottom row stays untouched: projection
// does not read it).  Intrinsics get no gradient.  A template rather than a
// runtime flag: the pose terms share W Sigma with the covariance, and when
// both are in one function the compiler fuses (FMA-contracts) the covariance
// differently, which changed the last bits of every gradient and so the
// fixed-seed training results (densification ranks by gradient).  The
// kPose = false instantiation is the code as it was before pose gradients.
template <bool kPose>
LF_HD void project_one_vjp_impl(const Camera& cam, const float* mean, const float* quat, const float* scale,
                                float eps2d, float v_mx, float v_my, float v_depth, float v_A, float v_B, float v_C,
                                float* v_mean, float* v_quat, float* v_scale, float* v_view) {
    const Mat3& W = cam.R;
    float tx = W.m[0][0] * mean[0] + W.m[0][1] * mean[1] + W.m[0][2] * mean[2] + cam.T.x;
    float ty = W.m[1][0] * mean[0] + W.m[1][1] * mean[1] + W.m[1][2] * mean[2] + cam.T.y;
    float tz = W.m[2][0] * mean[0] + W.m[2][1] * mean[1] + W.m[2][2] * mean[2] + cam.T.z;
    Mat3 Rq = quat_to_rotmat(quat);
    Mat3 M;
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) M.m[i][j] = Rq.m[i][j] * scale[j];
    Mat3 Sigma = matmul(M, transpose(M));
    Mat3 covc = matmul(matmul(W, Sigma), transpose(W));
    float tan_x = 0.5f * cam.width / cam.fx, tan_y = 0.5f * cam.height / cam.fy;
    float lim_x = 1.3f * tan_x, lim_y = 1.3f * tan_y;
    float rz = 1.f / tz, rz2 = rz * rz;
    float ux = tx * rz, uy = ty * rz;
    bool clamp_x = ux < -lim_x || ux > lim_x;
    bool clamp_y = uy < -lim_y || uy > lim_y;
    float cxz = minf(maxf(ux, -lim_x), lim_x) * tz;
    float cyz = minf(maxf(uy, -lim_y), lim_y) * tz;
    float J00 = cam.fx * rz, J02 = -cam.fx * cxz * rz2;
    float J11 = cam.fy * rz, J12 = -cam.fy * cyz * rz2;
    float Jm[2][3] = {{J00, 0.f, J02}, {0.f, J11, J12}};
    float a = 0.f, b = 0.f, c = 0.f;
    {
        float t0[3], t1[3];
        for (int j = 0; j < 3; ++j) {
            t0[j] = J00 * covc.m[0][j] + J02 * covc.m[2][j];
            t1[j] = J11 * covc.m[1][j] + J12 * covc.m[2][j];
        }
        a = t0[0] * J00 + t0[2] * J02 + eps2d;
        b = t0[1] * J11 + t0[2] * J12;
        c = t1[1] * J11 + t1[2] * J12 + eps2d;
    }
    float idet = 1.f / (a * c - b * b);
    // Conic Q = inv(cov2d); dL/dcov2d = -Q G Q with G the symmetric gradient
    // of the conic matrix (B appears twice, hence the halves).
    float Q[2][2] = {{c * idet, -b * idet}, {-b * idet, a * idet}};
    float G[2][2] = {{v_A, 0.5f * v_B}, {0.5f * v_B, v_C}};
    float QG[2][2], V[2][2];
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) QG[i][j] = Q[i][0] * G[0][j] + Q[i][1] * G[1][j];
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) V[i][j] = -(QG[i][0] * Q[0][j] + QG[i][1] * Q[1][j]);
    // cov2d = J covc J^T (+eps): v_covc = J^T V J ; v_J = 2 V J covc (V, covc symmetric).
    Mat3 v_covc;
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) {
            float s = 0.f;
            for (int k = 0; k < 2; ++k)
                for (int l = 0; l < 2; ++l) s += Jm[k][i] * V[k][l] * Jm[l][j];
            v_covc.m[i][j] = s;
        }
    float VJ[2][3], vJ[2][3];
    for (int k = 0; k < 2; ++k)
        for (int j = 0; j < 3; ++j) VJ[k][j] = V[k][0] * Jm[0][j] + V[k][1] * Jm[1][j];
    for (int k = 0; k < 2; ++k)
        for (int j = 0; j < 3; ++j) {
            float s = 0.f;
            for (int l = 0; l < 3; ++l) s += VJ[k][l] * covc.m[l][j];
            vJ[k][j] = 2.f * s;
        }
    // Camera-space mean gradient: from mean2d, depth and J.
    float v_t[3] = {0.f, 0.f, v_depth};
    v_t[0] += v_mx * cam.fx * rz;
    v_t[1] += v_my * cam.fy * rz;
    v_t[2] += -(v_mx * cam.fx * tx + v_my * cam.fy * ty) * rz2;
    // J00 = fx/z, J11 = fy/z
    v_t[2] += -(vJ[0][0] * cam.fx + vJ[1][1] * cam.fy) * rz2;
    // J02 = -fx cx / z^2 where cx = x (unclamped) or lim*z (clamped; d/dz = clamp value).
    float v_cxz = -cam.fx * rz2 * vJ[0][2];
    float v_cyz = -cam.fy * rz2 * vJ[1][2];
    v_t[2] += 2.f * cam.fx * cxz * rz2 * rz * vJ[0][2] + 2.f * cam.fy * cyz * rz2 * rz * vJ[1][2];
    if (clamp_x) v_t[2] += v_cxz * (cxz * rz); else v_t[0] += v_cxz;
    if (clamp_y) v_t[2] += v_cyz * (cyz * rz); else v_t[1] += v_cyz;
    // t = W mean + T
    for (int j = 0; j < 3; ++j) v_mean[j] += W.m[0][j] * v_t[0] + W.m[1][j] * v_t[1] + W.m[2][j] * v_t[2];
    if constexpr (kPose) {
        // t = W mean + T: v_W += v_t mean^T, v_T += v_t.
        // covc = W Sigma W^T: v_W += (v_covc + v_covc^T) W Sigma (Sigma symmetric).
        Mat3 WS = matmul(W, Sigma);
        for (int i = 0; i < 3; ++i) {
            for (int j = 0; j < 3; ++j) {
                float s = 0.f;
                for (int k = 0; k < 3; ++k) s += (v_covc.m[i][k] + v_covc.m[k][i]) * WS.m[k][j];
                v_view[i * 4 + j] += v_t[i] * mean[j] + s;
            }
            v_view[i * 4 + 3] += v_t[i];
        }
    }
    // covc = W Sigma W^T -> v_Sigma = W^T v_covc W
    Mat3 v_Sigma = matmul(matmul(transpose(W), v_covc), W);
    // Sigma = M M^T -> v_M = (v_Sigma + v_Sigma^T) M
    Mat3 v_M;
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) {
            float s = 0.f;
            for (int k = 0; k < 3; ++k) s += (v_Sigma.m[i][k] + v_Sigma.m[k][i]) * M.m[k][j];
            v_M.m[i][j] = s;
        }
    // M = Rq diag(s)
    Mat3 v_Rq;
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) v_Rq.m[i][j] = v_M.m[i][j] * scale[j];
    for (int j = 0; j < 3; ++j) v_scale[j] += Rq.m[0][j] * v_M.m[0][j] + Rq.m[1][j] * v_M.m[1][j] + Rq.m[2][j] * v_M.m[2][j];
    quat_to_rotmat_vjp(quat, v_Rq, v_quat);
}

LF_HD void project_one_vjp(const Camera& cam, const float* mean, const float* quat, const float* scale, float eps2d,
                           float v_mx, float v_my, float v_depth, float v_A, float v_B, float v_C, float* v_mean,
                           float* v_quat, float* v_scale) {
    project_one_vjp_impl<false>(cam, mean, quat, scale, eps2d, v_mx, v_my, v_depth, v_A, v_B, v_C, v_mean, v_quat,
                                v_scale, nullptr);
}

// project_one_vjp plus the pose gradient, added into v_view[16].
LF_HD void project_one_vjp_pose(const Camera& cam, const float* mean, const float* quat, const float* scale,
                                float eps2d, float v_mx, float v_my, float v_depth, float v_A, float v_B, float v_C,
                                float* v_mean, float* v_quat, float* v_scale, float* v_view) {
    project_one_vjp_impl<true>(cam, mean, quat, scale, eps2d, v_mx, v_my, v_depth, v_A, v_B, v_C, v_mean, v_quat,
                               v_scale, v_view);
}

// ---------------------------------------------------------------------------
// Spherical harmonics (3DGS constants), degree 0..3.

// Basis values b[(deg+1)^2] at unit direction (x, y, z); when db != nullptr
// also d b_k / d(x, y, z) into db[k*3 + {0,1,2}].
LF_HD void sh_basis(int deg, float x, float y, float z, float* b, float* db) {
    const float C0 = 0.28209479177387814f, C1 = 0.4886025119029199f;
    b[0] = C0;
    if (db) { db[0] = db[1] = db[2] = 0.f; }
    if (deg < 1) return;
    b[1] = -C1 * y; b[2] = C1 * z; b[3] = -C1 * x;
    if (db) {
        db[3] = 0.f; db[4] = -C1; db[5] = 0.f;
        db[6] = 0.f; db[7] = 0.f; db[8] = C1;
        db[9] = -C1; db[10] = 0.f; db[11] = 0.f;
    }
    if (deg < 2) return;
    const float C20 = 1.0925484305920792f, C21 = -1.0925484305920792f, C22 = 0.31539156525252005f,
                C23 = -1.0925484305920792f, C24 = 0.5462742152960396f;
    float xx = x * x, yy = y * y, zz = z * z, xy = x * y, yz = y * z, xz = x * z;
    b[4] = C20 * xy; b[5] = C21 * yz; b[6] = C22 * (2.f * zz - xx - yy); b[7] = C23 * xz; b[8] = C24 * (xx - yy);
    if (db) {
        float* d = db + 12;
        d[0] = C20 * y; d[1] = C20 * x; d[2] = 0.f;
        d[3] = 0.f; d[4] = C21 * z; d[5] = C21 * y;
        d[6] = -2.f * C22 * x; d[7] = -2.f * C22 * y; d[8] = 4.f * C22 * z;
        d[9] = C23 * z; d[10] = 0.f; d[11] = C23 * x;
        d[12] = 2.f * C24 * x; d[13] = -2.f * C24 * y; d[14] = 0.f;
    }
    if (deg < 3) return;
    const float C30 = -0.5900435899266435f, C31 = 2.890611442640554f, C32 = -0.4570457994644658f,
                C33 = 0.3731763325901154f, C34 = -0.4570457994644658f, C35 = 1.445305721320277f,
                C36 = -0.5900435899266435f;
    b[9] = C30 * y * (3.f * xx - yy);
    b[10] = C31 * xy * z;
    b[11] = C32 * y * (4.f * zz - xx - yy);
    b[12] = C33 * z * (2.f * zz - 3.f * xx - 3.f * yy);
    b[13] = C34 * x * (4.f * zz - xx - yy);
    b[14] = C35 * z * (xx - yy);
    b[15] = C36 * x * (xx - 3.f * yy);
    if (db) {
        float* d = db + 27;
        d[0] = 6.f * C30 * xy; d[1] = C30 * (3.f * xx - 3.f * yy); d[2] = 0.f;
        d[3] = C31 * yz; d[4] = C31 * xz; d[5] = C31 * xy;
        d[6] = -2.f * C32 * xy; d[7] = C32 * (4.f * zz - xx - 3.f * yy); d[8] = 8.f * C32 * yz;
        d[9] = -6.f * C33 * xz; d[10] = -6.f * C33 * yz; d[11] = C33 * (6.f * zz - 3.f * xx - 3.f * yy);
        d[12] = C34 * (4.f * zz - 3.f * xx - yy); d[13] = -2.f * C34 * xy; d[14] = 8.f * C34 * xz;
        d[15] = 2.f * C35 * xz; d[16] = -2.f * C35 * yz; d[17] = C35 * (xx - yy);
        d[18] = C36 * (3.f * xx - 3.f * yy); d[19] = -6.f * C36 * xy; d[20] = 0.f;
    }
}

// Raw SH sum (no +0.5 / clamp) of one direction; dir need not be normalised.
// coeffs points at K*3 floats (K >= (deg+1)^2).
LF_HD void sh_eval(int deg, const float* dir, const float* coeffs, float* out3) {
    float n = sqrtf(dir[0] * dir[0] + dir[1] * dir[1] + dir[2] * dir[2]);
    float inv = n > 0.f ? 1.f / n : 0.f;
    float b[16];
    sh_basis(deg, dir[0] * inv, dir[1] * inv, dir[2] * inv, b, nullptr);
    int nb = (deg + 1) * (deg + 1);
    for (int ch = 0; ch < 3; ++ch) {
        float s = 0.f;
        for (int k = 0; k < nb; ++k) s += b[k] * coeffs[k * 3 + ch];
        out3[ch] = s;
    }
}

// VJP of sh_eval: adds into v_coeffs (K*3) and, when v_dir != nullptr, v_dir.
LF_HD void sh_eval_vjp(int deg, const float* dir, const float* coeffs, const float* v_out3, float* v_coeffs,
                       float* v_dir) {
    float n = sqrtf(dir[0] * dir[0] + dir[1] * dir[1] + dir[2] * dir[2]);
    float inv = n > 0.f ? 1.f / n : 0.f;
    float u[3] = {dir[0] * inv, dir[1] * inv, dir[2] * inv};
    float b[16], db[48];
    sh_basis(deg, u[0], u[1], u[2], b, v_dir ? db : nullptr);
    int nb = (deg + 1) * (deg + 1);
    for (int k = 0; k < nb; ++k)
        for (int ch = 0; ch < 3; ++ch) v_coeffs[k * 3 + ch] += b[k] * v_out3[ch];
    if (!v_dir || deg < 1) return;
    float vu[3] = {0.f, 0.f, 0.f};
    for (int k = 1; k < nb; ++k) {
        float vb = coeffs[k * 3] * v_out3[0] + coeffs[k * 3 + 1] * v_out3[1] + coeffs[k * 3 + 2] * v_out3[2];
        vu[0] += vb * db[k * 3]; vu[1] += vb * db[k * 3 + 1]; vu[2] += vb * db[k * 3 + 2];
    }
    // Through u = dir / |dir|: (vu - u (u . vu)) / |dir|.
    float d = u[0] * vu[0] + u[1] * vu[1] + u[2] * vu[2];
    for (int j = 0; j < 3; ++j) v_dir[j] += (vu[j] - u[j] * d) * inv;
}

// ---------------------------------------------------------------------------
// Compositing: one Gaussian at one pixel (docs/rasterizer.md, step 3).

// exp(-s) for s >= 0 without branches or library calls, so CPU loops over
// pixels vectorise (cephes coefficients, <= 1.3 ulp over [0, 87]; s clamped to [0, 87]).
//
// Its two steps are templates so that the CPU kernels' vector form
// (exp_neg8 in cpu/rasterize_rows.cpp, on GCC vector types) is the same
// arithmetic: x = n ln2 + r (ln2 split in two for accuracy), then e^r.
template <typename F>
LF_HD F exp_reduce(F x, F n) {
    const F r = x - n * 0.693359375f;
    return r + n * 2.12194440e-4f;
}

// e^r ~ 1 + r + r^2 P(r), P of degree 5 evaluated by Estrin's scheme: four
// dependent FMAs instead of Horner's seven, which took 3-5% off the CPU
// half-row kernels (their alpha loops wait on this chain).
template <typename F>
LF_HD F exp_poly(F r) {
    const F r2 = r * r;
    const F a = 1.9875691500e-4f * r + 1.3981999507e-3f;
    const F b = 8.3334519073e-3f * r + 4.1665795894e-2f;
    const F c = 1.6666665459e-1f * r + 5.0000001201e-1f;
    const F p = (a * r2 + b) * r2 + c;
    return p * r2 + (r + 1.f);
}

LF_HD float exp_neg(float s) {
    const float x = -minf(maxf(s, 0.f), 87.f);
    const float n = (float)(int)(x * 1.44269504088896341f - 0.5f);  // ~round(x / ln2), x <= 0
    const float p = exp_poly(exp_reduce(x, n));
    union {
        int32_t i;
        float f;
    } u;
    u.i = ((int32_t)n + 127) << 23;
    return p * u.f;
}

// Gaussian falloff exponent at pixel offset (dx, dy) = p - mean2d.
LF_HD float conic_sigma(float A, float B, float C, float dx, float dy) {
    return 0.5f * (A * dx * dx + C * dy * dy) + B * dx * dy;
}

// Alpha of a Gaussian at a pixel; returns 0 when it must be skipped
// (sigma < 0 or alpha < 1/255).  *vis receives exp(-sigma) for the backward.
LF_HD float blend_alpha(float opacity, float sigma, float* vis) {
    if (sigma < 0.f) return 0.f;
    float v = expf(-sigma);
    *vis = v;
    float alpha = minf(ALPHA_MAX, opacity * v);
    return alpha < ALPHA_MIN ? 0.f : alpha;
}

// Backward of the alpha step: given dL/dalpha, add into the opacity, conic
// and mean2d gradients.  alpha = min(0.99, o exp(-sigma)): no gradient where
// the clamp is active.
LF_HD void blend_alpha_vjp(float opacity, float vis, float A, float B, float C, float dx, float dy, float v_alpha,
                           float* v_opacity, float* v_conic, float* v_mean2d) {
    if (opacity * vis > ALPHA_MAX) return;
    *v_opacity += vis * v_alpha;
    float v_sigma = -opacity * vis * v_alpha;
    v_conic[0] += 0.5f * dx * dx * v_sigma;
    v_conic[1] += dx * dy * v_sigma;
    v_conic[2] += 0.5f * dy * dy * v_sigma;
    // d = p - mean2d, so d sigma / d mean2d = -(A dx + B dy, B dx + C dy).
    v_mean2d[0] -= v_sigma * (A * dx + B * dy);
    v_mean2d[1] -= v_sigma * (B * dx + C * dy);
}

// ---------------------------------------------------------------------------
// Tiles and sort keys.

LF_HD int bit_width_u32(uint32_t v) {
    int n = 0;
    while (v) { ++n; v >>= 1; }
    return n;
}

// Tile rectangle [x0, x1) x [y0, y1) touched by a Gaussian's pixel box.
LF_HD void tile_range(float mx, float my, int radius, int tile_size, int tile_w, int tile_h, int* x0, int* x1, int* y0,
                      int* y1) {
    float r = (float)radius;
    float ts = (float)tile_size;
    int a = (int)floorf((mx - r) / ts), b = (int)ceilf((mx + r) / ts);
    int c = (int)floorf((my - r) / ts), d = (int)ceilf((my + r) / ts);
    *x0 = a < 0 ? 0 : (a > tile_w ? tile_w : a);
    *x1 = b < 0 ? 0 : (b > tile_w ? tile_w : b);
    *y0 = c < 0 ? 0 : (c > tile_h ? tile_h : c);
    *y1 = d < 0 ? 0 : (d > tile_h ? tile_h : d);
}

LF_HD int32_t depth_key(float depth) {
    union {
        float f;
        int32_t i;
    } u;
    u.f = depth;
    return u.i;
}

}  // namespace lf
