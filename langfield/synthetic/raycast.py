"""Analytic ray caster: closest hits, hard shadows, Lambertian shading, edge supersampling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .cameras import PinholeCamera
from .geometry import ROOM_FACES, cone_candidates
from .layout import Scene
from .textures import TEXTURES, Hit

SHADOW_EPS = 2e-3
"""Shadow rays ignore blockers within this distance (metres) of the shaded point (self-hits)."""


@dataclass
class RayHits:
    """Closest hits of M rays."""

    t: np.ndarray
    """[M] distance along the unit ray."""
    surface: np.ndarray
    """[M] index into ``Scene.surfaces``."""
    normal: np.ndarray
    """[M, 3] unit world normals facing the ray origin's side."""
    points: np.ndarray
    """[M, 3] world hit points."""


@dataclass
class ViewRender:
    """Ground truth of one view."""

    rgb: np.ndarray
    """[H, W, 3] float in [0, 1]."""
    depth: np.ndarray
    """[H, W] z-depth along the optical axis, metres."""
    semantics: np.ndarray
    """[H, W] uint16 semantic ids."""
    points: np.ndarray
    """[H, W, 3] world points of the centre rays."""


def _candidates(scene: Scene, o: np.ndarray, dt: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (surface index, ray indices) pairs that survive two-level bounding-sphere culling."""
    everything = np.arange(dt.shape[1])
    for center, radius, members in scene.groups:
        g = cone_candidates(o, dt, center, radius)
        g = everything if g is None else g
        if g.size == 0:
            continue
        if len(members) == 1:
            yield members[0], g
            continue
        dg = dt[:, g]
        for k in members:
            shape = scene.surfaces[k].shape
            sub = cone_candidates(o, dg, shape.center, shape.bounding_radius)
            idx = g if sub is None else g[sub]
            if idx.size:
                yield k, idx


def trace(scene: Scene, o: np.ndarray, d: np.ndarray) -> RayHits:
    """Closest hit of rays from ``o`` (inside the room) along unit directions ``d`` [M, 3]."""
    dt = np.ascontiguousarray(d.T)
    t, face, n = scene.room.intersect(o, dt)
    surf = face.astype(np.int64)
    for k, idx in _candidates(scene, o, dt):
        tk = scene.surfaces[k].shape.intersect(o, dt[:, idx])
        closer = tk < t[idx]
        j = idx[closer]
        t[j], surf[j] = tk[closer], k
    points = o + t[:, None] * d
    for k in np.unique(surf[surf >= len(ROOM_FACES)]):
        m = np.flatnonzero(surf == k)
        n[m] = scene.surfaces[int(k)].shape.normal_at(points[m])
    return RayHits(t, surf, n, points)


def lit_fraction(scene: Scene, light_pos: np.ndarray, points: np.ndarray) -> np.ndarray:
    """[M] 1.0 where the segment light -> point is free of objects, else 0.0."""
    vec = points - light_pos
    dist = np.sqrt(np.einsum("ij,ij->i", vec, vec))
    dt = np.ascontiguousarray((vec / dist[:, None]).T)
    blocked = np.zeros(points.shape[0], dtype=bool)
    for k, idx in _candidates(scene, light_pos, dt):
        idx = idx[~blocked[idx]]
        if idx.size == 0:
            continue
        tk = scene.surfaces[k].shape.intersect(light_pos, dt[:, idx])
        blocked[idx[tk < dist[idx] - SHADOW_EPS]] = True
    return (~blocked).astype(np.float64)


def albedo(scene: Scene, hits: RayHits, footprint: np.ndarray) -> np.ndarray:
    """[M, 3] texture colour of every hit."""
    out = np.zeros((hits.t.shape[0], 3))
    for k in np.unique(hits.surface):
        m = np.flatnonzero(hits.surface == k)
        s = scene.surfaces[int(k)]
        if s.shape is None:
            p, n = hits.points[m], hits.normal[m]
        else:
            p, n = s.shape.to_local(hits.points[m]), s.shape.dir_to_local(hits.normal[m])
        out[m] = TEXTURES[s.texture](Hit(p, n, footprint[m], scene.noise), s.params)
    return out


def shade(scene: Scene, hits: RayHits, footprint: np.ndarray, ambient: float, shadows: bool) -> tuple[np.ndarray, np.ndarray]:
    """Lambertian colour [M, 3] in [0, 1] and per-light visibility [M, L] of every hit."""
    light = np.full(hits.t.shape[0], ambient)
    vis_all = np.ones((hits.t.shape[0], len(scene.lights)))
    for li, lt in enumerate(scene.lights):
        vec = lt.position - hits.points
        dist = np.sqrt(np.einsum("ij,ij->i", vec, vec))
        ndl = np.maximum(np.einsum("ij,ij->i", hits.normal, vec) / dist, 0.0)
        if shadows:
            vis = np.zeros_like(ndl)
            facing = np.flatnonzero(ndl > 0)  # back-facing points are unlit anyway
            vis[facing] = lit_fraction(scene, lt.position, hits.points[facing])
            vis_all[:, li] = vis
        else:
            vis = 1.0
        light += lt.gain(dist) * ndl * vis
    return np.clip(albedo(scene, hits, footprint) * light[:, None], 0.0, 1.0), vis_all


def _edges(surface: np.ndarray, normal: np.ndarray, depth: np.ndarray, vis: np.ndarray) -> np.ndarray:
    """[H, W] pixels whose centre sample differs from a 4-neighbour in surface, normal, depth or shadow."""
    h, w = surface.shape
    edge = np.zeros((h, w), dtype=bool)
    for ax in (0, 1):
        a = [slice(None), slice(None)]
        b = [slice(None), slice(None)]
        a[ax], b[ax] = slice(0, -1), slice(1, None)
        a, b = tuple(a), tuple(b)
        diff = surface[a] != surface[b]
        diff |= np.einsum("ijk,ijk->ij", normal[a], normal[b]) < 0.95
        diff |= np.abs(depth[a] - depth[b]) > 0.03 * np.minimum(depth[a], depth[b])
        diff |= np.any(vis[a] != vis[b], axis=-1)
        edge[a] |= diff
        edge[b] |= diff
    return edge


def render_view(scene: Scene, cam: PinholeCamera, ambient: float, shadows: bool, supersample: bool) -> ViewRender:
    """Ray-cast one view: RGB (edge-supersampled), z-depth, semantics and hit points from centre rays."""
    h, w = cam.height, cam.width
    vv, uu = np.mgrid[0:h, 0:w]
    u = uu.ravel() + 0.5
    v = vv.ravel() + 0.5
    o = cam.origin
    d, z_per_t = cam.ray_dirs(u, v)
    hits = trace(scene, o, d)
    depth = hits.t * z_per_t
    footprint = depth / cam.fx  # one pixel's width on a fronto-parallel surface
    rgb, vis = shade(scene, hits, footprint, ambient, shadows)
    surface = hits.surface
    if supersample:
        edge = _edges(surface.reshape(h, w), hits.normal.reshape(h, w, 3), depth.reshape(h, w), vis.reshape(h, w, -1))
        idx = np.flatnonzero(edge.ravel())
        if idx.size:
            acc = np.zeros((idx.size, 3))
            for du, dv in ((-0.25, -0.25), (0.25, -0.25), (-0.25, 0.25), (0.25, 0.25)):
                ds, zs = cam.ray_dirs(u[idx] + du, v[idx] + dv)
                sub = trace(scene, o, ds)
                acc += shade(scene, sub, sub.t * zs / cam.fx * 0.5, ambient, shadows)[0]
            rgb[idx] = acc / 4.0
    sem = np.array([s.sem_id for s in scene.surfaces], dtype=np.uint16)[surface]
    return ViewRender(
        rgb=rgb.reshape(h, w, 3),
        depth=depth.reshape(h, w),
        semantics=sem.reshape(h, w),
        points=hits.points.reshape(h, w, 3),
    )
