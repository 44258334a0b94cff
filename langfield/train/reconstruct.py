"""``reconstruct``: dataset -> scene directory (load, initialise, train, save, evaluate).

This module is the pipeline; where it writes (locking, staging, resume in place
or in a copy, the final swap, cleanup of a killed run) is ``train/outdir.py``.
Evaluation is a callback the caller passes (the CLI passes
``langfield.eval.report``'s functions): training writes scenes, ``eval`` reads
them, and neither imports the other.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Protocol

import numpy as np
import torch

from langfield.outputs import check_output, input_dir
from langfield.scene import LANGUAGE_KEY, SceneCamera, latest_checkpoint, load_scene_config, save_scene
from langfield.scene import CODEC_DIR, write_manifest
from langfield.scene_lock import FRONTEND_DATA, frontend_path

FRONTEND_KEY = "frontend_data"
"""config.json flag: the scene's ``data/`` was made by the pose front end (it is the scene's own, not an input)."""
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
from langfield.train.live import DEFAULT_VIEW_EVERY, LivePublisher, LiveView
from langfield.train.outdir import OutputDir, merged_config, read_config, update_config
from langfield.train.trainer import Trainer, seed_everything
from langfield.types import Capture, DataError, LangfieldError, View


class EvaluateFn(Protocol):
    """Evaluates a saved scene, writes ``scene_dir/eval/`` and returns the report
    (``langfield.eval.report.evaluate_and_report``)."""

    def __call__(self, scene_dir: Path, params: torch.nn.ParameterDict, views: list[View], *, sh_degree: int,
                 background: str, backend: str, iterations: int, wall_time_s: Optional[float],
                 split: str) -> dict[str, Any]: ...


class FrontendFn(Protocol):
    """Makes the posed dataset of an unposed input (``langfield.frontend``: video or photos -> SfM) for the scene
    ``scene_root``, inside the scene's writer lock; returns the dataset directory, which must lie in
    ``scene_lock.frontend_path(scene_root)`` (moved into ``SCENE/data`` once the scene is written)."""

    def __call__(self, scene_root: Path) -> Path: ...


class EvaluateViewsFn(Protocol):
    """Per-view metrics (rows with a ``psnr``) and tiles of ``views`` (``langfield.eval.report.evaluate_views``);
    the trainer's periodic test hook (``TrainConfig.test_every``)."""

    def __call__(self, params: torch.nn.ParameterDict, views: list[View], *, sh_degree: int, background: str,
                 backend: str) -> tuple[list[dict[str, Any]], Any]: ...


# LanguageConfig fields a resumed run takes from config.json whatever it is given (they shape the checkpoint).
_JOINT_FIELDS = ("schedule", "joint_weight", "lr")


@dataclass
class ReconstructResult:
    """What a finished reconstruction produced."""

    scene_dir: Path
    """The scene directory written."""
    report: dict[str, Any]
    """The evaluation report (also in scene_dir/eval/report.json); without an ``evaluate`` callback only
    the counts (iterations, num_gaussians, wall_time_s)."""
    num_gaussians: int
    """Final Gaussian count."""
    wall_time_s: float
    """Training + saving wall time of this invocation, seconds."""


def resolve_device(cfg: TrainConfig) -> torch.device:
    from langfield.render.backend import default_device

    return default_device(cfg.backend, cfg.device)


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


