"""Configuration of the procedural synthetic room."""

from __future__ import annotations

from dataclasses import dataclass

from langfield.types import LangfieldError


@dataclass(frozen=True)
class SceneConfig:
    """Knobs of ``generate_scene`` beyond seed, image size and view counts."""

    hfov_deg: float = 62.0
    """Horizontal field of view in degrees; fx = fy = 0.5 * width / tan(hfov / 2)."""
    room_size: tuple[float, float, float] = (7.0, 6.2, 2.8)
    """Nominal room length (x), width (y) and height (z) in metres; the seed varies each by ``room_jitter``."""
    room_jitter: float = 0.3
    """Largest seeded change of each room dimension, metres."""
    object_radius: float = 1.35
    """Objects (with their full footprint) stay within this distance of the room centre, metres."""
    camera_wall_margin: float = 0.65
    """Distance of the outermost camera ring from the walls, metres (ellipse semi-axes = half room - margin)."""
    camera_ring_spread: float = 0.12
    """Cameras sit between (1 - spread) and 1 times the ring ellipse, chosen per view by the seed."""
    camera_height_range: tuple[float, float] = (0.95, 1.85)
    """Lowest and highest camera height above the floor, metres."""
    target_height: float = 0.55
    """Height of the point the cameras look at (room centre), metres."""
    target_jitter: float = 0.2
    """Largest per-view horizontal offset of the look-at point, metres (vertical: half of it)."""
    angle_jitter: float = 0.2
    """Per-view jitter of the ring angle, as a fraction of the angular spacing between views."""
    ambient: float = 0.32
    """Ambient light level (fraction of the albedo seen in full shadow)."""
    light_intensities: tuple[float, ...] = (0.85, 0.3)
    """Peak Lambertian gain of each ceiling point light (first = key light)."""
    shadows: bool = True
    """Cast one hard-shadow ray per pixel and light."""
    supersample: bool = True
    """Re-shade RGB pixels on geometric/shadow edges with 2x2 rays (depth and semantics keep the centre ray)."""
    floor_style: str = "auto"
    """Floor texture: "planks", "tiles", or "auto" (chosen by the seed)."""
    n_points: int = 10000
    """Number of coloured surface points written to points3d.ply (sampled from training views)."""

    def validate(self) -> None:
        """Raise ``LangfieldError`` for values that cannot produce a sensible scene."""
        if not 20.0 <= self.hfov_deg <= 120.0:
            raise LangfieldError(f"SceneConfig.hfov_deg={self.hfov_deg} must lie in [20, 120]")
        if self.floor_style not in ("auto", "planks", "tiles"):
            raise LangfieldError(f"SceneConfig.floor_style={self.floor_style!r} must be auto, planks or tiles")
        lo, hi = self.camera_height_range
        if not 0.2 <= lo <= hi <= self.room_size[2] - self.room_jitter - 0.3:
            raise LangfieldError(f"SceneConfig.camera_height_range={self.camera_height_range} must fit inside the room")
        inner = min(self.room_size[0], self.room_size[1]) / 2 - self.room_jitter - self.camera_wall_margin
        if inner * (1.0 - self.camera_ring_spread) < self.object_radius + 0.4:
            raise LangfieldError(
                "SceneConfig: the camera ring must stay at least 0.4 m outside object_radius "
                "(enlarge room_size or shrink object_radius / camera_wall_margin)"
            )
        if self.n_points < 0 or not self.light_intensities:
            raise LangfieldError("SceneConfig: n_points must be >= 0 and at least one light is needed")
