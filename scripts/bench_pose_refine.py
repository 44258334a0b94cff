"""Camera-pose refinement on the synthetic room: ``reconstruct --optimize-poses`` against perturbed poses.

Generates the procedural room (seed 5, 320x240 by default), writes a copy of the dataset whose
*training* poses are each off by exactly ``--rot-deg`` degrees about a random axis and
``--trans`` metres in a random direction (applied in the camera frame; the held-out poses stay
true), and reconstructs three scenes through ``langfield.train.reconstruct`` as the CLI does:

* ``true``: the true poses (the target);
* ``perturbed``: the perturbed poses, no refinement;
* ``perturbed_optimized``: the perturbed poses with ``optimize_poses`` (the held-out cameras then
  get test-time pose optimisation against the frozen Gaussians, ``eval_pose_steps``).

Prints one JSON document: the training-pose error (mean/max rotation in degrees, camera centre
in metres) before and after refinement, raw and after the best rigid alignment of the refined
cameras to the true ones (the refinement may move the whole scene a little: a global
rotation/translation of scene plus cameras renders the same images), the held-out PSNR of every
run and the gap to the true-pose run.  With ``--eval-refine-all`` the true and perturbed runs'
held-out views are also scored after the same test-time pose optimisation, which separates what
the refinement of the training poses buys from what the held-out-pose fit buys.

    python scripts/bench_pose_refine.py --iterations 3000
    python scripts/bench_pose_refine.py --quick      # 64x48, 300 steps: a smoke run

``--runs`` picks some of the three runs and ``--reuse`` (with ``--out``) keeps the finished runs of an earlier
call with the same protocol, so that the pose settings (``--opt KEY=JSON`` on the optimised run's TrainConfig)
can be varied without retraining the two reference runs; the pose errors need all three.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from langfield.eval.report import evaluate_and_report  # noqa: E402
from langfield.scene import load_scene  # noqa: E402
from langfield.synthetic import generate_scene  # noqa: E402
from langfield.train.camera_opt import pose_errors, refine_eval_poses, so3_exp  # noqa: E402
from langfield.train.config import TrainConfig  # noqa: E402
from langfield.train.reconstruct import reconstruct  # noqa: E402

# OpenGL (nerfstudio transforms.json) <-> OpenCV camera axes: flip y and z.
_FLIP = np.diag([1.0, -1.0, -1.0, 1.0])


def perturb_dataset(src: Path, dst: Path, rot_deg: float, trans: float, seed: int) -> None:
    """Copy ``src`` to ``dst`` with every training frame's c2w replaced by ``c2w @ E`` (OpenCV camera frame)."""
    shutil.copytree(src, dst)
    meta = json.loads((dst / "transforms.json").read_text())
    train = set(meta["train_filenames"])
    rng = np.random.default_rng(seed)
    for frame in meta["frames"]:
        if frame["file_path"] not in train:
            continue
        axis = rng.normal(size=3)
        step = rng.normal(size=3)
        e = np.eye(4)
        e[:3, :3] = so3_exp(torch.from_numpy(axis / np.linalg.norm(axis) * np.radians(rot_deg))).numpy()
        e[:3, 3] = step / np.linalg.norm(step) * trans
        c2w_gl = np.asarray(frame["transform_matrix"], dtype=np.float64)
        # c2w_gl = c2w_cv @ F, so c2w_cv @ E in OpenGL axes is c2w_gl @ F E F.
        frame["transform_matrix"] = (c2w_gl @ _FLIP @ e @ _FLIP).tolist()
    (dst / "transforms.json").write_text(json.dumps(meta, indent=2))


def _viewmats(scene_dir: Path, split: str) -> dict[str, torch.Tensor]:
    return {c.name: torch.from_numpy(np.linalg.inv(c.c2w)) for c in load_scene(scene_dir).cameras_of(split)}


