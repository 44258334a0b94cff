"""Drive ``langfield view`` in a real headless Chromium (Playwright), for the browser test and the screenshots.

One module for both ``tests/viewer/test_browser.py`` and ``scripts/viewer_screenshots.py``
(which loads it by path, as ``scripts/fuzz_loaders.py`` loads its test module).

- The viewer server runs in this process (``ViewerServer`` on 127.0.0.1, port 0), so the
  driver can read the camera the browser reports and wait until the render thread is idle.
- Chromium is the system one (Debian's ``chromium``; ``LANGFIELD_CHROMIUM`` overrides the
  path): Playwright only drives it and never downloads a browser of its own.
- Controls are found by their visible labels (``get_by_label("Query")``, the button named
  "Select 3D"), so a change in how the viewer draws things does not break the driving.
- Ground truth for pixel checks comes from the synthetic dataset the scene was trained on:
  its analytic room is rebuilt from ``scene.json`` and ray-cast at the browser's camera
  (``label_mask``), independent of the learned field.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

DEBIAN_CHROMIUM = "/usr/bin/chromium"
"""Where Debian's ``chromium`` package puts the browser."""
CHROMIUM_ENV = "LANGFIELD_CHROMIUM"
"""Environment variable naming the Chromium executable (default: ``chromium`` on PATH, else /usr/bin/chromium)."""
INSTALL_HINT = ("the browser test needs Debian's chromium and Playwright for Python: "
                "apt-get install -y chromium && .venv/bin/pip install -e \".[test]\" "
                "(or set LANGFIELD_SKIP_BROWSER=1 to skip it)")
# SwiftShader WebGL: headless Chromium has no GPU; newer Chromium needs the opt-in for software WebGL.
HIDDEN_OVERLAYS = ("Show training cameras",)
"""Checkboxes ``ViewerBrowser.first_frame`` unchecks: 3D overlays over the rendered frame."""
OCCLUSION_CELL = 16
"""CSS pixels between the points ``ViewerBrowser.occluded`` hit-tests."""
CHROMIUM_ARGS = ("--enable-unsafe-swiftshader", "--use-angle=swiftshader", "--disable-gpu-sandbox")


def chromium_path() -> str:
    """The system Chromium to drive; RuntimeError with the install line when there is none."""
    for candidate in (os.environ.get(CHROMIUM_ENV), shutil.which("chromium"), DEBIAN_CHROMIUM):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError(f"no Chromium found ({CHROMIUM_ENV}, PATH, /usr/bin/chromium): {INSTALL_HINT}")


def decode_png(data: bytes) -> np.ndarray:
    """[H, W, 3] uint8 of a PNG screenshot."""
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def box_downsample(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """[height, width, 3] float32: ``image`` area-averaged to the frame size (the canvas shows the frame stretched)."""
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BOX), dtype=np.float32)


@dataclass
class Frame:
    """One settled view of the page."""

    shot: np.ndarray
    """[H, W, 3] uint8 screenshot of the whole viewport (CSS pixels)."""
    size: tuple[int, int]
    """(width, height) of the frame the viewer rendered for it."""
    token: object
    """The render loop's frame list when it was taken (the loop makes a new list per frame sent)."""

    def pixels(self) -> np.ndarray:
        """[h, w, 3] float32 screenshot at the rendered frame's resolution."""
        return box_downsample(self.shot, *self.size)


