"""Viewer frame times and relevancy quality per relevancy method, side by side; prints JSON.

    .venv/bin/python scripts/bench_viewer.py --scene runs/demo/scene [--sizes 320x240 512x320]
        [--repeats 5] [--images docs/images] [--query table] [--image-queries table chair wall]

Frame times go through the viewer's ``RenderCore`` exactly as a browser frame does (median of
``--repeats`` after one warm-up, each repeat a slightly moved camera so no cache answers it):

* ``rgb``, ``features``: one pass;
* ``relevancy[METHOD]``: a frame of an already typed query while orbiting;
* ``relevancy_new_query[METHOD]``: the first frame of a query (its per-Gaussian channels are
  computed; the Gaussians' decode, once per scene, is timed apart as ``decode_gaussians_s``);
* ``level_switch[METHOD]``: the same camera and query at another level (targets: <= 1 RGB frame);
* ``selection``: an rgb frame with the query's 3D selection highlighted (Select 3D, drawn in the pass).

Quality: ``eval-queries``' protocol (``langfield.eval.queries``) on the scene's labelled held-out
views, once per method. ``--images DIR`` writes ``relevancy_before_after.png``: one held-out view at
3x its size, a row per ``--image-queries`` text, columns pixel | splat-sims | splat-relevancy.

Without ``--scene`` a demo scene is built first in a temporary directory (``langfield demo``).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from langfield.io import dumps_json

from langfield.query.field import RELEVANCY_METHODS
from langfield.viewer.camera import ViewerCamera
from langfield.viewer.core import RenderCore, RenderRequest


def _camera(cam: ViewerCamera, width: int, height: int) -> ViewerCamera:
    """The scene camera at exactly width x height (intrinsics scaled per axis)."""
    K = cam.K.copy()
    K[0] *= width / cam.width
    K[1] *= height / cam.height
    return ViewerCamera(cam.c2w.copy(), K, width, height)


def _nudged(cam: ViewerCamera, i: int) -> ViewerCamera:
    """The camera moved sideways by i mm: a new view for every repeat (no cache hit)."""
    c2w = cam.c2w.copy()
    c2w[:3, 3] += 1e-3 * i * c2w[:3, 0]
    return ViewerCamera(c2w, cam.K, cam.width, cam.height)


def _median_s(fn, repeats: int) -> float:
    fn(-1)  # warm-up (allocations, lazy loads)
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def frame_times(core: RenderCore, base: ViewerCamera, query: str, repeats: int,
                methods: tuple[str, ...] = RELEVANCY_METHODS) -> dict:
    out: dict[str, object] = {}
    out["rgb_s"] = _median_s(lambda i: core.render(_nudged(base, i), RenderRequest(mode="rgb")), repeats)
    out["features_s"] = _median_s(lambda i: core.render(_nudged(base, i), RenderRequest(mode="features")), repeats)
    ls = core.language
    assert ls is not None
    from langfield.viewer.selection import Selector

    highlight = Selector(core).select(query).highlight
    out["selection_s"] = _median_s(
        lambda i: core.render(_nudged(base, 400 + i), RenderRequest(mode="rgb", selection=highlight)), repeats)
    for method in methods:
        req = RenderRequest(mode="relevancy", query=query, method=method)
        out[f"relevancy_s[{method}]"] = _median_s(lambda i: core.render(_nudged(base, 100 + i), req), repeats)

        def new_query(i: int, method=method) -> None:
            ls._splat.clear()  # the per-query channels: what a newly typed query pays
            core.render(_nudged(base, 200 + i), RenderRequest(mode="relevancy", query=query, method=method))

        out[f"relevancy_new_query_s[{method}]"] = _median_s(new_query, repeats)

        def switch(i: int, method=method) -> None:
            cam = _nudged(base, 300 + i)
            core.render(cam, RenderRequest(mode="relevancy", query=query, method=method, level=0))
            t0 = time.perf_counter()
            core.render(cam, RenderRequest(mode="relevancy", query=query, method=method, level=ls.num_levels - 1))
            switch.times.append(time.perf_counter() - t0)

        switch.times = []  # type: ignore[attr-defined]
        switch(-1)
        switch.times.clear()  # type: ignore[attr-defined]
        for i in range(repeats):
            switch(i)
        out[f"level_switch_s[{method}]"] = statistics.median(switch.times)  # type: ignore[attr-defined]
    rgb = float(out["rgb_s"])  # type: ignore[arg-type]
    out["selection_over_rgb"] = float(out["selection_s"]) / rgb  # type: ignore[arg-type]
    for method in methods:
        out[f"relevancy_over_rgb[{method}]"] = float(out[f"relevancy_s[{method}]"]) / rgb  # type: ignore[arg-type]
        out[f"level_switch_over_rgb[{method}]"] = float(out[f"level_switch_s[{method}]"]) / rgb  # type: ignore[arg-type]
    return out


def quality(core: RenderCore, max_views: int, methods: tuple[str, ...] = RELEVANCY_METHODS) -> dict:
    """``eval-queries``' localisation / mIoU on the held-out labelled views, per method."""
    from langfield.cli_language import label_annotations
    from langfield.eval.queries import aggregate, evaluate_frame
    from langfield.sources import load_capture, load_views

    ls = core.language
    assert ls is not None
    settings = ls.scene.settings
    capture = load_capture(Path(settings.data or ""), images=settings.train.images, eval_every=settings.train.eval_every)
    ids = (capture.eval_ids or capture.train_ids)[:max_views]
    views = load_views(capture, ids, downscale=settings.train.downscale, device="cpu")
    out = {}
    for method in methods:
        results = []
        for view in views:
            assert view.semantics is not None
            min_pixels = int(math.ceil(0.001 * view.height * view.width))
            ann = label_annotations(view.semantics.cpu().numpy(), capture.labels, min_pixels)
            if not ann:
                continue
            res = ls.relevancy(view, list(ann), method=method)  # type: ignore[arg-type]
            results += evaluate_frame(view.name, res.maps, list(ann), ann, res.config)
        out[method] = aggregate(results)["mean"]
    return out


