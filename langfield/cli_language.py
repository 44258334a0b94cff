"""Language subcommands of ``langfield``: query, select, weights, eval-queries, lift.

Each is a tyro dataclass with a ``run()`` returning the exit code; ``cli.py``
registers them.  User errors raise ``LangfieldError`` (one line, exit 2).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import numpy as np
import torch
import tyro

from langfield.io import dumps_json
from langfield.render.backend import Backend
from langfield.query.select3d import SELECT_THRESHOLD
from langfield.types import DataError, LangfieldError

if TYPE_CHECKING:
    from langfield.query import LanguageField

SceneArg = Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="SCENE")]
TextsArg = Annotated[tuple[str, ...], tyro.conf.Positional, tyro.conf.arg(metavar="TEXT")]
DEMO_QUERIES = ("table", "chair leg")
PROTOCOL_2D = "2d-rendered"
"""Name of the rendered-view protocol in eval-queries' JSON (LERF localisation + LangSplat mask IoU)."""
"""What ``langfield demo`` asks its scene (label names of the synthetic room: test-tiny knows only those)."""


# --------------------------------------------------------------------------- shared


def _slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()
    return s[:40] or "q"


# --------------------------------------------------------------------------- query


@dataclass
class Query:
    """Text queries in 2D: per camera relevancy (.npy), mask and overlay PNGs, and DIR/manifest.json."""

    scene: SceneArg
    """Scene directory with a language field."""
    texts: TextsArg
    """One or more query texts."""
    out: Path
    """Output directory (manifest.json + relevancy/, mask/, overlay/)."""
    cameras: Optional[Path] = None
    """nerfstudio-style transforms.json of the cameras to query (default: the scene's eval cameras)."""
    eval_views: bool = False
    """Query the scene's held-out (eval) cameras (the default when --cameras is not given)."""
    level: Optional[int] = None
    """Fixed feature level (0 = finest); default: per query the level with the highest smoothed maximum."""
    negatives: Optional[tuple[str, ...]] = None
    """Canonical negative phrases (default: object things stuff texture)."""
    smoothing_kernel: Optional[int] = None
    """Box-filter side for level choice (default: 30 px scaled to the render size)."""
    backend: Backend = "auto"
    """Rasterizer backend."""

    def run(self) -> int:
        manifest = run_query(self)
        print(f"wrote {len(manifest['entries'])} entries to {self.out / 'manifest.json'}")
        return 0


def run_query(q: Query) -> dict:
    """Do the work of ``langfield query``; returns the manifest written."""
    from langfield.io import atomic_write_json, atomic_write_npy
    from langfield.query import LanguageField, check_texts, save_heatmap_png, save_mask_png
    from langfield.scene import read_transforms_cameras

    from langfield.outputs import check_output

    check_output(q.out, [q.scene, q.cameras])  # inputs are read-only
    texts = check_texts(q.texts)
    if q.cameras is not None and q.eval_views:
        raise LangfieldError("--cameras and --eval-views exclude each other")
    field = LanguageField.load(q.scene, backend=q.backend)
    field.check_level(q.level, name="--level")
    if q.cameras is not None:
        cams = read_transforms_cameras(q.cameras)
    else:
        cams = field.cameras_of("eval") or field.cameras_of("train")
    if not cams:
        raise DataError(f"{q.scene}: no cameras to query (pass --cameras)")
    if q.out.exists() and not q.out.is_dir():
        raise LangfieldError(f"{q.out}: exists and is not a directory")
    entries = []
    used: set[str] = set()
    for cam in cams:
        res = field.relevancy(cam, texts, negatives=q.negatives, level=q.level, smoothing_kernel=q.smoothing_kernel,
                              what=("rgb",))
        masks = res.masks()
        stem = _slug(Path(cam.name).stem)
        while stem in used:  # two cameras with the same basename must not overwrite each other
            stem += "_"
        used.add(stem)
        for qi, text in enumerate(texts):
            base = f"{stem}__{_slug(text)}_{qi}"
            rel = res.relevancy[qi].float().cpu()
            level = int(res.levels[qi])
            paths = {"relevancy": f"relevancy/{base}.npy", "mask": f"mask/{base}.png", "overlay": f"overlay/{base}.png"}
            atomic_write_npy(q.out / paths["relevancy"], rel.numpy().astype(np.float32))
            save_mask_png(q.out / paths["mask"], masks[qi])
            save_heatmap_png(q.out / paths["overlay"], res.frame.rgb, rel)
            entries.append({"query": text, "frame": cam.name, "level": level, **paths,
                            "level_name": field.level_names[level], "max_relevancy": float(rel.max())})
    manifest = {"entries": entries}
    atomic_write_json(q.out / "manifest.json", manifest)
    return manifest


