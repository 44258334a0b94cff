"""Dense RGB-D odometry in torch: multi-scale Gauss-Newton on a point-to-plane ICP + photometric term.

The "hybrid" objective of open3d's RGB-D odometry and of Kerl et al.'s DVO, solved for the rigid
motion ``T`` that maps points of a *source* frame (camera coordinates) into the camera of a
*reference* frame:

    E(T) = sum_p  rho_g( n_r . (T p - V_r(pi(T p))) / sigma_g )                   (geometry)
         + lambda * sum_p  rho_c( (I_r(pi(T p)) - I_s(p)) / sigma_c )             (intensity)

``V_r`` / ``n_r`` are the reference's vertex and normal maps (projective data association: the
pixel ``T p`` projects into, as KinectFusion does), ``I`` the grey level, ``rho`` Huber's loss
(iteratively reweighted).  The increment is applied on the left, ``T <- exp(xi) T`` with
``xi = (v, omega)``, so the Jacobian of a transformed point ``q = T p`` is ``[I, -q^]`` and each
residual's row is ``[g, q x g]`` for its gradient ``g`` with respect to ``q``.  The 6x6 normal
equations are accumulated in float64 (one matrix product per term) and solved per iteration;
levels run coarse to fine over an image pyramid built by ``train.resolution.downscale_view``
(RGB area-averaged, depth the nearest valid sample, K scaled exactly).

The reference can be any RGB-D view: the previous frame, a keyframe, or the Gaussian map rendered
at the predicted pose (frame-to-model tracking, what ``tracker`` uses), whose depth is only
trusted where the rendered alpha is high.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from langfield.geometry import so3_exp
from langfield.train.resolution import downscale_view
from langfield.types import LangfieldError, View

# ITU-R BT.601 luma: the grey level the photometric term compares.
_LUMA = torch.tensor([0.299, 0.587, 0.114])


@dataclass(frozen=True)
class OdometryConfig:
    """Settings of ``rgbd_odometry`` (defaults for metric depth of a 320x240 RGB-D camera)."""

    levels: int = 3
    """Pyramid levels (each halves the resolution); the coarsest absorbs the largest motion."""
    iterations: tuple[int, ...] = (4, 4, 4)
    """Gauss-Newton iterations per level, finest level first (the last value repeats for extra levels)."""
    max_distance: float = 0.1
    """A correspondence further than this (metres, 3D) from its reference point is an outlier."""
    sigma_depth: float = 0.005
    """Scale of the point-to-plane residual (metres): its Huber threshold and inverse weight."""
    sigma_color: float = 0.03
    """Scale of the grey-level residual (intensity in [0, 1]): its Huber threshold and inverse weight."""
    color_weight: float = 0.1
    """lambda: weight of the photometric term against the geometric one (0 = pure point-to-plane ICP)."""
    min_points: int = 30
    """Fewer valid correspondences than this at a level: the level is skipped (a clear failure if all are)."""
    converge: float = 1e-5
    """Stop a level when the increment's norm (radians + metres) falls below this."""

    def __post_init__(self) -> None:
        if self.levels < 1:
            raise LangfieldError(f"odometry levels must be >= 1, got {self.levels}")
        if not self.iterations or min(self.iterations) < 0:
            raise LangfieldError(f"odometry iterations must be non-negative counts, got {self.iterations}")
        if self.max_distance <= 0 or self.sigma_depth <= 0 or self.sigma_color <= 0 or self.color_weight < 0:
            raise LangfieldError("odometry max_distance / sigmas must be > 0 and color_weight >= 0")

    def iterations_at(self, level: int) -> int:
        return self.iterations[min(level, len(self.iterations) - 1)]


@dataclass
class OdometryResult:
    """Outcome of ``rgbd_odometry``."""

    transform: np.ndarray
    """[4, 4] float64 source-camera -> reference-camera rigid motion."""
    inlier_fraction: float
    """Valid source pixels with an inlier correspondence at the finest level, over all valid source pixels."""
    rmse_depth: float
    """Point-to-plane RMSE (metres) of the finest level's inliers at the returned motion."""
    iterations: int
    """Gauss-Newton iterations run, all levels together."""


@dataclass
class ReferenceLevel:
    """One pyramid level of the reference view: its maps (built once, reused by every frame aligned to it)."""

    K: torch.Tensor
    width: int
    height: int
    vertex: torch.Tensor
    """[H*W, 3] reference points in its camera (0 where invalid)."""
    normal: torch.Tensor
    """[H*W, 3] reference unit normals (0 where invalid)."""
    ok: torch.Tensor
    """[H*W] bool: reference vertex and normal valid."""
    image: torch.Tensor
    """[1, 3, H, W] reference grey level and its x / y gradients (per pixel), for one grid_sample."""


@dataclass
class _SourceLevel:
    """One pyramid level of the source: its valid points."""

    points: torch.Tensor
    """[M, 3] source points in its camera."""
    grey: torch.Tensor
    """[M] source grey levels."""
    n_valid: int
    """M."""