def _finish_latents(params: torch.nn.ParameterDict, views: list[View], targets: LanguageTargets,
                    language: LanguageConfig, joint_loss: Optional[JointLatentLoss], cfg: TrainConfig,
                    progress: bool, workdir: Path) -> dict[str, Any]:
    """After geometry training: lift or fit the latents (lift / sequential) or report the jointly trained ones;
    then record every Gaussian's total contribution (3D selection drops the never-visible); returns stats."""
    from langfield.train.language import lift_language
    from langfield.train.lift import contribution_stats, save_contribution, total_contribution

    contribution = None
    if language.schedule == "lift":
        stats, contribution = lift_language(params, views, targets, language, backend=cfg.backend)
    elif joint_loss is None:
        stats = train_latents(params, views, targets, language, backend=cfg.backend, seed=cfg.seed, progress=progress)
    else:
        params["latents"].requires_grad_(False)
        stats = joint_loss.stats()
    if contribution is None:
        contribution = total_contribution(params, views, backend=cfg.backend)
    save_contribution(workdir, contribution, len(views))
    return {**stats, **contribution_stats(contribution, language.lift_min_weight)}


def _input_dirs(capture: Capture) -> set[Path]:
    """Every folder the capture reads from (images, depth, semantics): all off limits to the output."""
    dirs = {Path(capture.root)}
    for f in capture.frames:
        for p in (f.image_path, f.depth_path, f.semantics_path):
            if p is not None:
                dirs.add(Path(p).parent)
    return dirs


@dataclass
class _RunSpec:
    """What a run trains with: given by the caller, or (resume) recorded by the run it continues."""

    data: Path
    cfg: TrainConfig
    language: Optional[LanguageConfig]
    prior_wall_s: float
    ckpt_state: Optional[dict[str, Any]]


def _fresh_spec(data: Optional[Path], cfg: Optional[TrainConfig], iterations: Optional[int],
                language: Optional[LanguageConfig]) -> _RunSpec:
    if data is None:
        raise LangfieldError("no dataset given")
    cfg = cfg or TrainConfig()
    if iterations is not None:
        cfg.iterations = iterations
    if language is not None and language.schedule == "joint":
        # The Trainer's Adam group for latents takes its LR from the run config; recording it there
        # keeps config.json truthful and makes --resume rebuild the same optimizer.
        cfg = dataclasses.replace(cfg, lr=dataclasses.replace(cfg.lr, latents=language.lr))
    return _RunSpec(Path(data), cfg, language, 0.0, None)


def _resumed_spec(od: OutputDir, data: Optional[Path], iterations: Optional[int],
                  language: Optional[LanguageConfig]) -> _RunSpec:
    source = od.checkpoint_source()
    meta = load_scene_config(source)
    ckpt_state = load_checkpoint(latest_checkpoint(source))
    cfg = config_from_dict(ckpt_state["config"])
    if iterations is not None:
        cfg.iterations = iterations
    recorded = meta.get("language_config")
    if isinstance(recorded, dict):
        if language is None:
            language = LanguageConfig(**recorded)
        else:
            # The schedule shapes the checkpoint (latents, their optimizer): always continue the recorded one.
            language = dataclasses.replace(language, **{k: recorded[k] for k in _JOINT_FIELDS if k in recorded})
    return _RunSpec(Path(data) if data is not None else Path(meta["data"]), cfg, language,
                    float(meta.get("wall_time_s") or 0.0), ckpt_state)


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
    evaluate: Optional[EvaluateFn] = None,
    evaluate_views: Optional[EvaluateViewsFn] = None,
    frontend: Optional[FrontendFn] = None,
    live: Optional[LiveView] = None,
    view_every: int = DEFAULT_VIEW_EVERY,
) -> Optional[ReconstructResult]:
    """Train a scene from a posed dataset and write the scene directory ``out``.

    Args:
        data: dataset path; with ``resume`` None means "the one in out/config.json".
        out: scene directory (never an input path: refused when it is, contains or lies inside
            the dataset or any folder the dataset reads).
        cfg: run config (ignored when resuming: the checkpoint's config is used).
        resume: continue from ``out``'s newest checkpoint (a finished scene in a copy swapped in
            at the end, so that a failed resume leaves it as it was).
        overwrite: replace an existing ``out`` once the new scene is complete.
        iterations: when resuming, a new total number of steps (else the checkpoint's).
        progress: show a progress bar.
        stop_after: stop (with a checkpoint, no scene written) after this many
            completed steps; used to test resumption.  Returns None then.
        language: language stage settings (``train.language``); None = no
            language stage (when resuming: the one recorded in config.json).
        evaluate: evaluates the saved scene and writes ``out/eval/``
            (``langfield.eval.report.evaluate_and_report``); None = no evaluation,
            the result's report then holds only the counts.
        frontend: for an unposed input (``data`` is a video or a photo folder): makes the posed dataset
            the scene trains on (``langfield.frontend.poses``); the dataset ends up in ``out/data``.
        evaluate_views: metrics of views for the periodic test hook
            (``langfield.eval.report.evaluate_views``; used when ``cfg.test_every`` > 0).
        live: a viewer following the training (``reconstruct --view``; ``train.live``): opened on the first
            Gaussians, sent a copy every ``view_every`` steps, switched to the written scene at the end.
    """
    out = Path(out)
    t0 = time.time()
    if not resume and data is not None:
        # Before anything is created or removed.  A video stands for itself, not for the folder it lies in.
        check_output(out, [data if frontend is not None else input_dir(data)])
    with OutputDir(out, resume=resume, overwrite=overwrite) as od:
        if frontend is not None and not resume:
            data = frontend(od.root)
        spec = (_resumed_spec(od, data, iterations, language) if resume
                else _fresh_spec(data, cfg, iterations, language))
        if not _is_own_data(od.root, spec.data):
            check_output(out, [input_dir(spec.data)])
        return _run(spec, od, progress=progress, stop_after=stop_after, evaluate=evaluate,
                    evaluate_views=evaluate_views, t0=t0,
                    publisher=LivePublisher(live, view_every) if live is not None else None)


