"""Settings of the viewer server."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


@dataclass
class ViewerConfig:
    """How the viser server binds and how hard it renders."""

    host: str = DEFAULT_HOST
    """Interface to bind; localhost by default so the scene is not exposed on the network."""
    port: int = DEFAULT_PORT
    """TCP port; 0 = any free port. A port that is taken is an error (nothing moves silently elsewhere)."""
    max_size: int = 512
    """Initial long side, in pixels, of the render once the camera stops (capped by the browser canvas;
    each tab can change it with its resolution control)."""
    preview_size: int = 192
    """Long side while the camera moves, so dragging stays responsive."""
    settle_s: float = 0.25
    """Seconds without camera motion after which the full-size frame is rendered."""
    jpeg_quality: int = 90
    """JPEG quality of the frames sent to the browser."""
    export_dir: Optional[Path] = None
    """Where "export PLY" writes selections (default SCENE/selections)."""
    verbose: bool = False
    """Let viser log connections."""

    def __post_init__(self) -> None:
        if self.max_size < 16 or self.preview_size < 16:
            raise ValueError(f"max_size and preview_size must be >= 16, got {self.max_size}, {self.preview_size}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
