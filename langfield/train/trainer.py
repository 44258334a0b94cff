"""The offline optimisation loop over in-memory training views.

``Trainer`` owns parameters, optimizers, strategy state and the seeded view
generator; ``state_dict``/``load_state_dict`` capture all of it so that a
resumed run continues exactly (same parameters as an uninterrupted run).
Loading data, initialisation and writing the scene live in ``reconstruct.py``.
"""

from __future__ import annotations

import math
import random
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from langfield.gaussians.params import PARAM_KEYS
from langfield.gaussians.strategy import Strategy
from langfield.train.camera_opt import CameraOptimizer, pivot_depths, refine_eval_poses
from langfield.train.checkpoint import capture_rng_states, restore_rng_states, save_checkpoint
from langfield.train.config import TrainConfig, config_to_dict
from langfield.train.losses import masked_depth_l1, photometric_loss
from langfield.train.resolution import ResolutionSchedule, downscale_view
from langfield.render.views import background_color, render_params
from langfield.types import RenderOutput, View

# Adam epsilon as in gsplat: the default 1e-8 is large relative to tiny SH/position gradients.
ADAM_EPS = 1e-15


def seed_everything(seed: int) -> None:
    """Seed the global RNGs the strategy or init may use (torch, numpy, python)."""
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    random.seed(seed)


def make_optimizers(params: torch.nn.ParameterDict, cfg: TrainConfig, scene_scale: float) -> dict[str, torch.optim.Adam]:
    """One Adam per parameter key (what densification strategies expect)."""
    lrs = {
        "means": cfg.lr.means * scene_scale,
        "scales": cfg.lr.scales,
        "quats": cfg.lr.quats,
        "opacities": cfg.lr.opacities,
        "sh0": cfg.lr.sh0,
        "shN": cfg.lr.shN,
        "latents": cfg.lr.latents,
    }
    unknown = [k for k in params.keys() if k not in lrs]
    if unknown:
        raise ValueError(f"no learning rate for parameter(s) {unknown}")
    return {
        key: torch.optim.Adam([{"params": [params[key]], "lr": lrs[key], "name": key}], eps=ADAM_EPS, fused=True)
        for key in params.keys()
    }


@dataclass
class StepStats:
    """What one training step reports (for progress display and tests)."""

    step: int
    """Number of completed steps after this one."""
    loss: float
    """Total loss of the step."""
    psnr: float
    """PSNR of the rendered training view (against its own background-composited target)."""
    num_gaussians: int
    """Gaussian count after densification."""


