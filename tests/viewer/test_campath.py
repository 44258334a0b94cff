"""Camera paths in the viewer (add / clear / save / load / render video) and `langfield render --camera-path`."""

from __future__ import annotations

import json
import math
import threading
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from langfield.cli import main
from langfield.render.camera_path import CameraPath, read_camera_path, write_camera_path
from langfield.render.video import read_video
from langfield.viewer import RenderRequest, ViewerConfig
from langfield.viewer.campath import CameraPathControls, RenderCancelled, path_cameras, render_video


class _Handle:
    """A viser GUI or scene handle: value / disabled / visible / content and its callbacks."""

    def __init__(self, kind: str, label: str, value: Any = None, **kw: Any) -> None:
        self.kind, self.label, self.value = kind, label, value
        self.disabled, self.visible = kw.get("disabled", False), kw.get("visible", True)
        self.content = value if kind == "add_markdown" else ""
        self.kw, self.clicks, self.updates, self.removed = kw, [], [], False

    def on_click(self, cb=None):
        if cb is None:  # used as a decorator factory (``scene.on_click()``)
            return lambda f: self.clicks.append(f) or f
        self.clicks.append(cb)
        return cb

    def on_update(self, cb):
        self.updates.append(cb)
        return cb

    def click(self) -> None:
        for cb in self.clicks:
            cb(None)

    def remove(self) -> None:
        self.removed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _Api:
    """Every ``add_*`` of viser's GUI / scene API as a recorded _Handle; other calls are no-ops."""

    def __init__(self) -> None:
        self.handles: list[_Handle] = []
        self.images: list[np.ndarray] = []

    def __getattr__(self, name: str):
        if name.startswith("add_"):
            def add(label: str = "", *args: Any, **kw: Any) -> _Handle:
                if "initial_value" in kw:
                    value = kw.pop("initial_value")
                elif name == "add_dropdown":  # (label, options): the first option
                    value = list(args[0])[0]
                else:
                    value = args[0] if args else kw.get("points")
                h = _Handle(name, label, value, **kw)
                self.handles.append(h)
                return h
            return add
        if name == "on_click":
            return lambda *a, **k: (lambda f: f)
        if name == "set_background_image":
            return lambda image, **kw: self.images.append(image)
        raise AttributeError(name)

    def named(self, label: str) -> _Handle:
        return next(h for h in self.handles if h.label == label)

    def live(self, kind: str) -> list[_Handle]:
        return [h for h in self.handles if h.kind == kind and not h.removed]


class _Client:
    """A browser tab: its GUI, its 3D scene and a camera looking like ``camera`` (a ViewerCamera)."""

    def __init__(self, camera) -> None:
        self.gui, self.scene = _Api(), _Api()
        self.camera_callbacks: list = []
        self.camera = SimpleNamespace(on_update=self.camera_callbacks.append, aspect=4 / 3, image_width=800,
                                      image_height=600)
        self.point_at(camera)

    def point_at(self, camera) -> None:
        x, y, z, w = Rotation.from_matrix(camera.c2w[:3, :3]).as_quat()
        self.camera.wxyz, self.camera.position = np.array([w, x, y, z]), camera.c2w[:3, 3].copy()
        self.camera.fov = camera.fov_y


def _controls(core, request=None, max_size=64) -> tuple[CameraPathControls, _Client]:
    client = _Client(core.initial_camera())
    controls = CameraPathControls(client.gui, client, core, request_fn=lambda: request or RenderRequest(mode="rgb"),
                                  max_size_fn=lambda: max_size)
    return controls, client


