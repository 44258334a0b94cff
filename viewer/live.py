"""A viewer on a scene that keeps changing while it is shown (``langfield slam --view``, ``reconstruct --view``).

The writer (the SLAM loop, the trainer) calls :meth:`LiveScene.open` once with a first snapshot's scene directory
and then :meth:`LiveScene.publish` with copies of its newer Gaussians.  ``publish`` swaps them into the render
core under the core's lock -- the same lock every render thread holds -- so a frame is rendered either from the
old map or from the new one, never from a half-updated one; the Gaussian count may change between maps
(densification, keyframes).  The viewer only ever gets tensors and a codec, never the writer's objects
(ARCHITECTURE.md: the viewer gets callables and a lock).

With ``background=True`` (``reconstruct --view``) ``publish`` only leaves the copy in a slot and returns: a
swap thread waits for the core's lock (a render may hold it for a while on a CPU) and activates the Gaussians,
so the trainer never waits on a render; a copy that arrives before the previous one was shown replaces it.
A second :meth:`open` switches to another scene directory (the scene a run wrote at its end), restarting the
server on the same address; browsers reconnect by themselves.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from langfield.types import LangfieldError
from langfield.viewer.config import ViewerConfig

SLAM_NOTE = "the map grows while tracking runs"
"""What the viewer's first log line says the scene does (the SLAM default)."""


class LiveScene:
    """Render core (and, with ``serve``, a viser server) following a growing map."""

    def __init__(self, *, backend: str = "auto", config: Optional[ViewerConfig] = None, serve: bool = True,
                 log: Any = print, background: bool = False, note: str = SLAM_NOTE) -> None:
        self.backend, self.config, self.serve, self.log = backend, config or ViewerConfig(), serve, log
        self.background = background
        """Swap published maps in from a thread of their own (``publish`` never waits on a render)."""
        self.note = note
        """Said after the URL when the viewer first opens."""
        self.core: Any = None
        """``viewer.core.RenderCore`` once opened."""
        self.server: Any = None
        self.updates = 0
        """Maps swapped into the core so far."""
        self.superseded = 0
        """Maps published but replaced by a newer one before they were shown (``background`` only)."""
        self._apply_lock = threading.Lock()  # one swap or scene switch at a time
        self._slot_lock = threading.Lock()
        self._slot: Optional[tuple[Mapping[str, torch.Tensor], Optional[Any]]] = None
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._thread: Optional[threading.Thread] = None
        self._closed = False

    @property
    def is_open(self) -> bool:
        return self.core is not None

    @property
    def url(self) -> Optional[str]:
        """The server's address (None without a server)."""
        return None if self.server is None else self.server.url

    def preflight(self) -> None:
        """Fail now, with the error ``open`` would give later, when viser is missing or the port is taken."""
        if not self.serve:
            return
        self._require_viser()
        from langfield.viewer.network import check_port_free

        check_port_free(self.config.host, self.config.port)

    def open(self, scene_dir: Path, note: Optional[str] = None) -> None:
        """Load a snapshot into a render core and (``serve``) start the server on it.

        ``note`` replaces the core's "no language field" note (e.g. "the language field appears when training
        ends"). When already open: switch to ``scene_dir`` (maps still waiting in the slot are dropped: they
        belong to the old scene).
        """
        from langfield.viewer.core import RenderCore

        if self.serve:
            self._require_viser()
        core = RenderCore(Path(scene_dir), backend=self.backend)
        if note and not core.has_language:
            core.language_note = note
        with self._apply_lock:
            with self._slot_lock:
                self._slot = None
            first = self.core is None
            self.core = core
            if not self.serve:
                return
            if first:
                from langfield.viewer.server import ViewerServer

                self.server = ViewerServer(core, self.config)
                self.log(f"viewer: {self.server.url}  ({self.note})")
            else:
                self._restart(core)

    def publish(self, params: Mapping[str, torch.Tensor], codec: Optional[Any] = None) -> None:
        """Show ``params`` (the caller's own copy: it is kept, not copied) and, with a language field, ``codec``."""
        if self.core is None:
            raise RuntimeError("LiveScene.publish before open")
        if not self.background:
            self._apply(params, codec)
            return
        with self._slot_lock:
            if self._slot is not None:
                self.superseded += 1
            self._slot = (params, codec)
            self._idle.clear()
        if self._thread is None:
            self._thread = threading.Thread(target=self._swap_loop, name="langfield-live-swap", daemon=True)
            self._thread.start()
        self._wake.set()

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until every published map was swapped in (or superseded); False on timeout."""
        return self._idle.wait(timeout)

    def serve_until_interrupted(self) -> None:
        """Keep serving until Ctrl-C (which ends this quietly)."""
        try:
            while True:
                time.sleep(1.0)
        except KeyboardInterrupt:  # the normal way to leave a viewer: not an error
            pass

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        if self.server is not None:
            self.server.stop()
            self.server = None

    # ------------------------------------------------------------------ internals

    def _require_viser(self) -> None:
        try:
            import viser  # noqa: F401
        except ImportError:
            raise LangfieldError('--view needs viser: pip install -e ".[viewer]"') from None

    def _apply(self, params: Mapping[str, torch.Tensor], codec: Optional[Any]) -> None:
        with self._apply_lock:
            core = self.core
            fresh = torch.nn.ParameterDict({k: torch.nn.Parameter(v.detach(), requires_grad=False)
                                            for k, v in params.items()})
            with core.lock:
                language = core.language
                if language is not None and codec is not None:
                    language.codec = codec.to(language.device).eval()
                if language is not None and "latents" not in fresh:
                    return  # the language field cannot show a map without latents; keep the last one
                core.field.update(fresh)
                self.updates += 1
            server = self.server
        if server is not None:
            server.refresh_all()

    def _swap_loop(self) -> None:
        while not self._closed:
            self._wake.wait()
            self._wake.clear()
            while True:
                with self._slot_lock:
                    item, self._slot = self._slot, None
                    if item is None:
                        self._idle.set()
                        break
                try:
                    self._apply(*item)
                except Exception as e:  # a bad map must not end the viewer, nor reach the trainer's thread
                    self.log(f"viewer: could not show a published map: {type(e).__name__}: {e}")

    def _restart(self, core: Any) -> None:
        """Serve ``core`` on the running server's address (port 0 meant "any": keep the one it got)."""
        from langfield.viewer.server import ViewerServer

        old = self.server
        config = dataclasses.replace(self.config, port=old.port)
        old.stop()
        try:
            self.server = ViewerServer(core, config)
        except LangfieldError as e:  # taken in the moment between stop and start: any free port, said loudly
            self.server = ViewerServer(core, dataclasses.replace(config, port=0))
            self.log(f"viewer: {e}; moved")
        self.log(f"viewer: {self.server.url}  now shows {core.root}")
