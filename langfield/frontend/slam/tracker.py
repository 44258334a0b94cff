"""Per-frame camera tracking against the current map (MonoGS / SplaTAM style).

The pose starts from a constant-velocity prediction and is refined by Adam on an se(3)
correction applied in the camera's own frame (``train.camera_opt.refine_viewmat``:
``c2w @ E(delta)``), minimising colour L1 plus depth L1 between the frame and the map rendered
from the pose, with the Gaussians frozen.  Only pixels the map covers (rendered alpha above
``track_alpha_min``) count, so unmapped regions at the border of a new view do not pull the pose.
The best pose seen during the refinement is kept (the last Adam step may overshoot).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from langfield.frontend.slam.config import SlamConfig
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
    """Tracking loss at the kept pose (colour L1 + weighted depth L1 over covered pixels)."""
    coverage: float
    """Fraction of the frame's valid-depth pixels the map covers at the kept pose (alpha > 0.5)."""
    iterations: int
    """Adam steps taken."""


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


def track_frame(g: FrozenMap, target: View, c2w_init: np.ndarray, cfg: SlamConfig) -> TrackResult:
    """Refine ``c2w_init`` so that the map rendered from it matches ``target`` (see module docstring)."""
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
        if it == cfg.track_iters - 1 or cfg.track_iters == 0:
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
    return TrackResult(c2w=c2w, residual=best[0], coverage=coverage, iterations=max(cfg.track_iters, 1))

