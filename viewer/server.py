"""The viser web server: per-client camera -> RenderCore frame -> the client's background image.

Each connected browser gets a render thread. A camera move renders a small
preview frame (``preview_size``); once the camera has been still for
``settle_s`` the full frame (``max_size``) follows. GUI changes (mode, query,
level ...) are shared by all clients and re-render every client at full size.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from typing import Any, Callable, Optional

import numpy as np

from langfield.types import LangfieldError
from langfield.viewer.camera import ViewerCamera
from langfield.viewer.config import ViewerConfig
from langfield.viewer.core import RenderCore, RenderRequest, RenderResult

FrameFn = Callable[[ViewerCamera], RenderResult]


class ClientLoop:
    """Render thread of one client (anything with viser's ``camera`` and ``scene.set_background_image``)."""

    def __init__(self, client: Any, frame_fn: FrameFn, config: ViewerConfig,
                 status_fn: Callable[[str], None] = lambda s: None) -> None:
        self.client, self.frame_fn, self.config, self.status_fn = client, frame_fn, config, status_fn
        self._wake = threading.Event()
        self._state = threading.Lock()
        self._pending: Optional[str] = None  # "preview" | "settle" | "full"
        self._last_move = 0.0
        self._stopped = False
        self.frames: list[tuple[int, int]] = []  # (width, height) of the latest frames, for status and tests
        client.camera.on_update(lambda _cam: self.camera_moved())
        self._thread = threading.Thread(target=self._run, name="langfield-viewer-render", daemon=True)
        self._thread.start()

    def camera_moved(self) -> None:
        with self._state:
            self._last_move = time.monotonic()
            if self._pending != "full":
                self._pending = "preview"
        self._wake.set()

    def refresh(self) -> None:
        """Render a full frame now (the scene or the GUI state changed)."""
        with self._state:
            self._pending = "full"
        self._wake.set()

    def stop(self) -> None:
        with self._state:
            self._stopped = True
        self._wake.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5.0)

    def _next_size(self) -> Optional[int]:
        still = time.monotonic() - self._last_move >= self.config.settle_s
        if self._pending == "preview":
            self._pending = "settle"
            return min(self.config.preview_size, self.config.max_size)
        if self._pending == "full" or (self._pending == "settle" and still):
            self._pending = None
            return self.config.max_size
        return None

    def _run(self) -> None:
        while True:
            self._wake.wait(timeout=self.config.settle_s / 2)
            with self._state:
                if self._stopped:
                    return
                self._wake.clear()
                size = self._next_size()
            if size is not None:
                self._draw(size)

    def _camera(self, max_side: int) -> Optional[ViewerCamera]:
        cam = self.client.camera
        try:
            wxyz, position, fov, aspect = cam.wxyz, cam.position, cam.fov, cam.aspect
            w, h = int(cam.image_width), int(cam.image_height)
        except (AssertionError, ZeroDivisionError):  # no camera message from the browser yet
            return None
        if w <= 0 or h <= 0:
            w, h = max(1, int(round(max_side * aspect))), max_side
        return ViewerCamera.from_pose(np.asarray(wxyz), np.asarray(position), float(fov), w, h).resized(max_side)

    def _draw(self, max_side: int) -> None:
        camera = self._camera(max_side)
        if camera is None:
            return
        t0 = time.perf_counter()
        try:
            result = self.frame_fn(camera)
        except LangfieldError as e:
            self.status_fn(f"error: {e}")
            return
        except Exception as e:  # keep the thread (and the viewer) alive; the traceback goes to the terminal
            traceback.print_exc(file=sys.stderr)
            self.status_fn(f"render failed: {type(e).__name__}: {e}")
            return
        ms = 1000 * (time.perf_counter() - t0)
        self.client.scene.set_background_image(result.image, format="jpeg", jpeg_quality=self.config.jpeg_quality)
        self.frames = (self.frames + [(camera.width, camera.height)])[-8:]
        level = "" if result.level is None else f" · level {result.level}"
        note = f" · {result.note}" if result.note else ""
        self.status_fn(f"{camera.width}×{camera.height} · {ms:.0f} ms{level}{note}")


