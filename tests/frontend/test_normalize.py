"""Scene normalisation: centred, unit-scaled camera centres, mean up turned to +z, the similarity invertible."""

from __future__ import annotations

import numpy as np
import pytest

from langfield.frontend.normalize import Normalization, normalize_cameras, rotation_between
from langfield.geometry import look_at
from langfield.types import DataError


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q @ np.diag(np.sign(np.diag(r)))
    return q if np.linalg.det(q) > 0 else -q


def _orbit(n: int = 12, up=(0.0, 1.0, 0.0), radius: float = 3.0) -> np.ndarray:
    """Cameras on a ring around the origin looking at it, upright for world ``up`` (y up here, not z)."""
    up = np.asarray(up, dtype=np.float64)
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    eyes = radius * np.stack([np.cos(a), 0.3 * np.ones(n), np.sin(a)], 1) + np.array([5.0, -2.0, 7.0])
    return np.stack([look_at(e, np.array([5.0, -2.0, 7.0]), up) for e in eyes])


def _moved(c2w: np.ndarray, rot: np.ndarray, t: np.ndarray, s: float) -> np.ndarray:
    return Normalization(rot, t, s).poses(c2w)


def test_centres_centred_unit_scale_and_up_is_z():
    rng = np.random.default_rng(0)
    c2w = _moved(_orbit(), _random_rotation(rng), rng.normal(size=3) * 10, 3.7)
    norm = normalize_cameras(c2w)
    out = norm.poses(c2w)
    centres = out[:, :3, 3]
    np.testing.assert_allclose(centres.mean(0), 0.0, atol=1e-9)
    assert np.linalg.norm(centres, axis=1).max() == pytest.approx(1.0)
    up = -out[:, :3, 1].mean(0)
    np.testing.assert_allclose(up / np.linalg.norm(up), [0.0, 0.0, 1.0], atol=1e-9)
    # rotations stay rotations
    r = out[:, :3, :3]
    np.testing.assert_allclose(r @ np.swapaxes(r, 1, 2), np.broadcast_to(np.eye(3), r.shape), atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-9)


def test_independent_of_the_sfm_gauge():
    """Two SfM worlds differing by a similarity normalise to the same scene up to a turn about +z."""
    rng = np.random.default_rng(1)
    base = _orbit(9)
    a = normalize_cameras(base).poses(base)
    other = _moved(base, _random_rotation(rng), rng.normal(size=3), 0.25)
    b = normalize_cameras(other).poses(other)
    np.testing.assert_allclose(a[:, 2, 3], b[:, 2, 3], atol=1e-9)  # heights agree
    da = np.linalg.norm(a[:, None, :3, 3] - a[None, :, :3, 3], axis=-1)
    db = np.linalg.norm(b[:, None, :3, 3] - b[None, :, :3, 3], axis=-1)
    np.testing.assert_allclose(da, db, atol=1e-9)


def test_matrix_inverse_and_points_agree():
    rng = np.random.default_rng(2)
    norm = Normalization(_random_rotation(rng), rng.normal(size=3), 2.5)
    np.testing.assert_allclose(norm.inverse @ norm.matrix, np.eye(4), atol=1e-12)
    pts = rng.normal(size=(7, 3))
    homo = np.c_[pts, np.ones(7)] @ norm.matrix.T
    np.testing.assert_allclose(norm.points(pts), homo[:, :3], atol=1e-12)


@pytest.mark.parametrize("b", [(0, 0, 1), (0, 0, -1), (1, 2, 3), (-1, 0, 0)])
def test_rotation_between(b):
    a = np.array([0.3, -0.2, 0.9])
    r = rotation_between(a, np.asarray(b, float))
    np.testing.assert_allclose(r @ a / np.linalg.norm(a), np.asarray(b, float) / np.linalg.norm(b), atol=1e-12)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(r) == pytest.approx(1.0)
    r2 = rotation_between(a, -a)  # opposite: a half turn
    np.testing.assert_allclose(r2 @ a, -a, atol=1e-12)


def test_static_camera_refused():
    c2w = np.stack([look_at(np.array([1.0, 2.0, 3.0]), np.array([0.0, 0.0, 0.0]))] * 4)
    with pytest.raises(DataError, match="coincide"):
        normalize_cameras(c2w)