# --------------------------------------------------------------------------- select


@dataclass
class Select:
    """Select the Gaussians relevant to a text and export them as a standalone PLY."""

    scene: SceneArg
    """Scene directory with a language field."""
    text: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="TEXT")]
    """Query text."""
    out: Path
    """PLY file to write (the selected Gaussians, latents included)."""
    threshold: float = SELECT_THRESHOLD
    """Keep Gaussians whose LERF relevancy exceeds this (0.5 = beats every negative).  0.7: on the demo room
    (lift, 20 label queries) the 3D protocol gave alone/occlusion-aware IoU and precision 0.21/0.33/0.28 at
    0.5, 0.59/0.90/0.87 at 0.6 and 0.66/0.91/0.91 at 0.7 (docs/language3d.md)."""
    level: Optional[int] = None
    """Fixed feature level; default: the level whose top Gaussians are most relevant."""
    min_opacity: Optional[float] = None
    """Drop selected Gaussians less opaque than this (floaters)."""
    negatives: Optional[tuple[str, ...]] = None
    """Canonical negative phrases (default: object things stuff texture)."""

    def run(self) -> int:
        res = run_select(self)
        print(dumps_json(res))
        return 0


def run_select(s: Select) -> dict:
    """Do the work of ``langfield select``; returns the printed summary."""
    from langfield.query import LanguageField, check_texts, export_selection

    from langfield.outputs import check_output

    check_output(s.out, [s.scene])  # inputs are read-only
    text = check_texts([s.text])[0]
    field = LanguageField.load(s.scene)
    field.check_level(s.level, name="--level")
    res = field.select(text, s.threshold, negatives=s.negatives, level=s.level, min_opacity=s.min_opacity)
    export_selection(s.out, field.params, res.mask)
    top = int(res.relevancy.argmax())
    return {
        "query": text,
        "level": res.level,
        "level_name": field.level_names[res.level],
        "selected": int(res.mask.sum()),
        "total": int(res.mask.numel()),
        "max_relevancy": float(res.relevancy[top]),
        "max_point": [float(x) for x in res.point] if res.point is not None else None,
        "ply": str(s.out),
    }


# --------------------------------------------------------------------------- weights


@dataclass
class Weights:
    """List the model weights each --clip/--sam option needs, where to get them and where langfield looks."""

    json: bool = False
    """Print JSON instead of a table."""
    verify: bool = False
    """Check the sha256 of every present file that has a published digest (reads the whole file);
    exit 2 when one does not match."""

    def run(self) -> int:
        from langfield.features import describe_weights
        from langfield.features.weights import verify_present

        rows = describe_weights()
        if self.verify:
            rows = verify_present(rows)
        if self.json:
            print(dumps_json(rows))
            return 2 if any(r.get("verified") is False for r in rows) else 0
        for r in rows:
            status = "present" if r.get("present") else "MISSING"
            print(f"{r.get('option')}  [{status}]")
            for key in ("description", "filename", "url", "sha256", "size_mb", "env_var", "target_path"):
                if r.get(key) not in (None, ""):
                    print(f"    {key:<12} {r[key]}")
            if r.get("verified") is not None:
                print(f"    {'verified':<12} {'sha256 matches' if r['verified'] else 'SHA256 MISMATCH'}")
        if rows:
            print(f"weights dir: {rows[0].get('weights_dir')}")
        return 2 if any(r.get("verified") is False for r in rows) else 0


