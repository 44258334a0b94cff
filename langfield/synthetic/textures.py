"""Procedural albedo textures, evaluated at ray hits in the primitive's local frame.

Each texture is ``fn(hit, params) -> albedo [M, 3]`` in [0, 1]. ``params`` is a
JSON-friendly dict chosen by the layout (so scene.json fully describes the
look). Patterns are view-independent (Lambertian ground truth) and
footprint-filtered where cheap, so distant views blur rather than alias.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .noise import ValueNoise, hash01, line_mask, mix, soft_square


@dataclass
class Hit:
    """What a texture sees of M ray hits on one surface."""

    p: np.ndarray
    """[M, 3] hit points in the primitive's local frame (world frame for room faces)."""
    n: np.ndarray
    """[M, 3] unit normals in the same frame."""
    footprint: np.ndarray
    """[M] approximate width of one pixel on the surface, metres."""
    noise: ValueNoise
    """Seeded noise lattice of the scene."""


def _face_uv(p: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2D coordinates on axis-aligned faces: horizontal/along-face u, vertical (or y on tops) v."""
    axis = np.argmax(np.abs(n), axis=1)
    u = np.where(axis == 0, p[:, 1], p[:, 0])
    v = np.where(axis == 2, p[:, 1], p[:, 2])
    return u, v


def _fade(fp: np.ndarray, feature: float) -> np.ndarray:
    """Amplitude left of a detail of size ``feature`` once a pixel covers ``fp`` metres."""
    return np.clip(1.0 - fp / feature, 0.0, 1.0)


def planks(hit: Hit, prm: dict) -> np.ndarray:
    w, length = prm["plank_width"], prm["plank_length"]
    x, y = hit.p[:, 0], hit.p[:, 1]
    row = np.floor(y / w)
    shifted = x + hash01(row, salt=1) * length
    col = np.floor(shifted / length)
    cell = hash01(row, col, salt=2)
    base = mix(prm["color"], prm["color2"], cell)
    grain = hit.noise.fbm(hit.p * np.array([1.5, 30.0, 1.0]) + cell[:, None] * 7.0, 1.0, 2) - 0.5
    shade = 1.0 + 0.35 * grain * _fade(hit.footprint, 0.05)
    dy = np.abs(y - (row + 0.5) * w)
    dx = np.abs(shifted - (col + 0.5) * length)
    seam = np.maximum(line_mask(0.5 * w - dy, 0.008, hit.footprint), line_mask(0.5 * length - dx, 0.008, hit.footprint))
    return base * (shade * (1.0 - 0.45 * seam))[:, None]


def tiles(hit: Hit, prm: dict) -> np.ndarray:
    s = prm["tile"]
    x, y = hit.p[:, 0], hit.p[:, 1]
    i, j = np.floor(x / s), np.floor(y / s)
    parity = (i + j) % 2
    base = mix(prm["color"], prm["color2"], parity)
    base = base * (0.93 + 0.14 * hash01(i, j, salt=3))[:, None]
    speck = hit.noise(hit.p, 40.0) - 0.5
    base = base * (1.0 + 0.12 * speck * _fade(hit.footprint, 0.025))[:, None]
    d = np.minimum(np.abs(x - (i + 0.5) * s), np.abs(y - (j + 0.5) * s))
    grout = line_mask(0.5 * s - d, 0.01, hit.footprint)
    return mix(base, prm["grout"], grout)


def wall(hit: Hit, prm: dict) -> np.ndarray:
    u, v = _face_uv(hit.p, hit.n)
    base = np.asarray(prm["color"]) * (0.93 + 0.14 * hit.noise.fbm(hit.p, 2.0, 2))[:, None]
    if prm.get("stripe_period", 0.0) > 0:
        band = soft_square(u, prm["stripe_period"], hit.footprint)
        base = mix(base, prm["stripe_color"], band * 0.8)
    board = v < prm["baseboard"]
    out = np.where(board[:, None], np.asarray(prm["baseboard_color"]), base)
    top_line = line_mask(np.abs(v - prm["baseboard"]), 0.012, hit.footprint)
    return out * (1.0 - 0.35 * top_line)[:, None]


def plaster(hit: Hit, prm: dict) -> np.ndarray:
    return np.asarray(prm["color"]) * (0.95 + 0.08 * hit.noise.fbm(hit.p, 1.5, 2))[:, None]


def wood(hit: Hit, prm: dict) -> np.ndarray:
    stretch = np.ones(3) * 4.0
    stretch[int(prm.get("grain_axis", 0))] = 0.4  # long features along the grain
    g = hit.noise.fbm(hit.p * stretch, 4.0, 2)
    rings = np.sin(2 * np.pi * (g * 6.0)) * _fade(hit.footprint, 0.03)
    return mix(prm["color"], prm["color2"], 0.5 + 0.5 * rings)


def fabric(hit: Hit, prm: dict) -> np.ndarray:
    u, v = _face_uv(hit.p, hit.n)
    a = soft_square(u, prm["period"], hit.footprint)
    b = soft_square(v, prm["period"], hit.footprint)
    check = a + b - 2.0 * a * b  # soft XOR of the two stripe sets
    weave = 0.95 + 0.1 * hit.noise(hit.p, 60.0) * _fade(hit.footprint, 0.02)
    return mix(prm["color"], prm["color2"], check) * weave[:, None]


def solid(hit: Hit, prm: dict) -> np.ndarray:
    amp = prm.get("noise", 0.08)
    return np.asarray(prm["color"]) * (1.0 - amp / 2 + amp * hit.noise.fbm(hit.p, 8.0, 2))[:, None]


def banded(hit: Hit, prm: dict) -> np.ndarray:
    """Horizontal colour bands (mug glaze rings, lamp shade trims)."""
    band = soft_square(hit.p[:, 2] + prm.get("phase", 0.0), prm["period"], hit.footprint)
    return solid(hit, prm) * (1.0 - band)[:, None] + np.asarray(prm["color2"]) * band[:, None]


def ball(hit: Hit, prm: dict) -> np.ndarray:
    colors = np.asarray(prm["colors"])
    phi = np.arctan2(hit.n[:, 1], hit.n[:, 0])
    sector = np.floor((phi + np.pi) / (2 * np.pi) * 2 * len(colors)).astype(np.int64) % len(colors)
    out = colors[sector]
    pole = np.abs(hit.n[:, 2]) > 0.93
    return np.where(pole[:, None], np.asarray(prm["pole_color"]), out)


def books(hit: Hit, prm: dict) -> np.ndarray:
    """Bookshelf: wooden carcass whose front (local -y) shows shelves of coloured spines."""
    hx, hz = prm["half_extents"][0], prm["half_extents"][2]
    out = wood(hit, {"color": prm["wood"], "color2": prm["wood2"], "grain_axis": 2})
    front = (hit.n[:, 1] < -0.5) & (np.abs(hit.p[:, 0]) < hx - 0.03) & (hit.p[:, 2] > -hz + 0.05)
    if not front.any():
        return out
    p = hit.p[front]
    row_h = 2 * hz / prm["rows"]
    z = p[:, 2] + hz
    row = np.floor(z / row_h)
    zr = z - row * row_h  # height above this row's board
    x = p[:, 0] + hx + hash01(row, salt=5) * 0.05
    width = 0.045
    book = np.floor(x / width)
    pick = hash01(row, book, salt=6)
    palette = np.asarray(prm["palette"])
    spine = palette[(pick * len(palette)).astype(np.int64) % len(palette)]
    spine = spine * (0.8 + 0.35 * hash01(row, book, salt=7))[:, None]
    top = row_h * (0.55 + 0.35 * hash01(row, book, salt=8))
    gap = line_mask(np.abs(x - book * width), 0.006, hit.footprint[front])
    spine = spine * (1.0 - 0.5 * gap)[:, None]
    back = np.asarray(prm["back"])
    col = np.where((zr < top)[:, None], spine, back)
    board = zr < 0.025
    col = np.where(board[:, None], out[front] * 0.85, col)
    out[front] = col
    return out


def cardboard(hit: Hit, prm: dict) -> np.ndarray:
    base = np.asarray(prm["color"]) * (0.9 + 0.2 * hit.noise.fbm(hit.p, 6.0, 2))[:, None]
    # Packing tape across the top and down the two faces it wraps.
    tape = (np.abs(hit.p[:, 0]) < prm["tape_half_width"]) & (np.abs(hit.n[:, 0]) < 0.5)
    return np.where(tape[:, None], np.asarray(prm["tape_color"]), base)


def rug(hit: Hit, prm: dict) -> np.ndarray:
    hx, hy = prm["half_extents"][0], prm["half_extents"][1]
    x, y = hit.p[:, 0], hit.p[:, 1]
    edge = np.minimum(hx - np.abs(x), hy - np.abs(y))
    per = prm["motif"]
    fx = x / per - np.floor(x / per) - 0.5
    fy = y / per - np.floor(y / per) - 0.5
    # Distance (metres) inside a diamond of half-diagonal per/4 around each cell centre.
    inside = (0.25 - (np.abs(fx) + np.abs(fy))) * per
    diamond = np.clip(0.5 + inside / np.maximum(hit.footprint, 1e-6), 0.0, 1.0) * _fade(hit.footprint, per / 2)
    out = mix(prm["field"], prm["motif_color"], diamond)
    border = np.clip(0.5 + (prm["border"] - edge) / np.maximum(hit.footprint, 1e-6), 0.0, 1.0)
    out = mix(out, prm["border_color"], border)
    fuzz = 0.92 + 0.16 * hit.noise(hit.p, 50.0) * _fade(hit.footprint, 0.02)
    return out * fuzz[:, None]


TEXTURES: dict[str, Callable[[Hit, dict], np.ndarray]] = {
    "planks": planks,
    "tiles": tiles,
    "wall": wall,
    "plaster": plaster,
    "wood": wood,
    "fabric": fabric,
    "solid": solid,
    "banded": banded,
    "ball": ball,
    "books": books,
    "cardboard": cardboard,
    "rug": rug,
}
"""Texture name (as stored in scene.json) -> function."""
