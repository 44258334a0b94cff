"""Typed values that cross package boundaries.

Conventions (see README "Conventions"):

* Cameras are OpenCV: x right, y down, z forward.  ``c2w`` poses are
  camera-to-world 4x4; ``viewmat`` is world-to-camera 4x4.
* Pixel centres sit at ``(u + 0.5, v + 0.5)``.
* Images are channels-last float32 in [0, 1]: ``[H, W, 3]`` (batched ``[C, H, W, D]``).
* Quaternions are (w, x, y, z).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch


class LangfieldError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits non-zero."""


class DataError(LangfieldError):
    """Bad input data (missing/corrupt file, inconsistent intrinsics, bad pose ...)."""


class ConfigError(LangfieldError):
    """A configuration value out of range, raised by the config dataclasses' ``__post_init__``.

    Deliberately not a ValueError: tyro turns ValueErrors of nested dataclasses
    into its own error box, while a LangfieldError reaches the CLI's one-line
    ``error: bad option: ...`` (exit 2).
    """

    def __init__(self, message: str) -> None:
        super().__init__(f"bad option: {message}")


# Camera models we understand; distortion coefficients follow OpenCV's order.
CAMERA_MODELS = ("PINHOLE", "SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of one image, in pixels, at the image's stored size."""

    fx: float
    """Focal length along x, pixels."""
    fy: float
    """Focal length along y, pixels."""
    cx: float
    """Principal point x, pixels (pixel centres at +0.5)."""
    cy: float
    """Principal point y, pixels."""
    width: int
    """Image width, pixels."""
    height: int
    """Image height, pixels."""
    model: str = "PINHOLE"
    """Camera model name (one of CAMERA_MODELS)."""
    distortion: tuple[float, ...] = ()
    """OpenCV distortion coefficients (k1, k2, p1, p2[, k3]); empty for none."""

    def K(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The 3x3 calibration matrix."""
        return torch.tensor(
            [[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]], dtype=dtype
        )

    def scaled(self, factor: float) -> "Intrinsics":
        """Intrinsics for the image resized by ``1/factor`` (downscale 2 -> half size).

        The new size is ``round(size / factor)``; focal lengths and principal
        point scale by the actual size ratio so a downscaled image stays exact.
        """
        w = max(1, int(round(self.width / factor)))
        h = max(1, int(round(self.height / factor)))
        sx, sy = w / self.width, h / self.height
        return replace(self, fx=self.fx * sx, fy=self.fy * sy, cx=self.cx * sx, cy=self.cy * sy, width=w, height=h)


@dataclass
class Frame:
    """One posed image of a capture (no pixels loaded: see ``sources.load_rgb``)."""

    name: str
    """The frame's identifier as the dataset spells it (nerfstudio ``file_path``, image file name ...)."""
    image_path: Path
    """Absolute path of the RGB image file."""
    intrinsics: Intrinsics
    """Intrinsics at the stored image size (before any --downscale)."""
    c2w: Optional[np.ndarray]
    """4x4 float64 camera-to-world pose, OpenCV axes; None when the capture has no poses."""
    depth_path: Optional[Path] = None
    """Optional depth map (uint16 PNG or .npy float metres)."""
    depth_scale: float = 0.001
    """Metres per depth unit for integer depth images."""
    semantics_path: Optional[Path] = None
    """Optional uint16 PNG of label ids (0 = none), see ``Capture.labels``."""
    timestamp: Optional[float] = None
    """Capture time in seconds when known (video, RGB-D sequences)."""


@dataclass(frozen=True)
class Label:
    """Text of one semantic id: fine level = part, coarse level = whole."""

    part: str
    """Fine-level text (e.g. "table leg")."""
    whole: str
    """Coarse-level text (e.g. "table")."""


@dataclass
class Capture:
    """A whole dataset: frames, split, optional sparse points and labels."""

    root: Path
    """Directory the capture was read from."""
    frames: list[Frame]
    """All frames in dataset order."""
    train_ids: list[int]
    """Indices into ``frames`` used for training."""
    eval_ids: list[int]
    """Indices into ``frames`` held out for evaluation."""
    points: Optional[np.ndarray] = None
    """Optional [P, 3] float32 sparse points (SfM / ply) in world coordinates."""
    point_colors: Optional[np.ndarray] = None
    """Optional [P, 3] uint8 colours of ``points``."""
    labels: Optional[dict[int, Label]] = None
    """Optional id -> Label map (from labels.json)."""
    kind: str = "unknown"
    """Reader that produced it: nerfstudio | colmap | llff | images | ..."""
    scene_scale: float = 1.0
    """Extent of camera centres (radius around their mean, >0); learning rates scale with it."""

    @property
    def has_poses(self) -> bool:
        return all(f.c2w is not None for f in self.frames)

    @property
    def has_depth(self) -> bool:
        return any(f.depth_path is not None for f in self.frames)

    @property
    def train_frames(self) -> list[Frame]:
        return [self.frames[i] for i in self.train_ids]

    @property
    def eval_frames(self) -> list[Frame]:
        return [self.frames[i] for i in self.eval_ids]


@dataclass
class View:
    """A loaded camera + pixels ready for training/eval (tensors on one device)."""

    name: str
    """Frame name (``Frame.name``)."""
    viewmat: torch.Tensor
    """[4, 4] world-to-camera, float32."""
    K: torch.Tensor
    """[3, 3] intrinsics at the loaded resolution, float32."""
    width: int
    """Loaded image width."""
    height: int
    """Loaded image height."""
    rgb: Optional[torch.Tensor] = None
    """[H, W, 3] float32 in [0, 1]."""
    depth: Optional[torch.Tensor] = None
    """[H, W, 1] float32 metres, 0 where unknown."""
    semantics: Optional[torch.Tensor] = None
    """[H, W] int64 label ids, 0 = none."""


@dataclass
class RenderOutput:
    """What ``langfield.render.render`` returns for C cameras."""

    rgb: torch.Tensor
    """[C, H, W, 3] colour, background composited."""
    alpha: torch.Tensor
    """[C, H, W, 1] accumulated opacity."""
    depth: Optional[torch.Tensor] = None
    """[C, H, W, 1] expected depth normalised by alpha (0 where alpha ~ 0)."""
    features: Optional[torch.Tensor] = None
    """[C, H, W, D] extra feature channels (background 0), or None."""
    means2d: Optional[torch.Tensor] = None
    """[C, N, 2] projected centres; ``retain_grad`` is set during training for densification."""
    radii: Optional[torch.Tensor] = None
    """[C, N] int32 screen radii in pixels, 0 = culled."""
    absgrad: Optional[torch.Tensor] = None
    """[C, N, 2] AbsGS statistic when rendered with ``absgrad=True`` (else None): zeros after the forward,
    the backward adds the sum over pixels of |each pixel's share of the means2d gradient| into it."""
    extras: dict = field(default_factory=dict)
    """Backend-specific intermediate values (never relied on across packages)."""
