"""Per-frame camera tracking against the current map: dense RGB-D odometry, then optional photometric refinement.

1. **Initial estimate** (``cfg.tracker torch``): the constant-velocity prediction, refined by dense
   RGB-D odometry (``odometry.rgbd_odometry``: multi-scale Gauss-Newton, point-to-plane ICP +
   photometric term) against a reference: by default the last keyframe's own RGB-D pixels at its
   tracked pose (``track_reference keyframe``; its pyramid is built once and reused by every frame
   tracked against it), or the map rendered at the prediction (``map``: frame-to-model, where only
   pixels with rendered alpha above ``odo_alpha_min`` are reference pixels).  Measured on the
   synthetic 200-frame sequence, the young map's rendered depth is centimetres off on slanted
   surfaces (each Gaussian renders its centre's depth), the raw keyframe depth is millimetre-exact,
   so keyframe tracking drifts far less (docs/slam.md).  ``none`` keeps the prediction.
2. **Refinement** (``cfg.track_iters`` > 0, MonoGS / SplaTAM style): Adam on an se(3) correction
   applied in the camera's own frame (``train.camera_opt.refine_viewmat``: ``c2w @ E(delta)``),
   minimising colour L1 plus depth L1 between the frame and the map rendered from the pose, with the
   Gaussians frozen, over pixels the map covers (rendered alpha above ``track_alpha_min``).  The
   best pose seen is kept (the last Adam step may overshoot).

The residual (lost-tracking test) and coverage (keyframe test) are those of the refinement when it
runs, else ``warp_residual``: colour L1 + depth L1 of the frame moved by the odometry's pose into
its reference, over every source pixel that lands on a reference pixel with depth (no outlier
rejection: a frame that sees something else, e.g. a lens cap, gets a large residual, not a few
inliers); inf when none lands, which ``run`` reports as lost tracking at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from langfield.frontend.slam.config import SlamConfig
from langfield.frontend.slam.odometry import ReferenceLevel, reference_pyramid, rgbd_odometry, vertex_map
from langfield.gaussians.params import activate, sh0_to_rgb
from langfield.render import render
from langfield.train.camera_opt import refine_viewmat
from langfield.types import LangfieldError, View


@dataclass
class FrozenMap:
    """Render-ready, gradient-free Gaussians (activated once per frame, reused by every tracking step)."""

    means: torch.Tensor
    quats: torch.Tensor
    scales: torch.Tensor
    opacities: torch.Tensor
    colors: torch.Tensor
    """[N, 3] colours (the DC term: slam maps are SH degree 0)."""

    @staticmethod
    def of(params: torch.nn.ParameterDict) -> "FrozenMap":
        with torch.no_grad():
            g = activate(params)
            return FrozenMap(g.means.detach(), g.quats.detach(), g.scales.detach(), g.opacities.detach(),
                             map_colors(params).detach())


def map_colors(params: torch.nn.ParameterDict) -> torch.Tensor:
    """[N, 3] colours of a degree-0 map, as the SH evaluation of a saved scene gives them (clamped at 0)."""
    return sh0_to_rgb(params["sh0"][:, 0, :]).clamp_min(0.0)


def render_view(g: FrozenMap | object, viewmat: torch.Tensor, view: View, backend: str, colors: Optional[torch.Tensor] = None):
    """Render ``g`` (FrozenMap or activated Gaussians with ``colors``) into ``view``'s camera at ``viewmat``."""
    return render(
        g.means, g.quats, g.scales, g.opacities, viewmat[None], view.K[None], int(view.width), int(view.height),
        colors=g.colors if colors is None else colors, render_depth=True, backend=backend,
    )


@dataclass
class TrackResult:
    """Outcome of tracking one frame."""

    c2w: np.ndarray
    """[4, 4] float64 estimated camera-to-world."""
    residual: float
    """Tracking loss at the kept pose (colour L1 + weighted depth L1 over covered pixels; inf: nothing to compare)."""
    coverage: float
    """Fraction of the frame's valid-depth pixels the map covers at the kept pose."""
    iterations: int
    """Adam steps taken (0 when only the initial estimate ran)."""
    odometry_iterations: int = 0
    """Gauss-Newton iterations of the initial estimate (0 for ``tracker none``)."""


def constant_velocity(c2w_prev: np.ndarray, c2w_prev2: Optional[np.ndarray]) -> np.ndarray:
    """Next pose assuming the last relative motion repeats: ``prev @ (prev2^-1 @ prev)``."""
    if c2w_prev2 is None:
        return c2w_prev.copy()
    return c2w_prev @ (np.linalg.inv(c2w_prev2) @ c2w_prev)


