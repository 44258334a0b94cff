"""Screenshots of ``langfield view`` in headless Chromium for the README; prints JSON of what it wrote.

    .venv/bin/python scripts/viewer_screenshots.py --scene runs/demo/scene [--out docs/images]
        [--window 1280x800] [--resolution 1280]

Drives the browser exactly as ``tests/viewer/test_browser.py`` does (the same driver,
``tests/viewer/browser_driver.py``: Debian's chromium through Playwright, controls found
by their visible labels) on a scene from ``langfield demo`` and writes to ``--out``:

* ``viewer_rgb.png``, ``viewer_features.png``: the first view in rgb and features mode;
* ``viewer_relevancy_table.png``: "table" typed into the query box and submitted;
* ``viewer_select3d_table.png``, ``viewer_select3d_chair.png``: Select 3D of the query with the
  viewer's defaults (the selection rule of ``langfield select``), shown over the RGB;
* ``viewer_select3d_table_before.png``, ``viewer_select3d_chair_before.png``: the same with the
  rule from before issue 14 -- relevancy threshold 0.5 and no contribution gate. The gate only
  applies when the scene records per-Gaussian contributions (``SelectionConfig.min_contribution``,
  ``load_contribution``), so "before" runs on a copy of the scene without ``codec/contribution.pt``
  (and without the manifest, which lists it) and types 0.5 into the threshold box.

The JSON gives, per image, the path, the query, the threshold and the selection's status line.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEFORE_THRESHOLD = 0.5
"""The viewer's Select 3D threshold before issue 14."""
SELECT_QUERIES = ("table", "chair")


def load_driver():
    """``tests/viewer/browser_driver.py``, the browser test's driver (loaded by path: tests are no package)."""
    name = "langfield_browser_driver"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "viewer" / "browser_driver.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def scene_without_contribution(scene: Path, out: Path) -> Path:
    """A copy of ``scene`` as scenes were before issue 14: no recorded contributions (so no selection gate)."""
    out.mkdir(parents=True)
    for name in ("config.json", "cameras.json", "point_cloud.ply"):
        shutil.copy2(scene / name, out / name)
    (out / "codec").mkdir()
    for path in (scene / "codec").iterdir():
        if path.is_file() and path.name != "contribution.pt":
            shutil.copy2(path, out / "codec" / path.name)
    config = json.loads((out / "config.json").read_text())
    config.get("language", {}).pop("contribution_file", None)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


def selection_status(vb) -> str:
    """The selection's status line ("N Gaussians ..."), once Select 3D has finished."""
    status = vb.wait_text(r"^\s*([\d,]+\b.*Gaussians|error:)")
    if status.strip().startswith("error:"):
        raise RuntimeError(f"Select 3D failed in the viewer: {status.strip()}")
    return status.strip()


def select(vb, query: str, previous, threshold: float | None = None):
    """Type ``query``, show it over the RGB and run Select 3D; returns (settled frame, status line)."""
    vb.type_query(query)
    frame = vb.settle(previous=previous)
    if vb.control("Mode").input_value() != "rgb":
        vb.choose("Mode", "rgb")
        frame = vb.settle(previous=frame)
    if threshold is not None:
        vb.set_number("Select threshold", threshold)
    vb.click("Select 3D")
    status = selection_status(vb)
    return vb.settle(previous=frame), status, vb.number("Select threshold")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scene", type=Path, required=True, help="scene from `langfield demo` (DIR/scene)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    ap.add_argument("--window", default="1280x800", help="browser window, WxH CSS pixels")
    ap.add_argument("--resolution", type=int, default=1280, help="long side of the viewer's frames (--max-size)")
    ap.add_argument("--backend", default="cpu")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    bd = load_driver()
    width, height = (int(v) for v in args.window.lower().split("x"))
    kw = dict(width=width, height=height, max_size=args.resolution, backend=args.backend)
    images: list[dict] = []
    t0 = time.perf_counter()

    def shot(vb, name: str, **info) -> None:
        path = vb.save(args.out / name)
        images.append({"path": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path), **info})

    # viser prints a banner per server: keep stdout for the JSON
    with tempfile.TemporaryDirectory(prefix="langfield-shots-") as tmp, contextlib.redirect_stdout(sys.stderr):
        with bd.ViewerBrowser(args.scene, export_dir=Path(tmp) / "exports", **kw) as vb:
            rgb = vb.first_frame()
            shot(vb, "viewer_rgb.png", mode="rgb")
            vb.type_query("table")  # from rgb, a submitted query switches to relevancy
            rel = vb.settle(previous=rgb)
            shot(vb, "viewer_relevancy_table.png", mode="relevancy", query="table")
            vb.choose("Mode", "features")
            previous = vb.settle(previous=rel)
            shot(vb, "viewer_features.png", mode="features")
            for query in SELECT_QUERIES:
                previous, status, threshold = select(vb, query, previous)
                shot(vb, f"viewer_select3d_{query}.png", query=query, rule="default (after issue 14)",
                     threshold=threshold, selection=status)
        before = scene_without_contribution(args.scene, Path(tmp) / "before" / "scene")
        with bd.ViewerBrowser(before, export_dir=Path(tmp) / "exports", **kw) as vb:
            previous = vb.first_frame()
            for query in SELECT_QUERIES:
                previous, status, threshold = select(vb, query, previous, threshold=BEFORE_THRESHOLD)
                shot(vb, f"viewer_select3d_{query}_before.png", query=query,
                     rule="before issue 14: threshold 0.5, no contribution gate", threshold=threshold,
                     selection=status)
    print(json.dumps({"scene": str(args.scene), "window": [width, height], "resolution": args.resolution,
                      "images": images, "seconds": round(time.perf_counter() - t0, 1)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
