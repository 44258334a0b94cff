"""Time the training-free lift against latent training on one scene; prints JSON.

    .venv/bin/python scripts/bench_lift.py SCENE [--views 60] [--latent-iterations 2000] [--backend cpu]

SCENE is a finished scene with a language field (its features cache and codec are reused, so feature
extraction is not timed: the issue's target is "after feature extraction").  ``--views`` cycles the
scene's training views up to that count (so 60 views of a 48-view scene repeat 12).  Reported: the
contribution pass per view (1 channel = visibility only, and the lift's 1 + L + L*D channels), the
whole lift (weighted mean and with Weiszfeld), and sequential latent training of the same latents
(``train_latents``, ``--latent-iterations`` steps; measured over ``--latent-sample`` steps and scaled
when that is smaller, said in the JSON).  No files are written.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import langfield  # noqa: F401  (first: sets the OpenMP spin policy before torch loads)
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scene", type=Path)
    ap.add_argument("--views", type=int, default=60)
    ap.add_argument("--latent-iterations", type=int, default=2000)
    ap.add_argument("--latent-sample", type=int, default=200, help="latent steps actually timed (scaled up)")
    ap.add_argument("--robust-iterations", type=int, default=3)
    ap.add_argument("--backend", default="cpu")
    args = ap.parse_args()

    from langfield.scene import load_scene
    from langfield.sources import load_capture, load_views
    from langfield.train.language import LanguageConfig, prepare_language, train_latents
    from langfield.train.lift import gaussian_contributions, lift_latents

    scene = load_scene(args.scene)
    settings = scene.settings
    recorded = dict(scene.config.get("language_config") or {})
    names = {f.name for f in dataclasses.fields(LanguageConfig)}
    lang = LanguageConfig(**{k: v for k, v in recorded.items() if k in names})
    capture = load_capture(Path(settings.data or ""), images=settings.train.images, eval_every=settings.train.eval_every)
    views = load_views(capture, capture.train_ids, downscale=settings.train.downscale, device="cpu")
    t0 = time.perf_counter()
    targets = prepare_language(lang, capture, views, args.scene, seed=int(settings.train.seed), progress=False,
                               reuse_codec=True)
    t_targets = time.perf_counter() - t0
    assert targets is not None
    cycled = [views[i % len(views)] for i in range(args.views)]
    params = torch.nn.ParameterDict({k: torch.nn.Parameter(v.detach().clone(), requires_grad=False)
                                     for k, v in scene.params.items() if k != "latents"})

    v0 = views[0]
    gaussian_contributions(params, v0, backend=args.backend)  # warm-up (JIT build, caches)
    reps = 5
    t0 = time.perf_counter()
    for _ in range(reps):
        gaussian_contributions(params, v0, backend=args.backend)
    per_view_1ch = (time.perf_counter() - t0) / reps
    masks = torch.cat([torch.ones_like(targets.valid[v0.name][..., :1]), targets.valid[v0.name]], -1).float()
    t0 = time.perf_counter()
    for _ in range(reps):
        gaussian_contributions(params, v0, targets.targets[v0.name], masks, backend=args.backend)
    per_view_lift = (time.perf_counter() - t0) / reps

    res = lift_latents(params, cycled, targets, backend=args.backend)
    rob = lift_latents(params, cycled, targets, robust_iterations=args.robust_iterations, backend=args.backend)

    sample = min(args.latent_sample, args.latent_iterations)
    p2 = torch.nn.ParameterDict({k: torch.nn.Parameter(v.detach().clone(), requires_grad=False)
                                 for k, v in params.items()})
    stats = train_latents(p2, views, targets, dataclasses.replace(lang, iterations=sample), backend=args.backend,
                          progress=False)
    latent_s = stats["latent_seconds"] * args.latent_iterations / sample

    print(json.dumps({
        "scene": str(args.scene), "num_gaussians": int(params["means"].shape[0]),
        "width": int(v0.width), "height": int(v0.height), "views": args.views, "unique_views": len(views),
        "levels": targets.num_levels, "latent_dim": targets.latent_dim, "backend": args.backend,
        "targets_seconds_cached_features": round(t_targets, 3),
        "contribution_pass_per_view_s_1ch": round(per_view_1ch, 4),
        "contribution_pass_per_view_s_lift_channels": round(per_view_lift, 4),
        "lift_seconds_weighted_mean": round(res.seconds, 3),
        f"lift_seconds_weiszfeld_{args.robust_iterations}": round(rob.seconds, 3),
        "latent_training_seconds": round(latent_s, 3), "latent_iterations": args.latent_iterations,
        "latent_iterations_timed": sample,
        "speedup_lift_vs_training": round(latent_s / max(res.seconds, 1e-9), 1),
        "threads": torch.get_num_threads(),
    }, indent=2))


if __name__ == "__main__":
    main()
