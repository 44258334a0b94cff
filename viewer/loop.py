"""Render thread of one browser: camera moves -> preview frames, then the full frame once it is still."""

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
from langfield.viewer.core import RenderResult

FrameFn = Callable[[ViewerCamera], RenderResult]


class ClientLoop:
    """Render thread of one client (anything with viser's ``camera`` and ``scene.set_background_image``).

    A camera move renders a small preview frame (``preview_size``); once the camera has been
    still for ``settle_s`` the full frame (``max_size_fn()``, default ``config.max_size``)
    follows. The status line says "rendering ..." while a full frame is being made.
    """

    def __init__(self, client: Any, frame_fn: FrameFn, config: ViewerConfig,
                 status_fn: Callable[[str], None] = lambda s: None,
                 max_size_fn: Optional[Callable[[], int]] = None) -> None:
        self.client, self.frame_fn, self.config, self.status_fn = client, frame_fn, config, status_fn
        self.max_size_fn = max_size_fn or (lambda: config.max_size)
        self._wake = threading.Event()
        self._state = threading.Lock()
        self._pending: Optional[str] = None  # "preview" | "settle" | "full"
        self._last_move = 0.0
        self._stopped = False
        self.busy = False
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

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _next_size(self) -> Optional[tuple[int, bool]]:
        """(long side, is_full) of the next frame, None when nothing is due."""
        still = time.monotonic() - self._last_move >= self.config.settle_s
        full = max(16, int(self.max_size_fn()))
        if self._pending == "preview":
            self._pending = "settle"
            return min(self.config.preview_size, full), False
        if self._pending == "full" or (self._pending == "settle" and still):
            self._pending = None
            return full, True
        return None

    def _run(self) -> None:
        while True:
            self._wake.wait(timeout=self.config.settle_s / 2)
            with self._state:
                if self._stopped:
                    return
                self._wake.clear()
                due = self._next_size()
            if due is not None:
                self._draw(*due)

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

    def _draw(self, max_side: int, full: bool = True) -> None:
        camera = self._camera(max_side)
        if camera is None:
            # No camera message yet: keep the frame due, so the loop retries at its next wake-up.  Otherwise a
            # camera message that arrived before ``on_update`` was registered (or a refresh that came first)
            # would leave the tab blank until the user moves the camera (seen under load in the browser test).
            with self._state:
                if self._pending is None:
                    self._pending = "full" if full else "preview"
            return
        if full:  # the busy indicator: the old frame stays, the status says a new one is coming
            self.busy = True
            self.status_fn(f"⏳ rendering {camera.width}×{camera.height} ...")
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
        finally:
            self.busy = False
        ms = 1000 * (time.perf_counter() - t0)
        self.client.scene.set_background_image(result.image, format="jpeg", jpeg_quality=self.config.jpeg_quality)
        self.frames = (self.frames + [(camera.width, camera.height)])[-8:]
        level = "" if result.level is None else f" · level {result.level}"
        note = f" · {result.note}" if result.note else ""
        self.status_fn(f"{camera.width}×{camera.height} · {ms:.0f} ms{level}{note}")