def before_after(core: RenderCore, queries: list[str], out_dir: Path, scale: float = 3.0) -> Path:
    """One held-out view: each query (a row) by each method (a column, labelled) side by side."""
    from PIL import Image, ImageDraw

    from langfield.io import atomic_write_png

    cams = core.scene.cameras_of("eval") or core.scene.cameras
    cam = ViewerCamera.from_scene_camera(cams[0])
    cam = _camera(cam, int(cam.width * scale), int(cam.height * scale))
    rows = []
    for query in queries:
        tiles = []
        for method in RELEVANCY_METHODS:
            tile = Image.fromarray(core.render(cam, RenderRequest(mode="relevancy", query=query, method=method)).image)
            ImageDraw.Draw(tile).text((6, 4), f"{query!r} · {method}", fill=(255, 255, 255))
            tiles.append(np.asarray(tile))
        gap = np.full((tiles[0].shape[0], 4, 3), 255, np.uint8)
        rows.append(np.concatenate([x for t in tiles for x in (t, gap)][:-1], axis=1))
    hgap = np.full((4, rows[0].shape[1], 3), 255, np.uint8)
    sheet = np.concatenate([x for r in rows for x in (r, hgap)][:-1], axis=0)
    return atomic_write_png(out_dir / "relevancy_before_after.png", sheet)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scene", type=Path, help="scene directory (default: build a demo scene in a temp dir)")
    ap.add_argument("--sizes", nargs="+", default=["320x240", "512x320"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--query", default="table")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--quality-views", type=int, default=8, help="held-out views scored per method (0: no quality)")
    ap.add_argument("--methods", nargs="+", default=list(RELEVANCY_METHODS), choices=RELEVANCY_METHODS,
                    help="relevancy methods to time and score (default all; pixel takes seconds per frame)")
    ap.add_argument("--images", type=Path, help="write relevancy_before_after.png here")
    ap.add_argument("--image-queries", nargs="+", default=["table", "chair", "wall"],
                    help="queries of the before/after sheet (one row each)")
    args = ap.parse_args(argv)
    torch.set_grad_enabled(False)
    scene = args.scene
    if scene is None:
        from langfield.cli import main as cli

        tmp = Path(tempfile.mkdtemp(prefix="bench_viewer_"))
        if cli(["demo", "--out", str(tmp / "demo")]) != 0:
            return 1
        scene = tmp / "demo" / "scene"
    core = RenderCore(scene, backend=args.backend)
    if core.language is None:
        print(f"error: {core.language_note}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    core.language.decode_gaussians()
    report: dict[str, object] = {
        "scene": str(scene), "gaussians": core.field.num_gaussians, "device": core.device,
        "backend": args.backend, "threads": torch.get_num_threads(), "query": args.query,
        "methods": list(args.methods), "decode_gaussians_s": time.perf_counter() - t0,
    }
    cams = core.scene.cameras_of("eval") or core.scene.cameras
    base = ViewerCamera.from_scene_camera(cams[0])
    for size in args.sizes:
        w, h = (int(x) for x in size.lower().split("x"))
        report[size] = frame_times(core, _camera(base, w, h), args.query, args.repeats, tuple(args.methods))
    if args.quality_views > 0:
        report["quality"] = quality(core, args.quality_views, tuple(args.methods))
    if args.images is not None:
        report["image"] = str(before_after(core, args.image_queries, args.images))
    print(dumps_json(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
