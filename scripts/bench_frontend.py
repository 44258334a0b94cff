"""Pose front end (pycolmap SfM) speed and accuracy on this CPU; prints JSON.

(a) the 20 LLFF fern photos at 504x378: seconds per SfM stage, registered images, median
    relative rotation error against ``poses_bounds.npy`` and Sim(3) camera-centre ATE;
(b) a synthetic video of the procedural room (``langfield.synthetic.video.render_video``,
    120 frames at 640x480 by default; rendering takes minutes, so the video and its
    ground-truth dataset are cached under ``--work``): frame preparation and SfM seconds
    per stage, registered frames, ATE after Sim(3) alignment as % of the trajectory extent.

Each mapper in ``--mappers`` is measured; the mappers share one feature extraction and
matching (the stage markers of ``run_sfm`` keep them), so their map/undistort seconds
are their own and the extract/match seconds are the first run's.

    python scripts/bench_frontend.py [--work DIR] [--quick] [--skip-video] [--mappers incremental,global]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from langfield.trajectory import ate_percent, median_relative_rotation_deg
from langfield.frontend.export import model_poses
from langfield.frontend.sfm import SfmConfig, run_sfm

FERN = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "llff_fern"


def _sfm_runs(images: list[Path], work: Path, mappers: list[str], sequential: bool, ref: dict[str, np.ndarray],
              base: SfmConfig) -> dict:
    """Run SfM once per mapper in one work dir (extraction and matching shared); accuracy against ``ref``."""
    import pycolmap

    shutil.rmtree(work, ignore_errors=True)
    out: dict = {"mappers": {}}
    for mapper in mappers:
        cfg = dataclasses.replace(base, mapper=mapper)
        t0 = time.perf_counter()
        try:
            res = run_sfm(images, work, cfg, sequential=sequential, progress=True)
        except Exception as exc:  # report a failing mapper, measure the others
            out["mappers"][mapper] = {"error": str(exc).splitlines()[0]}
            continue
        wall = time.perf_counter() - t0
        names, c2w = model_poses(pycolmap.Reconstruction(str(res.model_dir)))
        keep = [k for k, n in enumerate(names) if n in ref]
        est = c2w[keep]
        gt = np.stack([ref[names[k]] for k in keep])
        for stage in ("extract", "match"):
            if stage in res.seconds and stage not in res.resumed:
                out[f"{stage}_s"] = round(res.seconds[stage], 2)
                out[f"{stage}_cpu_s"] = round(res.cpu_seconds.get(stage, 0.0), 2)
        own = {s: round(v, 2) for s, v in res.seconds.items() if s not in res.resumed}
        own_cpu = {s: round(v, 2) for s, v in res.cpu_seconds.items() if s not in res.resumed}
        out["mappers"][mapper] = {
            "stage_s": own,
            "stage_cpu_s": own_cpu,
            "sfm_total_s": round(sum(out.get(f"{s}_s", 0.0) for s in ("extract", "match"))
                                 + own.get("map", 0.0) + own.get("undistort", 0.0), 2),
            "wall_s_this_run": round(wall, 2),
            "registered": len(res.registered), "total": res.total, "dropped": res.dropped,
            "points": res.num_points, "median_triangulation_deg": round(res.median_triangulation_deg, 2),
            "mean_reprojection_error_px": round(res.mean_reprojection_error, 3),
            "median_relative_rotation_error_deg": round(median_relative_rotation_deg(est, gt), 4),
            "ate_sim3_percent_of_extent": round(ate_percent(est, gt), 4),
        }
    return out


def bench_fern(work: Path, mappers: list[str], fern: Path) -> dict:
    from langfield.sources.llff import read_llff

    ref_cap = read_llff(fern, images="images_8")
    images = sorted(f.image_path for f in ref_cap.frames)
    ref = {f.name: f.c2w for f in ref_cap.frames}
    w, h = ref_cap.frames[0].intrinsics.width, ref_cap.frames[0].intrinsics.height
    res = _sfm_runs(images, work / "fern_sfm", mappers, False, ref, SfmConfig())
    return {"images": len(images), "size": [w, h], **res}


def _video(work: Path, n: int, w: int, h: int) -> tuple[Path, Path, float]:
    """The cached synthetic video and its ground-truth dataset (rendered on first use)."""
    from langfield.synthetic.video import render_video

    d = work / f"video_{n}_{w}x{h}"
    mp4, gt = d / "video.mp4", d / "gt"
    if mp4.is_file() and (gt / "transforms.json").is_file():
        return mp4, gt, 0.0
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    t0 = time.perf_counter()
    render_video(mp4, seed=0, n_frames=n, width=w, height=h, gt_dir=gt)
    return mp4, gt, time.perf_counter() - t0


def _frames(mp4: Path, out: Path, n: int) -> tuple[list[Path], list[int], str]:
    """Selected frames and their video indices: H1's prepare_frames when present, else every frame via OpenCV."""
    shutil.rmtree(out, ignore_errors=True)
    try:
        from langfield.frontend.frames import FrameConfig, prepare_frames
    except ImportError:
        import cv2

        out.mkdir(parents=True)
        cap = cv2.VideoCapture(str(mp4))
        paths, idx = [], []
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            p = out / f"frame_{len(idx):06d}.png"
            cv2.imwrite(str(p), bgr)
            paths.append(p)
            idx.append(len(idx))
        return paths, idx, "opencv decode of every frame (langfield.frontend.frames not available)"
    fs = prepare_frames(mp4, out, FrameConfig(num_frames=n), progress=True)
    return list(fs.paths), [int(i) for i in fs.source_index], "langfield.frontend.frames.prepare_frames"


def bench_video(work: Path, mappers: list[str], n: int, w: int, h: int) -> dict:
    from langfield.sources import load_dataset

    mp4, gt_dir, render_s = _video(work, n, w, h)
    t0 = time.perf_counter()
    paths, idx, how = _frames(mp4, work / f"video_{n}_{w}x{h}" / "frames", n)
    frames_s = time.perf_counter() - t0
    gt = load_dataset(gt_dir, eval_every=0)
    by_name = {Path(f.name).name: f.c2w for f in gt.frames}
    ref = {p.name: by_name[f"frame_{i:06d}.png"] for p, i in zip(paths, idx)}
    res = _sfm_runs(paths, work / f"video_{n}_{w}x{h}" / "sfm", mappers, True, ref, SfmConfig())
    return {"frames": n, "size": [w, h], "render_s": round(render_s, 1), "frames_s": round(frames_s, 2),
            "frames_by": how, "selected": len(paths), **res}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/langfield_bench_frontend"),
                    help="work directory (the rendered video is cached here)")
    ap.add_argument("--mappers", default="incremental,global", help="comma-separated mappers to measure")
    ap.add_argument("--quick", action="store_true", help="small video (40 frames at 320x240)")
    ap.add_argument("--skip-video", action="store_true")
    ap.add_argument("--skip-fern", action="store_true")
    ap.add_argument("--fern", type=Path, default=FERN, help="LLFF fern scene directory")
    args = ap.parse_args()
    mappers = [m for m in args.mappers.split(",") if m]
    import pycolmap

    report: dict = {"cpu_count": os.cpu_count(), "load_average_1min_at_start": os.getloadavg()[0],
                    "pycolmap": pycolmap.__version__}
    if not args.skip_fern:
        report["fern"] = bench_fern(args.work, mappers, args.fern)
    if not args.skip_video:
        n, w, h = (40, 320, 240) if args.quick else (120, 640, 480)
        report["video"] = bench_video(args.work, mappers, n, w, h)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