def tracking_loss(out, target: View, depth_weight: float, alpha_min: float) -> tuple[torch.Tensor, float]:
    """(loss, coverage) of one render against the frame: L1 colour + ``depth_weight`` * L1 depth, covered pixels."""
    alpha = out.alpha[0, ..., 0]
    depth_t = target.depth[..., 0]
    valid = depth_t > 0
    covered = (alpha.detach() > alpha_min)
    n_valid = int(valid.sum())
    coverage = float((covered & valid).sum()) / max(n_valid, 1)
    mask = covered & valid if n_valid else covered
    n = mask.sum().clamp_min(1)
    colour = ((out.rgb[0] - target.rgb).abs().sum(-1) * mask).sum() / n
    loss = colour
    if depth_weight > 0 and n_valid:
        loss = loss + depth_weight * ((out.depth[0, ..., 0] - depth_t).abs() * mask).sum() / n
    return loss, coverage


@torch.no_grad()
def rendered_reference(g: FrozenMap, c2w: np.ndarray, like: View, cfg: SlamConfig) -> View:
    """The map rendered at ``c2w`` into ``like``'s camera as an RGB-D view (depth 0 where alpha < odo_alpha_min)."""
    vm = torch.from_numpy(np.linalg.inv(c2w)).to(g.means.dtype)
    out = render_view(g, vm, like, cfg.track_backend)
    alpha = out.alpha[0]
    ok = alpha > cfg.odo_alpha_min
    depth = torch.where(ok, out.depth[0], torch.zeros_like(alpha))
    rgb = out.rgb[0] / alpha.clamp_min(1e-6)  # un-composite the black background at partly covered pixels
    return View(f"map@{like.name}", vm, like.K, like.width, like.height, rgb=rgb.clamp(0.0, 1.0), depth=depth)


@torch.no_grad()
def warp_residual(src: View, ref: View, T: np.ndarray, depth_weight: float) -> tuple[float, float]:
    """(residual, coverage) of ``src`` moved by ``T`` (source -> reference camera) against ``ref``.

    Every valid source pixel whose point projects onto a reference pixel with depth counts: colour L1
    (summed over RGB) + ``depth_weight`` * |depth difference| (metres), averaged; inf when none does.
    """
    d = src.depth[..., 0]
    valid = d > 0
    n_valid = int(valid.sum())
    p = vertex_map(d, src.K)[valid]
    Tt = torch.from_numpy(T).to(p.dtype)
    q = p @ Tt[:3, :3].T + Tt[:3, 3]
    z = q[:, 2].clamp_min(1e-6)
    u = torch.floor(ref.K[0, 0] * q[:, 0] / z + ref.K[0, 2]).long()
    v = torch.floor(ref.K[1, 1] * q[:, 1] / z + ref.K[1, 2]).long()
    inb = (q[:, 2] > 1e-6) & (u >= 0) & (u < ref.width) & (v >= 0) & (v < ref.height)
    u, v = u[inb], v[inb]
    zr = ref.depth[v, u, 0]
    hit = zr > 0
    if not bool(hit.any()):
        return float("inf"), 0.0
    colour = (ref.rgb[v, u][hit] - src.rgb[valid][inb][hit]).abs().sum(-1)
    depth = (zr[hit] - q[inb][hit][:, 2]).abs()
    return float((colour + depth_weight * depth).mean()), int(hit.sum()) / max(n_valid, 1)


class PyramidCache:
    """The reference pyramid of the last keyframe tracked against (one slot: frames track the newest keyframe).

    Owned by one SLAM run (not module state), so two runs in one process never share or pin each other's
    keyframes."""

    def __init__(self) -> None:
        self._view: Optional[View] = None
        self._levels = 0
        self._pyramid: list[ReferenceLevel] = []

    def get(self, view: View, levels: int) -> list[ReferenceLevel]:
        if view is not self._view or levels != self._levels:
            self._view, self._levels, self._pyramid = view, levels, reference_pyramid(view, levels)
        return self._pyramid


