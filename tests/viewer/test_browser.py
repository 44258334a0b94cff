"""``langfield view`` in a real browser: headless Chromium (Debian's) driven by Playwright.

Loads the page from a viewer on 127.0.0.1 (port 0), waits for the first frame, types
"table" into the query box and presses Enter, and checks from screenshots that the
pixels over the table (ray-cast from the synthetic room at the browser's camera) turned
to heat colours while the rest of the room only dimmed; switches to features mode;
clicks the table and checks the 3D point and the ranked query there; runs Select 3D
and checks that Export PLY wrote the same Gaussians as ``langfield select``.

Playwright missing is a failure (the README's install line installs it).  Chromium is a
system package: without it the test is skipped with the command that installs it, except
where ``LANGFIELD_REQUIRE_BROWSER=1`` (``.ci/run`` sets it and installs Chromium), where it
fails.  ``LANGFIELD_SKIP_BROWSER=1`` always skips.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

SKIP_ENV = "LANGFIELD_SKIP_BROWSER"
REQUIRE_ENV = "LANGFIELD_REQUIRE_BROWSER"
QUERY = "table"
WINDOW = (960, 600)  # smaller than the screenshots' 1280x800: a quicker test, the same layout
MAX_SIZE = 320  # long side of the frames: the fixture scene is trained at 64x48
CHANGED = 35.0  # a pixel "changed" when a channel differs by more than this from the dimmed RGB (0..255)
AWAY = 10  # frame pixels between the table and the pixels that must not change
HEAT = 30.0  # a pixel is heat-coloured when within this (RGB distance) of RGB blended with a turbo colour

skip_when_asked = pytest.mark.skipif(os.environ.get(SKIP_ENV) == "1", reason=f"{SKIP_ENV}=1: no browser test")


def _driver():
    """``tests/viewer/browser_driver.py`` (shared with scripts/viewer_screenshots.py), loaded by path."""
    name = "langfield_browser_driver"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("browser_driver.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _require_browser():
    """Fail without Playwright; without Chromium skip, or fail where ``REQUIRE_ENV=1`` (CI must run this test)."""
    bd = _driver()
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail(f"Playwright for Python is not installed: {bd.INSTALL_HINT}")
    try:
        bd.chromium_path()
    except RuntimeError as e:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{e} ({REQUIRE_ENV}=1)")
        pytest.skip(str(e))
    return bd


def _heat_coloured(rgb: np.ndarray, shown: np.ndarray) -> np.ndarray:
    """[M] bool: ``shown`` pixels [M, 3] that are ``rgb`` [M, 3] blended with some turbo colour (the overlay rule)."""
    import inspect

    from langfield.query import heatmap_overlay, turbo_colormap

    opacity = inspect.signature(heatmap_overlay).parameters["opacity"].default
    cmap = turbo_colormap(np.linspace(0.0, 1.0, 256)) * 255.0  # [256, 3]
    err = np.full(len(rgb), np.inf, dtype=np.float32)
    for start in range(0, len(rgb), 4096):  # chunks: [chunk, 256, 3] at a time
        a, b = rgb[start:start + 4096], shown[start:start + 4096]
        pred = (1.0 - opacity) * a[:, None, :] + opacity * cmap[None]
        err[start:start + 4096] = np.sqrt(((b[:, None, :] - pred) ** 2).sum(-1)).min(1)
    return err < HEAT


def test_a_missing_browser_fails_in_ci_and_skips_with_the_install_command_elsewhere(monkeypatch):
    bd = _driver()
    monkeypatch.delenv(bd.CHROMIUM_ENV, raising=False)
    monkeypatch.setattr(bd.shutil, "which", lambda name: None)
    monkeypatch.setattr(bd, "DEBIAN_CHROMIUM", "/nonexistent/chromium")
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y chromium"):
        _require_browser()
    monkeypatch.delenv(REQUIRE_ENV)
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y chromium"):
        _require_browser()
    monkeypatch.setitem(sys.modules, "playwright.sync_api", None)  # import fails as when not installed
    with pytest.raises(pytest.fail.Exception, match="Playwright for Python is not installed"):
        _require_browser()


@pytest.mark.slow
@skip_when_asked
def test_query_select_and_export_in_a_real_browser(viewer_scene, tmp_path):
    bd = _require_browser()
    from langfield.cli import main
    from langfield.gaussians.ply import load_ply

    room = bd.synthetic_room(viewer_scene)
    with bd.ViewerBrowser(viewer_scene, width=WINDOW[0], height=WINDOW[1], max_size=MAX_SIZE,
                          export_dir=tmp_path / "exports") as vb:
        assert vb.server.host == "127.0.0.1" and vb.page.url.startswith("http://127.0.0.1:")
        rgb = vb.first_frame()
        assert max(rgb.size) == MAX_SIZE
        camera = vb.camera()
        assert (camera.width, camera.height) == rgb.size
        visible = ~vb.occluded(rgb.size)
        table = bd.label_mask(room, camera, QUERY)
        inside = bd.erode(table, 2) & visible  # well inside the table: no blended border pixels
        # well away from it: the small fixture scene's relevancy bleeds a few pixels onto the rug around it
        outside = bd.erode(~table, AWAY) & visible
        assert inside.sum() >= 200 and outside.sum() >= 2000, (inside.sum(), outside.sum())

        vb.type_query(QUERY)  # typed key by key, then Enter
        rel = vb.settle(previous=rgb)
        assert vb.control("Mode").input_value() == "relevancy"  # a submitted query switches to relevancy
        a, b = rgb.pixels(), rel.pixels()
        # the LERF display rule dims every pixel where the query does not win: fit that dimming away from the table
        dim = float((a[outside] * b[outside]).sum() / (a[outside] ** 2).sum())
        assert 0.1 < dim < 0.9, dim
        changed = np.abs(b - dim * a).max(-1) > CHANGED
        heat_in = _heat_coloured(a[inside], b[inside])
        heat_out = _heat_coloured(a[outside], b[outside])
        assert changed[inside].mean() > 0.7 and heat_in.mean() > 0.6, (changed[inside].mean(), heat_in.mean())
        assert changed[outside].mean() < 0.05 and (heat_out & changed[outside]).mean() < 0.05, (
            changed[outside].mean(), (heat_out & changed[outside]).mean())

        vb.choose("Mode", "features")
        feat = vb.settle(previous=rel)
        f = feat.pixels()
        for other in (a, b):
            assert np.abs(f - other)[visible].mean() > 10.0

        # a click on the table: the point on the browser's click ray, "table" ranked first there (a small
        # relevancy pass of the one recent query; the frame's depth is the features frame's, already rendered)
        ys, xs = np.nonzero(inside)
        k = int(np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2))
        pointer = vb.panel.pointer
        vb.click_frame(int(xs[k]), int(ys[k]), feat.size)
        reading = vb.wait_for(lambda: pointer.reading, "the clicked point")
        assert reading.pixel == (int(xs[k]), int(ys[k])) and reading.best.text == QUERY, reading
        assert pointer.ray_error is not None and pointer.ray_error < 0.5 * reading.depth / camera.K[0, 0]
        assert pointer.marker is not None
        vb.wait_text(r"point\s*\(")  # the panel shows it

        threshold = vb.number("Select threshold")
        vb.click("Select 3D")
        vb.click("Export PLY")  # waits until it is enabled: the selection is done
        status = vb.wait_text(r"wrote\s+\S+\.ply")
        exported = Path(re.search(r"wrote\s+(\S+\.ply)", status).group(1))
        assert exported.parent == tmp_path / "exports" and exported.is_file()

    cli_ply = tmp_path / "cli.ply"
    assert main(["select", str(viewer_scene), QUERY, "--out", str(cli_ply), "--threshold", str(threshold)]) == 0
    got, want = load_ply(exported), load_ply(cli_ply)
    assert len(want["means"]) > 0
    assert set(got.keys()) == set(want.keys())
    for key in want.keys():
        assert torch.equal(got[key], want[key]), key