class ViewerBrowser:
    """A viewer server on a scene plus one headless Chromium tab showing it (a context manager)."""

    def __init__(self, scene_dir: Path, *, width: int = 1280, height: int = 800, max_size: int = 512,
                 backend: str = "cpu", export_dir: Optional[Path] = None, timeout_s: float = 120.0) -> None:
        self.scene_dir = Path(scene_dir)
        self.viewport = {"width": int(width), "height": int(height)}
        self.max_size, self.backend, self.export_dir, self.timeout_s = max_size, backend, export_dir, timeout_s
        self.server: Any = None
        self._pw: Any = None
        self._browser: Any = None
        self.page: Any = None

    # ------------------------------------------------------------------ lifetime

    def __enter__(self) -> "ViewerBrowser":
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        from playwright.sync_api import sync_playwright

        from langfield.viewer import RenderCore
        from langfield.viewer.config import ViewerConfig
        from langfield.viewer.server import ViewerServer

        executable = chromium_path()
        core = RenderCore(self.scene_dir, backend=self.backend)
        self.server = ViewerServer(core, ViewerConfig(port=0, max_size=self.max_size, export_dir=self.export_dir))
        self._pw = sync_playwright().start()
        self._browser = self._pw.chromium.launch(executable_path=executable, headless=True, args=list(CHROMIUM_ARGS))
        self.page = self._browser.new_page(viewport=self.viewport)
        self.page.set_default_timeout(self.timeout_s * 1000)
        self.page.goto(self.server.url)

    def close(self) -> None:
        for step in (lambda: self._browser and self._browser.close(), lambda: self._pw and self._pw.stop(),
                     lambda: self.server and self.server.stop()):
            try:
                step()
            except Exception:  # closing one part must not keep the others open
                pass
        self._browser = self._pw = self.server = None

    # ------------------------------------------------------------------ server side

    @property
    def panel(self) -> Any:
        """The viewer's panel of this tab (the server's only client)."""
        panels = self.server.panels()
        if len(panels) != 1:
            raise AssertionError(f"expected one connected tab, the server has {len(panels)}")
        return panels[0]

    def _until(self, cond: Callable[[], Any], what: str, timeout_s: Optional[float] = None) -> Any:
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while True:
            value = cond()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"browser test: timed out waiting for {what} ({self._state()})")
            time.sleep(0.1)

    def _state(self) -> str:
        """The render loops' state, for timeout messages."""
        loops = [p.loop for p in self.server.panels()]
        return "; ".join(f"frames {lp.frames[-3:]}, busy {lp.busy}, pending {lp._pending}, alive {lp.alive}"
                         for lp in loops) or "no tab connected"

    def _idle(self) -> bool:
        panels = self.server.panels()
        if len(panels) != 1:
            return False
        loop = panels[0].loop
        return bool(loop.frames) and not loop.busy and loop._pending is None

    def camera(self) -> Any:
        """The browser's camera as a ``ViewerCamera`` at the size of the last full frame."""
        from langfield.viewer.camera import ViewerCamera

        cam = self.panel.client.camera
        w, h = self.panel.loop.frames[-1]
        return ViewerCamera.from_pose(np.asarray(cam.wxyz), np.asarray(cam.position), float(cam.fov), w, h)

    # ------------------------------------------------------------------ page side

    def screenshot(self) -> np.ndarray:
        return decode_png(self.page.screenshot(type="png"))

    def settle(self, previous: Optional[Frame] = None, stable_s: float = 0.8) -> Frame:
        """Wait for a still page showing the viewer's latest frame; with ``previous``, a frame sent after it.

        "Still": the render thread is idle and the screenshot has not changed for ``stable_s``
        (the last frame has been decoded and drawn by the browser).
        """
        def ready() -> bool:
            return self._idle() and (previous is None or self.panel.loop.frames is not previous.token)

        self._until(ready, "the viewer to send a new frame")
        deadline = time.monotonic() + self.timeout_s
        last, since = self.screenshot(), time.monotonic()
        while True:
            time.sleep(0.2)
            token = self.panel.loop.frames
            shot = self.screenshot()
            if not np.array_equal(shot, last):
                last, since = shot, time.monotonic()
            elif ready() and time.monotonic() - since >= stable_s and self.panel.loop.frames is token:
                return Frame(shot=shot, size=token[-1], token=token)
            if time.monotonic() > deadline:
                raise TimeoutError("browser test: the page did not settle on a new frame")

    def first_frame(self, hide: tuple[str, ...] = HIDDEN_OVERLAYS) -> Frame:
        """Wait for the connection, the first full frame and a still page; close viser's toasts.

        Checkboxes labelled with one of ``hide`` are unchecked first: 3D overlays drawn by the
        browser over the rendered frame (camera frustums) would cover the pixels the test checks.
        """
        self._until(lambda: len(self.server.panels()) == 1, "the browser to connect")
        # full size: --max-size, unless the canvas (the whole window) is smaller; previews are smaller
        full = min(self.max_size, max(self.viewport.values()))
        self._until(lambda: self._idle() and max(self.panel.loop.frames[-1]) >= full, "the first full frame")
        self.dismiss_notifications()
        for label in hide:
            self.set_checkbox(label, False, missing_ok=True)
        self.page.mouse.move(0, 0)  # no hover tooltips in screenshots
        return self.settle()

    def dismiss_notifications(self, timeout_s: float = 15.0) -> bool:
        """Close viser's toasts (e.g. 'Software WebGL rendering detected'), which cover part of the canvas.

        Best effort (True when none is left): ``occluded`` excludes whatever stays on top of the canvas.
        """
        deadline = time.monotonic() + timeout_s
        toasts = self.page.locator(".mantine-Notification-root")
        while time.monotonic() < deadline:
            if toasts.count() == 0:
                return True
            for button in self.page.locator(".mantine-Notification-closeButton").all():
                try:
                    button.click(timeout=1000)
                except Exception:  # gone (or going) already
                    pass
            time.sleep(0.3)
        return toasts.count() == 0

    def control(self, label: str, kind: str = "input:not([type=hidden])") -> Any:
        """The ``kind`` element (input, textarea) of the GUI row whose visible label is ``label``.

        By the row, not ``get_by_label``: viser points some labels' ``for`` at a wrapper, not the textarea.
        """
        row = (f"xpath=//label[normalize-space(.)={json.dumps(label)}]"
               "/ancestor::div[contains(@class, 'mantine-Flex-root')][1]")
        return self.page.locator(row).locator(kind).first

    def type_query(self, text: str, submit: bool = True) -> None:
        """Type into the box labelled "Query" as a user does, then press Enter."""
        box = self.control("Query", "textarea")
        box.click()
        box.press("Control+a")
        box.press("Delete")
        box.press_sequentially(text, delay=20)
        if submit:
            box.press("Enter")
        self.page.mouse.move(0, 0)

    def choose(self, label: str, option: str) -> None:
        """Pick ``option`` in the dropdown labelled ``label``."""
        self.control(label).click()
        self.page.get_by_role("option", name=option, exact=True).click()
        self.page.mouse.move(0, 0)

    def click(self, button: str) -> None:
        """Click the button whose visible text is ``button`` (once it is enabled)."""
        target = self.page.get_by_role("button", name=button, exact=True)
        self._until(lambda: target.is_enabled(), f"the {button!r} button to be enabled")
        target.click()
        self.page.mouse.move(0, 0)

    def click_frame(self, x: int, y: int, size: tuple[int, int]) -> None:
        """Click the 3D canvas (the whole viewport) at the centre of pixel (x, y) of a frame of ``size`` (w, h)."""
        w, h = size
        self.page.mouse.click((x + 0.5) * self.viewport["width"] / w, (y + 0.5) * self.viewport["height"] / h)
        self.page.mouse.move(0, 0)

    def wait_for(self, cond: Callable[[], Any], what: str, timeout_s: Optional[float] = None) -> Any:
        """``cond()``'s first truthy value (polled on the server side), TimeoutError naming ``what`` after the timeout."""
        return self._until(cond, what, timeout_s)

    def set_checkbox(self, label: str, value: bool, missing_ok: bool = False) -> None:
        """Check or uncheck the checkbox labelled ``label`` (``missing_ok``: no such control is fine)."""
        box = self.control(label, "input[type=checkbox]")
        if box.count() == 0:
            if missing_ok:
                return
            raise AssertionError(f"no checkbox labelled {label!r}")
        if box.is_checked() != value:
            box.set_checked(value, force=True)  # Mantine styles the input: force past its overlay
            self._until(lambda: box.is_checked() == value, f"{label!r} to become {value}", 10)

    def set_number(self, label: str, value: float) -> None:
        """Type ``value`` into the number box of the slider labelled ``label`` and commit it with Enter."""
        box = self.control(label)
        box.fill(f"{value:g}")
        box.press("Enter")
        self._until(lambda: abs(self.number(label) - value) < 1e-9, f"{label!r} to become {value}", 10)

    def number(self, label: str) -> float:
        """The value shown in the number box of the slider labelled ``label``."""
        return float(self.control(label).input_value())

    def wait_text(self, pattern: str, timeout_s: Optional[float] = None) -> str:
        """The first visible text on the page matching the regular expression ``pattern``."""
        loc = self.page.get_by_text(re.compile(pattern)).first
        loc.wait_for(state="visible", timeout=(timeout_s or self.timeout_s) * 1000)
        return loc.inner_text()

    def occluded(self, size: tuple[int, int]) -> np.ndarray:
        """[h, w] bool: frame pixels covered by page elements (the control panel) instead of the 3D canvas."""
        w, h = size
        vw, vh = self.viewport["width"], self.viewport["height"]
        # hit-test a grid of CSS points (elementFromPoint per frame pixel would take a minute), then
        # widen each covered cell by one so no pixel at an element's edge counts as visible
        cols, rows = -(-vw // OCCLUSION_CELL), -(-vh // OCCLUSION_CELL)
        grid = np.asarray(self.page.evaluate(
            """([cols, rows, cell, vw, vh]) => {
                const out = [];
                for (let j = 0; j < rows; j++) {
                    const row = [];
                    for (let i = 0; i < cols; i++) {
                        const el = document.elementFromPoint(Math.min((i + 0.5) * cell, vw - 1),
                                                             Math.min((j + 0.5) * cell, vh - 1));
                        row.push(!el || el.tagName !== 'CANVAS');
                    }
                    out.push(row);
                }
                return out;
            }""", [cols, rows, OCCLUSION_CELL, vw, vh]), dtype=bool)
        grid = ~erode(~grid, 1)
        ys = np.minimum(((np.arange(h) + 0.5) * vh / h / OCCLUSION_CELL).astype(int), rows - 1)
        xs = np.minimum(((np.arange(w) + 0.5) * vw / w / OCCLUSION_CELL).astype(int), cols - 1)
        return grid[ys][:, xs]

    def save(self, path: Path) -> Path:
        """Write the current viewport to ``path`` (PNG, atomically)."""
        from langfield.io import atomic_write_bytes

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, self.page.screenshot(type="png"))
        return path