def grey(rgb: torch.Tensor) -> torch.Tensor:
    """[H, W, 3] RGB -> [H, W] grey level."""
    return rgb @ _LUMA.to(rgb)


def vertex_map(depth: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """[H, W] depth (0 = none) -> [H, W, 3] camera-space points at pixel centres (OpenCV axes)."""
    h, w = depth.shape
    v, u = torch.meshgrid(torch.arange(h, dtype=depth.dtype) + 0.5, torch.arange(w, dtype=depth.dtype) + 0.5,
                          indexing="ij")
    x = (u - K[0, 2]) / K[0, 0] * depth
    y = (v - K[1, 2]) / K[1, 1] * depth
    return torch.stack([x, y, depth], dim=-1)


def normal_map(vertex: torch.Tensor, depth: torch.Tensor, max_jump: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit normals [H, W, 3] of a vertex map by central differences, and their validity [H, W].

    A normal is invalid at the border, next to a pixel without depth, or across a depth jump larger
    than ``max_jump`` times the depth (an occlusion edge, where the cross product mixes two surfaces).
    """
    h, w = depth.shape
    n = torch.zeros_like(vertex)
    ok = torch.zeros(h, w, dtype=torch.bool)
    if h < 3 or w < 3:
        return n, ok
    dx = vertex[1:-1, 2:] - vertex[1:-1, :-2]
    dy = vertex[2:, 1:-1] - vertex[:-2, 1:-1]
    c = torch.cross(dx, dy, dim=-1)
    norm = c.norm(dim=-1, keepdim=True)
    z = depth[1:-1, 1:-1]
    nb = torch.stack([depth[1:-1, 2:], depth[1:-1, :-2], depth[2:, 1:-1], depth[:-2, 1:-1]])
    good = (z > 0) & (nb > 0).all(0) & ((nb - z).abs() < max_jump * z).all(0) & (norm[..., 0] > 0)
    n[1:-1, 1:-1] = torch.where(good[..., None], c / norm.clamp_min(1e-12), torch.zeros_like(c))
    ok[1:-1, 1:-1] = good
    return n, ok


def _reference_level(ref: View) -> ReferenceLevel:
    d_r = ref.depth[..., 0].float()
    K = ref.K.float()
    vert = vertex_map(d_r, K)
    nrm, ok = normal_map(vert, d_r)
    g = grey(ref.rgb.float())
    gx = torch.zeros_like(g)
    gy = torch.zeros_like(g)
    gx[:, 1:-1] = 0.5 * (g[:, 2:] - g[:, :-2])
    gy[1:-1, :] = 0.5 * (g[2:, :] - g[:-2, :])
    return ReferenceLevel(K, int(ref.width), int(ref.height), vert.reshape(-1, 3), nrm.reshape(-1, 3),
                          ok.reshape(-1), torch.stack([g, gx, gy])[None])


def _source_level(src: View) -> _SourceLevel:
    d_s = src.depth[..., 0].float()
    valid = d_s > 0
    pts = vertex_map(d_s, src.K.float())[valid]
    return _SourceLevel(pts, grey(src.rgb.float())[valid], int(pts.shape[0]))


def _level_count(view: View, levels: int) -> int:
    """Levels actually built: none whose short side would drop under 8 pixels."""
    n = 1
    while n < levels and min(int(view.width), int(view.height)) // 2 ** n >= 8:
        n += 1
    return n


def reference_pyramid(ref: View, levels: int) -> list[ReferenceLevel]:
    """The reference maps of ``ref`` at ``levels`` resolutions, finest first (cache it for a keyframe)."""
    if ref.rgb is None or ref.depth is None:
        raise LangfieldError(f"rgbd odometry: the reference view {ref.name!r} needs both colour and depth")
    return [_reference_level(downscale_view(ref, 2 ** lv)) for lv in range(_level_count(ref, levels))]


def _huber(r: torch.Tensor, k: float) -> torch.Tensor:
    a = r.abs()
    return torch.where(a <= k, torch.ones_like(a), k / a.clamp_min(1e-12))


class _Associations:
    """Correspondences of the source points under one motion, and their residuals / Jacobian rows."""

    def __init__(self, lv: ReferenceLevel, src: _SourceLevel, R: torch.Tensor, t: torch.Tensor,
                 cfg: OdometryConfig) -> None:
        q = src.points @ R.T + t
        z = q[:, 2]
        zc = z.clamp_min(1e-6)
        fx, fy, cx, cy = lv.K[0, 0], lv.K[1, 1], lv.K[0, 2], lv.K[1, 2]
        u = fx * q[:, 0] / zc + cx  # continuous pixel coordinates (pixel centres at +0.5)
        v = fy * q[:, 1] / zc + cy
        iu = torch.floor(u).long()
        iv = torch.floor(v).long()
        inb = (z > 1e-6) & (iu >= 0) & (iu < lv.width) & (iv >= 0) & (iv < lv.height)
        idx = (iv.clamp(0, lv.height - 1) * lv.width + iu.clamp(0, lv.width - 1))
        vr = lv.vertex[idx]
        nr = lv.normal[idx]
        ok = inb & lv.ok[idx] & ((q - vr).norm(dim=-1) < cfg.max_distance)
        keep = ok.nonzero()[:, 0]
        self.count = int(keep.numel())
        q, vr, nr, u, v, z = q[keep], vr[keep], nr[keep], u[keep], v[keep], z[keep]
        self.q = q
        self.r_geo = ((q - vr) * nr).sum(-1)
        self.n = nr
        self.u, self.v, self.z = u, v, z
        self.keep = keep

    def photometric(self, lv: ReferenceLevel, src: _SourceLevel) -> tuple[torch.Tensor, torch.Tensor]:
        """(residual [K], gradient w.r.t. q [K, 3]) of the grey-level term at the inliers."""
        grid = torch.stack([2.0 * self.u / lv.width - 1.0, 2.0 * self.v / lv.height - 1.0], dim=-1)
        s = F.grid_sample(lv.image, grid[None, None], mode="bilinear", padding_mode="border", align_corners=False)
        s = s[0, :, 0]  # [3, K]: grey, d/du, d/dv
        r = s[0] - src.grey[self.keep]
        fx, fy = lv.K[0, 0], lv.K[1, 1]
        gu, gv = s[1] * fx / self.z, s[2] * fy / self.z
        q = self.q
        g = torch.stack([gu, gv, -(gu * q[:, 0] + gv * q[:, 1]) / self.z], dim=-1)
        return r, g


def _rows(q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Jacobian rows [K, 6] of residuals with gradient ``g`` w.r.t. the point ``q``, for xi = (v, omega)."""
    return torch.cat([g, torch.cross(q, g, dim=-1)], dim=-1)


def rgbd_odometry(src: View, ref: View | list[ReferenceLevel], init: np.ndarray,
                  cfg: OdometryConfig = OdometryConfig()) -> OdometryResult:
    """The motion source-camera -> reference-camera that aligns ``src`` onto ``ref`` (module docstring).

    ``src`` needs ``rgb`` and ``depth`` (0 = no depth); ``ref`` is an RGB-D view (any size) or its
    ``reference_pyramid`` (built once per keyframe); ``init`` is the [4, 4] starting motion (identity when
    the views were taken from about the same pose).  Raises ``LangfieldError`` when no level has
    ``cfg.min_points`` correspondences (nothing to align).
    """
    if src.rgb is None or src.depth is None:
        raise LangfieldError(f"rgbd odometry: the source view {src.name!r} needs both colour and depth")
    ref_pyr = reference_pyramid(ref, cfg.levels) if isinstance(ref, View) else ref
    n_lv = min(len(ref_pyr), _level_count(src, cfg.levels))
    src_pyr = [_source_level(downscale_view(src, 2 ** lv)) for lv in range(n_lv)]
    ref_name = ref.name if isinstance(ref, View) else "reference"
    R = torch.from_numpy(np.asarray(init, dtype=np.float64)[:3, :3]).float()
    t = torch.from_numpy(np.asarray(init, dtype=np.float64)[:3, 3]).float()
    wg = 1.0 / cfg.sigma_depth ** 2
    wc = cfg.color_weight / cfg.sigma_color ** 2
    total = 0
    solved = False
    for lv_i in reversed(range(n_lv)):
        lv, sl = ref_pyr[lv_i], src_pyr[lv_i]
        for _ in range(cfg.iterations_at(lv_i)):
            a = _Associations(lv, sl, R, t, cfg)
            if a.count < cfg.min_points:
                break
            w = _huber(a.r_geo, cfg.sigma_depth) * wg
            J = _rows(a.q, a.n)
            Jw = J * w[:, None]
            H = (Jw.T @ J).double()
            b = (Jw.T @ a.r_geo).double()
            if wc > 0:
                rc, gc = a.photometric(lv, sl)
                Jc = _rows(a.q, gc)
                Jcw = Jc * (_huber(rc, cfg.sigma_color) * wc)[:, None]
                H = H + (Jcw.T @ Jc).double()
                b = b + (Jcw.T @ rc).double()
            H = H + 1e-9 * torch.eye(6, dtype=H.dtype) * H.diagonal().mean()
            xi = -torch.linalg.solve(H, b)
            dR = so3_exp(xi[3:]).float()
            R = dR @ R
            t = dR @ t + xi[:3].float()
            total += 1
            solved = True
            if float(xi.norm()) < cfg.converge:
                break
    a = _Associations(ref_pyr[0], src_pyr[0], R, t, cfg)
    if not solved or a.count < cfg.min_points:
        raise LangfieldError(
            f"rgbd odometry: {a.count} correspondences between {src.name!r} and {ref_name!r} (need {cfg.min_points})"
        )
    T = np.eye(4)
    T[:3, :3] = R.double().numpy()
    T[:3, 3] = t.double().numpy()
    # Re-orthonormalise the float32 product of many small rotations.
    u_, _, vt = np.linalg.svd(T[:3, :3])
    T[:3, :3] = u_ @ vt
    rmse = float(a.r_geo.square().mean().sqrt())
    return OdometryResult(T, a.count / max(src_pyr[0].n_valid, 1), rmse, total)
