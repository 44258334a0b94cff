"""Camera intrinsics, the ring of look-at poses, and the train/eval split.

Poses here are camera-to-world in OpenCV axes (x right, y down, z forward);
the writer converts them to the OpenGL convention of transforms.json.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from langfield.geometry import look_at

from .config import SceneConfig
from .geometry import mat_rows
from .layout import Scene


@dataclass(frozen=True)
class PinholeCamera:
    """A posed pinhole camera (OpenCV axes)."""

    c2w: np.ndarray
    """[4, 4] camera-to-world, OpenCV axes."""
    fx: float
    """Focal length x, pixels."""
    fy: float
    """Focal length y, pixels."""
    cx: float
    """Principal point x, pixels (pixel centres at +0.5)."""
    cy: float
    """Principal point y, pixels."""
    width: int
    """Image width, pixels."""
    height: int
    """Image height, pixels."""

    def ray_dirs(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Unit world directions through image points (u, v) and their camera-z component.

        ``z_per_t`` converts distance along the ray into z-depth.
        """
        d_cam = np.stack([(u - self.cx) / self.fx, (v - self.cy) / self.fy, np.ones_like(u)], axis=-1)
        d_cam = d_cam / np.sqrt(np.einsum("ij,ij->i", d_cam, d_cam))[:, None]
        return mat_rows(d_cam, self.c2w[:3, :3].T), d_cam[:, 2]

    @property
    def origin(self) -> np.ndarray:
        return self.c2w[:3, 3].copy()


def focal_from_fov(width: int, hfov_deg: float) -> float:
    return 0.5 * width / np.tan(np.deg2rad(hfov_deg) / 2)


def eval_indices(n_total: int, n_eval: int) -> list[int]:
    """Evenly spread positions on the ring, each flanked by training views."""
    return sorted({int((k + 0.5) * n_total / n_eval) for k in range(n_eval)}) if n_eval else []


def ring_cameras(scene: Scene, cfg: SceneConfig, seed: int, n_total: int, width: int, height: int) -> list[PinholeCamera]:
    """``n_total`` cameras in angular order on an ellipse around the objects, all looking near the centre."""
    rng = np.random.default_rng([seed, 1])
    f = focal_from_fov(width, cfg.hfov_deg)
    ax = scene.room.half_x - cfg.camera_wall_margin
    ay = scene.room.half_y - cfg.camera_wall_margin
    lo, hi = cfg.camera_height_range
    phase, h_phase = rng.uniform(0, 2 * np.pi, 2)
    cams = []
    for i in range(n_total):
        ang = phase + 2 * np.pi * (i + cfg.angle_jitter * rng.uniform(-1, 1)) / n_total
        scale = 1.0 - cfg.camera_ring_spread * rng.uniform()
        # Heights swing up and down twice around the ring (plus noise) so views differ in elevation.
        hgt = np.clip(0.5 * (lo + hi) + 0.4 * (hi - lo) * np.sin(2 * ang + h_phase) + rng.normal(0, 0.08 * (hi - lo)), lo, hi)
        eye = np.array([scale * ax * np.cos(ang), scale * ay * np.sin(ang), hgt])
        j = cfg.target_jitter
        target = scene.center + rng.uniform(-j, j, 3) * np.array([1.0, 1.0, 0.5])
        cams.append(PinholeCamera(look_at(eye, target), f, f, width / 2, height / 2, width, height))
    return cams


