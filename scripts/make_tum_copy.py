"""Write a TUM RGB-D layout copy of a synthetic RGB-D sequence and check it reads back as the original.

    python scripts/make_tum_copy.py SYNTHETIC_DIR OUT_DIR [--generate N --width W --height H --seed S]

With ``--generate N`` the synthetic sequence (``path="smooth"``, N frames, no held-out
views) is first rendered into SYNTHETIC_DIR.  Prints one JSON object: the intrinsics to pass
as ``--intrinsics``, the frame count of both layouts, and the largest RGB, depth and pose
differences between them (issue 15, Done-means 4), plus the ATE between the two trajectories.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from langfield.io import dumps_json
from langfield.sources.rgbd import open_sequence
from langfield.sources.tum import write_tum_copy
from langfield.trajectory import ate_rmse
from langfield.types import LangfieldError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("synthetic", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--generate", type=int, default=0, help="render a synthetic sequence of this many frames first")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        t0 = time.perf_counter()
        if args.generate:
            from langfield.synthetic import generate_scene

            generate_scene(args.synthetic, seed=args.seed, width=args.width, height=args.height,
                           n_train=args.generate, n_eval=0, path="smooth")
        t1 = time.perf_counter()
        k = write_tum_copy(args.synthetic, args.out, seed=args.seed)
        t2 = time.perf_counter()
        native = open_sequence(args.synthetic)
        tum = open_sequence(args.out, intrinsics=k)
        rgb_diff = depth_diff = pose_diff = 0.0
        for a, b in zip(native, tum):
            rgb_diff = max(rgb_diff, float(np.abs(a.rgb.astype(np.int16) - b.rgb).max()))
            depth_diff = max(depth_diff, float(np.abs(a.depth - b.depth).max()))
            pose_diff = max(pose_diff, float(np.abs(a.c2w_gt - b.c2w_gt).max()))
        t3 = time.perf_counter()
    except LangfieldError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(dumps_json({
        "intrinsics": ",".join(repr(v) for v in k),
        "frames_native": len(native), "frames_tum": len(tum), "size": list(tum.size),
        "max_rgb_diff": rgb_diff, "max_depth_diff_m": depth_diff, "max_pose_diff": pose_diff,
        "ate_rmse_m": ate_rmse(tum.gt_poses(), native.gt_poses(), align="none") if len(tum) == len(native) else None,
        "seconds": {"generate": t1 - t0, "write_copy": t2 - t1, "read_and_compare": t3 - t2},
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
