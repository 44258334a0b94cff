"""Click on the image -> the 3D point under the cursor and how well each recent query matches it there.

A click (viser's scene click: a position on the canvas, 0..1 in OpenCV image coordinates, plus
the camera ray) is read off the frame the tab shows: the viewer renders the tab's camera at the
canvas aspect, so the click's fraction of the canvas is a pixel of that frame, and the frame's
depth at that pixel is the surface the user sees there.

Why the shown frame and not a one-pixel render along the ray: the frame is already in the
core's frame cache (a click comes when the camera is still, so the full frame is the last one
rendered), so reading it costs nothing, and its depth is exactly what is on screen.  A 1x1
camera would be cheaper to rasterize than a fresh frame but not identical to it: the projection
clamps each Gaussian's Jacobian to 1.3x the image's field of view, which for one pixel bends
every Gaussian more than a pixel off the ray.

The point is the pixel centre unprojected with langfield's conventions (OpenCV camera, c2w
pose, camera-z depth, pixel centres at +0.5; as ``gaussians.init.backproject_depth``).  The
recent queries are scored by the relevancy mode's own path (``LanguageField.relevancy`` with the
tab's method, negatives and level rule) in one pass for all of them, so a query's score at the
point is the raw relevancy its heatmap shows at that pixel.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np

from langfield.types import LangfieldError
from langfield.viewer.camera import ViewerCamera
from langfield.viewer.core import RenderCore, RenderRequest

MAX_RECENT = 6
"""Submitted queries a tab remembers (most recent first) and scores at a clicked point."""
MARKER_SCALE = 0.012
"""Radius of the clicked point's marker as a fraction of the scene's extent."""
MARKER_COLOR = (255, 40, 200)
"""Colour of the marker (magenta: not a colour of the relevancy colormaps)."""
MARKER_NAME = "/langfield_point"
"""Scene node of the marker in the tab's own scene (re-adding the name moves it)."""
HINT = "click the image to read the 3D point there and score the recent queries at it"
"""What the point panel says before the first click."""


def remember_query(recent: Sequence[str], text: str, limit: int = MAX_RECENT) -> list[str]:
    """``recent`` with ``text`` moved (or added) to the front, unique, at most ``limit`` long."""
    text = " ".join(text.split())
    if not text:
        return list(recent)
    return [text, *(t for t in recent if t != text)][:limit]


def click_pixel(camera: ViewerCamera, screen_pos: Sequence[float]) -> tuple[int, int]:
    """(x, y) index of the frame pixel under a click at ``screen_pos`` (0..1, OpenCV: (0, 0) top left)."""
    sx, sy = (float(s) for s in screen_pos)
    if not (np.isfinite(sx) and np.isfinite(sy)):
        raise LangfieldError(f"click position {tuple(screen_pos)} is not finite")
    x = min(max(int(np.floor(sx * camera.width)), 0), camera.width - 1)
    y = min(max(int(np.floor(sy * camera.height)), 0), camera.height - 1)
    return x, y


def unproject(camera: ViewerCamera, u: float, v: float, depth: float) -> np.ndarray:
    """[3] float64 world point at image position (u, v) (pixel centres at +0.5) and camera-z ``depth``."""
    K = np.asarray(camera.K, dtype=np.float64)
    x_cam = np.array([(u - K[0, 2]) / K[0, 0] * depth, (v - K[1, 2]) / K[1, 1] * depth, depth])
    c2w = np.asarray(camera.c2w, dtype=np.float64)
    return c2w[:3, :3] @ x_cam + c2w[:3, 3]


def ray_distance(point: np.ndarray, origin: Sequence[float], direction: Sequence[float]) -> float:
    """Distance from ``point`` to the ray ``origin + t * direction`` (t >= 0)."""
    o, d = np.asarray(origin, dtype=np.float64), np.asarray(direction, dtype=np.float64)
    d = d / max(float(np.linalg.norm(d)), 1e-12)
    t = max(float(np.dot(point - o, d)), 0.0)
    return float(np.linalg.norm(point - (o + t * d)))


@dataclass(frozen=True)
class QueryScore:
    """One recent query's relevancy at the clicked pixel."""

    text: str
    """The query."""
    score: float
    """Raw LERF relevancy at the pixel (> 0.5: the query beats the negatives there)."""
    level: int
    """Feature level the score is at (the tab's fixed level, or the one the relevancy mode picks in this view)."""