def _rigid_align(viewmats: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """``viewmats`` after the rigid world transform that best maps their camera centres onto the true ones."""
    def centres(v: torch.Tensor) -> np.ndarray:
        return (-(v[:, :3, :3].transpose(-1, -2) @ v[:, :3, 3:])[..., 0]).numpy()

    a, b = centres(viewmats), centres(truth)
    ma, mb = a.mean(0), b.mean(0)
    u, _, vt = np.linalg.svd((b - mb).T @ (a - ma))
    d = np.sign(np.linalg.det(u @ vt))
    r = u @ np.diag([1.0, 1.0, d]) @ vt  # world rotation mapping a onto b
    world = np.eye(4)
    world[:3, :3], world[:3, 3] = r, mb - r @ ma
    # A world transform W maps c2w to W c2w, i.e. viewmat to viewmat W^-1.
    return viewmats @ torch.from_numpy(np.linalg.inv(world))


def _psnr(report: dict) -> float:
    for key in ("psnr", "mean_psnr"):
        if key in report:
            return float(report[key])
    mean = report.get("mean") or report.get("metrics") or {}
    return float(mean["psnr"])


def run(data: Path, out: Path, cfg: TrainConfig) -> dict:
    t0 = time.time()
    result = reconstruct(data, out, cfg, overwrite=True, progress=False, evaluate=evaluate_and_report)
    assert result is not None
    return {"psnr": round(_psnr(result.report), 3), "num_gaussians": result.num_gaussians,
            "wall_s": round(time.time() - t0, 1)}


def _eval_refined_psnr(scene_dir: Path, data: Path, cfg: TrainConfig) -> float:
    """Held-out PSNR after test-time pose optimisation of the held-out cameras (Gaussians frozen)."""
    from langfield.eval.report import evaluate_views
    from langfield.sources.dataset import load_dataset, load_split_views

    scene = load_scene(scene_dir)
    capture = load_dataset(data, eval_every=cfg.eval_every)
    _, evals = load_split_views(capture, downscale=cfg.downscale, device="cpu")
    evals = refine_eval_poses(scene.params, evals, steps=cfg.eval_pose_steps, lr_rotation=cfg.pose_lr_rotation,
                              lr_translation=cfg.pose_lr_translation * float(capture.scene_scale),
                              sh_degree=cfg.sh_degree, backend=cfg.backend, ssim_lambda=cfg.ssim_lambda,
                              orbit=cfg.pose_orbit)
    rows, _ = evaluate_views(scene.params, evals, sh_degree=cfg.sh_degree, background=cfg.background,
                             backend=cfg.backend)
    return round(float(np.mean([r["psnr"] for r in rows])), 3)


RUNS = ("true", "perturbed", "perturbed_optimized")


def _parse_opt(items: list[str]) -> dict[str, Any]:
    """``KEY=JSON`` pairs -> TrainConfig changes (names checked against the dataclass)."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in names:
            raise ValueError(f"--opt {item!r}: expected KEY=JSON with KEY a TrainConfig field")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--opt {item!r}: the value is not JSON ({exc.msg})") from None
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=5, help="synthetic room seed (also the training seed)")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--n-train", type=int, default=48)
    ap.add_argument("--n-eval", type=int, default=8)
    ap.add_argument("--iterations", type=int, default=3000)
    ap.add_argument("--rot-deg", type=float, default=2.0, help="rotation error of every training pose, degrees")
    ap.add_argument("--trans", type=float, default=0.05, help="position error of every training pose, metres")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--pose-lr", type=float, default=None, help="pose_lr_rotation = pose_lr_translation")
    ap.add_argument("--eval-pose-steps", type=int, default=None)
    ap.add_argument("--eval-refine-all", action="store_true",
                    help="also score the true/perturbed runs after test-time held-out pose optimisation")
    ap.add_argument("--opt", action="append", default=[], metavar="KEY=JSON",
                    help="a TrainConfig field of the perturbed_optimized run, e.g. pose_orbit=false (repeatable)")
    ap.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated subset of {','.join(RUNS)}")
    ap.add_argument("--reuse", action="store_true",
                    help="keep the data and the finished runs of an earlier call with the same protocol in --out")
    ap.add_argument("--quick", action="store_true", help="64x48, 16+4 views, 300 steps")
    ap.add_argument("--out", type=Path, default=None, help="work directory (default: a temporary one)")
    args = ap.parse_args()
    if args.quick:
        args.width, args.height, args.n_train, args.n_eval, args.iterations = 64, 48, 16, 4, 300
    selected = [r.strip() for r in args.runs.split(",") if r.strip()]
    if not selected or any(r not in RUNS for r in selected):
        print(f"error: --runs {args.runs!r}: expected a comma-separated subset of {','.join(RUNS)}", file=sys.stderr)
        return 2
    try:
        opt_changes = _parse_opt(args.opt)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    work = args.out or Path(tempfile.mkdtemp(prefix="bench_pose_refine_"))
    work.mkdir(parents=True, exist_ok=True)
    protocol = {k: getattr(args, k) for k in ("seed", "width", "height", "n_train", "n_eval", "iterations",
                                              "rot_deg", "trans", "backend")}
    stamp = work / "protocol.json"
    reuse = args.reuse and stamp.exists() and json.loads(stamp.read_text()) == protocol
    true_data = work / "data"
    noisy_data = work / "data_perturbed"
    if not reuse:
        for stale in [true_data, noisy_data] + [work / name for name in RUNS]:
            if stale.exists():
                shutil.rmtree(stale)
        generate_scene(true_data, seed=args.seed, width=args.width, height=args.height, n_train=args.n_train,
                       n_eval=args.n_eval)
        perturb_dataset(true_data, noisy_data, args.rot_deg, args.trans, seed=args.seed)
        stamp.write_text(json.dumps(protocol))

    base = TrainConfig(iterations=args.iterations, seed=args.seed, backend=args.backend, checkpoint_every=0)
    if args.pose_lr is not None:
        base = dataclasses.replace(base, pose_lr_rotation=args.pose_lr, pose_lr_translation=args.pose_lr)
    if args.eval_pose_steps is not None:
        base = dataclasses.replace(base, eval_pose_steps=args.eval_pose_steps)
    opt = dataclasses.replace(base, optimize_poses=True, **opt_changes)

    report: dict = {
        "protocol": protocol,
        "config": {k: getattr(opt, k) for k in ("pose_lr_rotation", "pose_lr_translation", "pose_lr_final_factor",
                                                 "pose_orbit", "pose_l2", "eval_pose_steps")},
        "torch_threads": torch.get_num_threads(),
    }
    runs = {"true": (true_data, base), "perturbed": (noisy_data, base), "perturbed_optimized": (noisy_data, opt)}
    for name, (data, cfg) in runs.items():
        saved = work / f"{name}.json"
        if name not in selected:
            if saved.exists():
                report[name] = json.loads(saved.read_text())
            continue
        report[name] = run(data, work / name, cfg)
        if cfg.optimize_poses:  # what a later --reuse call reports as this run's settings
            report[name]["pose_config"] = {k: getattr(cfg, k) for k in report["config"]}
        saved.write_text(json.dumps(report[name]))
        print(json.dumps({name: report[name]}), file=sys.stderr, flush=True)
    if not all(name in report for name in RUNS):
        report["work_dir"] = str(work)
        print(json.dumps(report, indent=2))
        return 0

    truth = _viewmats(work / "true", "train")
    names = sorted(truth)
    true_stack = torch.stack([truth[n] for n in names])
    given = _viewmats(work / "perturbed", "train")
    refined = _viewmats(work / "perturbed_optimized", "train")
    given_stack = torch.stack([given[n] for n in names])
    refined_stack = torch.stack([refined[n] for n in names])
    report["pose_error_before"] = pose_errors(given_stack, true_stack)
    report["pose_error_after"] = pose_errors(refined_stack, true_stack)
    report["pose_error_after_aligned"] = pose_errors(_rigid_align(refined_stack, true_stack), true_stack)
    report["psnr_gap_optimized_vs_true_db"] = round(report["true"]["psnr"] - report["perturbed_optimized"]["psnr"], 3)
    report["psnr_gap_perturbed_vs_true_db"] = round(report["true"]["psnr"] - report["perturbed"]["psnr"], 3)
    if args.eval_refine_all:
        for name in ("true", "perturbed"):
            report[name]["psnr_eval_poses_refined"] = _eval_refined_psnr(work / name, runs[name][0], opt)
    report["work_dir"] = str(work)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