class ViewerServer:
    """A running viser server showing one scene (started on construction; ``stop()`` ends it)."""

    def __init__(self, core: RenderCore, config: Optional[ViewerConfig] = None) -> None:
        import viser

        self.core, self.config = core, config or ViewerConfig()
        self.server = viser.ViserServer(host=self.config.host, port=self.config.port, verbose=self.config.verbose)
        self._clients: dict[int, ClientLoop] = {}
        self._lock = threading.Lock()
        self._selector = None
        self._selection = None
        self._typing_token = 0
        self._set_initial_camera()
        self._build_gui()
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

    def stop(self) -> None:
        with self._lock:
            loops, self._clients = list(self._clients.values()), {}
        for loop in loops:
            loop.stop()
        self.server.stop()

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

    def _build_gui(self) -> None:
        from langfield.query import DEFAULT_NEGATIVES

        gui = self.server.gui
        self.mode = gui.add_dropdown("Mode", self.core.modes, initial_value="rgb")
        self.status = gui.add_markdown("")
        self.mode.on_update(lambda _: self.refresh_all())
        if not self.core.has_language:
            gui.add_markdown(f"*{self.core.language_note}*")
            return
        with gui.add_folder("Language"):
            self.query = gui.add_text("Query", "")
            self.negatives = gui.add_text("Negatives", ", ".join(DEFAULT_NEGATIVES))
            names = self.core.level_names
            self.level = gui.add_dropdown("Level", ["auto", *[f"{i}: {n}" for i, n in enumerate(names)]])
            self.threshold = gui.add_slider("Select threshold", 0.0, 1.0, 0.01, 0.5)
            select = gui.add_button("Select 3D")
            self.export = gui.add_button("Export PLY", disabled=True)
            self.selection_status = gui.add_markdown("")
        self.level.on_update(lambda _: self.refresh_all())
        # text boxes update on every keystroke: wait for a pause so each partial word is not
        # encoded (and added to the scene's persistent text cache) on its way
        for handle in (self.query, self.negatives):
            handle.on_update(lambda _: self._debounced_refresh())
        select.on_click(lambda _: self._select())
        self.export.on_click(lambda _: self._export())

    # ------------------------------------------------------------------ state

    def request(self) -> RenderRequest:
        """The GUI state as a RenderRequest."""
        if not self.core.has_language:
            return RenderRequest(mode=self.mode.value)
        level = None if self.level.value == "auto" else int(self.level.value.split(":")[0])
        negatives = tuple(t.strip() for t in self.negatives.value.split(",") if t.strip())
        return RenderRequest(mode=self.mode.value, query=self.query.value, negatives=negatives, level=level)

    def frame(self, camera: ViewerCamera) -> RenderResult:
        return self.core.render(camera, self.request())

    def refresh_all(self) -> None:
        with self._lock:
            loops = list(self._clients.values())
        for loop in loops:
            loop.refresh()

    def _debounced_refresh(self) -> None:
        with self._lock:
            self._typing_token += 1
            token = self._typing_token

        def fire() -> None:
            if token == self._typing_token:  # no keystroke since this one
                self.refresh_all()

        timer = threading.Timer(self.config.typing_pause_s, fire)
        timer.daemon = True
        timer.start()

    def _set_status(self, text: str) -> None:
        self.status.content = text

    def _connect(self, client: Any) -> None:
        loop = ClientLoop(client, self.frame, self.config, self._set_status)
        with self._lock:
            self._clients[client.client_id] = loop

    def _disconnect(self, client: Any) -> None:
        with self._lock:
            loop = self._clients.pop(client.client_id, None)
        if loop is not None:
            loop.stop()

    # ------------------------------------------------------------------ 3D selection

    def _select(self) -> None:
        from langfield.viewer.selection import Selector

        req = self.request()
        self.selection_status.content = "selecting ..."
        try:
            if self._selector is None:
                self._selector = Selector(self.core)
            sel = self._selector.select(req.query, req.negatives, req.level, float(self.threshold.value))
        except LangfieldError as e:
            self.selection_status.content = f"error: {e}"
            return
        self._selection = sel
        size = max(self.core.scene_extent(), 1e-3) * 0.004
        self.server.scene.add_point_cloud("/selection", points=sel.points, colors=sel.colors, point_size=size)
        self.export.disabled = sel.count == 0
        shown = "" if len(sel.points) == sel.count else f" (showing {len(sel.points)})"
        self.selection_status.content = f"**{sel.count}** Gaussians{shown} · level {sel.level}"

    def _export(self) -> None:
        if self._selection is None or self._selector is None:
            return
        try:
            path = self._selector.export(self._selection, self.config.export_dir)
        except LangfieldError as e:
            self.selection_status.content = f"error: {e}"
            return
        self.selection_status.content = f"wrote `{path}`"