def _is_own_data(root: Path, data: Path) -> bool:
    """Whether ``data`` is the dataset the front end made for the scene ``root`` (in its ``data/`` once written,
    in ``frontend_path`` before): the run's own output, not a user input that ``out`` must keep away from."""
    data = Path(data).resolve()
    if data.is_relative_to(frontend_path(root)):
        return True
    return data == root / FRONTEND_DATA and bool(read_config(root).get(FRONTEND_KEY))


def _adopt_frontend_data(od: OutputDir, workdir: Path, data: Path, meta: dict[str, Any]) -> None:
    """Move a front-end dataset from beside the scene into ``workdir/data`` (the last use of its images is over)."""
    base = frontend_path(od.root)
    if not data.is_relative_to(base):
        return
    target = workdir / FRONTEND_DATA
    if target.exists():
        shutil.rmtree(target)
    data.rename(target)
    meta["data"] = str(od.root / FRONTEND_DATA)
    meta[FRONTEND_KEY] = True


def _run(spec: _RunSpec, od: OutputDir, *, progress: bool, stop_after: Optional[int],
         evaluate: Optional[EvaluateFn], evaluate_views: Optional[EvaluateViewsFn],
         t0: float, publisher: Optional[LivePublisher] = None) -> Optional[ReconstructResult]:
    """The pipeline: load, initialise, train (geometry, language), save, evaluate, put in place."""
    cfg, language, ckpt_state = spec.cfg, spec.language, spec.ckpt_state
    resume = ckpt_state is not None
    data = spec.data.resolve()

    seed_everything(cfg.seed)
    device = resolve_device(cfg)
    capture = load_dataset(data, images=cfg.images, eval_every=cfg.eval_every)
    train_views, eval_views = load_split_views(capture, downscale=cfg.downscale, device=device)
    use_depth = capture.has_depth and any(v.depth is not None for v in train_views)
    if not _is_own_data(od.root, data):
        check_output(od.out, sorted(_input_dirs(capture)))
    workdir = od.prepare()

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
    # Written first so --resume knows the dataset even if training is interrupted; merged, so that
    # resuming never drops what the scene already recorded (its language section among others).
    update_config(workdir, {**meta, "finished": False})

    # Features and codec come before geometry: missing weights fail fast, and the joint schedule needs the
    # targets from step 0 (features are cached and the codec reused on resume, so targets are identical).
    try:
        lang_targets = (prepare_language(language, capture, train_views, workdir, seed=cfg.seed, progress=progress,
                                         reuse_codec=resume)
                        if language is not None else None)
    except LangfieldError:
        od.discard()  # nothing trained yet: leave no half-made scene that a rerun would refuse to overwrite
        raise
    joint = lang_targets is not None and language is not None and language.schedule == "joint"

    if ckpt_state is not None:
        params = torch.nn.ParameterDict(
            {k: torch.nn.Parameter(v.to(device)) for k, v in ckpt_state["params"].items()}
        )
        if joint != ("latents" in params):
            raise LangfieldError(f"{od.out}: the checkpoint was trained {'with' if 'latents' in params else 'without'} "
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
        spec.ckpt_state = None
    if publisher is not None:  # the viewer opens on the first Gaussians (train/live.py: what it shows when)
        publisher.start(trainer.params, scene_cameras(train_views, eval_views), {**meta, "finished": False},
                        language_meta=lang_targets.meta if joint and lang_targets is not None else None,
                        codec_dir=workdir / CODEC_DIR,
                        later=language.schedule if lang_targets is not None and language and not joint else None,
                        name=od.out.name)

    test_hook = None
    if evaluate_views is not None:
        def test_hook(tr: Trainer) -> dict:
            rows, _ = evaluate_views(tr.params, eval_views or train_views[:4], sh_degree=cfg.active_sh_degree(tr.step),
                                     background=cfg.background, backend=cfg.backend)
            return {"test_psnr": float(np.mean([r["psnr"] for r in rows]))}

    try:
        trainer.train(until=stop_after, scene_dir=workdir, progress=progress, on_test=test_hook, on_step=publisher)
    except KeyboardInterrupt:
        if od.staging is not None:
            what = "--resume of the finished scene" if resume else "--overwrite run"
            print(f"interrupted {what}: {od.out} is untouched (the next run on it removes the partial run in "
                  f"{od.staging})", file=sys.stderr)
        raise
    if trainer.step < cfg.iterations:
        return None

    params = trainer.params
    # --optimize-poses: the scene (its cameras, the language stage, eval) uses the refined poses.
    train_views, eval_views = trainer.pose_refined_views(eval_views)
    if lang_targets is not None:
        assert language is not None
        meta[LANGUAGE_KEY] = {**lang_targets.meta, **_finish_latents(params, train_views, lang_targets, language,
                                                                       joint_loss, cfg, progress, workdir)}

    _adopt_frontend_data(od, workdir, data, meta)
    wall = spec.prior_wall_s + time.time() - t0
    meta.update(
        finished=True,
        iterations=trainer.step,
        num_gaussians=trainer.num_gaussians,
        sh_degree=cfg.sh_degree,
        wall_time_s=round(wall, 3),
    )
    save_scene(workdir, params, scene_cameras(train_views, eval_views), merged_config(read_config(workdir), meta))

    if evaluate is not None:
        report = evaluate(
            workdir, trainer.params, eval_views or train_views,
            sh_degree=cfg.sh_degree, background=cfg.background, backend=cfg.backend,
            iterations=trainer.step, wall_time_s=wall, split="eval" if eval_views else "train",
        )
    else:
        report = {"iterations": trainer.step, "num_gaussians": trainer.num_gaussians, "wall_time_s": round(wall, 3)}
    write_manifest(workdir)  # last write before the swap: the manifest covers eval/ as written just now
    od.commit()
    shutil.rmtree(frontend_path(od.root), ignore_errors=True)  # frames and SfM work: the dataset is in the scene
    if publisher is not None:
        publisher.finish(od.out)
    return ReconstructResult(od.out, report, trainer.num_gaussians, wall)