# --------------------------------------------------------------------------- eval-queries


@dataclass
class EvalQueries:
    """Score text queries on held-out labelled views: localisation (mask / box) and IoU -> SCENE/eval/queries.json."""

    scene: SceneArg
    """Scene directory with a language field."""
    data: Optional[Path] = None
    """Labelled dataset (transforms.json with semantics_path + labels.json); default: the scene's own."""
    level: Optional[int] = None
    """Fixed feature level for every query; default: LangSplat's per-query level choice."""
    smoothing_kernel: Optional[int] = None
    """Box-filter side (default: 30 px scaled to the render size)."""
    backend: Backend = "auto"
    """Rasterizer backend."""
    min_area: float = 0.001
    """A label is queried in a view only when it covers at least this fraction of the view's
    pixels (0 = any pixel). Benchmarks annotate visible objects; a 3-pixel sliver of a chair
    leg at the frame edge is not a meaningful query (default 0.1%: 19 px at 160x120)."""
    protocol_3d: bool = True
    """Also run the 3D-selection protocol (select in 3D, render the selection alone / inside the scene,
    selection precision; ``eval/select3d_eval.py``) into the report's ``selection3d``."""
    threshold: float = SELECT_THRESHOLD
    """3D protocol: selection threshold on the Gaussians' raw LERF relevancy (as `langfield select`)."""
    min_contribution: Optional[float] = 1.0
    """3D protocol: drop Gaussians whose recorded total contribution is below this many pixels (as
    `langfield select`; applied only when the scene records contributions)."""

    def run(self) -> int:
        from langfield.scene_lock import scene_writer

        with scene_writer(self.scene):  # it writes SCENE/eval/queries.json: one writer per scene
            report = run_eval_queries(self)
        summary = {"protocol": report["protocol"], "mean": report["mean"],
                   "mean_of_queries": report["mean_of_queries"],
                   "closed_set_accuracy": report["closed_set_accuracy"],
                   "per_query": report["per_query"], "report": report["path"]}
        if "selection3d" in report:
            s3 = report["selection3d"]
            summary["selection3d"] = {k: s3[k] for k in ("protocol", "mean", "mean_of_queries", "per_query")}
        print(dumps_json(summary))
        return 0


def label_annotations(semantics: np.ndarray, labels: dict, min_pixels: int = 1) -> dict:
    """Every part and whole text covering >= ``min_pixels`` of a [H, W] id map -> Annotation (mask + tight box)."""
    from langfield.eval.annotations import Annotation, mask_box

    by_text: dict[str, list[int]] = {}
    for lid, lab in labels.items():
        for text in (lab.part, lab.whole):
            by_text.setdefault(text, [])
            if lid not in by_text[text]:
                by_text[text].append(lid)
    out = {}
    for text, ids in sorted(by_text.items()):
        mask = np.isin(semantics, ids)
        if mask.sum() >= max(1, min_pixels):
            out[text] = Annotation(mask=mask, boxes=mask_box(mask))
    return out


@torch.no_grad()
def _closed_set_counts(field: "LanguageField", lat: torch.Tensor, semantics: np.ndarray, labels: dict,
                       acc: dict[str, tuple[int, int]]) -> None:
    """Add (correct, labelled) pixel counts per level named part/whole to ``acc``."""
    for lvl, name in enumerate(field.level_names):
        if name not in ("part", "whole"):
            continue
        texts = sorted({getattr(lab, name) for lab in labels.values()})
        gt = np.full(semantics.shape, -1)
        for lid, lab in labels.items():
            gt[semantics == lid] = texts.index(getattr(lab, name))
        valid = gt >= 0
        if not valid.any():
            continue
        feats = field.codec.decode(lat[lvl].reshape(-1, lat.shape[-1]))
        pred = (feats @ field.embed(texts).T).argmax(-1).reshape(semantics.shape).numpy()
        c, t = acc.get(name, (0, 0))
        acc[name] = (c + int((pred[valid] == gt[valid]).sum()), t + int(valid.sum()))