@dataclass
class PointReading:
    """What a click found."""

    pixel: tuple[int, int]
    """(x, y) index of the frame pixel clicked."""
    size: tuple[int, int]
    """(width, height) of the frame read."""
    depth: float
    """Camera-z depth at the pixel; 0 where nothing was hit."""
    point: Optional[np.ndarray]
    """[3] world point on the surface; None where nothing was hit."""
    scores: list[QueryScore] = field(default_factory=list)
    """The recent queries' relevancy at the pixel, best first (empty without a language field or queries)."""
    note: str = ""
    """Why there are no scores (no language field, no query yet), or empty."""

    @property
    def best(self) -> Optional[QueryScore]:
        return self.scores[0] if self.scores else None


class PointProber:
    """Reads clicked points off a core's frames; keeps the last relevancy pass so clicks in one view share it."""

    def __init__(self, core: RenderCore) -> None:
        self.core = core
        self._last: Optional[tuple[tuple, Any]] = None  # (key, FieldRelevancy) of the last scoring pass
        self.passes = 0  # scoring passes made (tests check that a second click in a view makes none)

    def read(self, camera: ViewerCamera, screen_pos: Sequence[float], request: RenderRequest,
             queries: Sequence[str]) -> PointReading:
        """The surface point under ``screen_pos`` in ``camera``'s frame as ``request`` shows it, and the scores."""
        x, y = click_pixel(camera, screen_pos)
        frame = self.core.render(camera, request)  # the frame on screen: a cache hit when the camera is still
        depth = float(frame.depth[y, x])
        reading = PointReading(pixel=(x, y), size=(camera.width, camera.height), depth=depth, point=None)
        if not (np.isfinite(depth) and depth > 0):
            reading.depth = 0.0
            reading.note = "nothing was hit there"
            return reading
        reading.point = unproject(camera, x + 0.5, y + 0.5, depth)
        texts = list(dict.fromkeys(t for t in queries if t.strip()))
        if self.core.language is None:
            reading.note = "no language field: depth only"
        elif not texts:
            reading.note = "submit a query to score it here"
        else:
            reading.scores = self.scores(camera, x, y, request, texts)
        return reading

    def scores(self, camera: ViewerCamera, x: int, y: int, request: RenderRequest,
               texts: list[str]) -> list[QueryScore]:
        """Each text's relevancy at pixel (x, y) of ``camera``, best first: one pass for all of them."""
        ls = self.core.language
        assert ls is not None
        self.core.check_level(request.level)
        negatives = tuple(request.negatives)
        key = (np.asarray(camera.c2w).tobytes(), np.asarray(camera.K).tobytes(), camera.width, camera.height,
               tuple(texts), negatives, request.method, request.level, ls.version)
        with self.core.lock:  # the text cache, codec and splat channels are shared with the render threads
            if self._last is not None and self._last[0] == key:
                rel = self._last[1]
            else:
                rel = ls.relevancy(camera, texts, negatives=negatives or None,
                                   level="auto" if request.level is None else request.level,
                                   method=request.method)  # type: ignore[arg-type]
                self._last = (key, rel)
                self.passes += 1
            values = rel.relevancy[:, y, x].float().cpu().tolist()
            levels = rel.levels.cpu().tolist()
        out = [QueryScore(t, float(s), int(lv)) for t, s, lv in zip(texts, values, levels)]
        return sorted(out, key=lambda s: -s.score)


def format_reading(reading: PointReading, level_names: Sequence[str] = ()) -> str:
    """Markdown for the point panel: xyz, depth, then the ranked queries ("**table** 0.87 · level 1 (whole)")."""
    x, y = reading.pixel
    if reading.point is None:
        return f"pixel ({x}, {y}): {reading.note or 'nothing was hit there'}"
    px, py, pz = (float(c) for c in reading.point)
    parts = [f"**point** ({px:.3f}, {py:.3f}, {pz:.3f}) · depth {reading.depth:.3f} · pixel ({x}, {y})"]
    items = []
    for i, s in enumerate(reading.scores):
        name = f" ({level_names[s.level]})" if s.level < len(level_names) else ""
        text = f"**{s.text}**" if i == 0 else s.text
        items.append(f"{i + 1}. {text} {s.score:.2f} · level {s.level}{name}")
    if items:
        parts += ["\n".join(items), "*relevancy > 0.5: the query beats the negatives here*"]
    elif reading.note:
        parts.append(f"*{reading.note}*")
    return "\n\n".join(parts)


