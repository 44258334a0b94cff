"""Viewer cameras: an OpenCV pinhole pose + intrinsics at a render size, independent of viser.

viser reports a client's camera as ``wxyz`` + ``position`` with OpenCV axes
(look along +z, up is -y), i.e. exactly langfield's c2w convention, plus a
vertical field of view and the canvas aspect ratio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from langfield.geometry import quat_to_rotmat
from langfield.types import View


def quat_to_matrix(wxyz: np.ndarray) -> np.ndarray:
    """[3, 3] float64 rotation of a (w, x, y, z) quaternion (any norm): ``langfield.geometry.quat_to_rotmat``."""
    return quat_to_rotmat(torch.as_tensor(np.asarray(wxyz, dtype=np.float64))).numpy()


def fit_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(w, h) scaled down (never up) so the long side is at most ``max_side``, aspect kept, each >= 1."""
    scale = min(1.0, max_side / max(width, height))
    return max(1, int(round(width * scale))), max(1, int(round(height * scale)))


@dataclass(frozen=True)
class ViewerCamera:
    """One camera to render: pose, intrinsics and image size."""

    c2w: np.ndarray
    """[4, 4] camera-to-world, OpenCV axes (x right, y down, z forward)."""
    K: np.ndarray
    """[3, 3] intrinsics in pixels at (width, height); pixel centres at +0.5."""
    width: int
    """Image width in pixels."""
    height: int
    """Image height in pixels."""

    @staticmethod
    def from_fov(c2w: np.ndarray, fov_y: float, width: int, height: int) -> "ViewerCamera":
        """A centred pinhole camera with square pixels and vertical field of view ``fov_y`` (radians)."""
        fy = 0.5 * height / math.tan(0.5 * fov_y)
        K = np.array([[fy, 0.0, width / 2.0], [0.0, fy, height / 2.0], [0.0, 0.0, 1.0]])
        return ViewerCamera(np.asarray(c2w, dtype=np.float64), K, int(width), int(height))

    @staticmethod
    def from_pose(wxyz: np.ndarray, position: np.ndarray, fov_y: float, width: int, height: int) -> "ViewerCamera":
        """From a viser camera state (rotation quaternion and position of the camera in the world)."""
        c2w = np.eye(4)
        c2w[:3, :3] = quat_to_matrix(wxyz)
        c2w[:3, 3] = np.asarray(position, dtype=np.float64)
        return ViewerCamera.from_fov(c2w, fov_y, width, height)

    @staticmethod
    def from_scene_camera(cam) -> "ViewerCamera":
        """Exactly a ``langfield.scene.SceneCamera`` (its K, not a fov approximation)."""
        return ViewerCamera(np.asarray(cam.c2w, dtype=np.float64), np.asarray(cam.K, dtype=np.float64),
                            int(cam.width), int(cam.height))

    @property
    def fov_y(self) -> float:
        """Vertical field of view in radians."""
        return 2.0 * math.atan(0.5 * self.height / float(self.K[1, 1]))

    def resized(self, max_side: int) -> "ViewerCamera":
        """The same view with the long side capped at ``max_side`` (intrinsics scaled with the size)."""
        w, h = fit_size(self.width, self.height, max_side)
        if (w, h) == (self.width, self.height):
            return self
        K = self.K.copy()
        K[0] *= w / self.width
        K[1] *= h / self.height
        return replace(self, K=K, width=w, height=h)

    def to_view(self, device: str | torch.device = "cpu") -> View:
        """A pixel-less ``View`` for ``langfield.render``."""
        viewmat = torch.from_numpy(np.linalg.inv(self.c2w)).float().to(device)
        K = torch.from_numpy(np.asarray(self.K, dtype=np.float32)).to(device)
        return View(name="viewer", viewmat=viewmat, K=K, width=self.width, height=self.height)

    def look_at_point(self, distance: float) -> np.ndarray:
        """[3] the point ``distance`` ahead of the camera along its optical axis."""
        return self.c2w[:3, 3] + distance * self.c2w[:3, 2]

    @property
    def up(self) -> np.ndarray:
        """[3] the camera's up direction in the world (-y in OpenCV)."""
        return -self.c2w[:3, 1]