def run_eval_queries(e: EvalQueries) -> dict:
    """Do the work of ``langfield eval-queries``; returns the report (also written to SCENE/eval/queries.json)."""
    from langfield.eval.queries import aggregate, evaluate_frame, save_report
    from langfield.query import LanguageField
    from langfield.scene import EVAL_DIR, write_manifest
    from langfield.sources import load_capture, load_views

    field = LanguageField.load(e.scene, backend=e.backend)
    field.check_level(e.level, name="--level")
    settings = field.scene.settings
    data = Path(e.data) if e.data is not None else Path(settings.data or "")
    capture = load_capture(data, images=settings.train.images, eval_every=settings.train.eval_every)
    if not capture.labels:
        raise DataError(f"{data}: no labels.json (eval-queries needs a labelled dataset)")
    ids = capture.eval_ids or capture.train_ids
    views = load_views(capture, ids, downscale=settings.train.downscale, device="cpu")
    results = []
    closed: dict[str, tuple[int, int]] = {}
    for view in views:
        if view.semantics is None:
            raise DataError(f"{data}: frame {view.name} has no semantics_path")
        if not 0.0 <= e.min_area < 1.0:
            raise LangfieldError(f"--min-area must be in [0, 1), got {e.min_area}")
        min_pixels = int(math.ceil(e.min_area * view.height * view.width))
        ann = label_annotations(view.semantics.cpu().numpy(), capture.labels, min_pixels)
        texts = list(ann)
        if not texts:
            continue
        res = field.relevancy(view, texts, level=e.level, smoothing_kernel=e.smoothing_kernel)
        assert res.frame.latents is not None
        results += evaluate_frame(view.name, res.maps, texts, ann, res.config)
        _closed_set_counts(field, res.frame.latents, view.semantics.cpu().numpy(), capture.labels, closed)
    report = {"protocol": PROTOCOL_2D, **aggregate(results)}
    if e.protocol_3d:
        from langfield.eval.select3d_eval import evaluate_selection3d
        from langfield.query.select3d import SelectionConfig

        report["selection3d"] = evaluate_selection3d(
            field, views, capture.labels, min_area=e.min_area, level=e.level,
            selection=SelectionConfig(threshold=e.threshold, min_contribution=e.min_contribution))
    # Closed-set pixel accuracy (argmax over the dataset's label texts): measures the language field
    # itself, independently of how the CLIP model places texts relative to the negatives.
    report["closed_set_accuracy"] = {k: c / t for k, (c, t) in closed.items() if t}
    report["split"] = "eval" if capture.eval_ids else "train"
    report["min_area"] = e.min_area
    report["num_views"] = len(views)
    path = Path(e.scene) / EVAL_DIR / "queries.json"
    save_report(path, report)
    write_manifest(e.scene, changed=[f"{EVAL_DIR}/{path.name}"])  # the scene's manifest covers eval/
    report["path"] = str(path)
    return report


# --------------------------------------------------------------------------- lift


@dataclass
class Lift:
    """Training-free language field for an existing scene: lift the training views' 2D features onto the
    Gaussians (weighted by their blending weights; seconds, no optimisation), or only record contributions."""

    scene: SceneArg
    """Scene directory (with or without a language field)."""
    data: Optional[Path] = None
    """The scene's dataset (default: the one recorded in config.json)."""
    features: Optional[str] = None
    """Feature source labels | sam-clip | dense (default: the scene's recorded one, else auto)."""
    clip: Optional[str] = None
    """CLIP option (default: the scene's recorded one, else the default CLIP)."""
    sam: Optional[str] = None
    """SAM option for sam-clip (default: the scene's recorded one)."""
    latent_dim: Optional[int] = None
    """Codec latent width per level (default: the scene's recorded one, else 3)."""
    min_weight: float = 0.05
    """Visibility gate: a Gaussian whose summed blending weight at a level is below this (pixels) keeps a
    zero latent there."""
    robust_iterations: int = 0
    """Weiszfeld iterations towards the weighted geometric median of the per-view means (0 = weighted mean)."""
    contribution_only: bool = False
    """Keep the scene's latents; only record every Gaussian's total contribution (for 3D selection)."""
    backend: Backend = "auto"
    """Rasterizer backend."""
    quiet: bool = False
    """No progress bar."""

    def run(self) -> int:
        print(dumps_json(run_lift(self)))
        return 0