def _two_training_cameras(core):
    from langfield.viewer import ViewerCamera

    cams = core.scene.cameras
    return ViewerCamera.from_scene_camera(cams[0]), ViewerCamera.from_scene_camera(cams[len(cams) // 2])


def test_add_and_clear_keyframes_update_the_count_buttons_and_drawn_path(core):
    controls, client = _controls(core)
    a, b = _two_training_cameras(core)
    gui = client.gui
    assert controls.count.content == "**0** keyframes" and gui.named("Render video").disabled
    assert controls.add_keyframe()  # through the button's callback, as a click does
    client.point_at(b)
    gui.named("Add keyframe").click()
    assert controls.count.content == "**2** keyframes"
    assert not gui.named("Render video").disabled and not gui.named("Clear path").disabled
    np.testing.assert_allclose(controls.poses[0], a.c2w, rtol=0, atol=1e-7)  # the tab's camera, OpenCV c2w
    np.testing.assert_allclose(controls.poses[1], b.c2w, rtol=0, atol=1e-7)
    assert controls.fovs[1] == pytest.approx(b.fov_y)
    assert tuple(controls.size.value) == (64, 48)  # the browser's 4:3 canvas at the tab's long side
    assert len(client.scene.live("add_camera_frustum")) == 2 and len(client.scene.live("add_spline_catmull_rom")) == 1
    curve = client.scene.live("add_spline_catmull_rom")[0].value
    np.testing.assert_allclose(curve[0], a.c2w[:3, 3], rtol=0, atol=1e-7)  # the drawn curve runs keyframe to keyframe
    np.testing.assert_allclose(curve[-1], b.c2w[:3, 3], rtol=0, atol=1e-7)
    gui.named("Clear path").click()
    assert controls.poses == [] and controls.count.content == "**0** keyframes"
    assert gui.named("Render video").disabled and gui.named("Clear path").disabled
    assert not client.scene.live("add_camera_frustum") and not client.scene.live("add_spline_catmull_rom")


def test_add_keyframe_before_the_browser_sent_a_camera_says_so(core):
    controls, client = _controls(core)

    class NoCamera:  # viser asserts on reads until the first camera message
        on_update = staticmethod(lambda cb: None)

        @property
        def wxyz(self):
            raise AssertionError

    client.camera = NoCamera()
    assert not controls.add_keyframe() and controls.poses == [] and "no camera" in controls.status.content


def test_save_then_load_path_round_trips_through_the_scene_directory(core, tmp_path):
    controls, client = _controls(core)
    a, b = _two_training_cameras(core)
    controls.add_keyframe()
    client.point_at(b)
    controls.add_keyframe()
    controls.seconds.value, controls.fps.value, controls.loop.value = 2.0, 12, True
    controls.path_file.value = str(tmp_path / "paths" / "p.json")  # absolute: as typed
    client.gui.named("Save path").click()
    saved = read_camera_path(tmp_path / "paths" / "p.json")
    assert "saved" in controls.status.content
    assert (saved.width, saved.height, saved.fps, saved.seconds, saved.loop, len(saved.keyframes)) == (
        64, 48, 12.0, 2.0, True, 2)
    np.testing.assert_allclose(saved.keyframes[1].c2w, b.c2w, rtol=0, atol=1e-7)
    assert controls.resolve("x/y.json") == core.root / "x/y.json"  # relative names live in the scene directory
    other, _ = _controls(core)
    other.path_file.value = str(tmp_path / "paths" / "p.json")
    other.load_path()
    assert len(other.poses) == 2 and other.loop.value is True and other.fps.value == 12.0
    np.testing.assert_allclose(other.poses[0], a.c2w, rtol=0, atol=1e-7)
    other.path_file.value = str(tmp_path / "missing.json")
    assert not other.load_path() and other.status.content.startswith("error:") and len(other.poses) == 2


def test_render_video_button_writes_the_mp4_in_the_tabs_mode(core, tmp_path):
    controls, client = _controls(core, request=RenderRequest(mode="depth"), max_size=32)
    a, b = _two_training_cameras(core)
    controls.add_keyframe()
    client.point_at(b)
    controls.add_keyframe()
    controls.seconds.value, controls.fps.value = 1.0, 5
    controls.video_file.value = str(tmp_path / "v.mp4")
    assert controls.start_render()
    controls.wait(120)
    assert not controls.rendering and controls.last_video == tmp_path / "v.mp4", controls.status.content
    frames, fps = read_video(tmp_path / "v.mp4")
    assert frames.shape == (5, 24, 32, 3) and fps == pytest.approx(5.0)
    assert "wrote" in controls.status.content and not controls.progress.visible
    assert controls.progress.value == pytest.approx(100.0)
    # the first frame is the tab's depth view from keyframe 0 (lossy mp4: compare loosely)
    want = core.render(path_cameras(controls.camera_path())[0], RenderRequest(mode="depth")).image
    assert np.abs(frames[0].astype(float) - want).mean() < 12
    rgb = core.render(path_cameras(controls.camera_path())[0], RenderRequest(mode="rgb")).image
    assert np.abs(frames[0].astype(float) - rgb).mean() > np.abs(frames[0].astype(float) - want).mean()


def test_relative_files_go_into_the_scene_as_its_writer(viewer_scene, tmp_path):
    import shutil

    from langfield.viewer import RenderCore

    scene = tmp_path / "scene"
    shutil.copytree(viewer_scene, scene, ignore=shutil.ignore_patterns("features_cache", "checkpoints"))
    core = RenderCore(scene, backend="cpu")
    controls, client = _controls(core, max_size=32)
    controls.add_keyframe()
    controls.seconds.value, controls.fps.value = 0.5, 4
    client.gui.named("Save path").click()  # the default relative name
    assert read_camera_path(scene / "camera_paths" / "camera_path.json").num_frames == 2
    assert controls.start_render()
    controls.wait(120)
    assert read_video(scene / "renders" / "camera_path.mp4")[0].shape == (2, 24, 32, 3), controls.status.content
    # a name outside the scene that would swallow it (its parent) is refused before anything is written
    controls.path_file.value = str(tmp_path)
    assert controls.save_path() is None and "never writes into its inputs" in controls.status.content
    controls.video_file.value = str(tmp_path / "scene.mp4")
    assert controls.start_render()  # a sibling of the scene is fine
    controls.wait(120)
    assert (tmp_path / "scene.mp4").is_file()


def test_render_video_cancelled_writes_nothing(core, tmp_path):
    a, b = _two_training_cameras(core)
    path = CameraPath.uniform([a.c2w, b.c2w], [a.fov_y, b.fov_y], width=32, height=24, fps=4, seconds=2)
    stop = threading.Event()
    seen = []

    def progress(done, total):
        seen.append(done)
        if done == 2:
            stop.set()

    with pytest.raises(RenderCancelled):
        render_video(core, path, RenderRequest(), tmp_path / "v.mp4", progress=progress, cancel=stop)
    assert seen == [1, 2] and list(tmp_path.iterdir()) == []


def test_client_panel_has_camera_path_controls(core):
    from langfield.viewer.panel import ClientPanel

    client = _Client(core.initial_camera())
    panel = ClientPanel(client, core, ViewerConfig(max_size=64, preview_size=32))
    try:
        assert isinstance(panel.campath, CameraPathControls)
        client.gui.named("Add keyframe").click()
        assert len(panel.campath.poses) == 1
    finally:
        panel.stop()


# ----------------------------------------------------------------------------- the command line


@pytest.fixture(scope="module")
def path_file(core, tmp_path_factory):
    a, b = _two_training_cameras(core)
    path = CameraPath.uniform([a.c2w, b.c2w], [a.fov_y, b.fov_y * 1.2], width=40, height=30, fps=6, seconds=1)
    return write_camera_path(tmp_path_factory.mktemp("campath") / "path.json", path)


def test_cli_renders_the_camera_path_to_a_video(viewer_scene, path_file, tmp_path, capsys):
    out = tmp_path / "video.mp4"
    assert main(["render", str(viewer_scene), "--camera-path", str(path_file), "--out", str(out), "--backend", "cpu",
                 "--quiet"]) == 0
    frames, fps = read_video(out)
    assert frames.shape == (6, 30, 40, 3) and fps == pytest.approx(6.0)
    assert str(out) in capsys.readouterr().out
    assert frames.std(axis=0).mean() > 1.0  # the camera moves: frames differ


def test_cli_relevancy_video_differs_from_rgb(viewer_scene, core, path_file, tmp_path):
    names = core.label_names()
    assert names
    rel, rgb = tmp_path / "rel.mp4", tmp_path / "rgb.mp4"
    assert main(["render", str(viewer_scene), "--camera-path", str(path_file), "--out", str(rel), "--backend", "cpu",
                 "--mode", "relevancy", "--query", names[0], "--quiet"]) == 0
    assert main(["render", str(viewer_scene), "--camera-path", str(path_file), "--out", str(rgb), "--backend", "cpu",
                 "--quiet"]) == 0
    a, b = read_video(rel)[0], read_video(rgb)[0]
    assert a.shape == b.shape == (6, 30, 40, 3) and np.abs(a.astype(float) - b).mean() > 1.0


@pytest.mark.parametrize("case", ["bad json", "odd size", "relevancy without query", "gif", "with orbit"])
def test_cli_errors_are_one_line_exit_2(viewer_scene, path_file, tmp_path, capsys, case):
    bad = tmp_path / "bad.json"
    out = tmp_path / ("v.gif" if case == "gif" else "v.mp4")
    args = ["render", str(viewer_scene), "--camera-path", str(bad), "--out", str(out), "--quiet"]
    if case == "bad json":
        bad.write_text("{")
    elif case == "odd size":
        obj = json.loads(path_file.read_text())
        obj["resolution"] = [41, 30]
        bad.write_text(json.dumps(obj))
    else:
        bad.write_text(path_file.read_text())
        args += {"relevancy without query": ["--mode", "relevancy"], "with orbit": ["--orbit", "3"], "gif": []}[case]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert not (tmp_path / "v.mp4").exists() and not (tmp_path / "v.gif").exists()


def test_cameras_of_a_path_use_its_fov_and_size(core):
    a, b = _two_training_cameras(core)
    path = CameraPath.uniform([a.c2w, b.c2w], [math.radians(40), math.radians(60)], width=40, height=30, fps=3,
                              seconds=1)
    cams = path_cameras(path)
    assert len(cams) == 3 and (cams[0].width, cams[0].height) == (40, 30)
    assert [c.fov_y for c in cams] == pytest.approx([math.radians(a) for a in (40, 50, 60)])
