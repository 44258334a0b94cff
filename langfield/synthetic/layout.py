"""Seeded layout of the synthetic room: primitives, their labels and materials, lights.

World frame: z up, floor at z = 0, room centred on the origin. Semantic id of
a surface = its index in ``Scene.surfaces`` + 1 (0 is reserved for "none").
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Optional

import numpy as np

from .config import SceneConfig
from .geometry import ROOM_FACES, Box, Cylinder, Room, Shape, Sphere, yaw_matrix
from .noise import ValueNoise, hsv


@dataclass
class Surface:
    """One labelled primitive (or room face) with its material."""

    sem_id: int
    """Semantic id written to the semantics PNGs (> 0)."""
    part: str
    """Fine label text, e.g. "table leg"."""
    whole: str
    """Coarse label text, e.g. "table"."""
    shape: Optional[Shape]
    """Analytic primitive; None for the six room faces (handled by ``Scene.room``)."""
    texture: str
    """Key into ``textures.TEXTURES``."""
    params: dict
    """JSON-friendly texture parameters."""

    def to_json(self) -> dict:
        return {
            "id": self.sem_id,
            "part": self.part,
            "whole": self.whole,
            "shape": self.shape.to_json() if self.shape is not None else None,
            "texture": self.texture,
            "params": self.params,
        }


@dataclass
class Light:
    """A point light near the ceiling."""

    position: np.ndarray
    """[3] world position."""
    intensity: float
    """Lambertian gain at the reference distance."""
    falloff: float = 4.0
    """Distance scale of the soft 1 / (1 + (d / falloff)^2) attenuation, metres."""
    ref_distance: float = 2.2
    """Distance at which the gain equals ``intensity``, metres."""

    def gain(self, dist: np.ndarray) -> np.ndarray:
        return self.intensity * (1.0 + (self.ref_distance / self.falloff) ** 2) / (1.0 + (dist / self.falloff) ** 2)


@dataclass
class Scene:
    """Everything the ray caster needs, plus what scene.json records."""

    seed: int
    """Seed the layout was drawn from."""
    room: Room
    """The enclosing room."""
    surfaces: list[Surface]
    """Room faces first (``ROOM_FACES`` order), then object parts."""
    lights: list[Light]
    """Point lights (the first one is the key light)."""
    center: np.ndarray
    """[3] nominal look-at point of the cameras."""
    noise: ValueNoise
    """Seeded noise lattice shared by all textures."""

    @property
    def objects(self) -> list[Surface]:
        return self.surfaces[len(ROOM_FACES):]

    @cached_property
    def groups(self) -> list[tuple[np.ndarray, float, list[int]]]:
        """Object parts grouped by whole: (bounding centre, radius, surface indices) for two-level culling."""
        by_whole: dict[str, list[int]] = {}
        for k, s in enumerate(self.surfaces):
            if s.shape is not None:
                by_whole.setdefault(s.whole, []).append(k)
        out = []
        for members in by_whole.values():
            shapes = [self.surfaces[k].shape for k in members]
            c = np.mean([sh.center for sh in shapes], axis=0)
            r = max(float(np.linalg.norm(sh.center - c)) + sh.bounding_radius for sh in shapes)
            out.append((c, r, members))
        return out

    def labels(self) -> dict[str, dict[str, str]]:
        """labels.json content: str(id) -> {"part", "whole"}."""
        return {str(s.sem_id): {"part": s.part, "whole": s.whole} for s in self.surfaces}

    def to_json(self) -> dict:
        return {
            "seed": self.seed,
            "frame": "world z up, floor at z=0, metres; shapes: box half_extents/yaw about +z, vertical capped cylinders",
            "room": self.room.to_json(),
            "center": [float(x) for x in self.center],
            "lights": [
                {"position": [float(x) for x in lt.position], "intensity": lt.intensity, "falloff": lt.falloff}
                for lt in self.lights
            ],
            "surfaces": [s.to_json() for s in self.surfaces],
        }


class _Builder:
    """Accumulates surfaces and 2D footprints while objects are placed."""

    def __init__(self, rng: np.random.Generator, radius: float) -> None:
        self.rng = rng
        self.radius = radius
        self.surfaces: list[Surface] = []
        self.footprints: list[tuple[np.ndarray, float]] = []

    def add(self, part: str, whole: str, shape: Optional[Shape], texture: str, params: dict) -> None:
        self.surfaces.append(Surface(len(self.surfaces) + 1, part, whole, shape, texture, params))

    def place(self, r: float, near_edge: bool = False, gap: float = 0.12) -> np.ndarray:
        """A free xy centre for a footprint of radius ``r`` inside the object disc (rejection sampling)."""
        best, best_gap = None, -np.inf
        span = max(self.radius - r, 0.0)
        for _ in range(300):
            rad = span * (self.rng.uniform(0.8, 1.0) if near_edge else np.sqrt(self.rng.uniform()))
            ang = self.rng.uniform(0, 2 * np.pi)
            xy = rad * np.array([np.cos(ang), np.sin(ang)])
            slack = min((np.linalg.norm(xy - c) - r - rc for c, rc in self.footprints), default=np.inf)
            if slack >= gap:
                best = xy
                break
            if slack > best_gap:
                best, best_gap = xy, slack
        assert best is not None
        self.footprints.append((best, r))
        return best


def _at(center_xy: np.ndarray, yaw: float, local: tuple[float, float, float]) -> np.ndarray:
    """World position of a point given in an object's yaw-rotated local frame."""
    off = yaw_matrix(yaw) @ np.asarray(local, dtype=np.float64)
    return np.array([center_xy[0] + off[0], center_xy[1] + off[1], off[2]])


