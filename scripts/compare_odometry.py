"""Compare RGB-D odometry implementations on one sequence: ATE and ms/frame of the odometry alone (JSON).

    python scripts/compare_odometry.py SEQ [--downscale 2] [--reference frame|keyframe] [--keyframe-every 5]
        [--max-frames N] [--open3d-python /path/to/venv/bin/python]

Both run the same chain: frame 0 anchored at its ground truth, every later frame aligned to a
reference (the previous frame, or the last keyframe, one every ``--keyframe-every`` frames) from the
constant-velocity prediction, its pose = reference pose @ motion.  ``torch`` is
``langfield.frontend.slam.odometry.rgbd_odometry`` in this process; ``open3d`` is open3d's tensor
``rgbd_odometry_multi_scale`` (hybrid term) in a separate interpreter that has open3d (open3d is not
a langfield dependency): ``scripts/odometry_open3d_worker.py`` loads the same downscaled frames from
an .npz and answers one alignment per line on stdin/stdout, so the chain logic exists once, here.
Timings are the odometry call alone (no image loading), single-threaded unless --threads says otherwise.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

WORKER = Path(__file__).with_name("odometry_open3d_worker.py")


def chain(n: int, align: Callable[[int, int, np.ndarray], np.ndarray], gt0: np.ndarray, reference: str,
          keyframe_every: int) -> tuple[np.ndarray, list[float], list[float]]:
    """Poses [n, 4, 4] of the chain (module docstring), the wall and the CPU ms of each ``align(src, ref, init)``."""
    from langfield.frontend.slam.tracker import constant_velocity

    poses = [gt0]
    ms: list[float] = []
    cpu: list[float] = []
    kf = 0
    for i in range(1, n):
        pred = constant_velocity(poses[-1], poses[-2] if i >= 2 else None)
        ref = i - 1 if reference == "frame" else kf
        init = np.linalg.inv(poses[ref]) @ pred
        t0, c0 = time.perf_counter(), time.process_time()
        T = align(i, ref, init)
        ms.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
        poses.append(poses[ref] @ T)
        if reference == "keyframe" and i % keyframe_every == 0:
            kf = i
    return np.stack(poses), ms, cpu


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("sequence", type=Path)
    ap.add_argument("--downscale", type=int, default=2)
    ap.add_argument("--reference", choices=("frame", "keyframe"), default="keyframe")
    ap.add_argument("--keyframe-every", type=int, default=5)
    ap.add_argument("--max-frames", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], help="OdometryConfig field=value (torch)")
    ap.add_argument("--open3d-method", choices=("Hybrid", "PointToPlane", "Intensity"), default="Hybrid")
    ap.add_argument("--torch", action=argparse.BooleanOptionalAction, default=True, help="run the torch odometry")
    ap.add_argument("--open3d-python", type=Path, default=None, help="an interpreter with numpy + open3d")
    args = ap.parse_args()

    import dataclasses

    import torch

    from langfield.frontend.slam.frames import frame_view
    from langfield.frontend.slam.odometry import OdometryConfig, rgbd_odometry
    from langfield.sources.rgbd import open_sequence
    from langfield.trajectory import ate, rpe

    torch.set_num_threads(args.threads)
    seq = open_sequence(args.sequence)
    n = len(seq) if args.max_frames is None else min(args.max_frames, len(seq))
    views, gt = [], []
    for i in range(n):
        f = seq[i]
        if f.c2w_gt is None:
            raise SystemExit(f"error: {args.sequence}: frame {i} has no ground-truth pose")
        views.append(frame_view(f, seq.intrinsics, f.c2w_gt, args.downscale))
        gt.append(f.c2w_gt)
    gt_c2w = np.stack(gt)
    fields = {}
    for item in args.set:
        key, value = item.split("=", 1)
        current = getattr(OdometryConfig(), key)
        fields[key] = tuple(int(v) for v in value.split(",")) if isinstance(current, tuple) else type(current)(value)
    cfg = OdometryConfig(**fields)

    def torch_align(i: int, ref: int, init: np.ndarray) -> np.ndarray:
        return rgbd_odometry(views[i], views[ref], init, cfg).transform

    def summary(poses: np.ndarray, ms: list[float], cpu: list[float]) -> dict:
        e = ate(poses, gt_c2w)
        p = rpe(poses, gt_c2w)
        return {"ate_rmse_cm": round(100 * e.rmse, 3), "ate_max_cm": round(100 * e.max, 3),
                "rpe_trans_rmse_mm": round(1000 * p.trans_rmse, 3), "rpe_rot_rmse_deg": round(p.rot_rmse_deg, 4),
                "ms_mean": round(float(np.mean(ms)), 1), "ms_median": round(float(np.median(ms)), 1),
                "cpu_ms_mean": round(float(np.mean(cpu)), 1)}

    report: dict = {"sequence": str(args.sequence), "frames": n, "size": [views[0].width, views[0].height],
                    "reference": args.reference, "keyframe_every": args.keyframe_every, "threads": args.threads,
                    "torch_config": dataclasses.asdict(cfg)}
    if args.torch:
        report["torch"] = summary(*chain(n, torch_align, gt_c2w[0], args.reference, args.keyframe_every))

    if args.open3d_python is not None:
        with tempfile.TemporaryDirectory(prefix="odo_cmp_") as tmp:
            npz = Path(tmp) / "frames.npz"
            np.savez(npz, rgb=np.stack([v.rgb.numpy() for v in views]).astype(np.float32),
                     depth=np.stack([v.depth[..., 0].numpy() for v in views]).astype(np.float32),
                     K=views[0].K.double().numpy())
            proc = subprocess.Popen([str(args.open3d_python), str(WORKER), str(npz), str(args.threads),
                                     args.open3d_method],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            hello = json.loads(proc.stdout.readline())  # the worker says its open3d version once loaded

            def o3d_align(i: int, ref: int, init: np.ndarray) -> np.ndarray:
                proc.stdin.write(json.dumps({"src": i, "ref": ref, "init": init.tolist()}) + "\n")
                proc.stdin.flush()
                reply = json.loads(proc.stdout.readline())
                return np.asarray(reply["T"])

            poses, _, _ = chain(n, o3d_align, gt_c2w[0], args.reference, args.keyframe_every)
            proc.stdin.close()
            inner = json.loads(proc.stdout.readline())  # the worker's own timing (no pipe overhead)
            proc.wait()
            report["open3d"] = {**summary(poses, inner["ms"], inner["cpu_ms"]), "version": hello["open3d"],
                                "method": args.open3d_method}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
