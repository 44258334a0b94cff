"""Benchmark the rasterizer: native CPU (and CUDA when present) vs the torch reference.

Prints one JSON document.  For every Gaussian count x channel count x image
size it times the whole differentiable pipeline (projection, tile binning,
compositing of a ``[1, N, ch]`` colour tensor) forward, and forward +
backward (gradients w.r.t. means, quats, scales, opacities and colours),
as the median of ``--repeats`` runs after one warm-up.  A separate section
times projection alone: native vs reference vs gsplat's pure-torch
``_fully_fused_projection``.  ``pose_gradients`` gives the cost of the camera-pose
gradient: native forward + backward with ``viewmats.requires_grad`` vs without,
as a ratio (320x240, 16 channels).  ``contribution`` times the per-Gaussian contribution pass of
the language lift (``langfield/train/lift.py``): forward with zero features plus the backward of
compositing with per-pixel targets as the output gradient, w.r.t. the features only (320x240;
1 channel = visibility, 9 = the lift's 1 + L + L*D with 2 levels of 3).

Scenes are random Gaussians in a box in front of the camera (depth 2..8,
x/y inside the field of view) with scales chosen so an average Gaussian
covers a few to tens of pixels at the given resolution.

The speed-up over the reference is given two ways: ``speedup_fwdbwd_vs_reference``
divides the two medians (the native timings come first, the reference's a
minute later), and ``speedup_fwdbwd_interleaved`` is the median of per-round
ratios where each reference run is paired with native runs timed just before
it, so that both see the same machine (on a shared 2-core VM the speed of
either drifts by 20-40% over minutes).  On a GPU, gsplat's CUDA
``rasterization`` (same scene, same channels) is timed beside ours.

    python scripts/bench_rasterizer.py --quick
    python scripts/bench_rasterizer.py --skip-reference-above 50000
    python scripts/bench_rasterizer.py --pose-only --counts 10000 50000   # cost of the pose gradient
    python scripts/bench_rasterizer.py --contribution-only --counts 50000  # the lift's contribution pass
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from langfield.render import _build, native  # noqa: E402
from langfield.render import reference  # noqa: E402

TILE = 16


def make_scene(n: int, width: int, height: int, ch: int, device: str, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    fx = 0.8 * width
    z = torch.rand(n, generator=g) * 6.0 + 2.0
    xy = (torch.rand(n, 2, generator=g) * 2 - 1) * z[:, None] * torch.tensor([0.55 * width / fx, 0.55 * height / fx])
    # Pixel std ~ fx * s / z: 1..6 px at 320 wide, scaled with the resolution.
    lo, hi = math.log(0.012), math.log(0.06)
    scales = torch.exp(torch.rand(n, 3, generator=g) * (hi - lo) + lo)
    scene = {
        "means": torch.cat([xy, z[:, None]], 1),
        "quats": torch.randn(n, 4, generator=g),
        "scales": scales,
        "opacities": torch.rand(n, generator=g) * 0.7 + 0.1,
        "colors": torch.rand(1, n, ch, generator=g),
        "viewmats": torch.eye(4)[None],
        "Ks": torch.tensor([[[fx, 0.0, width / 2], [0.0, fx, height / 2], [0.0, 0.0, 1.0]]]),
    }
    return {k: v.to(device) for k, v in scene.items()}


def pipeline(mod, s: dict, width: int, height: int, backward: bool, pose_grad: bool = False) -> None:
    leaves = {}
    for k in ("means", "quats", "scales", "opacities", "colors"):
        leaves[k] = s[k].detach().requires_grad_(backward)
    # With pose_grad the backward also computes v_viewmats (camera-pose gradients).
    viewmats = s["viewmats"].detach().requires_grad_(backward and pose_grad)
    radii, means2d, depths, conics = mod.project_gaussians(
        leaves["means"], leaves["quats"], leaves["scales"], viewmats, s["Ks"], width, height
    )
    tw, th = (width + TILE - 1) // TILE, (height + TILE - 1) // TILE
    _, ids, flat = mod.isect_tiles(means2d, radii, depths, TILE, tw, th)
    offsets = mod.isect_offset_encode(ids, 1, tw, th)
    out, alpha = mod.rasterize_to_pixels(
        means2d, conics, leaves["colors"], leaves["opacities"][None], radii, width, height, TILE, offsets, flat
    )
    if backward:
        (out.sum() + alpha.sum()).backward()


def timeit(fn: Callable[[], None], repeats: int, device: str, warmup: bool = True) -> float:
    """Median wall time in ms (after one warm-up run unless ``warmup`` is False)."""

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    if warmup:
        fn()
        sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return round(statistics.median(times), 2)


def gsplat_cuda_pipeline(s: dict, width: int, height: int, backward: bool) -> None:
    """gsplat's CUDA ``rasterization`` on the same scene (channels as raw colours, no SH)."""
    from gsplat import rasterization

    leaves = {k: s[k].detach().requires_grad_(backward) for k in ("means", "quats", "scales", "opacities", "colors")}
    out, alpha, _ = rasterization(leaves["means"], leaves["quats"], leaves["scales"], leaves["opacities"],
                                  leaves["colors"][0], s["viewmats"], s["Ks"], width, height, packed=False,
                                  tile_size=TILE)
    if backward:
        (out.sum() + alpha.sum()).backward()


