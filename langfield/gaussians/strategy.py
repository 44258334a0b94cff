"""Adaptive density control (clone / split / prune / opacity reset) as a dataclass.

The strategy holds only its configuration; the running statistics live in a
plain ``state`` dict the caller keeps (and may checkpoint: it holds only
tensors, floats and ints).  Usage::

    strategy = DefaultStrategy()
    strategy.check_sanity(params, optimizers)
    state = strategy.initialize_state(scene_scale)
    for step in range(n_steps):
        out = render(..., absgrad=strategy.absgrad)  # RenderOutput with means2d, radii (, absgrad)
        info = {"means2d": out.means2d, "radii": out.radii, "absgrad": out.absgrad,
                "width": W, "height": H, "n_cameras": C}
        strategy.step_pre_backward(params, optimizers, state, step, info)
        loss.backward()
        strategy.step_post_backward(params, optimizers, state, step, info)
        for opt in optimizers.values(): opt.step(); opt.zero_grad()

``step_post_backward`` may replace the tensors in ``params`` (and in the
optimizers), so never hold on to a parameter across it.  ``Strategy`` is the
protocol a trainer relies on; ``DefaultStrategy`` implements it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, MutableMapping, Optional, Protocol, runtime_checkable

import torch
import tyro

from langfield.gaussians import ops
from langfield.gaussians.ops import Optimizers, Params
from langfield.types import ConfigError

REQUIRED_KEYS = ("means", "scales", "quats", "opacities")
# grow_grad2d to use with absgrad=True (the AbsGS paper's and gsplat's value): the summed
# per-pixel |gradient| is larger than the mean gradient the default 0.0002 is meant for.
ABSGRAD_GROW_GRAD2D = 0.0008


@dataclass
class RefineStats:
    """What one ``step_post_backward`` call changed."""

    n_duplicated: int = 0
    """Gaussians cloned (each adds one)."""
    n_split: int = 0
    """Gaussians split into two (each adds one net)."""
    n_pruned: int = 0
    """Gaussians removed."""
    opacity_reset: bool = False
    """Whether opacities were reset this step."""
    n_gaussians: int = 0
    """Number of Gaussians after the step."""


@runtime_checkable
class Strategy(Protocol):
    """What a trainer relies on in a densification strategy (see the module docstring for the call order).

    A strategy holds configuration only: its running statistics live in the
    ``state`` dict from ``initialize_state`` (tensors, floats and ints, so a
    checkpoint can hold it).  ``info`` of a step carries "means2d" [C, N, 2] and
    "radii" [C, N] of the render, "width", "height", "n_cameras" and "absgrad"
    (``RenderOutput.absgrad``: [C, N, 2], or None when not rendered).
    """

    absgrad: bool
    """Whether ``step_post_backward`` reads info["absgrad"]: the trainer then renders with ``absgrad=True``."""

    def check_sanity(self, params: Params, optimizers: Optimizers) -> None:
        """Raise ValueError when params/optimizers break the conventions of ``langfield.gaussians.ops``."""
        ...

    def initialize_state(self, scene_scale: float = 1.0) -> dict[str, Any]:
        """A fresh running state for a scene of extent ``scene_scale``."""
        ...

    def step_pre_backward(
        self, params: Params, optimizers: Optimizers, state: MutableMapping[str, Any], step: int, info: dict
    ) -> None:
        """Called after the render, before ``loss.backward()``."""
        ...

    def step_post_backward(
        self, params: Params, optimizers: Optimizers, state: MutableMapping[str, Any], step: int, info: dict
    ) -> RefineStats:
        """Called after ``loss.backward()`` (and the optimizer step); may replace every tensor in ``params``."""
        ...


@dataclass
class DefaultStrategy:
    """The 3DGS density control heuristics (Kerbl et al. 2023), as in gsplat's DefaultStrategy.

    Every ``refine_every`` steps inside ``(refine_start_iter, refine_stop_iter)``
    Gaussians whose mean screen-space gradient exceeds ``grow_grad2d`` are
    cloned when small (max scale <= ``grow_scale3d * scene_scale``) or split
    when large; then transparent (and, after the first opacity reset, huge)
    Gaussians are pruned.  Every ``reset_every`` steps opacities are clamped
    to ``2 * prune_opa``.
    """

    prune_opa: float = 0.005
    """Gaussians with opacity below this are pruned."""
    grow_grad2d: float = 0.0002
    """Mean normalised screen-space gradient norm above which a Gaussian is cloned or split."""
    grow_scale3d: float = 0.01
    """Max 3D scale (as a fraction of scene_scale) up to which a Gaussian is cloned rather than split."""
    grow_scale2d: float = 0.05
    """Max screen radius (fraction of the larger image side) above which a Gaussian is split
    (only while step < refine_scale2d_stop_iter)."""
    prune_scale3d: float = 0.1
    """Max 3D scale (fraction of scene_scale) above which a Gaussian is pruned (after the first reset)."""
    prune_scale2d: float = 0.15
    """Max screen radius (fraction of the larger image side) above which a Gaussian is pruned
    (only while step < refine_scale2d_stop_iter)."""
    refine_scale2d_stop_iter: int = 0
    """Use the screen-radius criteria before this step; 0 disables them (as 3DGS effectively does)."""
    refine_start_iter: int = 500
    """Refinement happens only at steps strictly after this one."""
    refine_stop_iter: int = 15_000
    """No statistics, refinement or opacity reset from this step on."""
    reset_every: int = 3000
    """Clamp opacities to 2 * prune_opa every this many steps."""
    refine_every: int = 100
    """Clone/split/prune every this many steps."""
    pause_refine_after_reset: int = 0
    """Skip refinement for this many steps after each opacity reset (e.g. the number of training images)."""
    absgrad: bool = False
    """Grow by the AbsGS statistic (``RenderOutput.absgrad``, given as ``info["absgrad"]``) instead of
    ``means2d.grad``; raise grow_grad2d with it (ABSGRAD_GROW_GRAD2D)."""
    revised_opacity: bool = False
    """Give split children opacity 1 - sqrt(1 - o) (arXiv:2404.06109)."""
    max_gaussians: Annotated[Optional[int], tyro.conf.arg(aliases=("--max-gaussians",))] = None
    """Upper bound on the number of Gaussians: growth beyond it keeps the highest-gradient candidates."""
    seed: int = 0
    """Seed of the split offsets (each refinement uses seed + its index, so runs are reproducible)."""
    verbose: bool = False
    """Print what each refinement did."""

    def __post_init__(self) -> None:
        if self.max_gaussians is not None and self.max_gaussians < 1:
            raise ConfigError(f"max_gaussians must be >= 1 (or None for no cap), got {self.max_gaussians}")
        if self.refine_every < 1 or self.reset_every < 1:
            raise ConfigError(f"refine_every and reset_every must be >= 1, got {self.refine_every}, {self.reset_every}")

    def initialize_state(self, scene_scale: float = 1.0) -> dict[str, Any]:
        """Fresh running state; per-Gaussian tensors are created on the first step (right device)."""
        if scene_scale <= 0:
            raise ValueError(f"scene_scale must be positive, got {scene_scale}")
        return {
            "grad2d": None,  # [N] sum of normalised screen-gradient norms
            "count": None,  # [N] number of times visible
            "radii": None,  # [N] max normalised screen radius (only with refine_scale2d_stop_iter)
            "scene_scale": float(scene_scale),
            "n_refines": 0,  # refinements done so far (seeds the split offsets)
        }

    def check_sanity(self, params: Params, optimizers: Optimizers) -> None:
        """Check the params/optimizers convention the ops rely on; raise ValueError if broken."""
        for key in REQUIRED_KEYS:
            if key not in params:
                raise ValueError(f"params lack required key {key!r}")
        n = params["means"].shape[0]
        for key, p in params.items():
            if p.shape[0] != n:
                raise ValueError(f"params[{key!r}] has {p.shape[0]} rows, means has {n}")
        trainable = {k for k, p in params.items() if p.requires_grad}
        if trainable != set(optimizers.keys()):
            raise ValueError(
                f"optimizers {sorted(optimizers)} must match the trainable params {sorted(trainable)}"
            )
        for key, opt in optimizers.items():
            groups = opt.param_groups
            if len(groups) != 1 or len(groups[0]["params"]) != 1 or groups[0]["params"][0] is not params[key]:
                raise ValueError(f"optimizer for {key!r} must have one param group holding exactly params[{key!r}]")

    def step_pre_backward(
        self, params: Params, optimizers: Optimizers, state: MutableMapping[str, Any], step: int, info: dict
    ) -> None:
        """Ask autograd to keep the gradient of ``info["means2d"]`` (call before ``loss.backward()``)."""
        means2d = info.get("means2d")
        if not isinstance(means2d, torch.Tensor) or not means2d.requires_grad:
            raise ValueError('info["means2d"] must be a tensor that requires grad (render outside no_grad)')
        means2d.retain_grad()

    def step_post_backward(
        self, params: Params, optimizers: Optimizers, state: MutableMapping[str, Any], step: int, info: dict
    ) -> RefineStats:
        """Accumulate statistics and, on schedule, densify/prune/reset (call after ``loss.backward()``).

        ``info``: "means2d" [C, N, 2] (with .grad), "radii" [C, N] int (0 = not
        visible), "width", "height", "n_cameras"; with ``absgrad`` also "absgrad"
        [C, N, 2] (the render's ``RenderOutput.absgrad``, filled by the backward).
        """
        stats = RefineStats(n_gaussians=params["means"].shape[0])
        if step >= self.refine_stop_iter:
            return stats
        self._update_state(params, state, info)

        if (
            step > self.refine_start_iter
            and step % self.refine_every == 0
            and step % self.reset_every >= self.pause_refine_after_reset
        ):
            stats.n_duplicated, stats.n_split = self._grow(params, optimizers, state, step)
            stats.n_pruned = self._prune(params, optimizers, state, step)
            state["n_refines"] = int(state.get("n_refines", 0)) + 1
            for key in ("grad2d", "count", "radii"):
                if state.get(key) is not None:
                    state[key].zero_()
            if self.verbose:
                print(
                    f"step {step}: cloned {stats.n_duplicated}, split {stats.n_split}, "
                    f"pruned {stats.n_pruned}, now {params['means'].shape[0]} Gaussians"
                )

        if step > 0 and step % self.reset_every == 0:
            ops.reset_opacity(params, optimizers, state, value=2.0 * self.prune_opa)
            stats.opacity_reset = True
            if self.verbose:
                print(f"step {step}: opacities reset to <= {2.0 * self.prune_opa}")
        stats.n_gaussians = params["means"].shape[0]
        return stats

    def _update_state(self, params: Params, state: MutableMapping[str, Any], info: dict) -> None:
        for key in ("means2d", "radii", "width", "height", "n_cameras"):
            if key not in info:
                raise ValueError(f"info lacks {key!r}")
        means2d = info["means2d"]
        if self.absgrad:
            grad = info.get("absgrad")
            if grad is None:
                raise ValueError('info["absgrad"] is missing: render with absgrad=True and pass RenderOutput.absgrad')
        else:
            if not (means2d.is_leaf or means2d.retains_grad):
                raise ValueError("means2d.grad is not kept: call step_pre_backward before loss.backward()")
            grad = means2d.grad
            if grad is None:
                raise ValueError("means2d.grad is missing: call step_pre_backward before loss.backward()")
        n = params["means"].shape[0]
        radii = info["radii"]
        if grad.ndim != 3 or grad.shape[1:] != (n, 2) or radii.shape != grad.shape[:2]:
            raise ValueError(
                f"means2d grad {tuple(grad.shape)} / radii {tuple(radii.shape)} do not match [C, {n}, 2] / [C, {n}]"
            )
        # Gradients w.r.t. pixel positions scaled to normalised device
        # coordinates ([-1, 1] across the image) and by the batch size, so the
        # threshold does not depend on resolution or cameras per step.
        scale = grad.new_tensor([info["width"] / 2.0, info["height"] / 2.0]) * float(info["n_cameras"])
        grad = grad.detach() * scale
        device = grad.device
        if state.get("grad2d") is None or state["grad2d"].shape[0] != n:
            state["grad2d"] = torch.zeros(n, device=device)
            state["count"] = torch.zeros(n, device=device)
        if self.refine_scale2d_stop_iter > 0 and (state.get("radii") is None or state["radii"].shape[0] != n):
            state["radii"] = torch.zeros(n, device=device)

        visible = radii > 0  # [C, N]
        gs_ids = torch.nonzero(visible, as_tuple=True)[1]  # one entry per (camera, Gaussian) seen
        state["grad2d"].index_add_(0, gs_ids, grad[visible].norm(dim=-1).to(state["grad2d"].dtype))
        state["count"].index_add_(0, gs_ids, torch.ones_like(gs_ids, dtype=state["count"].dtype))
        if self.refine_scale2d_stop_iter > 0:
            norm_r = radii[visible].to(state["radii"].dtype) / float(max(info["width"], info["height"]))
            state["radii"].scatter_reduce_(0, gs_ids, norm_r, reduce="amax", include_self=True)

    @torch.no_grad()
    def _grow(
        self, params: Params, optimizers: Optimizers, state: MutableMapping[str, Any], step: int
    ) -> tuple[int, int]:
        n = params["means"].shape[0]
        avg_grad = state["grad2d"] / state["count"].clamp_min(1.0)
        high = avg_grad > self.grow_grad2d
        small = torch.exp(params["scales"]).max(dim=-1).values <= self.grow_scale3d * state["scene_scale"]
        is_dupli = high & small
        is_split = high & ~small
        if step < self.refine_scale2d_stop_iter:
            is_split |= state["radii"] > self.grow_scale2d
        if self.max_gaussians is not None:
            is_dupli, is_split = self._cap_growth(is_dupli, is_split, avg_grad, n)

        n_dupli = ops.duplicate(params, optimizers, state, is_dupli)
        # Clones are appended at the end and are never split in the same step.
        is_split = torch.cat([is_split, is_split.new_zeros(n_dupli)])
        gen = torch.Generator().manual_seed(self.seed + int(state.get("n_refines", 0)))
        n_split = ops.split(
            params, optimizers, state, is_split, generator=gen, revised_opacity=self.revised_opacity
        )
        return n_dupli, n_split

    def _cap_growth(
        self, is_dupli: torch.Tensor, is_split: torch.Tensor, avg_grad: torch.Tensor, n: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Keep only as many grow candidates as fit under max_gaussians, highest gradient first."""
        assert self.max_gaussians is not None
        budget = max(0, self.max_gaussians - n)
        candidate = is_dupli | is_split
        n_candidates = int(candidate.sum())
        if n_candidates <= budget:
            return is_dupli, is_split
        score = torch.where(candidate, avg_grad, torch.full_like(avg_grad, -math.inf))
        keep = torch.zeros_like(candidate)
        if budget > 0:
            # Stable sort so ties resolve by index, keeping the choice deterministic.
            order = torch.sort(score, descending=True, stable=True).indices[:budget]
            keep[order] = True
        return is_dupli & keep, is_split & keep

    @torch.no_grad()
    def _prune(self, params: Params, optimizers: Optimizers, state: MutableMapping[str, Any], step: int) -> int:
        is_prune = torch.sigmoid(params["opacities"].flatten()) < self.prune_opa
        # Size pruning only after the first opacity reset, as 3DGS does: early
        # on, large Gaussians are still being split.
        if step > self.reset_every:
            too_big = torch.exp(params["scales"]).max(dim=-1).values > self.prune_scale3d * state["scene_scale"]
            if step < self.refine_scale2d_stop_iter:
                too_big |= state["radii"] > self.prune_scale2d
            is_prune |= too_big
        return ops.remove(params, optimizers, state, is_prune)
