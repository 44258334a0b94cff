"""Benchmark ``langfield slam`` on an RGB-D sequence: per-frame ms (tracking / mapping / language), memory, ATE (JSON).

    python scripts/bench_slam.py [SEQ] [--frames 200] [--eval-views 20] [--cache DIR] [--max-frames N]
        [--out DIR] [--features labels --clip test-tiny] [--set key=value ...]

Without SEQ it generates the 320x240 synthetic smooth-path sequence of ``--frames`` frames (the
generator's ``path="smooth"``; 1000 frames walk the same path in 5x smaller steps) plus ``--eval-views``
held-out views spread along the path, which SLAM never sees (``run_slam`` drops a synthetic sequence's
test split); ``--cache DIR`` keeps the generated sequence in DIR and reuses it when DIR already holds
one (generating 1000 frames takes minutes).  ``heldout`` is ``langfield eval``'s report of the final map
at those views (at the mapping resolution).  ``--features`` / ``--clip`` turn on the online language
field (``language_ms``: features + codec + lift per keyframe).  ``--set`` takes any SlamConfig field
(tuples as ``odo_iters=10,6,4``).  Memory: ``peak_rss_mb`` (the process's high
water mark) and ``rss_mb`` sampled at ten points over the frames (current resident set, from
/proc/self/statm), so a flat trend shows that nothing grows with the number of frames.
Time: ``s_per_frame`` is wall time; ``cpu_s_per_frame`` the process's CPU time per frame (with
``--threads 1`` the wall time an idle core would give; the per-stage ms are wall time).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def current_rss_mb() -> float:
    """Resident set size of this process now, MiB (Linux)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def parse_override(defaults: Any, item: str) -> tuple[str, Any]:
    """``key=value`` -> (key, value typed like the SlamConfig default)."""
    key, value = item.split("=", 1)
    if not hasattr(defaults, key):
        raise SystemExit(f"error: --set {item}: SlamConfig has no field {key!r}")
    current = getattr(defaults, key)
    if isinstance(current, bool):
        return key, value.lower() in ("1", "true", "yes")
    if isinstance(current, tuple):
        kind = type(current[0]) if current else int
        return key, tuple(kind(v) for v in value.split(",") if v)
    if current is None:
        return key, None if value.lower() == "none" else int(value)
    return key, value if isinstance(current, str) else type(current)(value)


def stats_ms(values: np.ndarray) -> dict[str, float]:
    return {"mean": round(float(values.mean()), 1), "median": round(float(np.median(values)), 1),
            "p90": round(float(np.percentile(values, 90)), 1), "max": round(float(values.max()), 1)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("sequence", nargs="?", type=Path)
    ap.add_argument("--frames", type=int, default=200, help="frames of the generated sequence (without SEQ)")
    ap.add_argument("--eval-views", type=int, default=20, help="held-out views of the generated sequence")
    ap.add_argument("--cache", type=Path, default=None, help="keep / reuse the generated sequence here")
    ap.add_argument("--features", choices=["dense", "labels", "sam-clip"], default=None,
                    help="online language features (default: geometry only)")
    ap.add_argument("--clip", default=None, help="CLIP model of the language features (e.g. test-tiny)")
    ap.add_argument("--max-frames", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--set", action="append", default=[], help="SlamConfig field=value")
    args = ap.parse_args()

    import torch

    from langfield.eval.report import evaluate_scene
    from langfield.frontend.slam import SlamConfig, run_slam
    from langfield.frontend.slam.language_config import SlamLanguageConfig
    from langfield.trajectory import ate, rpe

    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench_slam_"))
    seq = args.sequence
    generate_s = None
    if seq is None:
        from langfield.synthetic import generate_scene

        seq = args.cache or work / "seq"
        if not (seq / "transforms.json").is_file():
            t0 = time.perf_counter()
            generate_scene(seq, seed=0, width=320, height=240, n_train=args.frames, n_eval=args.eval_views,
                           path="smooth")
            generate_s = time.perf_counter() - t0
    overrides = dict(parse_override(SlamConfig(), item) for item in args.set)
    cfg = SlamConfig(max_frames=args.max_frames, **{"progress": True, **overrides})
    out = args.out or work / "scene"
    rss: list[tuple[int, float]] = []

    def sample(line: str) -> None:
        # One progress line per frame: sample the resident set (ten points kept below).
        if line.startswith("frame "):
            rss.append((len(rss) + 1, current_rss_mb()))

    t0, c0 = time.perf_counter(), time.process_time()
    language = None
    if args.features is not None:
        language = SlamLanguageConfig(features=args.features, **({"clip": args.clip} if args.clip else {}))
    r = run_slam(seq, out, cfg, language=language, overwrite=True, log=sample)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    frames = r.frames[1:] or r.frames  # frame 0 is anchored, not tracked
    track = np.array([s.track_ms for s in frames])
    mapping = np.array([s.map_ms for s in r.frames])
    language = np.array([getattr(s, "language_ms", 0.0) for s in r.frames])
    n = len(r.c2w)
    picks = sorted({int(round(k)) for k in np.linspace(0, len(rss) - 1, 10)}) if rss else []
    report: dict[str, Any] = {
        "sequence": str(seq), "frames": n, "keyframes": r.num_keyframes, "gaussians": r.num_gaussians,
        "wall_s": round(wall, 2), "s_per_frame": round(wall / max(n, 1), 3),
        # CPU seconds of this process per frame: with --threads 1 it is what the wall time would be on an
        # idle core, the figure to read when other jobs share the machine (compare load_avg).
        "cpu_s_per_frame": round(cpu / max(n, 1), 3),
        "track_ms": stats_ms(track), "map_ms": stats_ms(mapping), "language_ms": stats_ms(language),
        "per_frame_ms_sum": round(float(track.mean() + mapping.mean() + language.mean()), 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_mb": {str(rss[k][0]): round(rss[k][1], 1) for k in picks},
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "torch_threads": torch.get_num_threads(),
        "config": dataclasses.asdict(cfg),
    }
    if r.language is not None:
        report["language"] = r.language
    try:
        held = evaluate_scene(out)
        report["heldout"] = {"split": held["split"], "num_views": held["num_views"],
                             "mean_psnr": held["mean_psnr"], "mean_ssim": held["mean_ssim"]}
    except Exception as e:  # a sequence without a dataset langfield eval reads: no image figures
        report["heldout"] = {"error": f"{type(e).__name__}: {e}"}
    if generate_s is not None:
        report["generate_s"] = round(generate_s, 1)
    if r.gt_c2w is not None:
        ok = np.isfinite(r.gt_c2w).all(axis=(1, 2))
        if ok.sum() >= 3:
            e = ate(r.c2w[ok], r.gt_c2w[ok])
            report["ate_rmse_m"] = e.rmse
            report["ate_max_m"] = e.max
            p = rpe(r.c2w[ok], r.gt_c2w[ok])
            report["rpe"] = {k: v for k, v in dataclasses.asdict(p).items() if not isinstance(v, np.ndarray)}
    print(json.dumps(report, indent=2, default=float))
    if args.out is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
