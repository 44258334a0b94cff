"""Analytic intersections of the synthetic ray caster against hand-derived cases and an independent inside test."""

from __future__ import annotations

import numpy as np
import pytest

from langfield.synthetic.geometry import Box, Cylinder, Room, Sphere, cone_candidates


def _rays(*dirs) -> np.ndarray:
    d = np.asarray(dirs, dtype=np.float64)
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def _hit(shape, o, d):
    """t and normals for [M, 3] directions through the public API ([3, M] transposed input)."""
    t = shape.intersect(np.asarray(o, float), np.ascontiguousarray(d.T))
    p = np.asarray(o, float) + np.where(np.isfinite(t), t, 0)[:, None] * d
    return t, shape.normal_at(p), p


def test_sphere_hit_distance_and_normal():
    s = Sphere(np.array([5.0, 0.0, 0.0]), 1.0)
    t, n, _ = _hit(s, [0, 0, 0], _rays([1, 0, 0], [0, 1, 0], [-1, 0, 0]))
    assert t[0] == pytest.approx(4.0)
    np.testing.assert_allclose(n[0], [-1, 0, 0], atol=1e-12)
    assert np.isinf(t[1]) and np.isinf(t[2])  # sideways miss, sphere behind


def test_box_yaw_changes_the_footprint():
    rot = Box(np.array([3.0, 0.0, 1.0]), np.ones(3), yaw=np.pi / 4)
    axis = Box(np.array([3.0, 0.0, 1.0]), np.ones(3), yaw=0.0)
    down = _rays([0, 0, -1])
    # (1.3, 0) from the centre lies in the rotated diamond |x|+|y| <= sqrt(2) only.
    for shape, expect_hit in ((rot, True), (axis, False)):
        t, n, _ = _hit(shape, [4.3, 0.0, 5.0], down)
        assert np.isfinite(t[0]) == expect_hit
    t, n, _ = _hit(rot, [4.3, 0.0, 5.0], down)
    assert t[0] == pytest.approx(3.0)
    np.testing.assert_allclose(n[0], [0, 0, 1], atol=1e-12)
    # (0.9, 0.9) is inside the axis-aligned square but outside the diamond.
    assert np.isfinite(_hit(axis, [3.9, 0.9, 5.0], down)[0][0])
    assert np.isinf(_hit(rot, [3.9, 0.9, 5.0], down)[0][0])
    # A face normal of the rotated box is rotated by the yaw.
    t, n, _ = _hit(rot, [0.0, -3.0, 1.0], _rays([3.0, 3.0, 0.0]))
    assert t[0] == pytest.approx(np.hypot(3, 3) - 1.0)
    np.testing.assert_allclose(n[0], [-np.sqrt(0.5), -np.sqrt(0.5), 0], atol=1e-9)


def test_cylinder_side_cap_and_miss():
    c = Cylinder(np.array([4.0, 0.0, 1.0]), 0.5, 1.0)
    t, n, _ = _hit(c, [0, 0, 1], _rays([1, 0, 0]))
    assert t[0] == pytest.approx(3.5)
    np.testing.assert_allclose(n[0], [-1, 0, 0], atol=1e-12)
    t, n, _ = _hit(c, [4.0, 0.2, 5.0], _rays([0, 0, -1], [0, 0, 1]))
    assert t[0] == pytest.approx(3.0) and np.isinf(t[1])
    np.testing.assert_allclose(n[0], [0, 0, 1], atol=1e-12)
    assert np.isinf(_hit(c, [4.0, 0.6, 5.0], _rays([0, 0, -1]))[0][0])
    assert np.isinf(_hit(c, [0, 0, 2.5], _rays([1, 0, 0]))[0][0])  # passes above the top cap


def _inside(shape, p: np.ndarray) -> np.ndarray:
    """Independent point-in-solid test (world points [M, 3])."""
    q = p - shape.center
    if isinstance(shape, Sphere):
        return np.linalg.norm(q, axis=1) < shape.radius
    if isinstance(shape, Cylinder):
        return (np.hypot(q[:, 0], q[:, 1]) < shape.radius) & (np.abs(q[:, 2]) < shape.half_height)
    c, s = np.cos(shape.yaw), np.sin(shape.yaw)
    local = np.stack([c * q[:, 0] + s * q[:, 1], -s * q[:, 0] + c * q[:, 1], q[:, 2]], axis=1)
    return np.all(np.abs(local) < shape.half, axis=1)


@pytest.mark.parametrize(
    "shape",
    [
        Sphere(np.array([0.3, -0.2, 0.1]), 0.7),
        Box(np.array([0.1, 0.2, -0.1]), np.array([0.6, 0.3, 0.8]), yaw=0.7),
        Cylinder(np.array([-0.2, 0.1, 0.0]), 0.5, 0.6),
    ],
)
def test_random_rays_hit_the_surface_first(shape):
    rng = np.random.default_rng(0)
    o = np.array([2.5, -1.5, 1.2])
    target = shape.center + rng.uniform(-1.0, 1.0, (400, 3))
    d = target - o
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    t, n, p = _hit(shape, o, d)
    hit = np.isfinite(t)
    assert 50 < hit.sum() < 400
    # Just past the hit we are inside, just before it outside, and no earlier sample is inside.
    assert _inside(shape, p[hit] + 1e-4 * d[hit]).all()
    assert not _inside(shape, p[hit] - 1e-4 * d[hit]).any()
    t_hit = np.where(hit, t, 0.0)
    for frac in np.linspace(0.0, 1.0, 40):
        far = np.where(hit, t_hit * frac - 1e-4, 20.0 * frac)
        assert not _inside(shape, o + far[:, None] * d).any()
    # Normals are unit, face the ray origin, and point out of the solid.
    np.testing.assert_allclose(np.linalg.norm(n[hit], axis=1), 1.0, atol=1e-9)
    assert (np.einsum("ij,ij->i", n[hit], d[hit]) < 0).all()
    assert not _inside(shape, p[hit] + 1e-4 * n[hit]).any()
    # Cone culling never drops a ray that hits.
    cand = cone_candidates(o, np.ascontiguousarray(d.T), shape.center, shape.bounding_radius)
    assert set(np.flatnonzero(hit)) <= set(cand.tolist())


def test_room_faces_and_inward_normals():
    room = Room(3.0, 2.0, 2.5)
    o = np.array([0.5, 0.0, 1.0])
    d = _rays([0, 0, -1], [0, 0, 1], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [1, 1, 0])
    t, face, n = room.intersect(o, np.ascontiguousarray(d.T))
    np.testing.assert_allclose(t[:6], [1.0, 1.5, 2.5, 3.5, 2.0, 2.0])
    assert face.tolist()[:6] == [4, 5, 1, 0, 3, 2]
    np.testing.assert_allclose(n[:6], -d[:6], atol=1e-12)
    assert t[6] == pytest.approx(2.0 * np.sqrt(2))  # the +y wall comes first on the diagonal
