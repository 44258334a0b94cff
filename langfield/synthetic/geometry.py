"""Analytic ray/primitive intersection, vectorised over rays that share one origin.

Every ray batch in the generator has a single origin (a camera centre for
primary rays, a light for shadow rays), which keeps the maths to a few numpy
expressions per primitive and makes bounding-sphere culling a cheap cone test.
Directions are unit vectors passed transposed, ``dt`` [3, M] (one contiguous
row per component: 1D numpy ops are several times faster than [M, 3] ones
with axis reductions); ``intersect`` returns the distance ``t``
along each ray (``inf`` = miss); ``normal_at`` gives unit world normals facing
out of the solid at surface points (computed only for the hits that win, which
is why it is separate).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

T_EPS = 1e-6
"""Smallest accepted hit distance (metres): rejects hits behind or at the origin."""

_TINY = 1e-12


def _safe(d: np.ndarray) -> np.ndarray:
    """Nudge zero direction components to a signed tiny value so 1/d is finite (no inf*0 NaNs).

    Adding 1e-30 leaves every non-degenerate component bit-identical.
    """
    return d + np.copysign(1e-30, d)


def mat_rows(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``x @ m`` for [M, 3] rows and a 3x3 ``m``, written out: numpy's matmul is slow for this shape."""
    return x[:, 0:1] * m[0] + x[:, 1:2] * m[1] + x[:, 2:3] * m[2]


