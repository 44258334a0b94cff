"""What `reconstruct --view` costs the training: steps/s without the viewer, with it and no browser, and with one
connected headless-Chromium tab; prints JSON.

The protocol is bench_training.py's (a synthetic room, 16 views of 160x120, plus 4 held-out ones) at fewer
iterations; the runs alternate (plain, view, view + browser, plain, ...) so that load from other jobs on a
shared machine spreads over all of them. Steps/s counts ``Trainer.train`` only (loading, the language stage,
evaluation and writing are the same with and without the viewer). With a browser the tab is connected and has
shown its first frame before step 0; every published map then re-renders its frame (``frames_rendered``:
rasterizer passes of the viewer), which competes with training for the CPU -- and, on this machine, so does
Chromium itself (software WebGL), which a real user runs elsewhere.

    python scripts/bench_live_view.py [--iterations 600] [--view-every 100] [--repeats 2] [--backend cpu]
        [--no-browser]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[1]


def _driver() -> Any:
    """``tests/viewer/browser_driver.py`` (Chromium discovery and flags), loaded by path: tests are no package."""
    name = "langfield_browser_driver"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "viewer" / "browser_driver.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _live_scene_class():
    from langfield.viewer.live import LiveScene

    class BrowsedLiveScene(LiveScene):
        """LiveScene that, with ``browser``, connects one headless Chromium tab when it first opens."""

        def __init__(self, browser: bool, **kw: Any) -> None:
            super().__init__(**kw)
            self.browser = browser
            self._pw: Any = None
            self._chromium: Any = None
            self.passes_at_open = 0

        def open(self, scene_dir: Path, note: Optional[str] = None) -> None:
            first = self.core is None
            super().open(scene_dir, note)
            if first and self.browser:
                self._connect()
            if first:
                self.passes_at_open = self.core.passes

        def _connect(self) -> None:
            from playwright.sync_api import sync_playwright

            bd = _driver()
            self._pw = sync_playwright().start()
            self._chromium = self._pw.chromium.launch(executable_path=bd.chromium_path(), headless=True,
                                                      args=list(bd.CHROMIUM_ARGS))
            page = self._chromium.new_page(viewport={"width": 1280, "height": 800})
            page.goto(self.url)
            end = time.monotonic() + 120
            while time.monotonic() < end:  # connected and its first frame shown: training starts now
                panels = self.server.panels()
                if panels and panels[0].loop.frames:
                    return
                time.sleep(0.1)
            raise RuntimeError("the browser tab did not show a frame within 120 s")

        def close(self) -> None:
            for part in (self._chromium, self._pw):
                try:
                    if part is not None:
                        part.close() if part is self._chromium else part.stop()
                except Exception:  # a browser that is gone already
                    pass
            super().close()

    return BrowsedLiveScene


def _run(data: Path, out: Path, cfg: Any, variant: str, every: int) -> dict[str, Any]:
    from langfield.train.live import LivePublisher
    from langfield.train.reconstruct import reconstruct
    from langfield.train.trainer import Trainer
    from langfield.viewer.config import ViewerConfig

    live = None
    if variant != "plain":
        live = _live_scene_class()(variant == "view+browser", backend=cfg.backend, config=ViewerConfig(port=0),
                                   background=True, log=lambda s: None, note="bench")
    timing: dict[str, float] = {}
    publish_s: list[float] = []
    real_train, real_publish = Trainer.train, LivePublisher.publish

    def timed_publish(self: LivePublisher, params: Any) -> None:  # what the training thread pays: copy + hand-over
        t0 = time.perf_counter()
        real_publish(self, params)
        publish_s.append(time.perf_counter() - t0)

    def timed(self: Trainer, *a: Any, **kw: Any) -> None:
        t0 = time.perf_counter()
        try:
            real_train(self, *a, **kw)
        finally:
            timing["train_s"] = time.perf_counter() - t0
            timing["frames"] = float(live.core.passes - live.passes_at_open) if live is not None else 0.0

    Trainer.train, LivePublisher.publish = timed, timed_publish  # type: ignore[method-assign]
    try:
        result = reconstruct(data, out, cfg, progress=False, live=live, view_every=every)
    finally:
        Trainer.train, LivePublisher.publish = real_train, real_publish  # type: ignore[method-assign]
        if live is not None:
            live.close()
    assert result is not None
    row: dict[str, Any] = {"variant": variant, "steps_per_s": cfg.iterations / timing["train_s"],
                           "train_s": timing["train_s"], "num_gaussians": result.num_gaussians}
    if live is not None:
        row.update(published=len(publish_s), publish_ms_mean=1e3 * statistics.mean(publish_s or [0.0]),
                   swapped=live.updates, superseded=live.superseded, frames_rendered=int(timing["frames"]))
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=600)
    ap.add_argument("--view-every", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--width", type=int, default=160)
    ap.add_argument("--height", type=int, default=120)
    ap.add_argument("--views", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1, help="synthetic scene seed")
    ap.add_argument("--no-browser", action="store_true", help="skip the variant with a connected Chromium tab")
    args = ap.parse_args()

    from langfield.synthetic import generate_scene
    from langfield.train.config import TrainConfig

    variants = ["plain", "view"] + ([] if args.no_browser else ["view+browser"])
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        generate_scene(data, seed=args.seed, width=args.width, height=args.height, n_train=args.views, n_eval=4)
        cfg = dataclasses.replace(TrainConfig(), iterations=args.iterations, backend=args.backend, checkpoint_every=0)
        for r in range(args.repeats):
            for v in variants:
                with contextlib.redirect_stdout(sys.stderr):  # viser's banner: stdout is for the JSON only
                    row = _run(data, Path(tmp) / f"scene_{r}_{v}", cfg, v, args.view_every)
                rows.append({"repeat": r, **row})
    summary = {}
    for v in variants:
        rates = [row["steps_per_s"] for row in rows if row["variant"] == v]
        summary[v] = {"steps_per_s_median": statistics.median(rates), "steps_per_s": rates}
    base = summary["plain"]["steps_per_s_median"]
    for v in variants[1:]:
        summary[v]["slowdown_vs_plain"] = 1 - summary[v]["steps_per_s_median"] / base
    import torch

    print(json.dumps({
        "protocol": (f"{args.views} views {args.width}x{args.height} synthetic seed {args.seed}, {args.iterations} "
                     f"iterations, --view-every {args.view_every}, {args.repeats} alternating repeats"),
        "backend": args.backend, "torch_threads": torch.get_num_threads(),
        "summary": summary, "runs": rows,
    }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
