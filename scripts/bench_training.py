"""Training speed and quality on the peer protocol; prints JSON.

The peer figure we compare against (OpenSplat built for the CPU): a 16-view
160x120 indoor scene, 2000 iterations, 0.077 s per iteration (10k -> 17k
Gaussians), 30.35 dB on held-out views.  This script generates a synthetic
room with the same view count and size (plus held-out views between the
training views), reconstructs it with the chosen backend and reports seconds
per iteration, Gaussian counts and held-out PSNR/SSIM.

    python scripts/bench_training.py [--iterations 2000] [--backend cpu] [--seed 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

from langfield.synthetic import generate_scene
from langfield.train.config import TRAIN_PRESETS
from langfield.train.reconstruct import reconstruct

PEER = {"name": "OpenSplat (CPU)", "s_per_iter": 0.077, "psnr": 30.35, "iterations": 2000}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=2000)
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--seed", type=int, default=1, help="synthetic scene seed")
    ap.add_argument("--width", type=int, default=160)
    ap.add_argument("--height", type=int, default=120)
    ap.add_argument("--views", type=int, default=16, help="training views")
    ap.add_argument("--max-gaussians", type=int, default=None)
    ap.add_argument("--schedule", choices=["scaled", "3dgs"], default="scaled",
                    help="refine window: fitted to --iterations (default) or 3DGS's fixed one (500 to 15k)")
    ap.add_argument("--coarse-levels", type=int, default=None, help="override TrainConfig.coarse_levels")
    ap.add_argument("--coarse-fraction", type=float, default=None, help="override TrainConfig.coarse_fraction")
    ap.add_argument("--keep", type=Path, default=None, help="keep the dataset and scene in this directory")
    ap.add_argument("--absgrad", action="store_true",
                    help="AbsGS densification (RenderOutput.absgrad; grow threshold --grow-grad2d, default 0.0008)")
    ap.add_argument("--grow-grad2d", type=float, default=None, help="override the strategy's growth threshold")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        data = root / "data"
        generate_scene(data, seed=args.seed, width=args.width, height=args.height, n_train=args.views, n_eval=4)
        # The preset (langfield.train.config.TRAIN_PRESETS) is the one definition of what --absgrad changes.
        base = TRAIN_PRESETS["absgrad" if args.absgrad else "default"]()
        cfg = dataclasses.replace(base, iterations=args.iterations, backend=args.backend,
                                  checkpoint_every=args.iterations)
        cfg.scale_strategy_schedule = args.schedule == "scaled"
        if args.coarse_levels is not None:
            cfg.coarse_levels = args.coarse_levels
        if args.coarse_fraction is not None:
            cfg.coarse_fraction = args.coarse_fraction
        if args.max_gaussians:
            cfg.strategy.max_gaussians = args.max_gaussians
        if args.grow_grad2d is not None:
            cfg.strategy.grow_grad2d = args.grow_grad2d
        t0 = time.perf_counter()
        result = reconstruct(data, root / "scene", cfg, progress=False)
        wall = time.perf_counter() - t0
    assert result is not None
    train_s = result.wall_time_s
    out = {
        "protocol": f"{args.views} views {args.width}x{args.height}, {args.iterations} iterations, synthetic seed {args.seed}",
        "backend": args.backend,
        "absgrad": bool(args.absgrad),
        "grow_grad2d": cfg.strategy.grow_grad2d,
        "s_per_iter": train_s / args.iterations,
        "train_wall_s": train_s,
        "total_wall_s_incl_eval_and_io": wall,
        "num_gaussians_final": result.num_gaussians,
        "heldout_psnr": result.report["mean_psnr"],
        "heldout_ssim": result.report["mean_ssim"],
        "peer": PEER,
        "speedup_vs_peer": PEER["s_per_iter"] / (train_s / args.iterations),
    }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
