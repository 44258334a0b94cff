"""Camera-pose refinement during offline training (``reconstruct --optimize-poses``).

splatfacto's camera optimiser, on our pose gradients (``render`` differentiates the image with
respect to ``viewmats``): every training camera gets an SE(3) correction of 6 parameters,
a rotation as an axis-angle vector (so(3)) and a translation, both initialised at zero, and

    c2w_refined = c2w @ E(delta),    E(delta) = [[exp(omega^), t], [0, 1]]

i.e. the correction is applied on the right, in the camera's own frame (as nerfstudio's
``CameraOptimizer.apply_to_camera`` does).  On the right, a rotation turns the camera about
its own centre and a translation moves it along its own axes, so the parameters mean the same
thing whatever the world's origin and scale: on the left (world frame) a small rotation would
also move the camera by (distance to the world origin) x angle, coupling the six parameters
and making one learning rate wrong for cameras far from the origin.  For the world->camera
``viewmat = inv(c2w)`` this is ``viewmat_refined = inv(E) @ viewmat``.

The corrections have their own Adam (one group for rotations, one for translations, whose
learning rate is multiplied by the scene scale like the positions') with an exponentially
decaying learning rate and an optional L2 penalty.  ``refine_eval_poses`` fits the same
correction to held-out cameras with the Gaussians frozen (test-time pose optimisation): the
refined training cameras define the scene's frame, and held-out views are only comparable in
that frame.

Rule for ``--optimize-poses`` (measured with ``scripts/bench_pose_refine.py`` and a 160x120 variant): the
translation is parametrised as an orbit about a per-camera pivot at the harmonic-mean depth of the initial
Gaussians it sees (``pivot_depths``, ``orbit_rotation``; ``pose_orbit``).  In the plain coordinates a sideways
shift and a rotation move a distant scene's image almost alike, and Adam trades one for the other instead of
fitting the shift; in orbit coordinates the two move the image in near-independent ways.  The translation LR
is 3e-4 x scene scale: larger steps are noise-dominated.  What remains of the centre error is mostly along
the optical axes and matches a ~0.7% global scale drift of the camera set (a similarity gauge that only the
depth loss pins, weakly); warm-up with the Gaussians' geometry frozen was worse (the initial Gaussians,
back-projected from the perturbed poses, are inconsistent).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

import torch
from torch import Tensor

from langfield.geometry import skew, so3_exp  # noqa: F401 (re-exported: tests and scripts use them from here)
from langfield.train.losses import photometric_loss
from langfield.types import View

ADAM_EPS = 1e-15  # as for the Gaussians (trainer.ADAM_EPS); tiny gradients early in training


def so3_log_angle(r: Tensor) -> Tensor:
    """Rotation angle (radians) of rotation matrices [..., 3, 3]."""
    cos = ((r.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0) * 0.5).clamp(-1.0, 1.0)
    return torch.arccos(cos)


def correction_inverse(rot: Tensor, trans: Tensor) -> Tensor:
    """``inv(E)`` [..., 4, 4] of the corrections ``E = [[so3_exp(rot), trans], [0, 1]]``."""
    r = so3_exp(rot)
    rt = r.transpose(-1, -2)
    top = torch.cat([rt, -(rt @ trans[..., None])], dim=-1)
    bottom = torch.zeros(top.shape[:-2] + (1, 4), dtype=top.dtype, device=top.device)
    bottom[..., 0, 3] = 1.0
    return torch.cat([top, bottom], dim=-2)


def refine_viewmat(viewmat: Tensor, rot: Tensor, trans: Tensor) -> Tensor:
    """World->camera ``viewmat`` [4, 4] of ``c2w @ E``: ``inv(E) @ viewmat`` (differentiable in rot, trans)."""
    return correction_inverse(rot, trans).to(viewmat.dtype) @ viewmat


def orbit_rotation(rot: Tensor, trans: Tensor, pivot: Tensor) -> Tensor:
    """Rotation [..., 3] of the correction whose parameters are ``rot``, ``trans`` with pivot depth ``pivot`` [...].

    ``rot + (trans x z) / pivot``: to first order the camera moved by ``trans`` turns so that the point
    ``(0, 0, pivot)`` of its own frame stays on its optical axis (an orbit about that point); ``pivot = inf``
    gives ``rot`` exactly (the plain ``c2w @ E(rot, trans)`` parametrisation).
    """
    tx, ty = trans[..., 0], trans[..., 1]
    return rot + torch.stack([ty, -tx, torch.zeros_like(tx)], dim=-1) / pivot[..., None]


@torch.no_grad()
def pivot_depths(views: list[View], means: Tensor) -> Tensor:
    """Per view, the harmonic mean of the camera-space depths of the ``means`` [N, 3] inside its image.

    The depth at which a sideways camera shift and a rotation move the image alike (a shift moves a point at
    depth z by ``t / z``, a rotation everything by the same angle): the orbit's pivot.  Depths are clamped below
    at their 5th percentile so that a few Gaussians right in front of the camera do not pull it in; a view
    that sees no Gaussian gets ``inf`` (no orbit term).
    """
    out = torch.full((len(views),), math.inf, dtype=torch.float32, device=means.device)
    pts = means.detach().float()
    for i, v in enumerate(views):
        vm = v.viewmat.to(pts)
        cam = pts @ vm[:3, :3].T + vm[:3, 3]
        z = cam[:, 2]
        front = z > 1e-6
        k = v.K.to(pts)
        u = k[0, 0] * cam[:, 0] / z.clamp_min(1e-6) + k[0, 2]
        w = k[1, 1] * cam[:, 1] / z.clamp_min(1e-6) + k[1, 2]
        inside = front & (u >= 0) & (u < float(v.width)) & (w >= 0) & (w < float(v.height))
        if int(inside.sum()) == 0:
            continue
        zi = z[inside]
        zi = zi.clamp_min(float(torch.quantile(zi, 0.05)) if zi.numel() > 1 else float(zi[0]))
        out[i] = 1.0 / (1.0 / zi).mean()
    return out


def pose_errors(viewmats: Tensor, true_viewmats: Tensor) -> dict[str, float]:
    """Mean / max rotation (degrees) and camera-centre (scene units) errors between two sets of viewmats [C,4,4]."""
    rel = viewmats[:, :3, :3] @ true_viewmats[:, :3, :3].transpose(-1, -2)
    ang = torch.rad2deg(so3_log_angle(rel.double()))
    centres = -(viewmats[:, :3, :3].transpose(-1, -2) @ viewmats[:, :3, 3:])[..., 0]
    true_centres = -(true_viewmats[:, :3, :3].transpose(-1, -2) @ true_viewmats[:, :3, 3:])[..., 0]
    dist = (centres - true_centres).norm(dim=-1)
    return {"rot_deg_mean": float(ang.mean()), "rot_deg_max": float(ang.max()),
            "trans_mean": float(dist.mean()), "trans_max": float(dist.max())}


class CameraOptimizer:
    """Per-training-camera SE(3) corrections and their Adam (see the module docstring)."""

    def __init__(self, n_cameras: int, *, lr_rotation: float, lr_translation: float, final_factor: float,
                 l2: float, iterations: int, scene_scale: float, device: torch.device,
                 pivot: Optional[Tensor] = None) -> None:
        self.rot = torch.nn.Parameter(torch.zeros(n_cameras, 3, device=device))
        self.trans = torch.nn.Parameter(torch.zeros(n_cameras, 3, device=device))
        # Per-camera orbit pivot depth (``orbit_rotation``); inf = plain parametrisation.
        self.pivot = (torch.full((n_cameras,), math.inf, device=device) if pivot is None
                      else pivot.detach().to(device=device, dtype=torch.float32).clone())
        if tuple(self.pivot.shape) != (n_cameras,):
            raise ValueError(f"{tuple(self.pivot.shape)} pivot depths for {n_cameras} cameras")
        self.lr_rotation = float(lr_rotation)
        self.lr_translation = float(lr_translation) * float(scene_scale)
        self.final_factor = float(final_factor)
        self.l2 = float(l2)
        self.scene_scale = float(scene_scale)
        self.iterations = max(int(iterations), 1)
        self.optimizer = torch.optim.Adam(
            [{"params": [self.rot], "lr": self.lr_rotation, "name": "pose_rotation"},
             {"params": [self.trans], "lr": self.lr_translation, "name": "pose_translation"}],
            eps=ADAM_EPS,
        )

    @property
    def n_cameras(self) -> int:
        return int(self.rot.shape[0])

    def lr_factor(self, step: int) -> float:
        """Exponential decay from 1 at step 0 to ``final_factor`` at the last step (like the positions' LR)."""
        t = min(max(step / self.iterations, 0.0), 1.0)
        return math.exp(t * math.log(self.final_factor))

    def applied_rotation(self, idx: "int | slice") -> Tensor:
        """The rotation part of camera ``idx``'s correction ``E``: ``rot`` plus the orbit term of ``trans``."""
        return orbit_rotation(self.rot[idx], self.trans[idx], self.pivot[idx])

    def apply(self, view: View, idx: int) -> View:
        """``view`` with its viewmat refined by camera ``idx``'s correction (differentiable)."""
        return dataclasses.replace(view, viewmat=refine_viewmat(view.viewmat, self.applied_rotation(idx),
                                                                self.trans[idx]))

    def penalty(self, idx: int) -> Optional[Tensor]:
        """L2 penalty of camera ``idx``'s correction (translation in scene scales), or None when off."""
        if self.l2 <= 0:
            return None
        return self.l2 * ((self.rot[idx] ** 2).sum() + ((self.trans[idx] / self.scene_scale) ** 2).sum())

    def step(self, step: int) -> None:
        """One Adam step at the learning rate of ``step`` (0-based); clears the gradients."""
        f = self.lr_factor(step)
        for group in self.optimizer.param_groups:
            group["lr"] = (self.lr_rotation if group["name"] == "pose_rotation" else self.lr_translation) * f
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def refined_views(self, views: list[View]) -> list[View]:
        """The training views with their refined (detached) viewmats, in order."""
        if len(views) != self.n_cameras:
            raise ValueError(f"{len(views)} views for {self.n_cameras} pose corrections")
        return [dataclasses.replace(v, viewmat=refine_viewmat(v.viewmat, self.applied_rotation(i),
                                                              self.trans[i]).contiguous())
                for i, v in enumerate(views)]

    def state_dict(self) -> dict[str, Any]:
        return {"rot": self.rot.detach().clone(), "trans": self.trans.detach().clone(),
                "pivot": self.pivot.clone(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if tuple(state["rot"].shape) != tuple(self.rot.shape):
            raise ValueError(f"checkpoint has {state['rot'].shape[0]} pose corrections, the run {self.n_cameras}")
        with torch.no_grad():
            self.rot.copy_(state["rot"])
            self.trans.copy_(state["trans"])
            # Checkpoints from before the orbit parametrisation were trained without it (inf).
            self.pivot = state.get("pivot", torch.full_like(self.pivot, math.inf)).to(self.pivot).clone()
        self.optimizer.load_state_dict(state["optimizer"])


def refine_eval_poses(params: torch.nn.ParameterDict, views: list[View], *, steps: int, lr_rotation: float,
                      lr_translation: float, sh_degree: int, backend: str, ssim_lambda: float = 0.2,
                      orbit: bool = False) -> list[View]:
    """Test-time pose optimisation: each view's SE(3) correction fitted to its image, Gaussians frozen.

    Black background (as evaluation renders), full resolution, the training loss, Adam with the
    learning rate decayed 10x over ``steps``.  Deterministic (no random draws).  With ``orbit`` the
    translation is parametrised as an orbit about each view's ``pivot_depths`` point, as in training.
    Returns the views with refined viewmats; ``steps <= 0`` returns them unchanged.
    """
    from langfield.render.views import render_params

    if steps <= 0 or not views:
        return list(views)
    frozen = torch.nn.ParameterDict({k: torch.nn.Parameter(v.detach(), requires_grad=False)
                                     for k, v in params.items()})
    pivots = (pivot_depths(views, frozen["means"]) if orbit
              else torch.full((len(views),), math.inf, device=frozen["means"].device))
    out: list[View] = []
    for view, pivot in zip(views, pivots.to(views[0].viewmat.device)):
        if view.rgb is None:
            out.append(view)
            continue
        rot = torch.zeros(3, device=view.viewmat.device, requires_grad=True)
        trans = torch.zeros(3, device=view.viewmat.device, requires_grad=True)
        opt = torch.optim.Adam([{"params": [rot], "lr": lr_rotation}, {"params": [trans], "lr": lr_translation}],
                               eps=ADAM_EPS)
        bg = torch.zeros(3, device=view.viewmat.device)
        for i in range(steps):
            f = math.exp((i / steps) * math.log(0.1))
            opt.param_groups[0]["lr"], opt.param_groups[1]["lr"] = lr_rotation * f, lr_translation * f
            refined = dataclasses.replace(view, viewmat=refine_viewmat(view.viewmat, orbit_rotation(rot, trans, pivot),
                                                                       trans))
            rendered = render_params(frozen, refined, sh_degree=sh_degree, background=bg, backend=backend,
                                     render_depth=False)
            loss = photometric_loss(rendered.rgb[0], view.rgb, ssim_lambda)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            vm = refine_viewmat(view.viewmat, orbit_rotation(rot, trans, pivot), trans)
            out.append(dataclasses.replace(view, viewmat=vm.contiguous()))
    return out


def perturb_views(views: list[View], rot_deg: float, trans: float, generator: torch.Generator) -> list[View]:
    """Copies of ``views`` whose poses are off by exactly ``rot_deg`` degrees about a random axis and
    ``trans`` (scene units) in a random direction, applied as ``c2w @ E`` (for pose-refinement benchmarks)."""
    out = []
    for v in views:
        axis = torch.randn(3, generator=generator, dtype=torch.float64)
        axis = axis / axis.norm()
        step = torch.randn(3, generator=generator, dtype=torch.float64)
        step = step / step.norm()
        vm = refine_viewmat(v.viewmat.double(), axis * math.radians(rot_deg), step * trans)
        out.append(dataclasses.replace(v, viewmat=vm.to(v.viewmat.dtype).contiguous()))
    return out
