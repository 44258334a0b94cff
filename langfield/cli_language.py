"""Language subcommands of ``langfield``: query, select, weights, eval-queries.

Each is a tyro dataclass with a ``run()`` returning the exit code; ``cli.py``
registers them.  User errors raise ``LangfieldError`` (one line, exit 2).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import numpy as np
import torch
import tyro

from langfield.types import DataError, LangfieldError

Backend = Literal["auto", "torch", "cpu", "cuda"]
SceneArg = Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="SCENE")]
TextsArg = Annotated[tuple[str, ...], tyro.conf.Positional, tyro.conf.arg(metavar="TEXT")]
TEXT_CACHE_DIR = "text_cache"
DEMO_QUERIES = ("table", "chair leg")
"""What ``langfield demo`` asks its scene (label names of the synthetic room: test-tiny knows only those)."""
# LangSplat smooths with a 30 px box at ~730 px image height; smaller renders scale it down.
_REFERENCE_SHORT_SIDE = 730


# --------------------------------------------------------------------------- loading a language scene


@dataclass
class LanguageScene:
    """A loaded scene with its language parts (codec, level layout, text encoder)."""

    scene: Any
    """``langfield.scene.Scene``."""
    codec: Any
    """``langfield.codec.LanguageCodec`` in eval mode."""
    meta: dict
    """The ``language`` section of config.json."""
    embed: Any
    """``TextEmbeddingCache`` of the scene's CLIP option (persisted under SCENE/text_cache)."""

    @property
    def num_levels(self) -> int:
        return int(self.meta["num_levels"])

    @property
    def latent_dim(self) -> int:
        return int(self.meta["latent_dim"])


def load_language_scene(root: Path, device: str = "cpu") -> LanguageScene:
    """Scene + codec + text encoder; LangfieldError when the scene carries no language field."""
    from langfield.codec import load_codec
    from langfield.query import TextEmbeddingCache
    from langfield.scene import load_scene
    from langfield.scene import language_meta_of

    scene = load_scene(root, device=device)
    meta = language_meta_of(scene.config)
    if meta is None or "latents" not in scene.params:
        raise LangfieldError(
            f"{root}: scene has no language field (reconstruct it with --features labels|sam-clip|dense)"
        )
    want = int(meta["num_levels"]) * int(meta["latent_dim"])
    if scene.params["latents"].shape[1] != want:
        raise DataError(f"{root}: PLY has {scene.params['latents'].shape[1]} latent columns, config.json says {want}")
    codec, _ = load_codec(Path(root) / meta.get("codec_dir", "codec"), device=device)
    clip_option = str(meta["clip"])
    loaded: dict[str, Any] = {}

    def encode(texts: list[str]) -> torch.Tensor:
        # Loaded on first use only: a query whose texts are all cached needs no CLIP at all.
        if "clip" not in loaded:
            from langfield.features.clip_model import load_clip

            loaded["clip"] = load_clip(clip_option, device=device)
        return loaded["clip"].encode_text(texts)

    embed = TextEmbeddingCache(encode, model_name=clip_option, cache_dir=Path(root) / TEXT_CACHE_DIR)
    return LanguageScene(scene, codec, meta, embed)


def check_texts(texts: tuple[str, ...] | list[str]) -> list[str]:
    """Stripped query texts; LangfieldError on none or an empty one."""
    out = [t.strip() for t in texts]
    if not out:
        raise LangfieldError("no query text given")
    if any(not t for t in out):
        raise LangfieldError("empty query string: every query needs some text")
    return out


def auto_smoothing_kernel(height: int, width: int) -> int:
    """LangSplat's 30 px box, scaled to the render's short side (at least 1)."""
    return max(1, int(round(30 * min(height, width) / _REFERENCE_SHORT_SIDE)))


def auto_majority_window(height: int, width: int) -> int:
    """LangSplat's 7 px majority window, scaled like the box filter and kept odd (1 = off).

    Unscaled, a 7 px vote erases every part thinner than ~4 px, which at 160x120
    is most table legs and handles; at LangSplat's resolution it only removes speckle.
    """
    side = 7 * min(height, width) / _REFERENCE_SHORT_SIDE
    return max(1, 2 * int(round((side - 1) / 2)) + 1)


