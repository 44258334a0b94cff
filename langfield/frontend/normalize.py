"""Scene normalisation of an SfM reconstruction: centre, scale and turn the cameras upright.

SfM fixes the world only up to a similarity (COLMAP's first image pair sets it).  Training
and the viewer want the cameras centred at the origin, of unit-ish extent, with +z up.  The
similarity ``x_out = s * R @ x_sfm + t`` is kept as a 4x4 matrix (``Normalization.matrix``)
and recorded in ``transforms.json`` as nerfstudio's ``applied_transform`` (3x4, from the
COLMAP model's world to the dataset's), scale folded in, so exported PLYs map back with
``Normalization.inverse``.  The scale is folded into ``applied_transform`` rather than
written as ``applied_scale``: nerfstudio multiplies ``applied_scale`` into the scale it
applies to ``ply_file_path`` points, which already are in the dataset's world.

Up vector: each OpenCV camera's up is the negated y axis of its camera-to-world rotation;
their mean becomes +z (the minimal rotation, as nerfstudio's ``orientation_method="up"``).
Scale: the farthest camera centre lands at distance 1 from the origin (nerfstudio's
``auto_scale_poses`` uses the largest coordinate instead, which changes with a turn of the
SfM world: the distance does not, so one scene always normalises the same way).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from langfield.types import DataError


@dataclass(frozen=True)
class Normalization:
    """A world similarity ``x -> scale * rotation @ x + translation`` (from the SfM world to the dataset's)."""

    rotation: np.ndarray
    """[3, 3] rotation."""
    translation: np.ndarray
    """[3] translation, applied after rotation and scale."""
    scale: float
    """Positive uniform scale."""

    @property
    def matrix(self) -> np.ndarray:
        """[4, 4] float64 homogeneous matrix of the similarity."""
        m = np.eye(4)
        m[:3, :3] = self.scale * self.rotation
        m[:3, 3] = self.translation
        return m

    @property
    def inverse(self) -> np.ndarray:
        """[4, 4] float64 matrix mapping dataset coordinates back to the SfM world."""
        m = np.eye(4)
        m[:3, :3] = self.rotation.T / self.scale
        m[:3, 3] = -self.rotation.T @ self.translation / self.scale
        return m

    def points(self, xyz: np.ndarray) -> np.ndarray:
        """[P, 3] points moved into the dataset's world (float64)."""
        xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
        return self.scale * xyz @ self.rotation.T + self.translation

    def poses(self, c2w: np.ndarray) -> np.ndarray:
        """[N, 4, 4] camera-to-world poses moved into the dataset's world: rotations stay rotations."""
        c2w = np.asarray(c2w, dtype=np.float64)
        out = c2w.copy()
        out[..., :3, :3] = self.rotation @ c2w[..., :3, :3]
        out[..., :3, 3] = self.points(c2w[..., :3, 3].reshape(-1, 3)).reshape(c2w[..., :3, 3].shape)
        return out


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The minimal [3, 3] rotation taking direction ``a`` onto direction ``b`` (Rodrigues)."""
    a = np.asarray(a, dtype=np.float64) / np.linalg.norm(a)
    b = np.asarray(b, dtype=np.float64) / np.linalg.norm(b)
    v = np.cross(a, b)
    c = float(np.dot(a, b))
    if c < -1.0 + 1e-12:
        # Opposite directions: any half turn about an axis perpendicular to a.
        axis = np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 else [0.0, 1.0, 0.0])
        axis /= np.linalg.norm(axis)
        return 2.0 * np.outer(axis, axis) - np.eye(3)
    vx = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return np.eye(3) + vx + vx @ vx / (1.0 + c)


def normalize_cameras(c2w: np.ndarray) -> Normalization:
    """The similarity that centres the camera positions, scales them to [-1, 1] and turns their mean up to +z.

    ``c2w``: [N, 4, 4] OpenCV camera-to-world poses.  DataError when the cameras all sit
    at one point (no scale can be defined: a static camera) or their up vectors cancel.
    """
    c2w = np.asarray(c2w, dtype=np.float64)
    if c2w.ndim != 3 or c2w.shape[1:] != (4, 4) or len(c2w) == 0:
        raise DataError(f"normalize_cameras: expected poses of shape [N, 4, 4], got {list(c2w.shape)}")
    up = -c2w[:, :3, 1].mean(axis=0)
    if np.linalg.norm(up) < 1e-6:
        raise DataError("cannot orient the scene: the cameras' up vectors cancel out")
    rot = rotation_between(up, np.array([0.0, 0.0, 1.0]))
    centres = c2w[:, :3, 3] @ rot.T
    centre = centres.mean(axis=0)
    extent = float(np.linalg.norm(centres - centre, axis=1).max())
    if not np.isfinite(extent) or extent <= 1e-9 * max(1.0, float(np.abs(centres).max())):
        raise DataError(f"cannot scale the scene: all {len(c2w)} camera centres coincide (a static camera)")
    scale = 1.0 / extent
    return Normalization(rotation=rot, translation=-scale * centre, scale=scale)
