"""Axis conventions: OpenGL and LLFF poses become OpenCV camera-to-world."""

import numpy as np

from langfield.sources.conventions import invert_rigid, llff_to_opencv_c2w, opengl_to_opencv_c2w


def _depth_in(c2w_cv: np.ndarray, point: np.ndarray) -> float:
    """Camera-space z of a world point for an OpenCV pose (positive = in front)."""
    w2c = np.linalg.inv(c2w_cv)
    return float((w2c[:3, :3] @ point + w2c[:3, 3])[2])


def test_opengl_identity_camera_looks_down_minus_z():
    # An OpenGL camera at the origin with identity pose looks along world -z with y up.
    cv = opengl_to_opencv_c2w(np.eye(4))
    np.testing.assert_allclose(cv[:3, 0], [1, 0, 0])
    np.testing.assert_allclose(cv[:3, 1], [0, -1, 0])  # image down = world -y
    np.testing.assert_allclose(cv[:3, 2], [0, 0, -1])  # viewing direction = world -z
    assert _depth_in(cv, np.array([0.0, 0.0, -3.0])) > 0
    assert _depth_in(cv, np.array([0.0, 0.0, 3.0])) < 0


def test_opengl_known_pose_keeps_centre_and_flips_axes():
    # GL camera at (1, 2, 3) rotated 90 degrees about world y: it looks along world -x.
    gl = np.eye(4)
    gl[:3, :3] = [[0, 0, 1], [0, 1, 0], [-1, 0, 0]]
    gl[:3, 3] = [1, 2, 3]
    cv = opengl_to_opencv_c2w(gl)
    np.testing.assert_allclose(cv[:3, 3], [1, 2, 3])
    np.testing.assert_allclose(cv[:3, 2], [-1, 0, 0])  # forward
    np.testing.assert_allclose(cv[:3, 1], [0, -1, 0])  # down
    assert np.isclose(np.linalg.det(cv[:3, :3]), 1.0)
    # A point above the camera (world +y) is in the upper image half: negative camera y.
    w2c = np.linalg.inv(cv)
    p = w2c[:3, :3] @ np.array([-2.0, 3.0, 3.0]) + w2c[:3, 3]
    assert p[2] > 0 and p[1] < 0


def test_opengl_conversion_is_an_involution_and_batches():
    rng = np.random.default_rng(1)
    mats = np.tile(np.eye(4), (5, 1, 1))
    mats[:, :3, 3] = rng.normal(size=(5, 3))
    once = opengl_to_opencv_c2w(mats)
    assert once.shape == (5, 4, 4)
    np.testing.assert_allclose(opengl_to_opencv_c2w(once), mats)


def test_llff_axes_map_to_opencv():
    # LLFF columns [down, right, backwards]: build from a known OpenCV pose.
    cv = np.eye(4)
    cv[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]  # camera x = world y, camera y = world -x
    cv[:3, 3] = [4, 5, 6]
    llff = np.stack([cv[:3, 1], cv[:3, 0], -cv[:3, 2], cv[:3, 3]], axis=1)
    np.testing.assert_allclose(llff_to_opencv_c2w(llff), cv)


def test_invert_rigid_matches_general_inverse():
    m = opengl_to_opencv_c2w(np.eye(4))
    m[:3, 3] = [1, -2, 0.5]
    np.testing.assert_allclose(invert_rigid(m), np.linalg.inv(m), atol=1e-12)
    np.testing.assert_allclose(invert_rigid(m) @ m, np.eye(4), atol=1e-12)
