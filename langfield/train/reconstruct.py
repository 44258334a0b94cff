"""``reconstruct``: dataset -> scene directory (load, initialise, train, save, evaluate).

Output-directory rules (so a previous scene is never lost):

* ``out`` absent (or empty): train directly into it; an interrupted run leaves
  its checkpoints there for ``resume=True``.
* ``out`` exists and ``resume``: continue from its newest checkpoint.
* ``out`` exists and ``overwrite``: train into a sibling staging directory and
  swap it in only after the new scene has been written and evaluated.
* otherwise: refuse with a LangfieldError.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from langfield.io import atomic_write_json
from langfield.scene import CONFIG_FILE, LANGUAGE_KEY, SceneCamera, latest_checkpoint, load_scene_config, save_scene
from langfield.sources.dataset import NoPosesError, load_dataset, load_split_views  # noqa: F401 (NoPosesError re-exported)
from langfield.train.checkpoint import load_checkpoint
from langfield.train.language import (
    JointLatentLoss,
    LanguageConfig,
    LanguageTargets,
    add_zero_latents,
    prepare_language,
    train_latents,
)
from langfield.train.config import TrainConfig, config_from_dict, config_to_dict
from langfield.train.trainer import Trainer, seed_everything
from langfield.types import Capture, DataError, LangfieldError, View


# LanguageConfig fields a resumed run takes from config.json whatever it is given (they shape the checkpoint).
_JOINT_FIELDS = ("schedule", "joint_weight", "lr")


@dataclass
class ReconstructResult:
    """What a finished reconstruction produced."""

    scene_dir: Path
    """The scene directory written."""
    report: dict[str, Any]
    """The evaluation report (also in scene_dir/eval/report.json)."""
    num_gaussians: int
    """Final Gaussian count."""
    wall_time_s: float
    """Training + saving wall time of this invocation, seconds."""


def resolve_device(cfg: TrainConfig) -> torch.device:
    if cfg.device != "auto":
        return torch.device(cfg.device)
    if cfg.backend in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def initial_gaussians(capture: Capture, views: list[View], cfg: TrainConfig, device: torch.device) -> torch.nn.ParameterDict:
    """Initial Gaussians per ``cfg.init`` (auto: points, else depth, else random)."""
    from langfield.gaussians import init as ginit

    kind = cfg.init
    if kind == "auto":
        kind = "points" if capture.points is not None and len(capture.points) > 0 else (
            "depth" if any(v.depth is not None for v in views) else "random")
    common = dict(sh_degree=cfg.sh_degree, init_opacity=cfg.init_opacity, init_scale=cfg.init_scale)
    if kind == "points":
        if capture.points is None or len(capture.points) == 0:
            raise DataError(f"{capture.root}: init 'points' requested but the capture has no sparse points")
        params = ginit.init_from_points(capture.points, capture.point_colors, **common)
    elif kind == "depth":
        if not any(v.depth is not None for v in views):
            raise DataError(f"{capture.root}: init 'depth' requested but the capture has no depth maps")
        params = ginit.init_from_depth(views, max_points=cfg.init_max_depth_points, seed=cfg.seed, **common)
    else:
        centres = np.stack([f.c2w[:3, 3] for f in capture.train_frames])
        mid = centres.mean(axis=0)
        half = cfg.random_extent * capture.scene_scale
        params = ginit.init_random(cfg.init_num_random, (mid - half).tolist(), (mid + half).tolist(), seed=cfg.seed, **common)
    return params.to(device)


def scene_cameras(train: list[View], evals: list[View]) -> list[SceneCamera]:
    return [SceneCamera.from_view(v, "train") for v in train] + [SceneCamera.from_view(v, "eval") for v in evals]


def _prepare_out(out: Path, *, resume: bool, overwrite: bool) -> tuple[Path, Optional[Path]]:
    """Directory to train into, and the staging dir to swap in at the end (overwrite only)."""
    if resume:
        if latest_checkpoint(out) is None:
            raise LangfieldError(f"{out}: nothing to resume (no checkpoints/ckpt_*.pt)")
        return out, None
    if out.exists() and not out.is_dir():
        raise LangfieldError(f"{out}: exists and is not a directory")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise LangfieldError(f"{out}: already exists; pass --overwrite to replace it or --resume to continue it")
        staging = out.parent / f".{out.name}.partial"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        return staging, staging
    out.mkdir(parents=True, exist_ok=True)
    return out, None


def _discard_new_output(workdir: Path, *, created: bool) -> None:
    """Remove what a failed fresh run wrote: the whole directory when this run created it, else its contents."""
    if created:
        shutil.rmtree(workdir, ignore_errors=True)
        return
    for child in workdir.iterdir():
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _swap_in(staging: Path, out: Path) -> None:
    """Replace ``out`` by ``staging`` with two renames (the old scene exists until the new one is in place)."""
    old = out.parent / f".{out.name}.old"
    if old.exists():
        shutil.rmtree(old)
    out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def _finish_latents(params: torch.nn.ParameterDict, views: list[View], targets: LanguageTargets,
                    language: LanguageConfig, joint_loss: Optional[JointLatentLoss], cfg: TrainConfig,
                    progress: bool) -> dict[str, Any]:
    """After geometry training: fit the latents (sequential) or report the jointly trained ones; returns stats."""
    if joint_loss is None:
        return train_latents(params, views, targets, language, backend=cfg.backend, seed=cfg.seed, progress=progress)
    params["latents"].requires_grad_(False)
    return joint_loss.stats()


def reconstruct(
    data: Optional[Path],
    out: Path,
    cfg: Optional[TrainConfig] = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    iterations: Optional[int] = None,
    progress: bool = True,
    stop_after: Optional[int] = None,
    language: Optional["LanguageConfig"] = None,
) -> Optional[ReconstructResult]:
    """Train a scene from a posed dataset and write the scene directory ``out``.

    Args:
        data: dataset path; with ``resume`` None means "the one in out/config.json".
        out: scene directory.
        cfg: run config (ignored when resuming: the checkpoint's config is used).
        resume: continue from ``out``'s newest checkpoint.
        overwrite: replace an existing ``out`` once the new scene is complete.
        iterations: when resuming, a new total number of steps (else the checkpoint's).
        progress: show a progress bar.
        stop_after: stop (with a checkpoint, no scene written) after this many
            completed steps; used to test resumption.  Returns None then.
        language: language stage settings (``train.language``); None = no
            language stage (when resuming: the one recorded in config.json).
    """
    out = Path(out)
    t0 = time.time()
    out_existed = out.exists()
    workdir, staging = _prepare_out(out, resume=resume, overwrite=overwrite)
    ckpt_state = None
    if resume:
        meta = load_scene_config(out)
        ckpt_path = latest_checkpoint(out)
        ckpt_state = load_checkpoint(ckpt_path)
        cfg = config_from_dict(ckpt_state["config"])
        if iterations is not None:
            cfg.iterations = iterations
        data = Path(data) if data is not None else Path(meta["data"])
        recorded = meta.get("language_config")
        if isinstance(recorded, dict):
            if language is None:
                language = LanguageConfig(**recorded)
            else:
                # The schedule shapes the checkpoint (latents, their optimizer): always continue the recorded one.
                language = dataclasses.replace(language, **{k: recorded[k] for k in _JOINT_FIELDS if k in recorded})
        prior_wall = float(meta.get("wall_time_s") or 0.0)
    else:
        if data is None:
            raise LangfieldError("no dataset given")
        cfg = cfg or TrainConfig()
        if iterations is not None:
            cfg.iterations = iterations
        if language is not None and language.schedule == "joint":
            # The Trainer's Adam group for latents takes its LR from the run config; recording it there
            # keeps config.json truthful and makes --resume rebuild the same optimizer.
            cfg = dataclasses.replace(cfg, lr=dataclasses.replace(cfg.lr, latents=language.lr))
        prior_wall = 0.0
    data = Path(data).resolve()

    seed_everything(cfg.seed)
    device = resolve_device(cfg)
    capture = load_dataset(data, images=cfg.images, eval_every=cfg.eval_every)
    train_views, eval_views = load_split_views(capture, downscale=cfg.downscale, device=device)
    use_depth = capture.has_depth and any(v.depth is not None for v in train_views)

    meta = {
        "data": str(data),
        "capture_kind": capture.kind,
        "scene_scale": float(capture.scene_scale),
        "num_train_views": len(train_views),
        "num_eval_views": len(eval_views),
        "depth_supervision": bool(use_depth),
        "device": str(device),
        "train": config_to_dict(cfg),
    }
    if language is not None:
        meta["language_config"] = dataclasses.asdict(language)
    # Written first so --resume knows the dataset even if training is interrupted.
    atomic_write_json(workdir / CONFIG_FILE, {**meta, "finished": False})

    # Features and codec come before geometry: missing weights fail fast, and the joint schedule needs the
    # targets from step 0 (features are cached and the codec reused on resume, so targets are identical).
    try:
        lang_targets = (prepare_language(language, capture, train_views, workdir, seed=cfg.seed, progress=progress,
                                         reuse_codec=resume)
                        if language is not None else None)
    except LangfieldError:
        if not resume:  # nothing trained yet: leave no half-made scene that a rerun would refuse to overwrite
            _discard_new_output(workdir, created=not out_existed or staging is not None)
        raise
    joint = lang_targets is not None and language is not None and language.schedule == "joint"

    if ckpt_state is not None:
        params = torch.nn.ParameterDict(
            {k: torch.nn.Parameter(v.to(device)) for k, v in ckpt_state["params"].items()}
        )
        if joint != ("latents" in params):
            raise LangfieldError(f"{out}: the checkpoint was trained {'with' if 'latents' in params else 'without'} "
                                 "the joint language schedule; resume with the same --language-schedule")
    else:
        params = initial_gaussians(capture, train_views, cfg, device)
        if joint:
            assert lang_targets is not None
            add_zero_latents(params, lang_targets)
    joint_loss = (JointLatentLoss(lang_targets, language.joint_weight, device)
                  if joint and lang_targets is not None and language is not None else None)
    trainer = Trainer(cfg, train_views, params, scene_scale=float(capture.scene_scale), use_depth=use_depth,
                      extra_loss=joint_loss)
    if ckpt_state is not None:
        trainer.load_state_dict(ckpt_state)
        del ckpt_state

    def test_hook(tr: Trainer) -> dict:
        from langfield.eval.report import evaluate_views

        rows, _ = evaluate_views(tr.params, eval_views or train_views[:4], sh_degree=cfg.active_sh_degree(tr.step),
                                 background=cfg.background, backend=cfg.backend)
        return {"test_psnr": float(np.mean([r["psnr"] for r in rows]))}

    try:
        trainer.train(until=stop_after, scene_dir=workdir, progress=progress, on_test=test_hook)
    except KeyboardInterrupt:
        if staging is not None:
            # The old scene stays in place; say where the partial run went.
            print(f"interrupted --overwrite run: {out} is untouched; the partial run is in {staging}", file=sys.stderr)
        raise
    if trainer.step < cfg.iterations:
        return None

    params = trainer.params
    if lang_targets is not None:
        assert language is not None
        meta[LANGUAGE_KEY] = {**lang_targets.meta, **_finish_latents(params, train_views, lang_targets, language,
                                                                       joint_loss, cfg, progress)}

    wall = prior_wall + time.time() - t0
    meta.update(
        finished=True,
        iterations=trainer.step,
        num_gaussians=trainer.num_gaussians,
        sh_degree=cfg.sh_degree,
        wall_time_s=round(wall, 3),
    )
    save_scene(workdir, params, scene_cameras(train_views, eval_views), meta)

    from langfield.eval.report import evaluate_and_report

    report = evaluate_and_report(
        workdir, trainer.params, eval_views or train_views,
        sh_degree=cfg.sh_degree, background=cfg.background, backend=cfg.backend,
        iterations=trainer.step, wall_time_s=wall, split="eval" if eval_views else "train",
    )
    if staging is not None:
        _swap_in(staging, out)
    return ReconstructResult(out, report, trainer.num_gaussians, wall)