def query_config(negatives: Optional[tuple[str, ...]], level: Optional[int], kernel: Optional[int], h: int, w: int):
    from langfield.query import DEFAULT_NEGATIVES, QueryConfig

    return QueryConfig(negatives=tuple(negatives) if negatives else DEFAULT_NEGATIVES, level=level,
                       smoothing_kernel=kernel or auto_smoothing_kernel(h, w),
                       mask_majority=auto_majority_window(h, w))


@torch.no_grad()
def render_language(ls: LanguageScene, view, backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """(latents [L, H, W, D], rgb [H, W, 3]) of one view, rendered in one pass."""
    from langfield.render.views import render_latents

    feats, rgb = render_latents(ls.scene.params, view, ls.scene.params["latents"], backend=backend,
                                sh_degree=None, with_rgb=True)
    h, w = feats.shape[:2]
    lat = feats.reshape(h, w, ls.num_levels, ls.latent_dim).permute(2, 0, 1, 3).contiguous()
    return lat, rgb.clamp(0, 1)


def level_maps(ls: LanguageScene, view, texts: list[str], config, backend: str = "auto"):
    """Per-level relevancy [L, Q, H, W] of ``texts`` in ``view`` plus the rendered RGB."""
    from langfield.query import level_relevancy

    lat, rgb = render_language(ls, view, backend)
    pos = ls.embed(texts)
    neg = ls.embed(list(config.negatives))
    return level_relevancy(lat, pos, neg, config, similarity=ls.codec.similarity), rgb


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
    from langfield.query import choose_level, gather_levels, relevancy_mask, save_heatmap_png, save_mask_png
    from langfield.io import atomic_write_json, atomic_write_npy
    from langfield.scene import read_transforms_cameras

    texts = check_texts(q.texts)
    if q.cameras is not None and q.eval_views:
        raise LangfieldError("--cameras and --eval-views exclude each other")
    ls = load_language_scene(q.scene)
    if q.level is not None and not 0 <= q.level < ls.num_levels:
        raise LangfieldError(f"--level {q.level} out of range: the scene has {ls.num_levels} levels")
    if q.cameras is not None:
        cams = read_transforms_cameras(q.cameras)
    else:
        cams = ls.scene.cameras_of("eval") or ls.scene.cameras_of("train")
    if not cams:
        raise DataError(f"{q.scene}: no cameras to query (pass --cameras)")
    if q.out.exists() and not q.out.is_dir():
        raise LangfieldError(f"{q.out}: exists and is not a directory")
    entries = []
    used: set[str] = set()
    for cam in cams:
        view = cam.to_view()
        config = query_config(q.negatives, q.level, q.smoothing_kernel, view.height, view.width)
        maps, rgb = level_maps(ls, view, texts, config, q.backend)
        levels = choose_level(maps, config.smoothing_kernel, config.level)
        chosen = gather_levels(maps, levels)
        masks = relevancy_mask(chosen, config)
        stem = _slug(Path(cam.name).stem)
        while stem in used:  # two cameras with the same basename must not overwrite each other
            stem += "_"
        used.add(stem)
        for qi, text in enumerate(texts):
            base = f"{stem}__{_slug(text)}_{qi}"
            rel = chosen[qi].float().cpu()
            paths = {"relevancy": f"relevancy/{base}.npy", "mask": f"mask/{base}.png", "overlay": f"overlay/{base}.png"}
            atomic_write_npy(q.out / paths["relevancy"], rel.numpy().astype(np.float32))
            save_mask_png(q.out / paths["mask"], masks[qi])
            save_heatmap_png(q.out / paths["overlay"], rgb, rel)
            entries.append({"query": text, "frame": cam.name, "level": int(levels[qi]), **paths,
                            "level_name": ls.meta["levels"][int(levels[qi])], "max_relevancy": float(rel.max())})
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
    threshold: float = 0.5
    """Keep Gaussians whose LERF relevancy exceeds this (0.5 = beats every negative)."""
    level: Optional[int] = None
    """Fixed feature level; default: the level whose top Gaussians are most relevant."""
    min_opacity: Optional[float] = None
    """Drop selected Gaussians less opaque than this (floaters)."""
    negatives: Optional[tuple[str, ...]] = None
    """Canonical negative phrases (default: object things stuff texture)."""

    def run(self) -> int:
        res = run_select(self)
        print(json.dumps(res, indent=2))
        return 0


def run_select(s: Select) -> dict:
    """Do the work of ``langfield select``; returns the printed summary."""
    from langfield.query import DEFAULT_NEGATIVES, GaussianRelevancy, QueryConfig, SelectionConfig, export_selection

    text = check_texts([s.text])[0]
    ls = load_language_scene(s.scene)
    if s.level is not None and not 0 <= s.level < ls.num_levels:
        raise LangfieldError(f"--level {s.level} out of range: the scene has {ls.num_levels} levels")
    p = ls.scene.params
    gr = GaussianRelevancy.from_latents(p["latents"].detach(), ls.codec.decode, ls.num_levels,
                                        means=p["means"].detach(), opacities=torch.sigmoid(p["opacities"].detach()))
    config = QueryConfig(negatives=tuple(s.negatives) if s.negatives else DEFAULT_NEGATIVES, level=s.level)
    res = gr.query(ls.embed([text])[0], ls.embed(list(config.negatives)), config,
                   SelectionConfig(threshold=s.threshold, min_opacity=s.min_opacity))
    export_selection(s.out, p, res.mask)
    top = int(res.relevancy.argmax())
    return {
        "query": text,
        "level": res.level,
        "level_name": ls.meta["levels"][res.level],
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
            print(json.dumps(rows, indent=2, default=str))
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

    def run(self) -> int:
        report = run_eval_queries(self)
        print(json.dumps({"mean": report["mean"], "mean_of_queries": report["mean_of_queries"],
                          "closed_set_accuracy": report["closed_set_accuracy"],
                          "per_query": report["per_query"], "report": report["path"]}, indent=2))
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
def _closed_set_counts(ls: LanguageScene, lat: torch.Tensor, semantics: np.ndarray, labels: dict,
                       acc: dict[str, tuple[int, int]]) -> None:
    """Add (correct, labelled) pixel counts per level named part/whole to ``acc``."""
    for lvl, name in enumerate(ls.meta.get("levels", [])):
        if name not in ("part", "whole"):
            continue
        texts = sorted({getattr(lab, name) for lab in labels.values()})
        gt = np.full(semantics.shape, -1)
        for lid, lab in labels.items():
            gt[semantics == lid] = texts.index(getattr(lab, name))
        valid = gt >= 0
        if not valid.any():
            continue
        feats = ls.codec.decode(lat[lvl].reshape(-1, lat.shape[-1]))
        pred = (feats @ ls.embed(texts).T).argmax(-1).reshape(semantics.shape).numpy()
        c, t = acc.get(name, (0, 0))
        acc[name] = (c + int((pred[valid] == gt[valid]).sum()), t + int(valid.sum()))


def run_eval_queries(e: EvalQueries) -> dict:
    """Do the work of ``langfield eval-queries``; returns the report (also written to SCENE/eval/queries.json)."""
    from langfield.eval.queries import aggregate, evaluate_frame, save_report
    from langfield.scene import EVAL_DIR
    from langfield.sources import load_capture, load_views

    ls = load_language_scene(e.scene)
    train_cfg = ls.scene.config.get("train", {})
    data = Path(e.data) if e.data is not None else Path(ls.scene.config.get("data", ""))
    capture = load_capture(data, images=train_cfg.get("images"), eval_every=int(train_cfg.get("eval_every", 8)))
    if not capture.labels:
        raise DataError(f"{data}: no labels.json (eval-queries needs a labelled dataset)")
    ids = capture.eval_ids or capture.train_ids
    views = load_views(capture, ids, downscale=int(train_cfg.get("downscale", 1)), device="cpu")
    from langfield.query import level_relevancy

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
        config = query_config(None, e.level, e.smoothing_kernel, view.height, view.width)
        lat, _ = render_language(ls, view, e.backend)
        maps = level_relevancy(lat, ls.embed(texts), ls.embed(list(config.negatives)), config, similarity=ls.codec.similarity)
        results += evaluate_frame(view.name, maps, texts, ann, config)
        _closed_set_counts(ls, lat, view.semantics.cpu().numpy(), capture.labels, closed)
    report = aggregate(results)
    # Closed-set pixel accuracy (argmax over the dataset's label texts): measures the language field
    # itself, independently of how the CLIP model places texts relative to the negatives.
    report["closed_set_accuracy"] = {k: c / t for k, (c, t) in closed.items() if t}
    report["split"] = "eval" if capture.eval_ids else "train"
    report["min_area"] = e.min_area
    report["num_views"] = len(views)
    path = Path(e.scene) / EVAL_DIR / "queries.json"
    save_report(path, report)
    report["path"] = str(path)
    return report
