"""Camera axis conventions: the only place where foreign pose conventions become OpenCV.

langfield stores camera-to-world poses with OpenCV camera axes (x right,
y down, z forward).  Datasets use others:

* nerfstudio / Blender ``transforms.json``: OpenGL axes (x right, y up, z back).
* LLFF ``poses_bounds.npy``: rotation columns ordered [down, right, backwards].
* COLMAP: world-to-camera poses with OpenCV axes (only needs inverting).
"""

from __future__ import annotations

import numpy as np

# Flipping camera y and z turns OpenGL camera axes into OpenCV ones (and back:
# the matrix is its own inverse).
_GL_CV_FLIP = np.diag([1.0, -1.0, -1.0, 1.0])


def opengl_to_opencv_c2w(c2w: np.ndarray) -> np.ndarray:
    """Camera-to-world pose with OpenGL camera axes -> the same camera with OpenCV axes.

    Only the camera's local axes change (columns y and z negated); the world
    frame and the camera centre stay as they are.  Applying it twice gives the
    input back.  Accepts [4, 4] or [..., 4, 4]; returns float64.
    """
    c2w = np.asarray(c2w, dtype=np.float64)
    return c2w @ _GL_CV_FLIP


def llff_to_opencv_c2w(pose_3x4: np.ndarray) -> np.ndarray:
    """LLFF [3, 4] camera-to-world with columns [down, right, backwards, t] -> OpenCV [4, 4].

    LLFF builds these from COLMAP poses by reordering columns, so the result
    lives in the COLMAP world frame (the one of ``sparse/0/points3D``).
    """
    p = np.asarray(pose_3x4, dtype=np.float64)
    out = np.eye(4)
    out[:3, 0] = p[:, 1]  # x right
    out[:3, 1] = p[:, 0]  # y down
    out[:3, 2] = -p[:, 2]  # z forward = -backwards
    out[:3, 3] = p[:, 3]
    return out


def invert_rigid(m: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4x4 transform (world->camera <-> camera->world), float64.

    Uses the transpose of the rotation rather than a general inverse so a
    validated pose inverts exactly.
    """
    m = np.asarray(m, dtype=np.float64)
    r = m[:3, :3]
    out = np.eye(4)
    out[:3, :3] = r.T
    out[:3, 3] = -r.T @ m[:3, 3]
    return out
