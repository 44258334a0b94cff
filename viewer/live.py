"""A viewer on a map that keeps changing while it is shown (``langfield slam --view``).

The writer (the SLAM loop) calls :meth:`LiveScene.open` once with the first snapshot's scene directory
and then :meth:`LiveScene.publish` with copies of its newer Gaussians.  ``publish`` swaps them into the
render core under the core's lock -- the same lock every render thread holds -- so a frame is rendered
either from the old map or from the new one, never from a half-updated one.  The viewer only ever gets
tensors and a codec, never the writer's objects (ARCHITECTURE.md: the viewer gets callables and a lock).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from langfield.types import LangfieldError
from langfield.viewer.config import ViewerConfig


class LiveScene:
    """Render core (and, with ``serve``, a viser server) following a growing map."""

    def __init__(self, *, backend: str = "auto", config: Optional[ViewerConfig] = None, serve: bool = True,
                 log: Any = print) -> None:
        self.backend, self.config, self.serve, self.log = backend, config or ViewerConfig(), serve, log
        self.core: Any = None
        """``viewer.core.RenderCore`` once opened."""
        self.server: Any = None
        self.updates = 0
        """Maps published so far."""

    @property
    def is_open(self) -> bool:
        return self.core is not None

    def open(self, scene_dir: Path) -> None:
        """Load the first snapshot into a render core and (``serve``) start the server on it."""
        from langfield.viewer.core import RenderCore

        if self.serve:
            try:
                import viser  # noqa: F401
            except ImportError:
                raise LangfieldError('--view needs viser: pip install -e ".[viewer]"') from None
        self.core = RenderCore(Path(scene_dir), backend=self.backend)
        if self.serve:
            from langfield.viewer.server import ViewerServer

            self.server = ViewerServer(self.core, self.config)
            self.log(f"viewer: {self.server.url}  (the map grows while tracking runs)")

    def publish(self, params: Mapping[str, torch.Tensor], codec: Optional[Any] = None) -> None:
        """Show ``params`` (the caller's own copy: it is kept, not copied) and, with a language field, ``codec``."""
        if self.core is None:
            raise RuntimeError("LiveScene.publish before open")
        fresh = torch.nn.ParameterDict({k: torch.nn.Parameter(v.detach(), requires_grad=False)
                                        for k, v in params.items()})
        with self.core.lock:
            language = self.core.language
            if language is not None and codec is not None:
                language.codec = codec.to(language.device).eval()
            if language is not None and "latents" not in fresh:
                return  # the language field cannot show a map without latents; keep the last one
            self.core.field.update(fresh)
            self.updates += 1
        if self.server is not None:
            self.server.refresh_all()

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
