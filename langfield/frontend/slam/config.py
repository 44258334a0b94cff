"""``SlamConfig``: every knob of online RGB-D tracking and mapping (``langfield slam``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from langfield.frontend.slam.odometry import OdometryConfig
from langfield.types import LangfieldError


@dataclass
class SlamConfig:
    """Settings of one ``langfield slam`` run (defaults sized for 320x240 on a 2-core CPU)."""

    # ---- input
    max_frames: Optional[int] = None
    """Track at most this many frames (after ``stride``); None = the whole sequence."""
    stride: int = 1
    """Use every K-th frame of the sequence."""
    seed: int = 0
    """Seed of the random older keyframes mapping revisits."""

    # ---- tracking
    tracker: str = "torch"
    """Initial pose estimate: ``torch`` (the constant-velocity prediction refined by our dense RGB-D odometry,
    multi-scale Gauss-Newton on point-to-plane ICP + a photometric term) or ``none`` (the prediction alone;
    then ``track_iters`` Adam steps against the map do all the tracking).  open3d's odometry was measured
    against it and left out (docs/slam.md)."""
    track_reference: str = "keyframe"
    """What the odometry aligns each frame to: ``keyframe`` (the last keyframe's own RGB-D pixels at its tracked
    pose) or ``map`` (the Gaussian map rendered at the prediction; frame-to-model, but the rendered depth of
    a young map is centimetres off, see docs/slam.md)."""
    odo_levels: int = OdometryConfig.levels
    """Pyramid levels of the odometry (each halves the tracking resolution)."""
    odo_iters: tuple[int, ...] = OdometryConfig.iterations
    """Gauss-Newton iterations per odometry level, finest first (a level stops early once converged)."""
    odo_max_distance: float = OdometryConfig.max_distance
    """Odometry correspondences further apart than this (metres) are outliers."""
    odo_sigma_depth: float = OdometryConfig.sigma_depth
    """Scale of the odometry's point-to-plane residual (metres): Huber threshold and inverse weight."""
    odo_sigma_color: float = OdometryConfig.sigma_color
    """Scale of the odometry's grey-level residual (intensity in [0, 1]): Huber threshold and inverse weight."""
    odo_color_weight: float = OdometryConfig.color_weight
    """Weight of the odometry's photometric term against the geometric one (0 = point-to-plane ICP only)."""
    odo_alpha_min: float = 0.9
    """The rendered map is a reference pixel of the odometry only where its alpha exceeds this (its depth is sure)."""
    track_iters: int = 0
    """Adam steps refining each frame's pose against the rendered map after the initial estimate (0 = none)."""
    track_downscale: int = 2
    """Integer downscale of the frame tracking (odometry and refinement) compares against the map."""
    track_lr_rotation: float = 5e-3
    """Initial Adam learning rate of the pose's rotation (axis-angle, radians; decays to 1/10 over the steps)."""
    track_lr_translation: float = 1e-2
    """Initial Adam learning rate of the pose's translation (metres; decays to 1/10 over the steps)."""
    track_depth_weight: float = 1.0
    """Weight of the depth L1 term (metres) against the colour L1 term while tracking."""
    track_alpha_min: float = 0.5
    """Only pixels the map covers with at least this rendered alpha enter the tracking loss (SplaTAM's silhouette)."""
    track_backend: str = "auto"
    """Rasterizer backend for tracking; it must give gradients w.r.t. the camera (a clear error otherwise:
    ``torch`` always does, but is far too slow for more than a few thousand Gaussians)."""
    lost_factor: float = 8.0
    """Tracking is lost when a frame's final residual exceeds this many times the median of the frames before."""
    lost_min_residual: float = 0.05
    """... and exceeds this absolute value (so a near-perfect sequence's tiny residuals never trip it)."""
    lost_warmup: int = 5
    """Frames tracked before the loss-jump test starts (the median needs a history)."""

    # ---- keyframes
    keyframe_every: int = 5
    """A keyframe at least every N tracked frames."""
    keyframe_translation: float = 0.10
    """... or when the camera moved this far (metres) from the last keyframe."""
    keyframe_rotation_deg: float = 10.0
    """... or turned this much (degrees) from the last keyframe."""
    keyframe_overlap: float = 0.85
    """... or when less than this fraction of the frame's valid-depth pixels is covered by the map."""

    # ---- map growth and mapping
    add_stride: int = 2
    """Back-project every K-th pixel (in u and v) of a keyframe's depth where the map is missing."""
    add_alpha_max: float = 0.5
    """A keyframe pixel is missing from the map when the rendered alpha is below this ..."""
    add_depth_error: float = 0.1
    """... or the rendered depth is off by more than this fraction of the measured depth (the map is behind it)."""
    init_opacity: float = 0.9
    """Opacity of new Gaussians."""
    map_iters: int = 10
    """Mapping Adam steps after each keyframe (each renders one keyframe of the window)."""
    map_iters_between: Optional[int] = None
    """Mapping Adam steps after a frame that is not a keyframe (None: ``map_iters``)."""
    map_window: int = 4
    """Mapping revisits the last N keyframes ..."""
    map_random: int = 2
    """... plus this many random older keyframes."""
    map_downscale: int = 2
    """Integer downscale of the keyframe images mapping fits (and stores)."""
    keyframes_in_memory: int = 8
    """The newest N keyframes keep their pixels in memory (mapping and tracking use them every frame); older ones
    are spilled to a temporary folder and read back when mapping revisits one, so memory stays flat in the
    number of frames (0 = keep every keyframe in memory)."""
    map_depth_weight: float = 1.0
    """Weight of the depth L1 term in the mapping loss."""
    map_ssim_lambda: float = 0.0
    """D-SSIM weight of the mapping photometric loss (0: plain L1, cheapest)."""
    map_backend: str = "auto"
    """Rasterizer backend for mapping (gradients w.r.t. the Gaussians only)."""
    prune_opacity: float = 0.005
    """Gaussians whose opacity falls below this are removed after each mapping round."""
    lr_means: float = 1e-3
    """Mapping Adam LR of the positions (metres)."""
    lr_colors: float = 5e-3
    """Mapping Adam LR of the colours (DC SH coefficient)."""
    lr_opacities: float = 5e-2
    """Mapping Adam LR of the opacity logits."""
    lr_scales: float = 5e-3
    """Mapping Adam LR of the log scales."""
    lr_quats: float = 1e-3
    """Mapping Adam LR of the quaternions."""

    # ---- output
    snapshot_every: int = 10
    """Write an atomic snapshot of the scene every N keyframes (0 = only at the end / on stop)."""
    progress: bool = True
    """Print one line per frame (frame, tracking / mapping ms, Gaussians)."""

    def __post_init__(self) -> None:
        checks = [
            (self.max_frames is None or self.max_frames >= 1, f"--max-frames must be >= 1, got {self.max_frames}"),
            (self.stride >= 1, f"--stride must be >= 1, got {self.stride}"),
            (self.track_iters >= 0, f"track_iters must be >= 0, got {self.track_iters}"),
            (self.tracker in ("torch", "none"), f"--tracker must be torch or none, got {self.tracker!r}"),
            (self.track_reference in ("keyframe", "map"),
             f"--track-reference must be keyframe or map, got {self.track_reference!r}"),
            (0.0 <= self.odo_alpha_min < 1.0, f"odo_alpha_min must be in [0, 1), got {self.odo_alpha_min}"),
            (self.track_downscale >= 1 and self.map_downscale >= 1, "downscales must be integers >= 1"),
            (self.keyframe_every >= 1, f"keyframe_every must be >= 1, got {self.keyframe_every}"),
            (self.add_stride >= 1, f"add_stride must be >= 1, got {self.add_stride}"),
            (0.0 < self.init_opacity < 1.0, f"init_opacity must be in (0, 1), got {self.init_opacity}"),
            (self.map_iters_between is None or self.map_iters_between >= 0,
             f"map_iters_between must be >= 0, got {self.map_iters_between}"),
            (self.map_iters >= 0 and self.map_window >= 1 and self.map_random >= 0, "bad mapping window settings"),
            (self.keyframes_in_memory >= 0, f"keyframes_in_memory must be >= 0, got {self.keyframes_in_memory}"),
            (self.lost_factor > 1.0, f"lost_factor must be > 1, got {self.lost_factor}"),
            (self.snapshot_every >= 0, f"snapshot_every must be >= 0, got {self.snapshot_every}"),
        ]
        for ok, message in checks:
            if not ok:
                raise LangfieldError(message)
        self.odometry()  # OdometryConfig checks the odo_* values

    def mapping_steps(self, keyframe: bool) -> int:
        """Mapping steps after a frame: ``map_iters`` after a keyframe, ``map_iters_between`` after another."""
        if keyframe or self.map_iters_between is None:
            return self.map_iters
        return self.map_iters_between

    def odometry(self) -> OdometryConfig:
        """The ``OdometryConfig`` of the ``odo_*`` settings."""
        return OdometryConfig(levels=self.odo_levels, iterations=tuple(self.odo_iters),
                              max_distance=self.odo_max_distance, sigma_depth=self.odo_sigma_depth,
                              sigma_color=self.odo_sigma_color, color_weight=self.odo_color_weight)
