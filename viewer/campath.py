"""Camera paths in the viewer: keyframes from a tab's camera, saved as JSON, rendered to an mp4 video.

``render_video`` renders every frame of a ``langfield.render.camera_path.CameraPath`` through the
``RenderCore`` in one ``RenderRequest`` (the tab's mode, submitted query, level, style) and writes
the video atomically; ``langfield render --camera-path`` calls it too, so the browser and the
command line make the same frames.  ``CameraPathControls`` is the per-tab GUI (built by
``panel.ClientPanel``): keyframes live in the tab, like its query, and vanish on reload.
"""

from __future__ import annotations

import math
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Optional

import numpy as np

from langfield.render.camera_path import CameraPath, read_camera_path, write_camera_path
from langfield.types import LangfieldError
from langfield.viewer.camera import ViewerCamera, fit_size
from langfield.viewer.core import RenderCore, RenderRequest

ProgressFn = Callable[[int, int], None]
"""``progress(frames_done, frames_total)``."""
DEFAULT_PATH_FILE = "camera_paths/camera_path.json"
"""Where "Save path" writes, relative to the scene directory."""
DEFAULT_VIDEO_FILE = "renders/camera_path.mp4"
"""Where "Render video" writes, relative to the scene directory."""
PATH_COLOR = (230, 120, 20)
"""Colour of the keyframe frustums and the path curve (orange; the training cameras are blue)."""
CURVE_SAMPLES_PER_KEY = 16
"""Points per keyframe of the drawn path curve."""


class RenderCancelled(LangfieldError):
    """The user stopped a video render (nothing was written)."""


def path_cameras(path: CameraPath) -> list[ViewerCamera]:
    """The path's video frames as viewer cameras at the path's resolution."""
    c2w, K = path.frames()
    return [ViewerCamera(c, k, path.width, path.height) for c, k in zip(c2w, K)]


def render_video(core: RenderCore, path: CameraPath, request: RenderRequest, out: Path, *,
                 progress: Optional[ProgressFn] = None, cancel: Optional[threading.Event] = None,
                 publish: Optional[Callable[[], ContextManager[Any]]] = None) -> Path:
    """Render every frame of ``path`` as ``request`` asks and write the mp4 ``out`` atomically; returns ``out``.

    ``cancel`` set between frames stops the render with ``RenderCancelled`` and leaves ``out`` untouched.
    ``publish()`` is entered only around moving the finished file into place (the scene's writer lock
    for a video inside the scene: held for a moment, not for the whole render).
    """
    from langfield.render.video import VideoWriter

    cameras = path_cameras(path)
    writer = VideoWriter(out, path.fps, path.width, path.height)
    try:
        for i, cam in enumerate(cameras):
            if cancel is not None and cancel.is_set():
                raise RenderCancelled(f"video render cancelled after {i} of {len(cameras)} frames")
            writer.write(core.render(cam, request).image)
            if progress is not None:
                progress(i + 1, len(cameras))
    except BaseException:
        writer.abort()
        raise
    with publish() if publish is not None else nullcontext():
        return writer.close()