def build_scene(seed: int, cfg: SceneConfig) -> Scene:
    """Draw the room, its furniture, materials and lights from ``seed``."""
    rng = np.random.default_rng([seed, 0])
    u = rng.uniform
    jit = cfg.room_jitter
    room = Room(
        half_x=0.5 * (cfg.room_size[0] + u(-jit, jit)),
        half_y=0.5 * (cfg.room_size[1] + u(-jit, jit)),
        height=cfg.room_size[2] + u(-jit, jit),
    )
    b = _Builder(rng, cfg.object_radius)
    # Distinct hues per object: a shuffled even spread of the colour wheel.
    hues = list((rng.permutation(10) + u(0.0, 0.5)) / 10.0)

    # --- room faces (ROOM_FACES order) ---
    wall_h = u(0, 1)
    wall = {
        "color": hsv(wall_h, u(0.08, 0.25), u(0.72, 0.85)),
        "stripe_period": float(u(0.18, 0.35)) if u() < 0.6 else 0.0,
        "stripe_color": hsv(wall_h + u(-0.05, 0.05), u(0.2, 0.35), u(0.6, 0.75)),
        "baseboard": 0.1,
        "baseboard_color": hsv(0.1, 0.05, u(0.85, 0.95)),
    }
    for _ in ROOM_FACES[:4]:
        b.add("wall", "wall", None, "wall", dict(wall))
    style = cfg.floor_style if cfg.floor_style != "auto" else ("planks" if u() < 0.6 else "tiles")
    if style == "planks":
        fh = u(0.06, 0.1)
        floor = {
            "color": hsv(fh, u(0.45, 0.6), u(0.5, 0.65)),
            "color2": hsv(fh + 0.02, u(0.5, 0.65), u(0.38, 0.5)),
            "plank_width": float(u(0.14, 0.2)),
            "plank_length": float(u(0.9, 1.4)),
        }
    else:
        th = u(0, 1)
        floor = {
            "color": hsv(th, u(0.05, 0.2), u(0.8, 0.9)),
            "color2": hsv(th, u(0.3, 0.5), u(0.3, 0.45)),
            "tile": float(u(0.3, 0.45)),
            "grout": hsv(0, 0, 0.55),
        }
    b.add("floor", "floor", None, style, floor)
    b.add("ceiling", "ceiling", None, "plaster", {"color": hsv(0.12, 0.04, 0.92)})

    # --- table (near the centre) with a rug under it and a mug on it ---
    sx, sy, th_ = u(1.0, 1.3), u(0.65, 0.8), u(0.72, 0.78)
    t_yaw = u(0, np.pi)
    t_xy = u(-0.2, 0.2, 2)
    b.footprints.append((t_xy, float(np.hypot(sx, sy) / 2)))
    # Natural wood or (so the table does not always match the floor) painted wood.
    wood_h = u(0.05, 0.1) if u() < 0.5 else hues.pop()
    top_wood = {"color": hsv(wood_h, u(0.5, 0.7), u(0.45, 0.6)), "color2": hsv(wood_h, 0.7, u(0.25, 0.35))}
    rug_half = [sx / 2 + u(0.35, 0.6), sy / 2 + u(0.4, 0.7), 0.004]
    rug_h = hues.pop()
    b.add("rug", "rug", Box(np.array([*(t_xy + u(-0.1, 0.1, 2)), 0.004]), np.array(rug_half), t_yaw + u(-0.15, 0.15)),
          "rug", {"half_extents": rug_half, "field": hsv(rug_h, 0.55, 0.55), "motif_color": hsv(rug_h + 0.5, 0.5, 0.8),
                  "border_color": hsv(rug_h + 0.05, 0.7, 0.3), "motif": float(u(0.25, 0.35)), "border": 0.12})
    b.add("table top", "table", Box(_at(t_xy, t_yaw, (0, 0, th_ - 0.02)), np.array([sx / 2, sy / 2, 0.02]), t_yaw),
          "wood", {**top_wood, "grain_axis": 0})
    leg_h = (th_ - 0.04) / 2
    for lx in (-1, 1):
        for ly in (-1, 1):
            pos = _at(t_xy, t_yaw, (lx * (sx / 2 - 0.07), ly * (sy / 2 - 0.07), leg_h))
            b.add("table leg", "table", Box(pos, np.array([0.025, 0.025, leg_h]), t_yaw), "wood",
                  {"color": top_wood["color2"], "color2": hsv(wood_h, 0.6, 0.2), "grain_axis": 2})
    mr, mh, m_yaw = u(0.055, 0.065), u(0.12, 0.14), u(0, 2 * np.pi)
    m_xy = _at(t_xy, t_yaw, (u(-1, 1) * (sx / 2 - 0.18), u(-1, 1) * (sy / 2 - 0.18), 0))[:2]
    mug_h = hues.pop()
    mug = {"color": hsv(mug_h, 0.65, 0.8), "color2": hsv(mug_h + 0.1, 0.1, 0.95), "period": float(mh / 2), "noise": 0.04}
    b.add("mug body", "mug", Cylinder(np.array([*m_xy, th_ + mh / 2]), mr, mh / 2, m_yaw), "banded", mug)
    b.add("mug handle", "mug", Box(_at(m_xy, m_yaw, (mr + 0.022, 0, th_ + mh / 2)), np.array([0.025, 0.009, mh * 0.3]), m_yaw),
          "solid", {"color": mug["color"], "noise": 0.04})

    # --- chair on one side of the table, facing it ---
    side = int(rng.integers(4))
    along = u(-0.25, 0.25)
    if side < 2:
        local = (along * sx / 2, (1 if side else -1) * (sy / 2 + 0.32), 0)
    else:
        local = ((1 if side == 3 else -1) * (sx / 2 + 0.32), along * sy / 2, 0)
    c_xy = _at(t_xy, t_yaw, local)[:2]
    away = c_xy - t_xy
    c_yaw = float(np.arctan2(-away[0], away[1]) + u(-0.25, 0.25))  # chair local +y (its back) away from the table
    b.footprints.append((c_xy, 0.33))
    chair_h = hues.pop()
    seat = {"color": hsv(chair_h, 0.6, 0.7), "color2": hsv(chair_h + 0.04, 0.45, 0.45), "period": float(u(0.05, 0.08))}
    b.add("chair seat", "chair", Box(_at(c_xy, c_yaw, (0, 0, 0.425)), np.array([0.22, 0.22, 0.025]), c_yaw), "fabric", seat)
    b.add("chair back", "chair", Box(_at(c_xy, c_yaw, (0, 0.195, 0.68)), np.array([0.22, 0.025, 0.23]), c_yaw), "fabric", seat)
    metal = {"color": hsv(u(0, 1), 0.1, u(0.3, 0.5)), "noise": 0.1}
    for lx in (-1, 1):
        for ly in (-1, 1):
            pos = _at(c_xy, c_yaw, (lx * 0.19, ly * 0.19, 0.2))
            b.add("chair leg", "chair", Box(pos, np.array([0.02, 0.02, 0.2]), c_yaw), "solid", metal)

    # --- bookshelf at the edge of the object disc, its front towards the centre ---
    bw, bd, bh = u(0.8, 1.0), 0.32, u(1.3, 1.6)
    s_xy = b.place(float(np.hypot(bw, bd) / 2), near_edge=True)
    s_yaw = float(np.arctan2(s_xy[0], -s_xy[1]))  # local -y axis points at the origin
    half = [bw / 2, bd / 2, bh / 2]
    palette = [hsv(hues[k % len(hues)] + 0.03 * k, 0.6, 0.35 + 0.08 * k) for k in range(5)]
    b.add("bookshelf", "bookshelf", Box(np.array([*s_xy, bh / 2]), np.array(half), s_yaw), "books",
          {"half_extents": half, "rows": int(rng.integers(3, 5)), "wood": hsv(0.08, 0.5, 0.55),
           "wood2": hsv(0.07, 0.6, 0.35), "back": hsv(0.08, 0.4, 0.2), "palette": palette})

    # --- floor lamp ---
    l_xy = b.place(0.22)
    pole = u(1.25, 1.45)
    lamp_h = hues.pop()
    dark = {"color": hsv(lamp_h, 0.3, 0.25), "noise": 0.1}
    b.add("lamp base", "lamp", Cylinder(np.array([*l_xy, 0.015]), 0.16, 0.015), "solid", dark)
    b.add("lamp pole", "lamp", Cylinder(np.array([*l_xy, 0.03 + pole / 2]), 0.022, pole / 2), "solid", dark)
    b.add("lamp shade", "lamp", Cylinder(np.array([*l_xy, 0.03 + pole + 0.06]), 0.2, 0.13), "banded",
          {"color": hsv(lamp_h, 0.35, 0.9), "color2": hsv(lamp_h, 0.6, 0.55), "period": 0.13, "phase": 0.065, "noise": 0.05})

    # --- ball on the floor ---
    br = u(0.12, 0.18)
    ball_xy = b.place(br)
    bh1, bh2 = hues.pop(), hues.pop()
    b.add("ball", "ball", Sphere(np.array([*ball_xy, br]), br, u(0, 2 * np.pi)), "ball",
          {"colors": [hsv(bh1, 0.8, 0.85), hsv(bh2, 0.8, 0.85), hsv(bh1 + 0.5, 0.7, 0.8)], "pole_color": hsv(0, 0, 0.92)})

    # --- cardboard box ---
    bx, by, bz = u(0.15, 0.25), u(0.15, 0.25), u(0.12, 0.22)
    box_xy = b.place(float(np.hypot(bx, by)))
    b.add("box", "box", Box(np.array([*box_xy, bz]), np.array([bx, by, bz]), u(0, np.pi)), "cardboard",
          {"color": hsv(u(0.07, 0.1), u(0.45, 0.6), u(0.55, 0.7)), "tape_color": hsv(0.1, 0.25, 0.8),
           "tape_half_width": 0.03})

    # --- lights under the ceiling, key light offset from the centre, fill opposite ---
    ang = u(0, 2 * np.pi)
    lights = []
    for k, inten in enumerate(cfg.light_intensities):
        a = ang + np.pi * k + u(-0.4, 0.4)
        r = u(0.5, 1.2) if k == 0 else u(1.2, 1.8)
        lights.append(Light(np.array([r * np.cos(a), r * np.sin(a), room.height - 0.2]), float(inten)))

    return Scene(
        seed=seed,
        room=room,
        surfaces=b.surfaces,
        lights=lights,
        center=np.array([0.0, 0.0, cfg.target_height]),
        noise=ValueNoise(np.random.default_rng([seed, 3])),
    )