@dataclass
class Trainer:
    """Optimises Gaussians against in-memory views; see module docstring."""

    cfg: TrainConfig
    """Run configuration."""
    views: list[View]
    """Training views with ``rgb`` (and optionally ``depth``) loaded, on the training device."""
    params: torch.nn.ParameterDict
    """Gaussians being optimised (replaced in place by densification)."""
    scene_scale: float = 1.0
    """Extent of the camera centres; scales the position LR and the strategy's thresholds."""
    use_depth: bool = False
    """Add the masked depth L1 loss (views carry depth)."""
    step: int = 0
    """Number of completed steps."""
    extra_loss: Optional[Callable[[View, RenderOutput], torch.Tensor]] = None
    """Optional term added to each step's loss from (view, render); when set and ``params`` has ``latents`` they
    are rendered as ``features`` in the same pass as RGB (the joint language schedule)."""
    optimizers: dict[str, torch.optim.Adam] = field(init=False)
    strategy: Strategy = field(init=False)
    strategy_state: dict[str, Any] = field(init=False)
    generator: torch.Generator = field(init=False)
    camera_opt: Optional[CameraOptimizer] = field(init=False, default=None)
    """Pose corrections of the training cameras (``cfg.optimize_poses``), else None."""
    _stop_requested: bool = field(init=False, default=False)
    _coarse_views: dict[tuple[int, int], View] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        if not self.views:
            raise ValueError("no training views")
        self.optimizers = make_optimizers(self.params, self.cfg, self.scene_scale)
        # The default Gaussian budget follows the largest training image.
        self.strategy = self.cfg.resolved_strategy(max(int(v.width) * int(v.height) for v in self.views))
        self.strategy.check_sanity(self.params, self.optimizers)
        self.strategy_state = self.strategy.initialize_state(scene_scale=self.scene_scale)
        # View order and random backgrounds come from this generator only, so
        # checkpointing its state reproduces the exact sequence of views.
        self.generator = torch.Generator().manual_seed(self.cfg.seed)
        self.resolution = ResolutionSchedule(levels=self.cfg.coarse_levels, fraction=self.cfg.coarse_fraction)
        if self.cfg.optimize_poses:  # draws nothing from any RNG: runs without it stay bit-identical
            self.camera_opt = self._make_camera_opt()

    def _make_camera_opt(self) -> CameraOptimizer:
        cfg = self.cfg
        return CameraOptimizer(len(self.views), lr_rotation=cfg.pose_lr_rotation,
                               lr_translation=cfg.pose_lr_translation, final_factor=cfg.pose_lr_final_factor,
                               l2=cfg.pose_l2, iterations=cfg.iterations, scene_scale=self.scene_scale,
                               device=self.device,
                               pivot=pivot_depths(self.views, self.params["means"]) if cfg.pose_orbit else None)

    @property
    def device(self) -> torch.device:
        return self.params["means"].device

    @property
    def num_gaussians(self) -> int:
        return int(self.params["means"].shape[0])

    # ------------------------------------------------------------------ one step

    def view_for_step(self, idx: int, step: int) -> View:
        """Training view ``idx`` at the resolution the coarse-to-fine schedule gives ``step``."""
        view = self.views[idx]
        factor = self.resolution.factor(step, self.cfg.iterations, min(int(view.width), int(view.height)))
        if factor == 1:
            if self._coarse_views:  # the coarse phase is over for good (factors never grow again)
                self._coarse_views.clear()
            return view
        key = (idx, factor)
        if key not in self._coarse_views:
            self._coarse_views[key] = downscale_view(view, factor)
        return self._coarse_views[key]

    def train_step(self) -> StepStats:
        cfg, step = self.cfg, self.step
        idx = int(torch.randint(len(self.views), (1,), generator=self.generator).item())
        view = self.view_for_step(idx, step)
        if self.camera_opt is not None:
            view = self.camera_opt.apply(view, idx)
        bg = background_color(cfg.background, self.device, self.generator)
        for group in self.optimizers["means"].param_groups:
            group["lr"] = cfg.means_lr(step) * self.scene_scale

        depth_on = self.use_depth and view.depth is not None and cfg.depth_lambda > 0
        features = self.params["latents"] if self.extra_loss is not None and "latents" in self.params else None
        out = render_params(
            self.params, view, sh_degree=cfg.active_sh_degree(step), background=bg,
            backend=cfg.backend, render_depth=depth_on, features=features,
            absgrad=self.strategy.absgrad,
        )
        info = {
            "means2d": out.means2d,
            "radii": out.radii,
            "absgrad": out.absgrad,
            "width": int(view.width),
            "height": int(view.height),
            "n_cameras": 1,
        }
        self.strategy.step_pre_backward(self.params, self.optimizers, self.strategy_state, step, info)
        pred = out.rgb[0]
        target = view.rgb
        loss = photometric_loss(pred, target, cfg.ssim_lambda)
        if depth_on and out.depth is not None:
            loss = loss + cfg.depth_lambda * masked_depth_l1(out.depth[0], view.depth)
        if self.extra_loss is not None:
            loss = loss + self.extra_loss(view, out)
        penalty = self.camera_opt.penalty(idx) if self.camera_opt is not None else None
        if penalty is not None:
            loss = loss + penalty
        loss.backward()
        for opt in self.optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        if self.camera_opt is not None:
            self.camera_opt.step(step)
        # As in gsplat: densify after the optimizer step, from the retained means2d gradient.
        self.strategy.step_post_backward(self.params, self.optimizers, self.strategy_state, step, info)
        self.step = step + 1
        with torch.no_grad():
            mse = torch.mean((pred.detach().clamp(0, 1) - target) ** 2).item()
        return StepStats(self.step, float(loss.item()), -10 * math.log10(max(mse, 1e-12)), self.num_gaussians)

    # ------------------------------------------------------------------ loop

    def train(
        self,
        until: Optional[int] = None,
        *,
        scene_dir: Optional[Path] = None,
        progress: bool = True,
        on_test: Optional[Callable[["Trainer"], dict]] = None,
        on_step: Optional[Callable[["Trainer"], None]] = None,
    ) -> None:
        """Run steps until ``until`` (default ``cfg.iterations``) completed steps.

        Checkpoints every ``cfg.checkpoint_every`` steps and at the end when
        ``scene_dir`` is given (into scene_dir/checkpoints); ``on_step`` is called after every step.
        Ctrl-C finishes the current step, writes
        a checkpoint and then raises KeyboardInterrupt (a second Ctrl-C aborts
        at once); the interrupted step is never half-applied in a checkpoint.
        """
        until = self.cfg.iterations if until is None else min(until, self.cfg.iterations)
        bar = _progress_bar(self.step, self.cfg.iterations, enabled=progress)
        restore = self._install_sigint()
        last_saved = -1
        try:
            while self.step < until:
                stats = self.train_step()
                bar.update(1)
                if stats.step % 10 == 0 or stats.step == until:
                    bar.set_postfix(loss=f"{stats.loss:.4f}", psnr=f"{stats.psnr:.2f}", n=stats.num_gaussians)
                if scene_dir is not None and self.cfg.checkpoint_every > 0 and self.step % self.cfg.checkpoint_every == 0:
                    self.save(scene_dir)
                    last_saved = self.step
                if on_test is not None and self.cfg.test_every > 0 and self.step % self.cfg.test_every == 0:
                    metrics = on_test(self)
                    bar.write(f"step {self.step}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
                if on_step is not None:  # e.g. reconstruct --view publishing a copy every N steps
                    on_step(self)
                if self._stop_requested:
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            if scene_dir is not None and last_saved != self.step:
                self.save(scene_dir)
                last_saved = self.step
            raise
        finally:
            restore()
            bar.close()
        if scene_dir is not None and last_saved != self.step:
            self.save(scene_dir)

    def _install_sigint(self) -> Callable[[], None]:
        """Turn the first Ctrl-C into a stop request honoured at the next step boundary."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = signal.getsignal(signal.SIGINT)

        def handler(signum: int, frame: Any) -> None:
            if self._stop_requested:  # second Ctrl-C: stop now
                raise KeyboardInterrupt
            self._stop_requested = True

        signal.signal(signal.SIGINT, handler)
        return lambda: signal.signal(signal.SIGINT, previous)

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly (weights_only-loadable)."""
        return {
            "step": self.step,
            "params": {k: v.detach().clone() for k, v in self.params.items()},
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()},
            "strategy_state": dict(self.strategy_state),
            "rng": capture_rng_states(self.generator),
            "config": config_to_dict(self.cfg),
            "scene_scale": float(self.scene_scale),
            **({"camera_opt": self.camera_opt.state_dict()} if self.camera_opt is not None else {}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from ``state_dict`` output (parameter count may differ from the current one)."""
        device = self.device
        self.params = torch.nn.ParameterDict(
            {k: torch.nn.Parameter(v.to(device).contiguous()) for k, v in state["params"].items()}
        )
        missing = [k for k in PARAM_KEYS if k not in self.params]
        if missing:
            raise ValueError(f"checkpoint lacks parameters {missing}")
        self.scene_scale = float(state["scene_scale"])
        self.optimizers = make_optimizers(self.params, self.cfg, self.scene_scale)
        for key, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][key])
        self.strategy_state = {
            k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in state["strategy_state"].items()
        }
        if self.cfg.optimize_poses:
            if "camera_opt" not in state:
                raise ValueError("the checkpoint was trained without --optimize-poses")
            self.camera_opt = self._make_camera_opt()  # scene_scale may have changed above
            self.camera_opt.load_state_dict(state["camera_opt"])
        restore_rng_states(state["rng"], self.generator)
        self.step = int(state["step"])

    def pose_refined_views(self, eval_views: list[View]) -> tuple[list[View], list[View]]:
        """(training views, held-out views) in the frame the scene is written in.

        Without ``optimize_poses``: both unchanged.  With it: the training views with their refined
        poses, and the held-out views with poses fitted to their images against the frozen Gaussians
        (``refine_eval_poses``, ``cfg.eval_pose_steps``): the given held-out poses are in the input's
        frame, which the refinement has moved away from (splatfacto evaluates them unrefined).
        """
        if self.camera_opt is None:
            return self.views, eval_views
        cfg = self.cfg
        train = self.camera_opt.refined_views(self.views)
        evals = refine_eval_poses(self.params, eval_views, steps=cfg.eval_pose_steps,
                                  lr_rotation=cfg.pose_lr_rotation,
                                  lr_translation=cfg.pose_lr_translation * self.scene_scale,
                                  sh_degree=cfg.sh_degree, backend=cfg.backend, ssim_lambda=cfg.ssim_lambda,
                                  orbit=cfg.pose_orbit)
        return train, evals

    def save(self, checkpoint_root: Path) -> Path:
        """Write a checkpoint into ``checkpoint_root/checkpoints`` (keeps the last 2)."""
        return save_checkpoint(checkpoint_root, self.state_dict(), self.step)


def _progress_bar(start: int, total: int, *, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, disable=not enabled, dynamic_ncols=True, desc="train", unit="step")