def _lift_language_config(lf: Lift, recorded: Optional[dict]) -> Any:
    """The LanguageConfig of a lift: the scene's recorded settings, overridden by the options given."""
    import dataclasses

    from langfield.train.language import LanguageConfig

    names = {f.name for f in dataclasses.fields(LanguageConfig)}
    base = {k: v for k, v in (recorded or {}).items() if k in names and k != "skip_if_unavailable"}
    for key in ("features", "clip", "sam", "latent_dim"):
        if getattr(lf, key) is not None:
            base[key] = getattr(lf, key)
    base.update(schedule="lift", lift_min_weight=lf.min_weight, lift_robust_iterations=lf.robust_iterations,
                skip_if_unavailable=False)
    return LanguageConfig(**base)


def run_lift(lf: Lift) -> dict:
    """Do the work of ``langfield lift`` under the scene's writer lock; returns the printed summary."""
    import dataclasses

    from langfield.scene import LANGUAGE_KEY, discard_manifest, load_scene, save_scene
    from langfield.scene_lock import scene_writer
    from langfield.sources import load_capture, load_views
    from langfield.train.language import lift_language, prepare_language
    from langfield.train.lift import CONTRIBUTION_FILE, contribution_stats, save_contribution, total_contribution

    with scene_writer(lf.scene):
        scene = load_scene(lf.scene)
        settings, config = scene.settings, dict(scene.config)
        lang = _lift_language_config(lf, config.get("language_config"))
        data = Path(lf.data) if lf.data is not None else Path(settings.data or "")
        capture = load_capture(data, images=settings.train.images, eval_every=settings.train.eval_every)
        views = load_views(capture, capture.train_ids, downscale=settings.train.downscale, device="cpu")
        cams = {c.name for c in scene.cameras_of("train")}
        if cams and {v.name for v in views} != cams:
            raise DataError(f"{data}: its training views are not the scene's training cameras (wrong --data?)")
        params = scene.params
        if lf.contribution_only:
            if LANGUAGE_KEY not in config or "latents" not in params:
                raise LangfieldError(f"{lf.scene}: no language field to keep (drop --contribution-only)")
            contribution = total_contribution(params, views, backend=lf.backend)
            config[LANGUAGE_KEY] = {**config[LANGUAGE_KEY], **contribution_stats(contribution, lang.lift_min_weight)}
            discard_manifest(lf.scene)
            save_contribution(lf.scene, contribution, len(views))
            save_scene(lf.scene, params, scene.cameras, config)
            return {"scene": str(lf.scene), "contribution_file": CONTRIBUTION_FILE,
                    **contribution_stats(contribution, lang.lift_min_weight)}
        discard_manifest(lf.scene)  # the codec and features may be rewritten below
        targets = prepare_language(lang, capture, views, lf.scene, seed=int(settings.train.seed),
                                   progress=not lf.quiet, reuse_codec=True)
        if targets is None:
            raise LangfieldError(f"{lf.scene}: the language stage is off (--features none?)")
        stats, contribution = lift_language(params, views, targets, lang, backend=lf.backend)
        save_contribution(lf.scene, contribution, len(views))
        config["language_config"] = dataclasses.asdict(lang)
        config[LANGUAGE_KEY] = {**targets.meta, **stats, **contribution_stats(contribution, lang.lift_min_weight)}
        save_scene(lf.scene, params, scene.cameras, config)  # PLY, cameras, config, then the manifest
    return {"scene": str(lf.scene), "num_gaussians": int(params["means"].shape[0]), **stats,
            **contribution_stats(contribution, lang.lift_min_weight)}
