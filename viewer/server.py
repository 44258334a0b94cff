"""The viser web server: one ``ClientPanel`` (controls + render thread) per connected browser tab.

Each tab gets its own controls and state (``panel.py``), so nothing leaks between tabs or
across a reload. The port is checked before viser starts (``network.check_port_free``: a
taken port is an error unless port 0 asks for any free one) and websockets' tracebacks for
bad connections become one log line.
"""

from __future__ import annotations

import threading
from typing import Any, Optional

import numpy as np

from langfield.types import LangfieldError
from langfield.viewer.config import ViewerConfig
from langfield.viewer.core import RenderCore
from langfield.viewer.loop import ClientLoop, FrameFn  # noqa: F401  (re-exported: ClientLoop lived here)
from langfield.viewer.network import check_port_free, quiet_connection_errors
from langfield.viewer.panel import ClientPanel


class ViewerServer:
    """A running viser server showing one scene (started on construction; ``stop()`` ends it)."""

    def __init__(self, core: RenderCore, config: Optional[ViewerConfig] = None) -> None:
        import viser

        self.core, self.config = core, config or ViewerConfig()
        check_port_free(self.config.host, self.config.port)
        quiet_connection_errors()
        self.server = viser.ViserServer(host=self.config.host, port=self.config.port, verbose=self.config.verbose)
        if self.config.port and self.server.get_port() != self.config.port:  # taken between check and bind
            got = self.server.get_port()
            self.server.stop()
            raise LangfieldError(f"port {self.config.port} on {self.config.host} is already in use (viser moved to "
                                 f"{got}): pick another --port, or use --port 0 for any free port")
        self._panels: dict[int, ClientPanel] = {}
        self._lock = threading.Lock()
        self._set_initial_camera()
        self.server.gui.add_markdown(f"**langfield** · `{core.root.name}` · {core.field.num_gaussians:,} Gaussians")
        threading.Thread(target=core.warm_up, name="langfield-viewer-warm-up", daemon=True).start()
        self.server.on_client_connect(self._connect)
        self.server.on_client_disconnect(self._disconnect)

    @property
    def host(self) -> str:
        return self.server.get_host()

    @property
    def port(self) -> int:
        return self.server.get_port()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def panels(self) -> list[ClientPanel]:
        """The connected tabs' panels."""
        with self._lock:
            return list(self._panels.values())

    def stop(self) -> None:
        with self._lock:
            panels, self._panels = list(self._panels.values()), {}
        for panel in panels:
            panel.stop()
        self.server.stop()

    def refresh_all(self) -> None:
        """Re-render every tab (the scene changed)."""
        for panel in self.panels():
            panel.loop.refresh()

    # ------------------------------------------------------------------ setup

    def _set_initial_camera(self) -> None:
        cam = self.core.initial_camera()
        centre = self.core.scene_centre()
        # orbit around the point of the optical axis nearest to the scene centre
        dist = float(np.dot(centre - cam.c2w[:3, 3], cam.c2w[:3, 2]))
        dist = dist if dist > 1e-3 else max(self.core.scene_extent() / 2, 0.1)
        self.server.scene.set_up_direction(tuple(float(x) for x in self.core.up_direction()))
        init = self.server.initial_camera
        init.position = tuple(cam.c2w[:3, 3])
        init.look_at = tuple(cam.look_at_point(dist))
        init.up = tuple(cam.up)
        init.fov = cam.fov_y

    def _connect(self, client: Any) -> None:
        panel = ClientPanel(client, self.core, self.config)
        with self._lock:
            self._panels[client.client_id] = panel

    def _disconnect(self, client: Any) -> None:
        with self._lock:
            panel = self._panels.pop(client.client_id, None)
        if panel is not None:
            panel.stop()
