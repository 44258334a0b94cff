"""Benchmark ``langfield slam`` on an RGB-D sequence: per-frame tracking / mapping ms, peak RSS, ATE (JSON).

    python scripts/bench_slam.py /tmp/h4big200 [--max-frames N] [--out DIR] [--set key=value ...]

Without a sequence path it generates the 320x240 synthetic smooth-path sequence (200 frames).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("sequence", nargs="?", type=Path)
    ap.add_argument("--max-frames", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--set", action="append", default=[], help="SlamConfig field=value")
    args = ap.parse_args()

    from langfield.frontend.slam import SlamConfig, run_slam
    from langfield.trajectory import ate

    work = Path(tempfile.mkdtemp(prefix="bench_slam_"))
    seq = args.sequence
    if seq is None:
        from langfield.synthetic import generate_scene

        seq = work / "seq"
        generate_scene(seq, seed=0, width=320, height=240, n_train=200, n_eval=0, path="smooth")
    defaults = SlamConfig()
    overrides = {}
    for item in args.set:
        key, value = item.split("=", 1)
        kind = type(getattr(defaults, key))
        overrides[key] = value if kind is str else (value.lower() == "true" if kind is bool else kind(value))
    cfg = SlamConfig(max_frames=args.max_frames, progress=False, **overrides)
    out = args.out or work / "scene"
    t0 = time.perf_counter()
    r = run_slam(seq, out, cfg, overwrite=True)
    wall = time.perf_counter() - t0
    track = np.array([s.track_ms for s in r.frames[1:]] or [0.0])
    mapping = np.array([s.map_ms for s in r.frames])
    report = {
        "sequence": str(seq), "frames": len(r.c2w), "keyframes": r.num_keyframes, "gaussians": r.num_gaussians,
        "wall_s": round(wall, 2), "s_per_frame": round(wall / max(len(r.c2w), 1), 3),
        "track_ms": {"mean": round(float(track.mean()), 1), "median": round(float(np.median(track)), 1)},
        "map_ms": {"mean": round(float(mapping.mean()), 1), "median": round(float(np.median(mapping)), 1)},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "config": dataclasses.asdict(cfg),
    }
    if r.gt_c2w is not None:
        ok = np.isfinite(r.gt_c2w).all(axis=(1, 2))
        if ok.sum() >= 3:
            e = ate(r.c2w[ok], r.gt_c2w[ok])
            report["ate_rmse_m"] = e.rmse
            report["ate_max_m"] = e.max
    print(json.dumps(report, indent=2))
    if args.out is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