def interleaved_ratio(native_fn: Callable[[], None], reference_fn: Callable[[], None], rounds: int,
                      native_repeats: int) -> tuple[float, list[float], float]:
    """Median over rounds of reference_time / native_time, each round timing native then reference back to back.

    Returns (median ratio, per-round ratios, median reference ms).
    """
    ratios, refs = [], []
    for _ in range(rounds):
        nat = timeit(native_fn, native_repeats, "cpu", warmup=False)
        ref_ms = timeit(reference_fn, 1, "cpu", warmup=False)
        refs.append(ref_ms)
        ratios.append(round(ref_ms / max(nat, 1e-3), 1))
    return statistics.median(ratios), ratios, statistics.median(refs)


def bench_projection(n: int, width: int, height: int, repeats: int) -> dict:
    s = make_scene(n, width, height, 1, "cpu")
    args = (s["means"], s["quats"], s["scales"], s["viewmats"], s["Ks"], width, height)
    res = {
        "n": n,
        "native_cpu_ms": timeit(lambda: native.project_gaussians(*args), repeats, "cpu"),
        "reference_ms": timeit(lambda: reference.project_gaussians(*args), repeats, "cpu"),
    }

    def gs() -> None:
        from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci

        covars, _ = _quat_scale_to_covar_preci(s["quats"], s["scales"], compute_preci=False)
        _fully_fused_projection(s["means"], covars, s["viewmats"], s["Ks"], width, height)

    try:
        res["gsplat_torch_ms"] = timeit(gs, repeats, "cpu")
    except Exception as exc:  # gsplat missing, or its private API moved between versions
        res["gsplat_torch_error"] = f"{type(exc).__name__}: {exc}"
    return res