def _even(n: float) -> int:
    """``n`` rounded down to an even number >= 2 (the mp4 encoder needs even sides)."""
    return max(2, int(n) // 2 * 2)


class CameraPathControls:
    """One tab's camera-path folder: add / clear keyframes, duration, fps, loop, save, render video."""

    def __init__(self, gui: Any, client: Any, core: RenderCore, request_fn: Callable[[], RenderRequest],
                 max_size_fn: Callable[[], int]) -> None:
        self.client, self.core, self.request_fn, self.max_size_fn = client, core, request_fn, max_size_fn
        self.poses: list[np.ndarray] = []  # keyframe camera-to-world poses (OpenCV), in the order added
        self.fovs: list[float] = []  # their vertical fields of view (radians)
        self._drawn: list[Any] = []  # scene handles of the keyframe frustums and the curve
        self._cancel = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.last_video: Optional[Path] = None
        with gui.add_folder("Camera path"):
            self.count = gui.add_markdown("")
            add = gui.add_button("Add keyframe", hint="the current view becomes the path's next keyframe")
            self.clear = gui.add_button("Clear path", disabled=True)
            self.seconds = gui.add_number("Seconds", 4.0, min=0.1, max=3600.0, step=0.1)
            self.fps = gui.add_number("FPS", 30, min=1, max=120, step=1)
            self.loop = gui.add_checkbox("Loop", False, hint="return from the last keyframe to the first")
            w, h = fit_size(4, 3, max_size_fn())
            self.size = gui.add_vector2("Video size", (_even(w), _even(h)), min=(2, 2), step=2,
                                        hint="width, height in pixels (set from the view at the first keyframe)")
            self.path_file = gui.add_text("Path file", DEFAULT_PATH_FILE, hint="relative to the scene directory")
            save = gui.add_button("Save path", disabled=False)
            load = gui.add_button("Load path")
            self.video_file = gui.add_text("Video file", DEFAULT_VIDEO_FILE, hint="relative to the scene directory")
            self.render_button = gui.add_button("Render video", disabled=True,
                                                hint="every frame in this tab's mode and query")
            self.cancel_button = gui.add_button("Cancel render", disabled=True)
            self.progress = gui.add_progress_bar(0.0, visible=False)
            self.status = gui.add_markdown("")
        add.on_click(lambda _: self.add_keyframe())
        self.clear.on_click(lambda _: self.clear_path())
        save.on_click(lambda _: self.save_path())
        load.on_click(lambda _: self.load_path())
        self.render_button.on_click(lambda _: self.start_render())
        self.cancel_button.on_click(lambda _: self._cancel.set())
        for handle in (self.seconds, self.loop):
            handle.on_update(lambda _: self._changed())
        self._changed()

    # ------------------------------------------------------------------ keyframes

    def current_camera(self) -> Optional[tuple[np.ndarray, float, float]]:
        """(c2w, fov_y, aspect) of the tab's camera now, None before the browser sent one."""
        cam = self.client.camera
        try:
            wxyz, position, fov, aspect = cam.wxyz, cam.position, float(cam.fov), float(cam.aspect)
        except (AssertionError, ZeroDivisionError):  # viser asserts until the first camera message
            return None
        view = ViewerCamera.from_pose(np.asarray(wxyz), np.asarray(position), fov, 2, 2)
        return view.c2w, fov, aspect

    def add_keyframe(self) -> bool:
        """Add keyframe: the tab's current camera becomes the last keyframe (False when there is none yet)."""
        now = self.current_camera()
        if now is None:
            self.status.content = "no camera from the browser yet: move the view, then add"
            return False
        c2w, fov, aspect = now
        if not self.poses:  # the first keyframe sets the video's shape from the browser canvas
            w, h = fit_size(max(1, round(1000 * aspect)), 1000, self.max_size_fn())
            self.size.value = (_even(w), _even(h))
        self.poses.append(c2w)
        self.fovs.append(fov)
        self.status.content = ""
        self._changed()
        return True

    def clear_path(self) -> None:
        """Clear path: forget every keyframe of this tab."""
        self.poses.clear()
        self.fovs.clear()
        self.status.content = ""
        self._changed()

    def camera_path(self) -> CameraPath:
        """The path the controls describe (LangfieldError when it cannot be rendered, e.g. no keyframes)."""
        w, h = (int(round(float(v))) for v in self.size.value)
        return CameraPath.uniform(self.poses, self.fovs, width=w, height=h, fps=float(self.fps.value),
                                  seconds=float(self.seconds.value), loop=bool(self.loop.value))

    def set_path(self, path: CameraPath) -> None:
        """Take over a path's keyframes and settings (their times become evenly spaced, as "Add" makes them)."""
        self.poses = [np.asarray(k.c2w, dtype=np.float64) for k in path.keyframes]
        self.fovs = [float(k.fov_y) for k in path.keyframes]
        self.seconds.value = float(path.seconds)
        self.fps.value = float(path.fps)
        self.loop.value = bool(path.loop)
        self.size.value = (int(path.width), int(path.height))
        self._changed()

    def _changed(self) -> None:
        """Keyframe count, button states and the drawn path after any change."""
        n = len(self.poses)
        rendering = self.rendering
        self.count.content = f"**{n}** keyframe{'s' if n != 1 else ''}"
        self.clear.disabled = n == 0 or rendering
        self.render_button.disabled = n == 0 or rendering
        self._draw()

    def _draw(self) -> None:
        """Keyframe frustums and the interpolated curve in this tab's 3D scene."""
        from langfield.viewer.frustums import FRUSTUM_SCALE, matrix_to_wxyz

        for handle in self._drawn:
            handle.remove()
        self._drawn = []
        if not self.poses:
            return
        scene = self.client.scene
        scale = max(self.core.scene_extent(), 1e-3) * FRUSTUM_SCALE
        w, h = (float(v) for v in self.size.value)
        for i, (c2w, fov) in enumerate(zip(self.poses, self.fovs)):
            self._drawn.append(scene.add_camera_frustum(
                f"/camera_path/key_{i:04d}", fov=fov, aspect=w / max(h, 1.0), scale=scale, color=PATH_COLOR,
                wxyz=matrix_to_wxyz(c2w[:3, :3]), position=c2w[:3, 3]))
        if len(self.poses) > 1:
            try:
                path = self.camera_path()
            except LangfieldError:  # e.g. an odd size typed into the box: the frustums still show
                return
            span = path.seconds if path.loop else path.keyframes[-1].time
            n = CURVE_SAMPLES_PER_KEY * len(self.poses) + 1
            c2w, _ = path.sample(np.linspace(0.0, span, n))
            self._drawn.append(scene.add_spline_catmull_rom(
                "/camera_path/curve", points=c2w[:, :3, 3], curve_type="catmullrom", color=PATH_COLOR,
                thickness=2.0, thickness_units="screen"))

    # ------------------------------------------------------------------ files

    def resolve(self, text: str) -> Path:
        """A path typed in the GUI: absolute as given, relative to the scene directory otherwise."""
        p = Path(text.strip()).expanduser()
        return p if p.is_absolute() else self.core.root / p

    @contextmanager
    def writing(self, out: Path) -> Iterator[None]:
        """Guard a write of ``out``: inside the scene as its one writer (as "Export PLY"), never into it otherwise."""
        from langfield.outputs import check_output, resolve_path
        from langfield.scene_lock import scene_writer

        if resolve_path(out).is_relative_to(resolve_path(self.core.root)):
            with scene_writer(self.core.root):
                yield
        else:
            check_output(out, [self.core.root], flag="output file")
            yield

    def save_path(self) -> Optional[Path]:
        """Save path: write the keyframes and settings as a camera-path JSON file (atomically)."""
        try:
            path, file = self.camera_path(), self.resolve(self.path_file.value)
            with self.writing(file):
                out = write_camera_path(file, path)
        except (LangfieldError, OSError) as e:
            self.status.content = f"error: {e}"
            return None
        self.status.content = f"saved `{out}`"
        return out

    def load_path(self) -> bool:
        """Load path: replace this tab's keyframes with those of the path file."""
        try:
            self.set_path(read_camera_path(self.resolve(self.path_file.value)))
        except LangfieldError as e:
            self.status.content = f"error: {e}"
            return False
        self.status.content = f"loaded {len(self.poses)} keyframes"
        return True

    # ------------------------------------------------------------------ video

    @property
    def rendering(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start_render(self) -> bool:
        """Render video: start the background render of the path in the tab's current mode (False if not started)."""
        if self.rendering:
            return False
        try:
            path = self.camera_path()
            out = self.resolve(self.video_file.value)
            from langfield.render.video import check_video_path

            check_video_path(out, flag="video file")
            with self.writing(out):  # fail now, not after the render, on a target that may not be written
                pass
        except LangfieldError as e:
            self.status.content = f"error: {e}"
            return False
        request = self.request_fn()  # taken now: GUI changes during the render do not mix into the video
        self._cancel.clear()
        self.progress.value, self.progress.visible = 0.0, True
        self.cancel_button.disabled = False
        self._thread = threading.Thread(target=self._render, args=(path, request, out), daemon=True,
                                        name="langfield-viewer-video")
        self._thread.start()
        self._changed()
        return True

    def wait(self, timeout: Optional[float] = None) -> None:
        """Block until a running render ends (tests, shutdown)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def stop(self) -> None:
        """Cancel a running render and wait for it (the tab closed)."""
        self._cancel.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10.0)

    def _progress(self, done: int, total: int, t0: float) -> None:
        self.progress.value = 100.0 * done / total
        left = (time.perf_counter() - t0) / done * (total - done)
        self.status.content = f"⏳ frame {done}/{total} · about {math.ceil(left)} s left"

    def _render(self, path: CameraPath, request: RenderRequest, out: Path) -> None:
        t0 = time.perf_counter()
        try:
            written = render_video(self.core, path, request, out, cancel=self._cancel,
                                   progress=lambda d, n: self._progress(d, n, t0), publish=lambda: self.writing(out))
        except RenderCancelled as e:
            self.status.content = str(e)
        except (LangfieldError, OSError) as e:
            self.status.content = f"error: {e}"
        except Exception as e:  # keep the viewer alive; say what broke
            self.status.content = f"video render failed: {type(e).__name__}: {e}"
        else:
            self.last_video = written
            self.status.content = (f"wrote `{written}` · {path.num_frames} frames {path.width}×{path.height} "
                                   f"@ {path.fps:g} fps · {time.perf_counter() - t0:.0f} s")
            print(f"viewer: wrote video {written}", flush=True)
        finally:
            self.progress.visible = False
            self.cancel_button.disabled = True
            self._thread_done()

    def _thread_done(self) -> None:
        # ``rendering`` is still True inside the thread: compute the button states as after it
        n = len(self.poses)
        self.clear.disabled = n == 0
        self.render_button.disabled = n == 0
