"""Training configuration: one dataclass, a docstring per field (``--help`` shows them)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from langfield.gaussians.strategy import DefaultStrategy

# The 3DGS / gsplat schedule was tuned for 30k iterations; shorter runs scale it.
_REFERENCE_ITERATIONS = 30_000

InitKind = Literal["auto", "points", "depth", "random"]
Backend = Literal["auto", "torch", "cpu", "cuda"]
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

    iterations: int = 7000
    """Number of optimisation steps (one random training view per step)."""
    seed: int = 0
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
    downscale: int = 1
    """Load images downscaled by this integer factor."""
    images: Optional[str] = None
    """Image sub-folder to read (e.g. ``images_8`` for LLFF); None lets the reader choose."""
    eval_every: int = 8
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
    backend: Backend = "auto"
    """Rasterizer backend: auto | torch (reference) | cpu (native) | cuda."""
    device: str = "auto"
    """Torch device for parameters and images: auto = cuda when the backend can use it, else cpu."""
    background: Background = "black"
    """Background composited behind the Gaussians while training (random = new colour each step)."""
    checkpoint_every: int = 1000
    """Write a resumable checkpoint every this many steps (0 = only at the end); the last 2 are kept."""
    test_every: int = 0
    """Evaluate the held-out views every this many steps during training (0 = only at the end)."""
    strategy: DefaultStrategy = field(default_factory=DefaultStrategy)
    """Densification / pruning strategy (gsplat-like DefaultStrategy)."""
    scale_strategy_schedule: bool = True
    """Scale the strategy's refine schedule (start, stop, every, reset) to ``iterations``."""

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ValueError("iterations must be >= 1")
        if not 0 <= self.sh_degree <= 3:
            raise ValueError("sh_degree must be in 0..3")
        if self.downscale < 1:
            raise ValueError("downscale must be >= 1")

    def active_sh_degree(self, step: int) -> int:
        """SH degree rendered at ``step`` (0-based): one more every ``sh_degree_interval`` steps."""
        if self.sh_degree_interval <= 0:
            return self.sh_degree
        return min(self.sh_degree, step // self.sh_degree_interval)

    def means_lr(self, step: int) -> float:
        """Position LR at ``step``: exponential decay from lr.means to lr.means*final_factor."""
        t = min(max(step / max(self.iterations, 1), 0.0), 1.0)
        return self.lr.means * math.exp(t * math.log(self.lr.means_final_factor))

    def resolved_strategy(self) -> DefaultStrategy:
        """The strategy actually used: its refine schedule scaled to this run's length.

        3DGS refines every 100 steps from step 500 to 15k and resets opacities
        every 3k, for 30k steps.  For a run of ``iterations`` steps, with
        ``f = iterations / 30k``, start/stop scale with f, while refine_every and
        reset_every scale with sqrt(f): short runs still get several refinements
        and do not spend most of their time recovering from opacity resets.
        """
        strategy = self.strategy
        names = {fl.name for fl in dataclasses.fields(strategy)}
        # The run's seed also seeds the split offsets, so one --seed reproduces everything.
        seeded = {"seed": self.seed} if "seed" in names else {}
        if not self.scale_strategy_schedule or self.iterations >= _REFERENCE_ITERATIONS:
            return dataclasses.replace(strategy, **seeded)
        f = self.iterations / _REFERENCE_ITERATIONS
        refine_every = max(25, int(round(strategy.refine_every * math.sqrt(f))))
        changes: dict[str, Any] = {
            **seeded,
            "refine_every": refine_every,
            "refine_start_iter": max(refine_every, int(round(strategy.refine_start_iter * f))),
            "refine_stop_iter": int(round(strategy.refine_stop_iter * f)),
            "reset_every": max(refine_every, int(round(strategy.reset_every * math.sqrt(f)))),
        }
        return dataclasses.replace(strategy, **{k: v for k, v in changes.items() if k in names})


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