def initial_estimate(g: FrozenMap, target: View, c2w_pred: np.ndarray, cfg: SlamConfig,
                     keyframe: Optional[View] = None, pyramids: Optional[PyramidCache] = None) -> TrackResult:
    """The constant-velocity prediction ``c2w_pred`` refined by RGB-D odometry against the reference.

    The reference is ``keyframe`` (its stored pixels at its tracked pose) for ``track_reference
    keyframe``, else the map rendered at the prediction.
    """
    if cfg.track_reference == "keyframe":
        if keyframe is None:
            raise LangfieldError("track_reference keyframe: no keyframe given to track against")
        ref, c2w_ref = keyframe, np.linalg.inv(keyframe.viewmat.double().numpy())
    else:
        ref, c2w_ref = rendered_reference(g, c2w_pred, target, cfg), c2w_pred
    init = np.linalg.inv(c2w_ref) @ c2w_pred
    T = init
    iters = 0
    if cfg.tracker == "torch":
        try:
            cached = pyramids is not None and cfg.track_reference == "keyframe"
            pyr = pyramids.get(ref, cfg.odo_levels) if cached else ref
            r = rgbd_odometry(target, pyr, init, cfg.odometry())
            T, iters = r.transform, r.iterations
        except LangfieldError:
            pass  # nothing of the frame lands on the reference: keep the prediction, whose residual says so
    residual, coverage = warp_residual(target, ref, T, cfg.track_depth_weight)
    return TrackResult(c2w=c2w_ref @ T, residual=residual, coverage=coverage, iterations=0, odometry_iterations=iters)


def refine_against_map(g: FrozenMap, target: View, c2w_init: np.ndarray, cfg: SlamConfig) -> TrackResult:
    """``cfg.track_iters`` Adam steps on the pose against the map rendered from it (see the module docstring)."""
    vm0 = torch.from_numpy(np.linalg.inv(c2w_init)).to(g.means.dtype)
    rot = torch.zeros(3, requires_grad=True)
    trans = torch.zeros(3, requires_grad=True)
    opt = torch.optim.Adam([{"params": [rot], "lr": cfg.track_lr_rotation},
                            {"params": [trans], "lr": cfg.track_lr_translation}])
    best = (float("inf"), np.zeros(3), np.zeros(3), 0.0)
    steps = max(cfg.track_iters, 1)
    for it in range(steps):
        # Exponential decay to 1/10: large early steps reach the pose, small late ones settle on it.
        decay = 0.1 ** (it / steps)
        opt.param_groups[0]["lr"] = cfg.track_lr_rotation * decay
        opt.param_groups[1]["lr"] = cfg.track_lr_translation * decay
        vm = refine_viewmat(vm0, rot, trans)
        out = render_view(g, vm, target, cfg.track_backend)
        loss, coverage = tracking_loss(out, target, cfg.track_depth_weight, cfg.track_alpha_min)
        value = float(loss.detach()) if coverage > 0 else float("inf")  # nothing compared is no evidence
        if value < best[0]:
            best = (value, rot.detach().numpy().copy(), trans.detach().numpy().copy(), coverage)
        if it == steps - 1:
            break
        if not loss.requires_grad:  # a backend that detaches viewmats: never track with a silent no-op
            raise LangfieldError(
                f"rasterizer backend {out.extras.get('backend', cfg.track_backend)!r} gives no gradient w.r.t. "
                "the camera pose; track with --track-backend torch"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _, r, t, coverage = best
    with torch.no_grad():
        vm = refine_viewmat(vm0.double(), torch.from_numpy(r).double(), torch.from_numpy(t).double())
    c2w = np.linalg.inv(vm.numpy())
    return TrackResult(c2w=c2w, residual=best[0], coverage=coverage, iterations=steps)


def track_frame(g: FrozenMap, target: View, c2w_init: np.ndarray, cfg: SlamConfig,
                keyframe: Optional[View] = None, pyramids: Optional[PyramidCache] = None) -> TrackResult:
    """Track ``target`` (the frame at ``track_downscale``) from the prediction ``c2w_init`` (module docstring);
    ``keyframe`` is the last keyframe's view (the odometry's reference for ``track_reference keyframe``), whose
    pyramid ``pyramids`` keeps between frames (None: built for this frame)."""
    use_odometry = cfg.tracker != "none" or cfg.track_iters == 0
    est = initial_estimate(g, target, c2w_init, cfg, keyframe, pyramids) if use_odometry else None
    if cfg.track_iters == 0 and est is not None:
        return est
    ref = refine_against_map(g, target, est.c2w if est is not None else c2w_init, cfg)
    if est is not None:
        ref.odometry_iterations = est.odometry_iterations
    return ref