def yaw_matrix(yaw: float) -> np.ndarray:
    """Rotation about +z by ``yaw`` radians (local -> world)."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass
class Box:
    """Box with ``half`` extents, centred at ``center``, rotated by ``yaw`` about +z."""

    center: np.ndarray
    """[3] world centre."""
    half: np.ndarray
    """[3] half extents along the local axes."""
    yaw: float = 0.0
    """Rotation about the vertical (+z) axis, radians."""

    @property
    def rot(self) -> np.ndarray:
        return yaw_matrix(self.yaw)

    def to_local(self, p: np.ndarray) -> np.ndarray:
        """World points [M, 3] -> local frame (row-vector form of R^T (p - c))."""
        return mat_rows(p - self.center, self.rot)

    def dir_to_local(self, d: np.ndarray) -> np.ndarray:
        return mat_rows(d, self.rot)

    @property
    def bounding_radius(self) -> float:
        return float(np.linalg.norm(self.half))

    def intersect(self, o: np.ndarray, dt: np.ndarray) -> np.ndarray:
        ol = (o - self.center) @ self.rot
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        # Slab test in the local frame; yaw only mixes x and y.
        dirs = (c * dt[0] + s * dt[1], c * dt[1] - s * dt[0], dt[2])
        tmin = tmax = None
        for a in range(3):
            inv = 1.0 / _safe(dirs[a])
            t1 = (-self.half[a] - ol[a]) * inv
            t2 = (self.half[a] - ol[a]) * inv
            lo, hi = np.minimum(t1, t2), np.maximum(t1, t2)
            tmin = lo if tmin is None else np.maximum(tmin, lo)
            tmax = hi if tmax is None else np.minimum(tmax, hi)
        return np.where((tmin <= tmax) & (tmin > T_EPS), tmin, np.inf)

    def contains(self, p: np.ndarray, margin: float = 0.0) -> bool:
        """Whether world point ``p`` [3] lies within ``margin`` of the solid."""
        return bool(np.all(np.abs((p - self.center) @ self.rot) < self.half + margin))

    def normal_at(self, p: np.ndarray) -> np.ndarray:
        """Outward normals at surface points [M, 3]: the face whose slab the point is closest to leaving."""
        pl = self.to_local(p)
        rows = np.arange(p.shape[0])
        axis = np.argmax(np.abs(pl) / self.half, axis=1)
        n_local = np.zeros_like(p)
        n_local[rows, axis] = np.sign(pl[rows, axis])
        return mat_rows(n_local, self.rot.T)

    def to_json(self) -> dict:
        return {"type": "box", "center": _l(self.center), "half_extents": _l(self.half), "yaw": float(self.yaw)}


@dataclass
class Cylinder:
    """Capped cylinder with a vertical (+z) axis."""

    center: np.ndarray
    """[3] world centre (middle of the axis)."""
    radius: float
    """Radius, metres."""
    half_height: float
    """Half of the height, metres."""
    yaw: float = 0.0
    """Orientation of the local frame about +z (only textures and attachments use it)."""

    @property
    def rot(self) -> np.ndarray:
        return yaw_matrix(self.yaw)

    def to_local(self, p: np.ndarray) -> np.ndarray:
        return mat_rows(p - self.center, self.rot)

    def dir_to_local(self, d: np.ndarray) -> np.ndarray:
        return mat_rows(d, self.rot)

    @property
    def bounding_radius(self) -> float:
        return float(np.hypot(self.radius, self.half_height))

    def intersect(self, o: np.ndarray, dt: np.ndarray) -> np.ndarray:
        ox, oy, oz = o - self.center
        dx, dy, dz = dt
        r2 = self.radius**2
        # Side: |(o + t d)_xy|^2 = r^2, entry root only (origins are outside).
        a = dx * dx + dy * dy
        b = ox * dx + oy * dy
        c = ox * ox + oy * oy - r2
        disc = b * b - a * c
        t_side = (-b - np.sqrt(np.maximum(disc, 0.0))) / np.maximum(a, _TINY)
        ok_side = (disc >= 0) & (a > _TINY) & (t_side > T_EPS) & (np.abs(oz + t_side * dz) <= self.half_height)
        # Cap: the one facing the ray (top when going down).
        cap_z = np.where(dz < 0, self.half_height, -self.half_height)
        t_cap = (cap_z - oz) / _safe(dz)
        px, py = ox + t_cap * dx, oy + t_cap * dy
        ok_cap = (t_cap > T_EPS) & (px * px + py * py <= r2)
        t_side = np.where(ok_side, t_side, np.inf)
        t_cap = np.where(ok_cap, t_cap, np.inf)
        return np.minimum(t_side, t_cap)

    def contains(self, p: np.ndarray, margin: float = 0.0) -> bool:
        """Whether world point ``p`` [3] lies within ``margin`` of the solid (box-rounded, conservative)."""
        q = p - self.center
        return bool(np.hypot(q[0], q[1]) < self.radius + margin and abs(q[2]) < self.half_height + margin)

    def normal_at(self, p: np.ndarray) -> np.ndarray:
        """Outward normals at surface points: a cap where the point is relatively nearer a cap than the side."""
        q = p - self.center
        rad = np.hypot(q[:, 0], q[:, 1])
        cap = np.abs(q[:, 2]) / self.half_height > rad / self.radius
        n = np.zeros_like(p)
        n[:, 0] = q[:, 0] / np.maximum(rad, _TINY)
        n[:, 1] = q[:, 1] / np.maximum(rad, _TINY)
        n[cap] = 0.0
        n[cap, 2] = np.sign(q[cap, 2])
        return n

    def to_json(self) -> dict:
        return {
            "type": "cylinder",
            "center": _l(self.center),
            "radius": float(self.radius),
            "half_height": float(self.half_height),
            "yaw": float(self.yaw),
        }


@dataclass
class Sphere:
    """Sphere (the local frame is yaw-rotated so that textures can spin with it)."""

    center: np.ndarray
    """[3] world centre."""
    radius: float
    """Radius, metres."""
    yaw: float = 0.0
    """Orientation of the local (texture) frame about +z."""

    @property
    def rot(self) -> np.ndarray:
        return yaw_matrix(self.yaw)

    def to_local(self, p: np.ndarray) -> np.ndarray:
        return mat_rows(p - self.center, self.rot)

    def dir_to_local(self, d: np.ndarray) -> np.ndarray:
        return mat_rows(d, self.rot)

    @property
    def bounding_radius(self) -> float:
        return float(self.radius)

    def intersect(self, o: np.ndarray, dt: np.ndarray) -> np.ndarray:
        oc = o - self.center
        b = dt[0] * oc[0] + dt[1] * oc[1] + dt[2] * oc[2]
        c = float(oc @ oc) - self.radius**2
        disc = b * b - c
        t = -b - np.sqrt(np.maximum(disc, 0.0))
        return np.where((disc >= 0) & (t > T_EPS), t, np.inf)

    def contains(self, p: np.ndarray, margin: float = 0.0) -> bool:
        """Whether world point ``p`` [3] lies within ``margin`` of the solid."""
        return bool(np.linalg.norm(p - self.center) < self.radius + margin)

    def normal_at(self, p: np.ndarray) -> np.ndarray:
        """Outward normals at surface points."""
        return (p - self.center) / self.radius

    def to_json(self) -> dict:
        return {"type": "sphere", "center": _l(self.center), "radius": float(self.radius), "yaw": float(self.yaw)}


Shape = Box | Cylinder | Sphere

ROOM_FACES = ("wall -x", "wall +x", "wall -y", "wall +y", "floor", "ceiling")
"""Face order of ``Room.intersect``: index = 2 * axis + (ray goes towards +axis)."""


@dataclass
class Room:
    """The inside of the axis-aligned box ``[-hx, hx] x [-hy, hy] x [0, height]``."""

    half_x: float
    """Half length along x, metres."""
    half_y: float
    """Half length along y, metres."""
    height: float
    """Floor-to-ceiling height, metres (floor at z = 0)."""

    @property
    def lo(self) -> np.ndarray:
        return np.array([-self.half_x, -self.half_y, 0.0])

    @property
    def hi(self) -> np.ndarray:
        return np.array([self.half_x, self.half_y, self.height])

    def contains(self, p: np.ndarray, margin: float = 0.0) -> bool:
        return bool(np.all(p > self.lo + margin) and np.all(p < self.hi - margin))

    def intersect(self, o: np.ndarray, dt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Exit hit of rays starting inside: (t [M], face index [M] into ROOM_FACES, inward normals [M, 3])."""
        lo, hi = self.lo, self.hi
        t = face = None
        for a in range(3):
            da = _safe(dt[a])
            pos = da > 0
            ta = (np.where(pos, hi[a], lo[a]) - o[a]) / da
            fa = 2 * a + pos
            if t is None:
                t, face = ta, fa
            else:
                closer = ta < t
                t, face = np.where(closer, ta, t), np.where(closer, fa, face)
        n = np.zeros((dt.shape[1], 3))
        axis = face // 2
        n[np.arange(dt.shape[1]), axis] = np.where(face % 2 == 1, -1.0, 1.0)
        return t, face, n

    def to_json(self) -> dict:
        return {"type": "room", "lo": _l(self.lo), "hi": _l(self.hi)}


def cone_candidates(o: np.ndarray, dt: np.ndarray, center: np.ndarray, radius: float) -> Optional[np.ndarray]:
    """Indices of rays that may hit a sphere of ``radius`` at ``center`` (None = all rays).

    A ray from ``o`` misses the sphere when the sphere is behind it or its
    perpendicular distance to ``center`` exceeds ``radius``.
    """
    v = center - o
    vv = float(v @ v)
    if vv <= radius * radius:
        return None
    tc = dt[0] * v[0] + dt[1] * v[1] + dt[2] * v[2]
    return np.flatnonzero((tc > 0) & (vv - tc * tc <= radius * radius))


def _l(a: np.ndarray) -> list[float]:
    return [float(x) for x in np.asarray(a).ravel()]
