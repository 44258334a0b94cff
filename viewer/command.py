"""``langfield view SCENE``: the CLI side of the viewer (registered in ``langfield/cli.py``)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import tyro

from langfield.render.backend import Backend
from langfield.types import LangfieldError
from langfield.viewer.config import DEFAULT_HOST, DEFAULT_PORT, ViewerConfig

INSTALL_HINT = 'the viewer needs viser: pip install -e ".[viewer]"'


@dataclass
class ViewCommand:
    """Open a scene in the viser web viewer: RGB, depth, feature PCA and text-query heatmaps."""

    scene: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="SCENE")]
    """Scene directory written by `langfield reconstruct`."""
    host: str = DEFAULT_HOST
    """Interface to bind (default localhost only; 0.0.0.0 exposes the scene to the network)."""
    port: int = DEFAULT_PORT
    """TCP port; 0 = any free port (a port in use is an error, exit code 2)."""
    backend: Backend = "auto"
    """Rasterizer backend."""
    max_size: int = 512
    """Initial long side in pixels of the frame once the camera stops (the browser's resolution control changes it)."""

    def run(self) -> int:
        try:
            import viser  # noqa: F401
        except ImportError:
            raise LangfieldError(INSTALL_HINT) from None
        from langfield.viewer.core import RenderCore
        from langfield.viewer.server import ViewerServer

        try:
            config = ViewerConfig(host=self.host, port=self.port, max_size=self.max_size,
                                  preview_size=min(192, self.max_size))
        except ValueError as e:
            raise LangfieldError(f"bad option: {e}") from None
        core = RenderCore(self.scene, backend=self.backend)
        if not core.has_language:
            print(f"note: {core.language_note}")
        server = ViewerServer(core, config)
        print(f"viewer: {server.url}  (Ctrl-C to stop)")
        if self.host in ("127.0.0.1", "localhost"):
            print(f"remote machine? forward the port: ssh -L {server.port}:localhost:{server.port} USER@HOST")
        try:
            while True:
                time.sleep(1.0)
        except KeyboardInterrupt:  # the normal way to quit: not an error
            pass
        finally:
            server.stop()
        return 0
