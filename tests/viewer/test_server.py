"""The viser server and the `langfield view` command: binding, start/stop, the render loop, missing viser."""

from __future__ import annotations

import socket
import sys
import threading
import time
import urllib.request
from types import SimpleNamespace

import numpy as np
import pytest

from langfield.cli import main
from langfield.viewer import RenderRequest, ViewCommand, ViewerConfig
from langfield.viewer.command import INSTALL_HINT
from langfield.viewer.server import ClientLoop


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
        time.sleep(0.5)
        assert len(client.images) == 2  # nothing more until something changes
        loop.refresh()  # a GUI change: straight to full size
        assert _wait_frames(client, 3)[2] == (72, 96)
    finally:
        loop.stop()
    assert not loop._thread.is_alive()


def test_client_loop_survives_a_failing_render(core):
    client = _FakeClient(core.initial_camera())
    status = []

    def boom(cam):
        raise RuntimeError("kaput")

    loop = ClientLoop(client, boom, ViewerConfig(settle_s=0.05), status.append)
    try:
        loop.refresh()
        end = time.monotonic() + 5
        while not status and time.monotonic() < end:
            time.sleep(0.02)
        assert status and "kaput" in status[0] and loop._thread.is_alive()
    finally:
        loop.stop()


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_server_starts_on_localhost_and_stops_cleanly(core, plain_scene):
    pytest.importorskip("viser")
    from langfield.viewer import RenderCore
    from langfield.viewer.server import ViewerServer

    server = ViewerServer(core, ViewerConfig(port=0))
    try:
        assert server.host == "127.0.0.1" and server.port > 0
        assert urllib.request.urlopen(server.url, timeout=10).status == 200
        req = server.request()
        assert req.mode == "rgb" and req.level is None and req.query == "" and len(req.negatives) >= 1
        assert server.mode.options == ("rgb", "depth", "features", "relevancy")
        server.level.value = "1: whole"
        server.query.value = "floor"
        server.negatives.value = "object, stuff ,"
        req = server.request()
        assert req.level == 1 and req.query == "floor" and req.negatives == ("object", "stuff")
        server._select()
        assert "Gaussians" in server.selection_status.content and not server.export.disabled
        server.threshold.value = 1.0
        server._select()
        assert server.export.disabled  # nothing above relevancy 1
    finally:
        server.stop()
    assert not _port_open(server.port)
    # a scene without language: only rgb/depth, no language widgets
    plain = ViewerServer(RenderCore(plain_scene, backend="cpu"), ViewerConfig(port=0))
    try:
        assert plain.mode.options == ("rgb", "depth") and plain.request() == RenderRequest(mode="rgb")
    finally:
        plain.stop()


def test_typing_a_query_rerenders_once_after_a_pause(core):
    pytest.importorskip("viser")
    from langfield.viewer.server import ViewerServer

    server = ViewerServer(core, ViewerConfig(port=0, typing_pause_s=0.2))
    calls = []
    server.refresh_all = lambda: calls.append(server.query.value)  # type: ignore[method-assign]
    try:
        for partial in ("f", "fl", "flo", "floor"):  # one update per keystroke, as the browser sends them
            server.query.value = partial
        time.sleep(0.6)
        assert calls == ["floor"]
        server.level.value = "0: part"  # dropdowns re-render at once
        assert calls == ["floor", "floor"]
    finally:
        server.stop()
