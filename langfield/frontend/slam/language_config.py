"""``SlamLanguageConfig``: the online language field of ``langfield slam`` (features, online codec, lift)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from langfield.features.weights import DEFAULT_CLIP
from langfield.types import LangfieldError

OnlineFeatures = Literal["labels", "dense", "sam-clip"]
Relift = Literal["snapshot", "end", "never"]


@dataclass
class SlamLanguageConfig:
    """Language settings of one ``langfield slam`` run (``features`` None = a geometry-only map)."""

    features: Optional[OnlineFeatures] = None
    """2D features of each keyframe: labels (the sequence's label masks + labels.json) | dense (fast) | sam-clip;
    unset = no language field (geometry only)."""
    clip: str = DEFAULT_CLIP
    """CLIP option: open_clip MODEL[:TAG], a checkpoint path, or test-tiny (random, tests and offline demos)."""
    sam: Optional[str] = None
    """SAM option for sam-clip: vit_h | vit_l | vit_b | a checkpoint path | test-tiny (default vit_h)."""
    codec: Optional[Path] = None
    """Generic stage of the online codec: a codec trained on an earlier scene (that scene's directory, or a
    directory holding codec.pt + codec.json); unset = the generic stage is trained from scratch on the first
    keyframe's features."""
    latent_dim: int = 3
    """D, codec latent width per level (ignored with --codec: the codec's own width is used)."""
    codec_steps: int = 500
    """Adam steps of the generic stage when it starts from scratch (and of the final adaptation at the end)."""
    adapt_steps: int = 100
    """Adam steps of each scene-adaptive update (fine-tuning the current codec on the reservoir)."""
    adapt_every: int = 5
    """A scene-adaptive update at most every N keyframes, and only when the reservoir took features the codec
    has not been fitted to yet."""
    reservoir_size: int = 4096
    """Distinct feature rows kept for the scene-adaptive stage (reservoir sampling: memory flat in the frames)."""
    lift_min_weight: float = 0.05
    """A Gaussian whose summed blending weight at a level is below this many pixels keeps a zero latent there
    (as the offline lift)."""
    relift: Relift = "snapshot"
    """Re-lift the latents exactly from the cached keyframe features with the current codec and geometry:
    at every snapshot (default), only at the end, or never (snapshots carry the online accumulators)."""
    language_backend: str = "auto"
    """Rasterizer backend of the contribution passes (any backend: only Gaussian features need gradients)."""
    language_device: str = "cpu"
    """Torch device of the feature models and the codec."""

    @property
    def enabled(self) -> bool:
        return self.features is not None

    def __post_init__(self) -> None:
        checks = [
            (self.features in (None, "labels", "dense", "sam-clip"),
             f"--features must be labels, dense or sam-clip, got {self.features!r}"),
            (self.latent_dim >= 1, f"--latent-dim must be >= 1, got {self.latent_dim}"),
            (self.codec_steps >= 1 and self.adapt_steps >= 1, "--codec-steps and --adapt-steps must be >= 1"),
            (self.adapt_every >= 1, f"--adapt-every must be >= 1, got {self.adapt_every}"),
            (self.reservoir_size >= 16, f"--reservoir-size must be >= 16, got {self.reservoir_size}"),
            (self.lift_min_weight >= 0, f"--lift-min-weight must be >= 0, got {self.lift_min_weight}"),
            (self.relift in ("snapshot", "end", "never"), f"--relift must be snapshot, end or never, got {self.relift!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise LangfieldError(message)