def _click_parts(event: Any) -> tuple[tuple[float, float], Optional[tuple], Optional[tuple]]:
    """(screen_pos, ray_origin, ray_direction) of a viser click (``SceneClickEvent`` or legacy ``ScenePointerEvent``)."""
    pos = event.screen_pos
    if pos and isinstance(pos[0], (tuple, list)):  # the legacy event holds a tuple of positions
        pos = pos[0]
    return (float(pos[0]), float(pos[1])), getattr(event, "ray_origin", None), getattr(event, "ray_direction", None)


class PointerPanel:
    """The "Point" controls of one tab: its click callback, the reading's text, the marker and "Clear point"."""

    def __init__(self, client: Any, core: RenderCore, gui: Any, camera_fn: Callable[[], Optional[ViewerCamera]],
                 request_fn: Callable[[], RenderRequest], queries_fn: Callable[[], Sequence[str]]) -> None:
        self.client, self.core = client, core
        self.camera_fn, self.request_fn, self.queries_fn = camera_fn, request_fn, queries_fn
        self.prober = PointProber(core)
        self.reading: Optional[PointReading] = None
        self.ray_error: Optional[float] = None  # distance of the point from the browser's click ray (a check)
        self.marker: Any = None
        self._lock = threading.Lock()  # one click at a time (viser runs callbacks in a thread pool)
        self._radius = max(core.scene_extent(), 1e-3) * MARKER_SCALE
        with gui.add_folder("Point"):
            self.text = gui.add_markdown(HINT)
            self.clear_button = gui.add_button("Clear point", disabled=True)
        self.clear_button.on_click(lambda _: self.clear())
        self.clickable = self._register(client.scene)
        if not self.clickable:
            self.text.content = "*this viser cannot report clicks on the scene*"

    def _register(self, scene: Any) -> bool:
        """Listen to clicks on this tab's scene (viser >= 1.1: ``on_click``; older: ``on_pointer_event``)."""
        on_click = getattr(scene, "on_click", None)
        if on_click is not None:
            on_click()(self._on_click)
            return True
        on_pointer = getattr(scene, "on_pointer_event", None)
        if on_pointer is not None:
            on_pointer(event_type="click")(self._on_click)
            return True
        return False

    def _on_click(self, event: Any) -> None:
        screen_pos, origin, direction = _click_parts(event)
        self.click(screen_pos, origin, direction)

    def click(self, screen_pos: Sequence[float], ray_origin: Optional[Sequence[float]] = None,
              ray_direction: Optional[Sequence[float]] = None) -> Optional[PointReading]:
        """Read the point under ``screen_pos`` in the tab's current view, show it and move the marker there."""
        with self._lock:
            camera = self.camera_fn()
            if camera is None:
                self.text.content = "no camera from the browser yet"
                return None
            self.text.content = "⏳ reading the point ..."
            try:
                reading = self.prober.read(camera, screen_pos, self.request_fn(), list(self.queries_fn()))
            except LangfieldError as e:
                self.text.content = f"error: {e}"
                return None
            self.ray_error = None
            if reading.point is not None and ray_origin is not None and ray_direction is not None:
                self.ray_error = ray_distance(reading.point, ray_origin, ray_direction)
            self.text.content = format_reading(reading, self.core.level_names)
            if reading.point is not None:
                self._place_marker(reading.point)
            else:  # a click on empty space: no point to mark
                self._remove_marker()
            self.reading = reading  # last: whoever waits for a reading finds the text and marker done
            return reading

    def _place_marker(self, point: np.ndarray) -> None:
        if self.marker is not None:  # a second click moves the marker
            self.marker.position = tuple(float(c) for c in point)
        else:
            self.marker = self.client.scene.add_icosphere(MARKER_NAME, radius=self._radius, color=MARKER_COLOR,
                                                          position=tuple(float(c) for c in point))
        self.clear_button.disabled = False

    def clear(self) -> None:
        """Clear point: remove the marker and the reading."""
        with self._lock:
            self._remove_marker()
            self.reading, self.ray_error = None, None
            self.text.content = HINT

    def _remove_marker(self) -> None:
        if self.marker is not None:
            self.marker.remove()
        self.marker = None
        self.clear_button.disabled = True
