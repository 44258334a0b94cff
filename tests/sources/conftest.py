"""Tiny dataset writers shared by the sources tests (everything lives in tmp dirs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

W, H = 8, 6


def _write_image(path: Path, arr: np.ndarray) -> Path:
    """Write an image (RGB/RGBA order, uint8/uint16) with OpenCV's BGR order handled."""
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[2] == 3:
        a = cv2.cvtColor(a, cv2.COLOR_RGB2BGR)
    elif a.ndim == 3 and a.shape[2] == 4:
        a = cv2.cvtColor(a, cv2.COLOR_RGBA2BGRA)
    assert cv2.imwrite(str(path), a)
    return path


def _random_poses(n: int, seed: int = 0) -> list[np.ndarray]:
    """Random rigid OpenCV c2w poses with distinct centres."""
    rng = np.random.default_rng(seed)
    rots = Rotation.random(n, random_state=seed).as_matrix()
    out = []
    for r in rots:
        m = np.eye(4)
        m[:3, :3] = r
        m[:3, 3] = rng.normal(size=3) * 2.0
        out.append(m)
    return out


def _cv_to_gl(c2w: np.ndarray) -> np.ndarray:
    """Independent OpenCV -> OpenGL conversion for building fixtures (negate camera y and z columns)."""
    gl = c2w.copy()
    gl[:3, 1] *= -1.0
    gl[:3, 2] *= -1.0
    return gl


@pytest.fixture
def write_image() -> Callable[[Path, np.ndarray], Path]:
    return _write_image


@pytest.fixture
def random_poses() -> Callable[..., list[np.ndarray]]:
    return _random_poses


@pytest.fixture
def ns_scene(tmp_path: Path) -> Callable[..., tuple[Path, list[np.ndarray]]]:
    """Factory: a nerfstudio scene of ``n`` 8x6 PNGs from known OpenCV poses.

    ``extra`` is merged into the top-level json, ``frame_extra(i)`` into frame i.
    Returns (transforms.json path, the OpenCV c2w poses).
    """

    def make(
        n: int = 9,
        extra: Optional[dict] = None,
        frame_extra: Optional[Callable[[int], dict]] = None,
        seed: int = 0,
    ) -> tuple[Path, list[np.ndarray]]:
        root = tmp_path / "ns"
        poses = _random_poses(n, seed)
        rng = np.random.default_rng(seed)
        frames = []
        for i, pose in enumerate(poses):
            _write_image(root / "images" / f"frame_{i:03d}.png", rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
            fr = {"file_path": f"images/frame_{i:03d}.png", "transform_matrix": _cv_to_gl(pose).tolist()}
            if frame_extra is not None:
                fr.update(frame_extra(i))
            frames.append(fr)
        meta = {"fl_x": 10.0, "fl_y": 11.0, "cx": 4.0, "cy": 3.0, "w": W, "h": H, "frames": frames}
        meta.update(extra or {})
        path = root / "transforms.json"
        path.write_text(json.dumps(meta))
        return path, poses

    return make
