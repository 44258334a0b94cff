"""The pose front end's acceptance figures (issue 13, "Done means" 1-2); prints JSON.

fern: the 20 real LLFF fern photos (images_8, 504x378) without their poses through
``langfield poses`` (registration, relative rotation error against poses_bounds.npy,
SfM seconds), then ``langfield reconstruct PHOTOS`` against ``langfield reconstruct``
of the LLFF dataset with its own poses (held-out PSNR of both, same iterations and split).

video: a synthetic 640x480 video of the generator's room (--frames frames, rendered once
into --work) through ``langfield reconstruct VIDEO`` (registration, Sim(3)-aligned ATE as
% of the trajectory's extent, held-out PSNR, wall time) against training on the
generator's true poses of the same selected frames.

    python scripts/eval_frontend.py --work /tmp/lf_frontend [--only fern|video] [--iterations 2000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Optional

from langfield.cli import main as langfield
from langfield.eval.poses import compare_poses
from langfield.io import atomic_write_json

FERN = Path(__file__).resolve().parents[2] / "shared" / "data" / "llff_fern"


def _run(args: list[str]) -> float:
    t0 = time.perf_counter()
    rc = langfield(args)
    if rc != 0:
        raise SystemExit(f"langfield {' '.join(args)} failed with exit code {rc}")
    return time.perf_counter() - t0


def _psnr(scene: Path) -> float:
    return float(json.loads((scene / "eval" / "report.json").read_text())["mean_psnr"])


def _fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    return path


def fern(work: Path, iterations: int, fern_dir: Path) -> dict:
    out: dict = {}
    ds = _fresh(work / "fern_poses")
    out["poses_s"] = _run(["poses", str(fern_dir / "images_8"), "--out", str(ds), "--quiet"])
    out["sfm_report"] = json.loads((ds / "sfm_report.json").read_text())
    out["accuracy"] = compare_poses(ds, fern_dir, truth_images="images_8")
    common = ["--iterations", str(iterations), "--features", "none", "--quiet"]
    photos, llff = _fresh(work / "fern_photos_scene"), _fresh(work / "fern_llff_scene")
    out["reconstruct_photos_s"] = _run(["reconstruct", str(fern_dir / "images_8"), "--out", str(photos), *common])
    out["reconstruct_llff_s"] = _run(["reconstruct", str(fern_dir), "--images", "images_8", "--out", str(llff), *common])
    out["psnr_photos"], out["psnr_llff_poses"] = _psnr(photos), _psnr(llff)
    out["psnr_gap_db"] = out["psnr_llff_poses"] - out["psnr_photos"]
    return out


def _sfm_points_in_truth(video_data: Path, gt: Path, out_ply: Path) -> int:
    """The video dataset's sparse points moved into the true world by the Sim(3) that aligns its camera centres
    onto the true ones (``compare_poses``' alignment); written as a PLY at ``out_ply``, returns the count."""
    import numpy as np

    from langfield.eval.poses import _poses_by_stem
    from langfield.frontend.export import write_points_ply
    from langfield.sources.points import read_ply_points
    from langfield.trajectory import align_trajectory

    est, truth = _poses_by_stem(video_data), _poses_by_stem(gt)
    common = sorted(set(est) & set(truth))
    _, (rot, trans, scale) = align_trajectory(np.stack([est[k] for k in common]), np.stack([truth[k] for k in common]),
                                              with_scale=True)
    meta = json.loads((video_data / "transforms.json").read_text())
    xyz, rgb = read_ply_points(video_data / meta["ply_file_path"])
    write_points_ply(out_ply, scale * xyz.astype(np.float64) @ rot.T + trans, rgb)
    return len(xyz)


def _truth_dataset(gt: Path, mp4: Path, names: set[str], out: Path, init_from: Optional[Path] = None) -> Path:
    """The true poses of the selected frames with the video's own decoded pixels (so both runs fit the same
    compressed images; the generator's lossless renders would favour the true-pose run by the codec's loss).

    ``init_from``: a video dataset whose SfM points (aligned into the true world) replace the generator's exact
    surface points as the initial Gaussians, so both runs also start from the same kind of point cloud."""
    import cv2

    meta = json.loads((gt / "transforms.json").read_text())
    frames = [dict(f) for f in meta["frames"] if Path(f["file_path"]).stem in names]
    want = {int(Path(f["file_path"]).stem.split("_")[-1]): f for f in frames}
    (out / "images").mkdir(parents=True)
    cap = cv2.VideoCapture(str(mp4))
    index = 0
    while want:
        ok, bgr = cap.read()
        if not ok:
            raise SystemExit(f"{mp4}: ended before frame {min(want)}")
        f = want.pop(index, None)
        if f is not None:
            name = Path(f["file_path"]).name
            cv2.imwrite(str(out / "images" / name), bgr)
            f["file_path"] = f"images/{name}"
            f.pop("depth_file_path", None)
            f.pop("semantics_path", None)
        index += 1
    cap.release()
    meta["frames"] = frames
    if init_from is not None:
        _sfm_points_in_truth(init_from, gt, out / "sfm_points.ply")
        meta["ply_file_path"] = "sfm_points.ply"
    elif meta.get("ply_file_path"):
        shutil.copy(gt / meta["ply_file_path"], out / Path(meta["ply_file_path"]).name)
        meta["ply_file_path"] = Path(meta["ply_file_path"]).name
    atomic_write_json(out / "transforms.json", meta)
    return out


def video(work: Path, iterations: int, n_video: int, n_frames: int, downscale: int,
          given: Optional[tuple[Path, Path]] = None, reuse: bool = False, truth_init: str = "generator",
          extra: tuple[str, ...] = ()) -> dict:
    from langfield.synthetic.video import render_video

    mp4, gt = given or (work / f"room_{n_video}.mp4", work / f"room_{n_video}_gt")
    out: dict = {"video": str(mp4), "selected_target": n_frames}
    if not mp4.is_file() or not (gt / "transforms.json").is_file():
        t0 = time.perf_counter()
        render_video(mp4, seed=7, n_frames=n_video, width=640, height=480, gt_dir=_fresh(gt))
        out["render_video_s"] = time.perf_counter() - t0
    scene = work / "video_scene"
    common = ["--iterations", str(iterations), "--features", "none", "--downscale", str(downscale), "--quiet", *extra]
    if not (reuse and (scene / "eval" / "report.json").is_file()):
        out["reconstruct_video_s"] = _run(["reconstruct", str(mp4), "--out", str(_fresh(scene)),
                                           "--frames.num-frames", str(n_frames), *common])
    report = json.loads((scene / "data" / "sfm_report.json").read_text())
    out["sfm_report"] = report
    acc = compare_poses(scene / "data", gt)
    out["accuracy"] = acc
    made = json.loads((scene / "data" / "transforms.json").read_text())
    names = {Path(f["file_path"]).stem for f in made["frames"]}
    truth = _truth_dataset(gt, mp4, names, _fresh(work / "truth_selected"),
                           init_from=scene / "data" if truth_init == "sfm" else None)
    out["truth_init"] = truth_init
    gt_scene = _fresh(work / "video_gt_scene")
    out["reconstruct_true_poses_s"] = _run(["reconstruct", str(truth), "--out", str(gt_scene), *common])
    out["psnr_video"], out["psnr_true_poses"] = _psnr(scene), _psnr(gt_scene)
    out["psnr_gap_db"] = out["psnr_true_poses"] - out["psnr_video"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True, help="work directory (the rendered video is cached here)")
    ap.add_argument("--only", choices=["fern", "video"], default=None)
    ap.add_argument("--iterations", type=int, default=2000)
    ap.add_argument("--video-frames", type=int, default=240, help="frames in the synthetic video")
    ap.add_argument("--frames", type=int, default=120, help="--frames.num-frames (frames kept for SfM)")
    ap.add_argument("--downscale", type=int, default=2, help="training --downscale of the video runs")
    ap.add_argument("--fern", type=Path, default=FERN)
    ap.add_argument("--video", type=Path, default=None, help="an existing synthetic video (with --gt: its true poses)")
    ap.add_argument("--reuse", action="store_true", help="keep a finished video scene from an earlier run")
    ap.add_argument("--gt", type=Path, default=None, help="the true-pose dataset of --video (render_video's gt_dir)")
    ap.add_argument("--truth-init", choices=["generator", "sfm"], default="generator",
                    help="initial points of the true-pose run: the generator's exact surface points, or the video "
                         "SfM's sparse points aligned into the true world (the same start as the video run)")
    ap.add_argument("--train-arg", action="append", default=[],
                    help="extra reconstruct argument for both video runs (repeatable), e.g. --train-arg=--optimize-poses")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    result: dict = {}
    if a.only in (None, "fern"):
        result["fern"] = fern(a.work, a.iterations, a.fern)
    if a.only in (None, "video"):
        given = (a.video, a.gt) if a.video is not None and a.gt is not None else None
        result["video"] = video(a.work, a.iterations, a.video_frames, a.frames, a.downscale, given, a.reuse,
                                a.truth_init, tuple(a.train_arg))
    json.dump(result, sys.stdout, indent=2, default=str)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
