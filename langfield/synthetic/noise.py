"""Deterministic procedural-noise helpers for the synthetic scene textures.

Everything here is a pure function of its inputs and a seeded lattice, so the
same seed always produces the same bytes on the same platform.
"""

from __future__ import annotations

import colorsys

import numpy as np

_TWO_PI = 2.0 * np.pi


class ValueNoise:
    """Smooth 3D value noise in [0, 1] on a periodic random lattice."""

    def __init__(self, rng: np.random.Generator, size: int = 32) -> None:
        self.size = size
        # Flat table so that one fancy-index gathers a corner for all points.
        self.table = rng.random(size**3)

    def __call__(self, p: np.ndarray, scale: float | np.ndarray = 1.0) -> np.ndarray:
        """Noise at points ``p`` [M, 3] (metres) with ``scale`` lattice cells per metre."""
        q = p * scale
        base = np.floor(q)
        f = q - base
        f = f * f * (3.0 - 2.0 * f)  # smoothstep: C1-continuous across cells
        i = base.astype(np.int64) % self.size
        j = (i + 1) % self.size
        s = self.size
        out = np.zeros(p.shape[0])
        for cx in (0, 1):
            ix = (j if cx else i)[:, 0]
            wx = f[:, 0] if cx else 1.0 - f[:, 0]
            for cy in (0, 1):
                iy = (j if cy else i)[:, 1]
                wy = f[:, 1] if cy else 1.0 - f[:, 1]
                for cz in (0, 1):
                    iz = (j if cz else i)[:, 2]
                    wz = f[:, 2] if cz else 1.0 - f[:, 2]
                    out += self.table[(ix * s + iy) * s + iz] * (wx * wy * wz)
        return out

    def fbm(self, p: np.ndarray, scale: float | np.ndarray, octaves: int = 3) -> np.ndarray:
        """Fractal sum of ``octaves`` noise layers, normalised back to [0, 1]."""
        total = np.zeros(p.shape[0])
        amp, norm = 1.0, 0.0
        for k in range(octaves):
            total += amp * self(p, np.asarray(scale) * (2.0**k))
            norm += amp
            amp *= 0.5
        return total / norm


def hash01(*ints: np.ndarray, salt: int = 0) -> np.ndarray:
    """Integer lattice coordinates -> reproducible pseudo-random values in [0, 1)."""
    h = np.full(np.shape(ints[0]), np.uint64(salt * 0x27D4EB2F + 0x165667B1), dtype=np.uint64)
    for k, a in enumerate(ints):
        a64 = np.asarray(a).astype(np.int64).astype(np.uint64)
        h = h ^ (a64 * np.uint64(0x9E3779B1 + 0x85EBCA6B * (k + 1)))
        h = h ^ (h >> np.uint64(15))
        h = h * np.uint64(0x2C1B3C6D)
        h = h ^ (h >> np.uint64(12))
    return (h & np.uint64(0xFFFFFF)).astype(np.float64) / float(0x1000000)


def soft_square(u: np.ndarray, period: float, footprint: np.ndarray) -> np.ndarray:
    """Square wave in [0, 1] along ``u`` box-filtered (approximately) by the pixel footprint.

    Near a transition ``sin`` is linear in the distance to it, so the ramp spans
    one footprint; when the period shrinks below two footprints the wave fades
    to its mean (0.5) instead of aliasing into moire.
    """
    fp = np.maximum(footprint, 1e-6)
    ramp = np.clip(np.sin(_TWO_PI * u / period) * period / (_TWO_PI * fp), -0.5, 0.5)
    fade = np.clip(1.0 - 2.0 * fp / period, 0.0, 1.0)
    return 0.5 + ramp * fade


def line_mask(dist: np.ndarray, width: float, footprint: np.ndarray) -> np.ndarray:
    """Coverage in [0, 1] of a line of ``width`` at distance ``dist`` from its centre.

    Widened to the footprint with proportionally lower strength so the mean
    darkening is preserved at a distance (no flicker of thin seams).
    """
    w_eff = np.maximum(width, footprint)
    return (dist < 0.5 * w_eff) * (width / w_eff)


def hsv(h: float, s: float, v: float) -> list[float]:
    """HSV in [0, 1] -> RGB list (JSON-friendly)."""
    return [float(c) for c in colorsys.hsv_to_rgb(h % 1.0, s, v)]


def mix(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per-row linear blend of colours ``a`` and ``b`` ([3] or [M, 3]) by ``t`` [M]."""
    t = t[:, None]
    return np.asarray(a) * (1.0 - t) + np.asarray(b) * t