def bench_pose_gradients(counts: list[int], devices: list[str], repeats: int) -> list[dict]:
    """Cost of the camera-pose gradient: forward + backward with vs without ``viewmats.requires_grad``.

    320x240, 16 channels; ``ratio`` = with / without (median of interleaved rounds, so both see the same
    machine load).
    """
    rows = []
    for dev in devices:
        for n in counts:
            s = make_scene(n, 320, 240, 16, dev)
            without, with_pose = [], []
            for _ in range(max(repeats, 3)):
                without.append(timeit(lambda: pipeline(native, s, 320, 240, True), 1, dev))
                with_pose.append(timeit(lambda: pipeline(native, s, 320, 240, True, pose_grad=True), 1, dev))
            rows.append({
                "device": dev, "n": n, "fwdbwd_ms": statistics.median(without),
                "fwdbwd_pose_grad_ms": statistics.median(with_pose),
                "ratio": round(statistics.median(w / max(o, 1e-3) for w, o in zip(with_pose, without)), 3),
            })
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def contribution_pass(mod, s: dict, width: int, height: int, cotangent: torch.Tensor) -> None:
    """The lift's per-Gaussian contribution pass: geometry detached, zero features, the backward of
    compositing with ``cotangent`` [1, H, W, K] as the output gradient (``train.lift.gaussian_contributions``)."""
    n = s["means"].shape[0]
    feats = torch.zeros(1, n, cotangent.shape[-1], device=cotangent.device, requires_grad=True)
    radii, means2d, depths, conics = mod.project_gaussians(s["means"], s["quats"], s["scales"], s["viewmats"],
                                                           s["Ks"], width, height)
    tw, th = (width + TILE - 1) // TILE, (height + TILE - 1) // TILE
    _, ids, flat = mod.isect_tiles(means2d, radii, depths, TILE, tw, th)
    offsets = mod.isect_offset_encode(ids, 1, tw, th)
    out, _ = mod.rasterize_to_pixels(means2d, conics, feats, s["opacities"][None], radii, width, height, TILE,
                                     offsets, flat)
    torch.autograd.grad(out, feats, grad_outputs=cotangent)


