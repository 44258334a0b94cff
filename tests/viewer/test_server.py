"""The viser server and the `langfield view` command: binding, start/stop, the render loop, missing viser."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
import urllib.request
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from langfield.cli import main
from langfield.viewer import RenderRequest, ViewCommand, ViewerCamera, ViewerConfig
from langfield.viewer.command import INSTALL_HINT
from langfield.types import LangfieldError
from langfield.viewer.loop import ClientLoop


def test_default_host_is_localhost():
    assert ViewerConfig().host == "127.0.0.1"
    assert ViewCommand(scene=None).host == "127.0.0.1"  # type: ignore[arg-type]
    assert ViewCommand(scene=None).port == 8080  # type: ignore[arg-type]


def test_missing_viser_is_one_line_with_the_install_hint(viewer_scene, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "viser", None)  # makes `import viser` raise ImportError
    assert main(["view", str(viewer_scene)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [f"error: {INSTALL_HINT}"] and 'pip install -e ".[viewer]"' in err


class _FakeClient:
    """What ClientLoop uses of a viser ClientHandle: camera state + on_update, scene.set_background_image."""

    def __init__(self, c2w_cam) -> None:
        from scipy.spatial.transform import Rotation

        x, y, z, w = Rotation.from_matrix(c2w_cam.c2w[:3, :3]).as_quat()
        self.callbacks = []
        self.camera = SimpleNamespace(wxyz=np.array([w, x, y, z]), position=c2w_cam.c2w[:3, 3], fov=c2w_cam.fov_y,
                                      aspect=4 / 3, image_width=800, image_height=600, on_update=self.callbacks.append)
        self.images: list[np.ndarray] = []
        self.got = threading.Event()
        self.scene = SimpleNamespace(set_background_image=self._set)

    def _set(self, image, format="jpeg", jpeg_quality=None):
        self.images.append(image)
        self.got.set()


def _wait_frames(client, n, timeout=20.0):
    end = time.monotonic() + timeout
    while len(client.images) < n and time.monotonic() < end:
        time.sleep(0.02)
    return [im.shape[:2] for im in client.images]


def test_client_loop_renders_a_preview_while_moving_then_the_full_frame(core):
    client = _FakeClient(core.initial_camera())
    status = []
    cfg = ViewerConfig(max_size=96, preview_size=32, settle_s=0.2)
    loop = ClientLoop(client, lambda cam: core.render(cam, RenderRequest(mode="rgb")), cfg, status.append)
    try:
        assert len(client.callbacks) == 1
        client.callbacks[0](client.camera)  # the browser moved the camera
        sizes = _wait_frames(client, 2)
        assert sizes[:2] == [(24, 32), (72, 96)]  # preview (long side 32), then full (long side 96), 4:3
        assert all(im.dtype == np.uint8 for im in client.images)
        assert status and "96" in status[-1] and "ms" in status[-1]
        assert any(s.startswith("⏳ rendering 96×72") for s in status)  # busy indicator before the full frame
        assert not any(s.startswith("⏳ rendering 32") for s in status)  # previews do not flash it
        time.sleep(0.5)
        assert len(client.images) == 2  # nothing more until something changes
        loop.refresh()  # a GUI change: straight to full size
        assert _wait_frames(client, 3)[2] == (72, 96)
    finally:
        loop.stop()
    assert not loop._thread.is_alive()


class _NoCameraYet:
    """viser's camera before the browser's first camera message: reading its state raises AssertionError."""

    def __init__(self, real) -> None:
        self.real, self.ready, self.on_update = real, False, real.on_update

    def __getattr__(self, name):
        if not self.__dict__["ready"]:
            raise AssertionError("no camera message yet")
        return getattr(self.__dict__["real"], name)


def test_a_frame_asked_for_before_the_first_camera_message_is_drawn_once_it_comes(core):
    # The browser's camera state can arrive before the loop listens (or after a refresh): with no camera
    # update callback at all, the due frame must still be drawn once the camera is known.
    client = _FakeClient(core.initial_camera())
    client.camera = _NoCameraYet(client.camera)
    loop = ClientLoop(client, lambda cam: core.render(cam, RenderRequest(mode="rgb")),
                      ViewerConfig(max_size=96, preview_size=32, settle_s=0.05))
    try:
        loop.refresh()
        time.sleep(0.3)
        assert client.images == [] and loop._pending == "full"  # still due, not dropped
        client.camera.ready = True  # the camera message arrives, without calling any callback
        assert _wait_frames(client, 1, timeout=10.0)[:1] == [(72, 96)]
    finally:
        loop.stop()


def test_client_loop_survives_a_failing_render(core):
    client = _FakeClient(core.initial_camera())
    status = []

    def boom(cam):
        raise RuntimeError("kaput")

    loop = ClientLoop(client, boom, ViewerConfig(settle_s=0.05), status.append)
    try:
        loop.refresh()
        end = time.monotonic() + 5
        while not any("kaput" in s for s in status) and time.monotonic() < end:
            time.sleep(0.02)
        assert status[-1] == "render failed: RuntimeError: kaput" and loop._thread.is_alive()
    finally:
        loop.stop()


def test_client_loop_full_size_follows_the_resolution_control(core):
    client = _FakeClient(core.initial_camera())
    size = [64]
    loop = ClientLoop(client, lambda cam: core.render(cam, RenderRequest(mode="rgb")), ViewerConfig(max_size=96),
                      max_size_fn=lambda: size[0])
    try:
        loop.refresh()
        assert _wait_frames(client, 1)[0] == (48, 64)
        size[0] = 40
        loop.refresh()
        assert _wait_frames(client, 2)[1] == (30, 40)
    finally:
        loop.stop()


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


class _Browser:
    """A connected tab as the server's connect callback sees it (viser's GUI/scene API, a fake camera).

    A bare websocket does not make viser report a client (the page's script must talk first), so the
    callback is driven directly with handles of the running server's real GUI API.
    """

    _ids = iter(range(10_000, 20_000))

    def __init__(self, server) -> None:
        cam = _FakeClient(server.core.initial_camera())
        scene = SimpleNamespace(set_background_image=cam.scene.set_background_image,  # no point cloud: splats
                                add_camera_frustum=server.server.scene.add_camera_frustum)
        self.client = SimpleNamespace(client_id=next(self._ids), gui=server.server.gui, scene=scene,
                                      camera=cam.camera, atomic=contextlib.nullcontext)
        self.server = server
        server._connect(self.client)
        self.panel = server._panels[self.client.client_id]

    def close(self) -> None:
        self.server._disconnect(self.client)


def _until(cond, timeout=10.0) -> bool:
    end = time.monotonic() + timeout
    while not cond() and time.monotonic() < end:
        time.sleep(0.02)
    return cond()


def test_each_tab_gets_its_own_controls_and_a_query_applies_on_enter(core, tmp_path):
    pytest.importorskip("viser")
    from langfield.viewer.server import ViewerServer

    server = ViewerServer(core, ViewerConfig(port=0, export_dir=tmp_path, max_size=200))
    try:
        assert server.host == "127.0.0.1" and server.port > 0
        assert urllib.request.urlopen(server.url, timeout=10).status == 200
        tab = _Browser(server)
        p = tab.panel
        req = p.request()
        assert req.mode == "rgb" and req.level is None and req.query == "" and len(req.negatives) >= 1
        assert p.mode.options == ("rgb", "depth", "features", "relevancy")
        assert p.resolution.value == "200" and "200" in p.resolution.options and p.max_size() == 200
        p.query.value = "floor"  # typing: nothing applies until Enter or Search
        assert p.request().query == "" and "Enter" in p.status.content
        p.query.value = "floor\n"  # Enter
        assert p.query.value == "floor" and p.request().query == "floor" and p.mode.value == "relevancy"
        p.negatives.value = "object, stuff ,"
        p.level.value = "1: whole"
        p.submit()  # the Search button
        req = p.request()
        assert req.level == 1 and req.negatives == ("object", "stuff") and req.method == "splat-sims"
        from langfield.viewer.selection import DEFAULT_THRESHOLD

        assert p.threshold.value == DEFAULT_THRESHOLD and p.request().selection is None
        p.select()
        assert "Gaussians" in p.selection_status.content and not p.export.disabled and not p.clear.disabled
        sel = p._selection
        want = core.language.select("floor", DEFAULT_THRESHOLD, negatives=("object", "stuff"), level=1)
        assert torch.equal(sel.mask, want.mask.bool())  # the rule (and settings) of `langfield select`
        assert p.request().selection is sel.highlight and not p.request().selection_only
        p.selection_view.value = "selection only"
        assert p.request().selection is sel.highlight and p.request().selection_only
        p.selection_view.value = "hidden"  # kept for export, not drawn
        assert p.request().selection is None and p._selection is sel
        assert p.export_selection() == str(tmp_path / "floor.ply") and (tmp_path / "floor.ply").exists()
        p.select()  # a new selection asks to be seen
        assert p.selection_view.value == "highlight in scene" and p.request().selection is not None
        # relevancy colours: colormap and a fixed range reach the request
        p.colormap.value = "hot"
        p.range_mode.value = "fixed"
        assert not p.range.disabled
        p.range.value = (0.6, 0.9)
        assert p.request().style.colormap == "hot" and p.request().style.range == (0.6, 0.9)
        p.range_mode.value = "auto (0.5 .. view max)"
        assert p.request().style.range is None and p.range.disabled
        # a second tab (or the same one reloaded) starts fresh: no query, rgb, no selection
        other = _Browser(server)
        assert other.panel is not p and other.panel.request().query == "" and other.panel.mode.value == "rgb"
        assert other.panel.request().selection is None and other.panel._selection is None
        assert other.panel.clear.disabled and other.panel.export.disabled
        assert p.request().query == "floor" and p.request().selection is not None
        p.clear_selection()
        assert p.export.disabled and p.clear.disabled and p._selection is None and p.request().selection is None
        p.threshold.value = 1.0
        p.select()
        assert p.export.disabled  # nothing above relevancy 1
        other.close()
        assert _until(lambda: other.panel not in server.panels()) and _until(lambda: not other.panel.loop.alive)
        tab.close()
    finally:
        server.stop()
    assert not _port_open(server.port)


def test_training_camera_frustums_are_per_tab_and_a_click_jumps_there(core):
    pytest.importorskip("viser")
    from langfield.viewer.server import ViewerServer

    server = ViewerServer(core, ViewerConfig(port=0, max_size=64))
    try:
        tab = _Browser(server)
        p = tab.panel
        train = core.scene.cameras_of("train")
        assert len(p.frustums) == len(train) >= 3 and p.show_cameras.value
        np.testing.assert_allclose(p.frustums[2].position, train[2].c2w[:3, 3], atol=1e-6)
        p.frustums[2]._impl.click_cb[0].callback(SimpleNamespace())  # what viser runs on a click
        cam = p.loop._camera(64)
        np.testing.assert_allclose(cam.c2w[:3, :3], train[2].c2w[:3, :3], atol=1e-6)
        np.testing.assert_allclose(cam.c2w[:3, 3], train[2].c2w[:3, 3], atol=1e-9)
        assert cam.fov_y == pytest.approx(ViewerCamera.from_scene_camera(train[2]).fov_y)
        assert train[2].name in p.camera_status.content
        p.show_cameras.value = False
        assert not any(h.visible for h in p.frustums)
        other = _Browser(server).panel
        assert all(h.visible for h in other.frustums)  # the other tab keeps its own
    finally:
        server.stop()


def test_plain_scene_tab_has_no_language_controls(plain_scene):
    pytest.importorskip("viser")
    from langfield.viewer import RenderCore
    from langfield.viewer.server import ViewerServer

    server = ViewerServer(RenderCore(plain_scene, backend="cpu"), ViewerConfig(port=0))
    try:
        p = _Browser(server).panel
        assert p.mode.options == ("rgb", "depth") and p.request() == RenderRequest(mode="rgb")
    finally:
        server.stop()


def test_test_tiny_scene_shows_a_note_naming_the_labels(core):
    from langfield.viewer.panel import tiny_encoder_note

    note = tiny_encoder_note(core)
    assert "test-tiny" in note and "floor" in note and "wall" in note


def test_a_port_in_use_is_an_error_unless_port_0(core, viewer_scene, capsys):
    pytest.importorskip("viser")
    from langfield.viewer.server import ViewerServer

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(LangfieldError, match=f"port {port} on 127.0.0.1 is already in use.*--port 0"):
            ViewerServer(core, ViewerConfig(port=port))
        assert main(["view", str(viewer_scene), "--port", str(port), "--backend", "cpu"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: port {port} on 127.0.0.1 is already in use")


def test_missing_or_invalid_scene_is_one_line_exit_2(tmp_path, capsys):
    pytest.importorskip("viser")
    assert main(["view", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {tmp_path / 'nope'}: scene directory does not exist"]
    (tmp_path / "empty").mkdir()
    assert main(["view", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a langfield scene" in err[0]


def test_a_bare_tcp_probe_logs_one_line(core, caplog):
    pytest.importorskip("viser")
    import logging

    from langfield.viewer.server import ViewerServer

    server = ViewerServer(core, ViewerConfig(port=0))
    try:
        with caplog.at_level(logging.INFO):
            with socket.create_connection(("127.0.0.1", server.port), timeout=5):
                pass  # connect and hang up without a request, as a port probe does
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
                s.sendall(b"\x16\x03\x01garbage\r\n\r\n")  # not HTTP at all
            _until(lambda: len([r for r in caplog.records if r.name.startswith("websockets")]) >= 1, 5)
            time.sleep(0.3)
        records = [r for r in caplog.records if r.name.startswith("websockets")]
        assert all(r.exc_info is None and "\n" not in r.getMessage() for r in records)
        assert all("bad connection" in r.getMessage() for r in records if r.levelno >= logging.ERROR)
    finally:
        server.stop()
