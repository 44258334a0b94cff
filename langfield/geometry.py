"""Small geometry shared by every layer: quaternion rotations, look-at poses, SH constants.

Conventions (README "Conventions"): quaternions are (w, x, y, z); poses are OpenCV
camera-to-world (x right, y down, z forward).  This module imports nothing of
langfield, so the rasterizer, the Gaussian edits, the dataset writer and the
viewer all share one copy of each formula.
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

# Real spherical-harmonics constants, in the form the original 3DGS code writes them
# (the native kernels hold the same values in cuda/include).
SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


def quat_to_rotmat(quats: torch.Tensor) -> torch.Tensor:
    """[..., 4] quaternions (w, x, y, z), any norm -> [..., 3, 3] rotation matrices.

    Differentiable (the torch rasterizer backpropagates through it); a zero
    quaternion gives the identity rather than NaN.
    """
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]  # fmt: skip
    return torch.stack(rows, dim=-1).reshape(quats.shape[:-1] + (3, 3))


def look_at(
    eye: np.ndarray, target: np.ndarray, up: Union[np.ndarray, Sequence[float]] = (0.0, 0.0, 1.0)
) -> np.ndarray:
    """[4, 4] float64 OpenCV camera-to-world at ``eye`` looking at ``target``; image y points against ``up``.

    Looking straight along ``up`` any perpendicular right axis is used, so the
    pose stays a rotation.
    """
    up = np.asarray(up, dtype=np.float64)
    z = target - eye
    z = z / max(np.linalg.norm(z), 1e-12)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:
        x = np.cross(z, [1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.cross(z, [0.0, 1.0, 0.0])
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)  # x cross y = z, so y = z cross x
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = x, y, z, eye
    return c2w


def skew(w: torch.Tensor) -> torch.Tensor:
    """[..., 3] -> [..., 3, 3] cross-product matrices ``w^`` (``w^ v = w x v``)."""
    z = torch.zeros_like(w[..., 0])
    x, y, zz = w.unbind(-1)
    return torch.stack([z, -zz, y, zz, z, -x, -y, x, z], dim=-1).reshape(w.shape[:-1] + (3, 3))


def so3_exp(w: torch.Tensor) -> torch.Tensor:
    """Rodrigues: axis-angle [..., 3] -> rotation [..., 3, 3], differentiable at 0 (series for small angles)."""
    theta2 = (w * w).sum(-1)[..., None, None]
    small = theta2 < 1e-6
    # The unselected branch must stay finite (its gradient is multiplied by 0, and 0 * inf = nan).
    theta = torch.sqrt(torch.where(small, torch.ones_like(theta2), theta2))
    a = torch.where(small, 1.0 - theta2 / 6.0 + theta2 * theta2 / 120.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24.0 + theta2 * theta2 / 720.0,
                    (1.0 - torch.cos(theta)) / torch.where(small, torch.ones_like(theta2), theta2))
    k = skew(w)
    eye = torch.eye(3, dtype=w.dtype, device=w.device).expand(k.shape)
    return eye + a * k + b * (k @ k)
