"""Training configuration: one dataclass, a docstring per field (``--help`` shows them).

``langfield reconstruct`` nests ``TrainConfig`` (``--train.*``, with ``lr`` and
``strategy`` below it) as it is, so every field is a command-line option and the
defaults live here only.  ``tyro.conf.arg(aliases=...)`` gives the common ones
their short historical spellings (``--iterations``, ``--backend`` ...).
Out-of-range values raise ``ConfigError`` (the CLI prints ``error: bad option: ...``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, Literal, Optional

import tyro

from langfield.gaussians.strategy import ABSGRAD_GROW_GRAD2D, DefaultStrategy
from langfield.render.backend import Backend
from langfield.types import ConfigError

# The 3DGS / gsplat schedule was tuned for 30k iterations; shorter runs scale it.
_REFERENCE_ITERATIONS = 30_000


def _default_strategy() -> DefaultStrategy:
    """The training recipe's strategy: gsplat's DefaultStrategy with splatfacto/OpenSplat culling.

    prune_opa 0.1 (splatfacto's cull_alpha_thresh) instead of 0.005: on the
    peer protocol (16 views 160x120, 2000 steps) it cut the count from 70.6k
    to 48k Gaussians, the time per step by ~20%, at the same held-out PSNR;
    the opacity reset value (2 * prune_opa = 0.2) is splatfacto's too.
    """
    return DefaultStrategy(prune_opa=0.1)

InitKind = Literal["auto", "points", "depth", "random"]
Background = Literal["black", "white", "random"]


@dataclass
class LearningRates:
    """Per-parameter Adam learning rates (3DGS / gsplat defaults)."""

    means: float = 1.6e-4
    """Initial position LR, multiplied by the scene scale and decayed exponentially."""
    means_final_factor: float = 0.01
    """Position LR at the last iteration as a fraction of the initial one."""
    scales: float = 5e-3
    """LR of the log scales."""
    quats: float = 1e-3
    """LR of the (unnormalised) quaternions."""
    opacities: float = 5e-2
    """LR of the opacity logits."""
    sh0: float = 2.5e-3
    """LR of the DC colour coefficients."""
    shN: float = 2.5e-3 / 20
    """LR of the higher-order SH coefficients."""
    latents: float = 2.5e-3
    """LR of the language latents (when the scene carries them)."""


@dataclass
class TrainConfig:
    """Everything that determines an offline reconstruction run."""

    iterations: Annotated[int, tyro.conf.arg(aliases=("--iterations",))] = 7000
    """Number of optimisation steps (one random training view per step)."""
    seed: Annotated[int, tyro.conf.arg(aliases=("--seed",))] = 0
    """Seed of every random choice (view order, backgrounds, init, densification)."""
    sh_degree: int = 3
    """Maximum spherical-harmonics degree of the colours."""
    sh_degree_interval: int = 1000
    """Raise the active SH degree by one every this many steps (progressive SH)."""
    lr: LearningRates = field(default_factory=LearningRates)
    """Per-parameter learning rates."""
    ssim_lambda: float = 0.2
    """Weight of the D-SSIM term; the L1 term gets ``1 - ssim_lambda``."""
    depth_lambda: float = 0.1
    """Weight of the masked depth L1 loss; used only when the capture has depth."""
    coarse_levels: int = 0
    """Coarse-to-fine training: start at 1 / 2**coarse_levels resolution (0 = always full; see
    ``langfield.train.resolution``). Off by default: on the 16-view 160x120 protocol 2 levels
    over 30% of the run were 9% faster per step but 0.2 dB worse, and at 320x240 (48 views,
    2000 steps) they were 15% slower (the Gaussians reach their budget earlier)."""
    coarse_fraction: float = 0.3
    """Fraction of the run trained below full resolution, split evenly over the coarse levels."""
    downscale: Annotated[int, tyro.conf.arg(aliases=("--downscale",))] = 1
    """Load images downscaled by this integer factor."""
    images: Annotated[Optional[str], tyro.conf.arg(aliases=("--images",))] = None
    """Image sub-folder to read (e.g. ``images_8`` for LLFF); None lets the reader choose."""
    eval_every: Annotated[int, tyro.conf.arg(aliases=("--eval-every",))] = 8
    """Hold out every N-th frame for evaluation when the dataset has no explicit split."""
    init: InitKind = "auto"
    """Gaussian initialisation: auto = SfM/ply points if present, else depth back-projection, else random."""
    init_opacity: float = 0.1
    """Initial opacity of every Gaussian."""
    init_scale: float = 1.0
    """Multiplier of the initial (nearest-neighbour) scales."""
    init_num_random: int = 20_000
    """Number of Gaussians of a random initialisation."""
    init_max_depth_points: int = 100_000
    """Most Gaussians a depth back-projection initialisation creates."""
    random_extent: float = 3.0
    """Half-size of the random-init box, in scene scales around the camera centroid."""
    backend: Annotated[Backend, tyro.conf.arg(aliases=("--backend",))] = "auto"
    """Rasterizer backend: auto | torch (reference) | cpu (native) | cuda."""
    device: str = "auto"
    """Torch device for parameters and images: auto = cuda when the backend can use it, else cpu."""
    background: Background = "black"
    """Background composited behind the Gaussians while training (random = new colour each step)."""
    checkpoint_every: Annotated[int, tyro.conf.arg(aliases=("--checkpoint-every",))] = 1000
    """Write a resumable checkpoint every this many steps (0 = only at the end); the last 2 are kept."""
    test_every: int = 0
    """Evaluate the held-out views every this many steps during training (0 = only at the end)."""
    strategy: DefaultStrategy = field(default_factory=_default_strategy)
    """Densification / pruning strategy (gsplat-like DefaultStrategy, but pruning opacity < 0.1 as
    splatfacto/OpenSplat do: fewer, better Gaussians on short runs)."""
    scale_strategy_schedule: bool = True
    """Fit the strategy's refine window (start, stop) to ``iterations`` (see ``resolved_strategy``)."""
    gaussians_per_pixel: float = 0.9
    """When ``strategy.max_gaussians`` is None, cap the count at this many Gaussians per pixel of one
    training image (0 = no cap).  0.9 was the best of 0.6/0.9/1.25/1.7 on the peer protocol: more
    Gaussians fit the training views better but not the held-out ones, and cost time per step."""
    optimize_poses: Annotated[bool, tyro.conf.arg(aliases=("--optimize-poses",))] = False
    """Refine the training cameras' poses while training (splatfacto's camera optimiser: a per-camera SE(3)
    correction applied as ``c2w @ E`` in the camera frame; ``langfield.train.camera_opt``). The scene then
    stores the refined poses, and the held-out cameras are fitted to their images with the Gaussians frozen
    (``eval_pose_steps``) so that evaluation happens in the refined frame."""
    pose_lr_rotation: float = 1e-3
    """Initial Adam LR of the pose corrections' rotations (axis-angle, radians)."""
    pose_lr_translation: float = 3e-4
    """Initial Adam LR of the pose corrections' translations, multiplied by the scene scale.  3e-4 (was 1e-3):
    on the synthetic room (160x120, 24 views, 2 deg / 5 cm, 1500 steps, orbit on) the centre error fell
    5.0 -> 2.35 cm against 2.87 cm at 1e-3 and 3e-3 was worse at every checkpoint (noise-dominated)."""
    pose_lr_final_factor: float = 0.01
    """Pose LRs at the last iteration as a fraction of the initial ones (exponential decay)."""
    pose_orbit: bool = True
    """Parametrise each camera's translation as an orbit about a pivot at its scene depth (the camera turns to
    keep the pivot on its axis; ``camera_opt.orbit_rotation``), so that rotation and translation move the
    image in near-independent ways and Adam can fit the translation (see ``langfield.train.camera_opt``).  Same
    protocol as ``pose_lr_translation``, 1500 steps: 3.47 -> 2.87 cm centre error, 0.59 -> 0.37 deg."""
    pose_l2: float = 0.0
    """Weight of an L2 penalty on the current camera's correction (translation in scene scales); 0 = off."""
    eval_pose_steps: int = 200
    """With ``optimize_poses``: Adam steps of test-time pose optimisation per held-out camera (0 = keep the
    given held-out poses)."""

    def __post_init__(self) -> None:
        checks = [
            (self.iterations >= 1, f"iterations must be >= 1, got {self.iterations}"),
            (0 <= self.sh_degree <= 3, f"sh_degree must be in 0..3, got {self.sh_degree}"),
            (self.downscale >= 1, f"downscale must be >= 1, got {self.downscale}"),
            (self.eval_every >= 0, f"eval_every must be >= 0 (0 = no held-out views), got {self.eval_every}"),
            (self.checkpoint_every >= 0, f"checkpoint_every must be >= 0, got {self.checkpoint_every}"),
            (self.test_every >= 0, f"test_every must be >= 0, got {self.test_every}"),
            (self.coarse_levels >= 0, f"coarse_levels must be >= 0, got {self.coarse_levels}"),
            (0.0 <= self.coarse_fraction <= 1.0, f"coarse_fraction must be in [0, 1], got {self.coarse_fraction}"),
            (0.0 <= self.ssim_lambda <= 1.0, f"ssim_lambda must be in [0, 1], got {self.ssim_lambda}"),
            (self.gaussians_per_pixel >= 0, f"gaussians_per_pixel must be >= 0, got {self.gaussians_per_pixel}"),
            (self.init_num_random >= 1, f"init_num_random must be >= 1, got {self.init_num_random}"),
            (self.pose_lr_rotation >= 0 and self.pose_lr_translation >= 0,
             f"pose learning rates must be >= 0, got {self.pose_lr_rotation}, {self.pose_lr_translation}"),
            (0 < self.pose_lr_final_factor <= 1, f"pose_lr_final_factor must be in (0, 1], got {self.pose_lr_final_factor}"),
            (self.pose_l2 >= 0, f"pose_l2 must be >= 0, got {self.pose_l2}"),
            (self.eval_pose_steps >= 0, f"eval_pose_steps must be >= 0, got {self.eval_pose_steps}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def active_sh_degree(self, step: int) -> int:
        """SH degree rendered at ``step`` (0-based): one more every ``sh_degree_interval`` steps."""
        if self.sh_degree_interval <= 0:
            return self.sh_degree
        return min(self.sh_degree, step // self.sh_degree_interval)

    def means_lr(self, step: int) -> float:
        """Position LR at ``step``: exponential decay from lr.means to lr.means*final_factor."""
        t = min(max(step / max(self.iterations, 1), 0.0), 1.0)
        return self.lr.means * math.exp(t * math.log(self.lr.means_final_factor))

    def resolved_strategy(self, pixels_per_view: Optional[int] = None) -> DefaultStrategy:
        """The strategy actually used: refine window fitted to this run, Gaussian budget from the image size.

        3DGS refines every 100 steps from step 500 to 15k and resets opacities
        every 3k, for 30k steps.  A shorter run keeps refine_every and
        reset_every (so growth does not compound: an earlier version scaled
        refine_every down to 25 for 2000 steps and grew 10k -> 176k Gaussians)
        and only fits the window inside the run: start at min(500, iterations/4)
        and stop at min(15k, 3/4 of the run), so the last quarter optimises a
        fixed set of Gaussians.  With ``pixels_per_view`` and no explicit
        ``strategy.max_gaussians``, the count is capped at
        ``gaussians_per_pixel * pixels_per_view``.
        """
        strategy = self.strategy
        names = {fl.name for fl in dataclasses.fields(strategy)}
        # The run's seed also seeds the split offsets, so one --seed reproduces everything.
        changes: dict[str, Any] = {"seed": self.seed}
        if "max_gaussians" in names and strategy.max_gaussians is None and pixels_per_view and self.gaussians_per_pixel > 0:
            changes["max_gaussians"] = max(1, int(round(self.gaussians_per_pixel * pixels_per_view)))
        if self.scale_strategy_schedule and self.iterations < _REFERENCE_ITERATIONS:
            changes["refine_start_iter"] = min(strategy.refine_start_iter, self.iterations // 4)
            changes["refine_stop_iter"] = min(strategy.refine_stop_iter, 3 * self.iterations // 4)
        return dataclasses.replace(strategy, **{k: v for k, v in changes.items() if k in names})


def absgrad_config() -> TrainConfig:
    """AbsGS densification: grow by the sum over pixels of |screen-space gradient| (``RenderOutput.absgrad``)
    with the AbsGS threshold ``ABSGRAD_GROW_GRAD2D`` instead of the mean gradient and 0.0002."""
    cfg = TrainConfig()
    return dataclasses.replace(cfg, strategy=dataclasses.replace(cfg.strategy, absgrad=True,
                                                                 grow_grad2d=ABSGRAD_GROW_GRAD2D))


TRAIN_PRESETS: dict[str, Callable[[], TrainConfig]] = {"default": TrainConfig, "absgrad": absgrad_config}
"""Named starting points of a TrainConfig (``langfield reconstruct --preset NAME``); options given on
the command line override the preset's values."""


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """JSON-ready nested dict of a config (round-trips through ``config_from_dict``)."""
    return dataclasses.asdict(cfg)


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Rebuild a TrainConfig from ``config_to_dict`` output, ignoring unknown keys.

    Unknown keys are dropped (rather than rejected) so that scenes written by
    an older/newer version still load.
    """
    data = dict(data)
    lr = LearningRates(**_known(LearningRates, data.pop("lr", {}) or {}))
    strategy = DefaultStrategy(**_known(DefaultStrategy, data.pop("strategy", {}) or {}))
    return TrainConfig(lr=lr, strategy=strategy, **_known(TrainConfig, data))


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}
