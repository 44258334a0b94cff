"""Smooth camera trajectories through the synthetic room (what a hand-held video of it would see).

``ring_cameras`` (cameras.py) spreads independent views around the room; a video
needs the opposite: consecutive frames that overlap strongly and still give
parallax.  ``smooth_path`` moves the camera continuously along the camera ring
ellipse, every quantity a smooth (low-frequency sinusoidal) function of the
path parameter, so the step between frames shrinks like 1 / n.
Poses are camera-to-world in OpenCV axes, like ``ring_cameras``.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from langfield.geometry import look_at
from langfield.types import LangfieldError

from .cameras import PinholeCamera, focal_from_fov
from .config import SceneConfig
from .layout import Scene

PATH_KINDS = ("orbit", "static")
"""``smooth_path`` kinds: a walk around the room, or a fixed camera that only turns a little."""

_TURNS = (0.7, 0.9)
"""Range of the seeded fraction of a full turn the orbit covers: enough baseline for SfM, never a closed loop
(a closed loop would let the start and end frames overlap, which a real video seldom does)."""
_STATIC_WOBBLE = 0.03
"""Largest offset of a static camera's look-at target, metres: about 1 degree of rotation at the room centre."""


def _wave(s: np.ndarray, rng: np.random.Generator, cycles: tuple[float, float]) -> np.ndarray:
    """A smooth signal in [-1, 1]: the mean of two sinusoids with seeded frequencies (cycles over the path) and phases."""
    f = rng.uniform(*cycles, 2)
    ph = rng.uniform(0, 2 * np.pi, 2)
    return 0.5 * (np.sin(2 * np.pi * f[0] * s + ph[0]) + np.sin(2 * np.pi * f[1] * s + ph[1]))


def smooth_path(
    scene: Scene, cfg: SceneConfig, seed: int, n: int, width: int, height: int, kind: str = "orbit",
    turns: Optional[float] = None,
) -> list[PinholeCamera]:
    """``n`` cameras along a continuous, smooth trajectory through the room, in time order; deterministic in ``seed``.

    ``kind="orbit"``: the eye moves 0.7-0.9 of a turn (seeded, either direction) along the camera ring
    ellipse, its radial scale between ``1 - camera_ring_spread`` and 1 and its height inside
    ``camera_height_range`` varying gently, looking at a target that wanders slowly around the room
    centre (within ``target_jitter``).  ``kind="static"``: the eye stays at one ring point and only the
    target moves by a few centimetres (no parallax: the degenerate input for SfM).  ``turns`` fixes the
    fraction of a turn the orbit covers (a short test video over a small arc keeps frames close together);
    the seed still draws it (so the other seeded signals do not change).
    """
    if kind not in PATH_KINDS:
        raise LangfieldError(f"synthetic camera path kind {kind!r}: expected one of {', '.join(PATH_KINDS)}")
    if n < 1:
        raise LangfieldError(f"synthetic camera path needs at least 1 frame (got {n})")
    rng = np.random.default_rng([seed, 3])  # [seed, 1] and [seed, 2] belong to the ring cameras and the points
    f = focal_from_fov(width, cfg.hfov_deg)
    ax = scene.room.half_x - cfg.camera_wall_margin
    ay = scene.room.half_y - cfg.camera_wall_margin
    lo, hi = cfg.camera_height_range
    s = np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(1)
    start = rng.uniform(0, 2 * np.pi)
    sweep = rng.choice([-1.0, 1.0]) * 2 * np.pi * rng.uniform(*_TURNS)
    if turns is not None:
        if not 0.0 < turns <= 1.0:
            raise LangfieldError(f"synthetic camera path: turns must lie in (0, 1], got {turns}")
        sweep = np.sign(sweep) * 2 * np.pi * turns
    # Slow signals: at most ~1.5 cycles over the whole path, so no frame-to-frame jitter.
    radial = _wave(s, rng, (0.3, 1.2))
    lift = _wave(s, rng, (0.5, 1.5))
    wander = np.stack([_wave(s, rng, (0.2, 1.0)) for _ in range(3)], axis=1)
    if kind == "static":
        ang = np.full(n, start)
        scale = np.full(n, 1.0 - 0.5 * cfg.camera_ring_spread)
        hgt = np.full(n, 0.5 * (lo + hi))
        offsets = _STATIC_WOBBLE * wander
    else:
        ang = start + sweep * s
        scale = 1.0 - 0.5 * cfg.camera_ring_spread * (1.0 + radial)  # in [1 - spread, 1]
        hgt = 0.5 * (lo + hi) + 0.4 * (hi - lo) * lift
        offsets = cfg.target_jitter * wander * np.array([1.0, 1.0, 0.5])
    cams = []
    for i in range(n):
        eye = np.array([scale[i] * ax * np.cos(ang[i]), scale[i] * ay * np.sin(ang[i]), hgt[i]])
        target = scene.center + offsets[i]
        cams.append(PinholeCamera(look_at(eye, target), f, f, width / 2, height / 2, width, height))
    return cams