# ---------------------------------------------------------------------- ground truth


def dataset_of(scene_dir: Path) -> Path:
    """The dataset directory a scene was trained on (config.json's "data")."""
    cfg = json.loads((Path(scene_dir) / "config.json").read_text())
    data = Path(cfg["data"])
    return data.parent if data.is_file() else data


def synthetic_room(scene_dir: Path) -> Any:
    """The analytic room of a scene trained on ``langfield.synthetic`` data, checked against its scene.json.

    The scene must live in the dataset's world frame (its training cameras equal the dataset's poses),
    so the room can be ray-cast at any viewer camera.
    """
    from langfield.synthetic.config import SceneConfig
    from langfield.synthetic.layout import build_scene

    data = dataset_of(scene_dir)
    recorded = json.loads((data / "scene.json").read_text())
    room = build_scene(int(recorded["seed"]), SceneConfig())
    rebuilt = json.loads(json.dumps(room.to_json()))
    for key, value in rebuilt.items():
        if recorded.get(key) != value:
            raise AssertionError(f"{data}/scene.json: {key!r} differs from the rebuilt room (not a default config?)")
    frames = {f["file_path"]: np.asarray(f["transform_matrix"], float)
              for f in json.loads((data / "transforms.json").read_text())["frames"]}
    gl_to_cv = np.diag([1.0, -1.0, -1.0, 1.0])
    for cam in json.loads((Path(scene_dir) / "cameras.json").read_text())["cameras"]:
        match = [c2w for path, c2w in frames.items() if Path(path).stem == cam["name"] or path == cam["name"]]
        if match and not np.allclose(match[0] @ gl_to_cv, np.asarray(cam["c2w"]), atol=1e-4):
            raise AssertionError(f"{scene_dir}: camera {cam['name']} is not in the dataset's world frame")
    return room