def bench_contribution(counts: list[int], devices: list[str], repeats: int) -> list[dict]:
    """Time of the contribution pass per view (320x240) for 1 and 9 target channels, native backends."""
    rows = []
    for dev in devices:
        for n in counts:
            s = make_scene(n, 320, 240, 1, dev)
            row: dict = {"device": dev, "n": n, "width": 320, "height": 240}
            for k in (1, 9):
                cot = torch.rand(1, 240, 320, k, generator=torch.Generator().manual_seed(k)).to(dev)
                row[f"contribution_{k}ch_ms"] = timeit(lambda: contribution_pass(native, s, 320, 240, cot), repeats, dev)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10k/50k Gaussians, 3/16 channels, 320x240 only")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per case (median reported)")
    ap.add_argument("--skip-reference-above", type=int, default=50_000,
                    help="do not run the (slow) torch reference above this many Gaussians")
    ap.add_argument("--reference-channels", type=int, nargs="*", default=[16],
                    help="channel counts for which the reference is timed (it is slow)")
    ap.add_argument("--reference-repeats", type=int, default=3,
                    help="timed runs of the reference per case, after a warm-up (1 = one cold run, faster)")
    ap.add_argument("--interleaved-rounds", type=int, default=3,
                    help="rounds of back-to-back native/reference timing for speedup_fwdbwd_interleaved (0 = off)")
    ap.add_argument("--no-cuda", action="store_true", help="skip CUDA even when a GPU exists")
    ap.add_argument("--no-gsplat", action="store_true", help="do not time gsplat's CUDA rasterization on a GPU")
    ap.add_argument("--threads", type=int, default=0,
                    help="CPU threads (torch.set_num_threads, which also sets the kernels' OpenMP threads); 0 = default")
    ap.add_argument("--counts", type=int, nargs="*", help="override the Gaussian counts")
    ap.add_argument("--channels", type=int, nargs="*", help="override the channel counts")
    ap.add_argument("--contribution-only", action="store_true",
                    help="only the contribution-pass section (the language lift's per-Gaussian weights)")
    ap.add_argument("--pose-only", action="store_true",
                    help="only the pose-gradient section (backward with vs without viewmat gradients)")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    counts = args.counts or ([10_000, 50_000] if args.quick else [10_000, 50_000, 200_000])
    channels = args.channels or ([3, 16] if args.quick else [3, 16, 64])
    sizes = [(320, 240)] if args.quick else [(320, 240), (640, 480)]
    devices = ["cpu"]
    if not args.no_cuda and torch.cuda.is_available() and native.available("cuda"):
        devices.append("cuda")
    if not native.available("cpu"):
        print(json.dumps({"error": native.build_error("cpu")}))
        return 1
    gsplat_cuda = "cuda" in devices and not args.no_gsplat

    report: dict = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "omp_threads": native.num_threads(),
            "torch_threads": torch.get_num_threads(),
            # Which CPU rasterizer ran (the half-row kernels need x86 AVX2 + FMA) and with which flags.
            "cpu_raster_kernels": native._kernels(torch.device("cpu")).raster_variant(),
            "cpu_isa_flags": _build._cpu_isa_flags(),
            "gpu": torch.cuda.get_device_name(0) if "cuda" in devices else None,
            "load_avg": os.getloadavg(),
        },
        "tile_size": TILE,
        "cases": [],
        "projection": [],
    }
    if not args.pose_only:
        report["contribution"] = bench_contribution(counts, devices, args.repeats)
    if args.contribution_only:
        print(json.dumps(report, indent=2))
        return 0
    report["pose_gradients"] = bench_pose_gradients(counts, devices, args.repeats)
    if args.pose_only:
        print(json.dumps(report, indent=2))
        return 0
    for width, height in sizes:
        for n in counts:
            for ch in channels:
                case: dict = {"n": n, "channels": ch, "width": width, "height": height}
                for dev in devices:
                    s = make_scene(n, width, height, ch, dev)
                    case[f"native_{dev}_fwd_ms"] = timeit(lambda: pipeline(native, s, width, height, False),
                                                          args.repeats, dev)
                    case[f"native_{dev}_fwdbwd_ms"] = timeit(lambda: pipeline(native, s, width, height, True),
                                                             args.repeats, dev)
                if n <= args.skip_reference_above and ch in args.reference_channels:
                    s = make_scene(n, width, height, ch, "cpu")
                    # Same protocol as the native timings (warm-up, median): a cold
                    # single run of the reference was up to 1.5x slower and so
                    # inflated the ratio.
                    reps = args.reference_repeats
                    case["reference_fwd_ms"] = timeit(lambda: pipeline(reference, s, width, height, False), reps,
                                                      "cpu", warmup=reps > 1)
                    case["reference_fwdbwd_ms"] = timeit(lambda: pipeline(reference, s, width, height, True), reps,
                                                         "cpu", warmup=reps > 1)
                    case["speedup_fwdbwd_vs_reference"] = round(
                        case["reference_fwdbwd_ms"] / max(case["native_cpu_fwdbwd_ms"], 1e-3), 1
                    )
                    if args.interleaved_rounds > 0:
                        med, ratios, _ = interleaved_ratio(
                            lambda: pipeline(native, s, width, height, True),
                            lambda: pipeline(reference, s, width, height, True),
                            args.interleaved_rounds, args.repeats,
                        )
                        case["speedup_fwdbwd_interleaved"] = med
                        case["speedup_fwdbwd_interleaved_rounds"] = ratios
                if "cuda" in devices and gsplat_cuda:
                    s = make_scene(n, width, height, ch, "cuda")
                    try:
                        case["gsplat_cuda_fwd_ms"] = timeit(lambda: gsplat_cuda_pipeline(s, width, height, False),
                                                            args.repeats, "cuda")
                        case["gsplat_cuda_fwdbwd_ms"] = timeit(lambda: gsplat_cuda_pipeline(s, width, height, True),
                                                               args.repeats, "cuda")
                    except Exception as exc:  # gsplat's CUDA build may be missing on this machine
                        case["gsplat_cuda_error"] = f"{type(exc).__name__}: {exc}"[:300]
                report["cases"].append(case)
                print(json.dumps(case), file=sys.stderr, flush=True)  # progress
    for n in counts:
        report["projection"].append(bench_projection(n, 320, 240, args.repeats))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
