"""Language schedules on ONE geometry, scored by both query protocols; prints a JSON table.

    .venv/bin/python scripts/bench_schedules.py SCENE --out DIR [--variant NAME=SPEC ...]
        [--existing NAME=SCENE ...] [--latent-iterations 1000] [--backend cpu]

SCENE is a finished scene with a language field (its features cache and codec are reused, so every
variant trains against the very same targets; only the language stage differs).  Each ``--variant``
copies SCENE to DIR/NAME, replaces its latents by the language stage of SPEC, records the
contributions and runs ``eval-queries`` (the 2D rendered-view protocol and the 3D-selection one).
SPEC is comma-separated ``LanguageConfig`` overrides, e.g. ``schedule=lift``,
``schedule=sequential,iterations=1000``, ``schedule=sequential,init_from_lift=true,lift_anchor=1``.
``--existing NAME=SCENE`` only evaluates a scene that is already there (e.g. a ``joint`` scene, whose
geometry comes from its own run: the joint schedule trains geometry and latents together).

Per row: the 2D protocol (localisation on the mask, mIoU), the 3D protocol (mIoU of the selection
rendered alone, occlusion-aware mIoU, selection precision; means over (frame, query) pairs as
``eval-queries`` reports them) and the language stage's own seconds (lift and/or latent training, not
feature extraction or the codec).  Figures on a loaded machine are noisy.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any

import langfield  # noqa: F401  (first: sets the OpenMP spin policy before torch loads)
import torch


def _parse_spec(spec: str) -> dict[str, Any]:
    """``a=1,b=true,c=x`` -> {"a": 1, "b": True, "c": "x"} (ints, floats and booleans converted)."""
    out: dict[str, Any] = {}
    for item in filter(None, spec.split(",")):
        key, sep, raw = item.partition("=")
        if not sep:
            raise SystemExit(f"bench_schedules: bad override {item!r} (want KEY=VALUE)")
        value: Any = raw
        if raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        else:
            for cast in (int, float):
                try:
                    value = cast(raw)
                    break
                except ValueError:
                    pass
        out[key] = value
    return out


def run_variant(scene: Path, dst: Path, overrides: dict[str, Any], backend: str) -> dict[str, Any]:
    """Copy ``scene`` to ``dst`` and redo its language stage with ``overrides``; returns the stage's stats."""
    from langfield.scene import LANGUAGE_KEY, discard_manifest, load_scene, save_scene
    from langfield.sources import load_capture, load_views
    from langfield.train.language import LanguageConfig, prepare_language
    from langfield.train.reconstruct import _finish_latents

    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(scene, dst, ignore=shutil.ignore_patterns("eval", "checkpoints", ".*.lock"))
    loaded = load_scene(dst)
    settings, config = loaded.settings, dict(loaded.config)
    names = {f.name for f in dataclasses.fields(LanguageConfig)}
    recorded = {k: v for k, v in (config.get("language_config") or {}).items() if k in names}
    unknown = set(overrides) - names
    if unknown:
        raise SystemExit(f"bench_schedules: unknown LanguageConfig fields {sorted(unknown)}")
    lang = LanguageConfig(**{**recorded, **overrides, "skip_if_unavailable": False})
    if lang.schedule == "joint":
        raise SystemExit("bench_schedules: joint trains the geometry too; evaluate its scene with --existing")
    capture = load_capture(Path(settings.data or ""), images=settings.train.images, eval_every=settings.train.eval_every)
    views = load_views(capture, capture.train_ids, downscale=settings.train.downscale, device="cpu")
    discard_manifest(dst)
    targets = prepare_language(lang, capture, views, dst, seed=int(settings.train.seed), progress=False,
                               reuse_codec=True)
    assert targets is not None
    params = torch.nn.ParameterDict({k: torch.nn.Parameter(v.detach().clone(), requires_grad=False)
                                     for k, v in loaded.params.items() if k != "latents"})
    train_cfg = dataclasses.replace(settings.train, backend=backend)
    t0 = time.perf_counter()
    stats = _finish_latents(params, views, targets, lang, None, train_cfg, False, dst)
    stats["stage_seconds_with_contribution"] = round(time.perf_counter() - t0, 3)
    config["language_config"] = dataclasses.asdict(lang)
    config[LANGUAGE_KEY] = {**targets.meta, **stats}
    save_scene(dst, params, loaded.cameras, config)
    return stats


def evaluate(scene: Path, backend: str) -> dict[str, Any]:
    """Both protocols of ``eval-queries`` (its defaults: threshold 0.7, gate 1 px) on ``scene``."""
    from langfield.cli_language import EvalQueries, run_eval_queries

    r = run_eval_queries(EvalQueries(scene=scene, backend=backend))  # type: ignore[arg-type]
    s3 = r["selection3d"]
    return {
        "2d_loc_mask": round(r["mean"]["loc_mask"], 4), "2d_miou": round(r["mean"]["iou"], 4),
        "3d_alone_miou": round(s3["mean"]["iou_alone"], 4), "3d_occlusion_miou": round(s3["mean"]["iou_occlusion"], 4),
        "precision": round(s3["mean_of_queries"]["precision"], 4),
        "selected_total": int(sum(q["selected"] for q in s3["per_query"].values())),
        "per_query_2d_iou": {q: round(v["iou"], 3) for q, v in r["per_query"].items()},
        "per_query_3d": {q: {k: (round(v[k], 3) if isinstance(v[k], float) else v[k])
                             for k in ("iou_alone", "iou_occlusion", "precision", "selected")}
                         for q, v in s3["per_query"].items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scene", type=Path, help="finished scene whose geometry, features cache and codec are reused")
    ap.add_argument("--out", type=Path, required=True, help="folder for the variant scenes (DIR/NAME)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=SPEC")
    ap.add_argument("--existing", action="append", default=[], metavar="NAME=SCENE")
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--json", type=Path, help="also write the table here (updated after every row)")
    args = ap.parse_args()

    from langfield.scene import load_scene_config

    table: dict[str, Any] = {}
    jobs = [(n, s, None) for n, _, s in (e.partition("=") for e in args.existing)]
    jobs += [(n, None, s) for n, _, s in (v.partition("=") for v in args.variant)]
    for name, existing, spec in jobs:
        if existing is not None:
            scene = Path(existing)
            stats = load_scene_config(scene).get("language", {})
        else:
            scene = args.out / name
            stats = run_variant(args.scene, scene, _parse_spec(spec or ""), args.backend)
        row = {"spec": spec, **evaluate(scene, args.backend)}
        row["language_seconds"] = round(float(stats.get("lift_seconds", 0.0)) + float(stats.get("latent_seconds", 0.0)), 3)
        row["stats"] = {k: v for k, v in stats.items() if isinstance(v, (int, float, str)) and "seconds" in k
                        or k in ("latent_iterations", "lift_anchor", "latent_loss_last", "never_seen_share")}
        table[name] = row
        print(json.dumps({name: {k: v for k, v in row.items() if not k.startswith("per_query")}}), flush=True)
        if args.json:
            from langfield.io import atomic_write_text

            atomic_write_text(args.json, json.dumps(table, indent=1))
    print(json.dumps({"table": {n: {k: v for k, v in r.items() if not k.startswith("per_query")}
                                for n, r in table.items()}}, indent=1))


if __name__ == "__main__":
    main()