def label_mask(room: Any, camera: Any, whole: str) -> np.ndarray:
    """[H, W] bool: pixels of ``camera`` (a ``ViewerCamera``) whose first hit in the analytic room is ``whole``."""
    from langfield.synthetic.cameras import PinholeCamera
    from langfield.synthetic.raycast import trace

    K = np.asarray(camera.K)
    pin = PinholeCamera(np.asarray(camera.c2w, float), float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]),
                        camera.width, camera.height)
    vv, uu = np.mgrid[0:camera.height, 0:camera.width]
    d, _ = pin.ray_dirs(uu.ravel() + 0.5, vv.ravel() + 0.5)
    hits = trace(room, pin.origin, d)
    names = np.array([s.whole for s in room.surfaces])
    return (names[hits.surface] == whole).reshape(camera.height, camera.width)


def erode(mask: np.ndarray, steps: int) -> np.ndarray:
    """``mask`` shrunk by ``steps`` pixels (4-neighbourhood): keeps pixels far from the object's border."""
    out = mask.copy()
    for _ in range(steps):
        inner = out.copy()
        inner[1:] &= out[:-1]
        inner[:-1] &= out[1:]
        inner[:, 1:] &= out[:, :-1]
        inner[:, :-1] &= out[:, 1:]
        inner[0] = inner[-1] = False
        inner[:, 0] = inner[:, -1] = False
        out = inner
    return out
