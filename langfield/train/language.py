"""The language stage of ``reconstruct``: 2D features -> codec -> per-Gaussian latents.

Default schedule (the issue's "geometry first, then latents"):

1. ``prepare_language`` (before geometry training, so a missing model fails
   fast): extract CLIP features of the training views (cached under
   ``SCENE/features_cache``), train the per-scene codec on them (saved to
   ``SCENE/codec/``) and encode per-view latent targets ``[H, W, L*D]``.
2. ``train_latents`` (after geometry training): add ``latents`` [N, L*D]
   (zeros) to the Gaussians and optimise only them with Adam, geometry
   frozen, rendering latents through the same rasterizer backend.  The loss is
   L1 on pixels that carry a feature at that level (the valid mask).

Joint schedule (``LanguageConfig.schedule = "joint"``): step 1 is the same,
then ``latents`` exist from step 0 and are optimised *with* the geometry: each
training step renders RGB and latents in one rasterizer pass and adds
``joint_weight * latent_loss`` to the photometric loss (``JointLatentLoss``,
the Trainer's ``extra_loss`` hook), so the latent loss also moves the geometry.
Densification carries the latent rows like any other parameter.

Lift schedule: no optimisation, each Gaussian gets the blending-weighted mean of
the targets (``train/lift.py``).  Refine schedule: the lift, then a short
``train_latents`` run from it with every latent pulled towards its lifted value
(``lift_anchor``; docs/language3d.md has the measurements).

Level ``l`` occupies latent columns ``[l*D, (l+1)*D)`` (one shared codec).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Optional

import torch
import tyro

from langfield.codec.model import split_levels
from langfield.features.weights import DEFAULT_CLIP
from langfield.render.views import render_latents
from langfield.scene import CODEC_DIR
from langfield.train.lift import lift_latents
from langfield.types import Capture, ConfigError, DataError, LangfieldError, RenderOutput, View

log = logging.getLogger(__name__)

FeatureOption = Literal["auto", "labels", "sam-clip", "dense", "none"]
Schedule = Literal["sequential", "joint", "lift", "refine"]
FEATURES_CACHE_DIR = "features_cache"


def _alias(*names: str) -> Any:
    """The short command-line spelling(s) of a field (``langfield reconstruct`` nests this config as --language.*)."""
    return tyro.conf.arg(aliases=names)


@dataclass
class LanguageConfig:
    """Settings of the language stage (features, codec, latent optimisation).

    ``langfield reconstruct`` nests it as ``--language.*``; the aliases are the
    flags' historical short spellings.  Bad values raise ``ConfigError``.
    """

    features: Annotated[FeatureOption, _alias("--features")] = "auto"
    """Feature source: labels | sam-clip | dense | none; auto = labels when the capture has labels.json, else sam-clip."""
    clip: Annotated[str, _alias("--clip")] = DEFAULT_CLIP
    """CLIP option: open_clip MODEL[:TAG], a checkpoint path, or test-tiny (random, tests only; see
    `langfield weights`)."""
    sam: Annotated[Optional[str], _alias("--sam")] = None
    """SAM option for sam-clip: vit_h | vit_l | vit_b | a checkpoint path | test-tiny (default vit_h)."""
    latent_dim: Annotated[int, _alias("--latent-dim")] = 3
    """D, codec latent width per level (rendered channels = levels * D)."""
    codec_steps: Annotated[int, _alias("--codec-steps")] = 3000
    """Adam steps of the codec."""
    iterations: Annotated[int, _alias("--latent-iterations")] = 2000
    """Latent optimisation steps (one random training view per step), geometry frozen; sequential schedule only."""
    lr: float = 0.02
    """Adam learning rate of the latents (higher than LangSplat's 2.5e-3: our runs are much shorter)."""
    schedule: Annotated[Schedule, _alias("--language-schedule")] = "refine"
    """refine (the default: the only schedule that met both the 2D and the 3D-selection targets on a held-out
    room, docs/language3d.md) or one of: sequential = geometry first, then latents with geometry frozen; joint = latents trained with the geometry
    from step 0 (one render pass for RGB + latents, the latent loss also moves the geometry); lift = geometry
    first, then no optimisation: each Gaussian gets the blending-weighted aggregate of the training views'
    latent targets (``train/lift.py``; seconds instead of minutes, and right in 3D); refine = the lift, then
    ``refine_iterations`` steps of the 2D latent loss with every latent pulled towards its lifted value
    (``lift_anchor``), so the renders sharpen at segment borders while the 3D selection stays the lift's."""
    lift_min_weight: float = 0.05
    """Lift (and selection's visibility flag): a Gaussian whose summed blending weight at a level over all
    training views is below this many pixels keeps a zero latent there (never seen)."""
    lift_robust_iterations: int = 0
    """Lift: Weiszfeld iterations towards the weighted geometric median of the per-view means (0 = weighted
    mean; VALA-style robustness to views that see a Gaussian only through a border)."""
    init_from_lift: bool = False
    """Sequential schedule: start the latent optimisation from the lift instead of zeros (then ``lift_anchor``
    applies)."""
    refine_iterations: int = 300
    """Refine schedule: steps of the 2D latent loss after the lift (one random training view per step).  300: with
    anchor 1.0, 600 steps gained nothing over 300 on the held-out 320x240 room (docs/language3d.md)."""
    lift_anchor: float = 0.3
    """Whenever the latent optimisation starts from the lift (refine, or sequential with ``init_from_lift``):
    weight of an L2 pull of every latent towards its lifted value (mean over Gaussians and channels; 0 =
    none).  The 2D loss's gradient on a Gaussian scales with its blending weight, the pull does not, so hardly
    visible Gaussians stay at the lift (right in 3D) while the dominant ones are free to sharpen the renders
    (right in 2D).  0.3: on the held-out 320x240 room (docs/language3d.md) 1.0 gave 2D mIoU 0.900 and 0.1 cost
    3D precision 0.85 (vs 0.88); 0.3 gave 0.905 in 2D and 0.678 / 0.925 / 0.872 in 3D."""
    joint_weight: Annotated[float, _alias("--joint-weight")] = 1.0
    """Joint schedule: weight (> 0) of the latent L1 loss added to the RGB loss.  Adam makes the latents' own
    updates independent of it; it only sets how hard the latent loss pulls the shared geometry against RGB.  1.0:
    on the labelled synthetic room (160x120, 1000 steps, 2 seeds) it beat 0.1 by ~0.011 query IoU for ~0.1-0.3 dB
    less RGB PSNR; lower it when RGB matters more or the targets are view-inconsistent (sam-clip)."""
    skip_if_unavailable: Optional[bool] = None
    """Skip the stage with a warning (instead of failing) when the model weights are missing.  None = only when
    nothing was chosen (features auto, the default CLIP, no SAM), so a plain `reconstruct` never fails for want
    of optional weights while anything named explicitly fails loudly."""
    device: str = "cpu"
    """Torch device of the feature models and the codec."""

    def __post_init__(self) -> None:
        if self.latent_dim < 1:
            raise ConfigError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if self.iterations < 1 or self.codec_steps < 1 or self.refine_iterations < 1:
            raise ConfigError("language iterations, refine iterations and codec steps must be >= 1")
        if self.schedule not in ("sequential", "joint", "lift", "refine"):
            raise ConfigError(f"language schedule must be sequential, joint, lift or refine, got {self.schedule!r}")
        if self.lift_min_weight < 0 or self.lift_robust_iterations < 0:
            raise ConfigError("lift_min_weight and lift_robust_iterations must be >= 0")
        if self.lift_anchor < 0:
            raise ConfigError(f"lift_anchor must be >= 0, got {self.lift_anchor}")
        if self.joint_weight <= 0:
            # weight 0 would give the latents no gradient at all (they would stay 0)
            raise ConfigError(f"joint_weight must be > 0, got {self.joint_weight}")
        if self.lr <= 0:
            raise ConfigError(f"language lr must be > 0, got {self.lr}")
        if self.skip_if_unavailable is None:
            self.skip_if_unavailable = self.features == "auto" and self.clip == DEFAULT_CLIP and self.sam is None


@dataclass
class LanguageTargets:
    """What the latent stage trains against."""

    method: str
    """Resolved feature method (labels | sam-clip | dense)."""
    level_names: tuple[str, ...]
    """Level names, fine to coarse."""
    latent_dim: int
    """D per level."""
    targets: dict[str, torch.Tensor]
    """View name -> [H, W, L*D] float32 latent targets (0 where invalid)."""
    valid: dict[str, torch.Tensor]
    """View name -> [H, W, L] bool, where a level has a feature."""
    meta: dict[str, Any] = field(default_factory=dict)
    """JSON-ready summary recorded in config.json (method, clip, levels, codec report ...)."""

    @property
    def num_levels(self) -> int:
        return len(self.level_names)


def resolve_method(cfg: LanguageConfig, capture: Capture) -> Optional[str]:
    """The concrete feature method, or None when the stage is off."""
    if cfg.features == "none":
        return None
    if cfg.features == "auto":
        return "labels" if capture.labels else "sam-clip"
    if cfg.features == "labels" and not capture.labels:
        raise LangfieldError(f"{capture.root}: --features labels needs labels.json beside the transforms file")
    return cfg.features


def prepare_language(
    cfg: LanguageConfig,
    capture: Capture,
    views: list[View],
    scene_dir: Path,
    *,
    seed: int = 0,
    progress: bool = True,
    reuse_codec: bool = False,
) -> Optional[LanguageTargets]:
    """Extract (cached) features of ``views``, train + save the codec, encode latent targets.

    ``reuse_codec`` (resume) loads the codec already saved in ``scene_dir`` when
    it fits the features, so a resumed joint run trains against the very same
    targets.  Returns None when the stage is off, or skipped because weights
    are missing and ``cfg.skip_if_unavailable`` (a warning says why).
    """
    method = resolve_method(cfg, capture)
    if method is None:
        return None
    from langfield.codec import CodecConfig, CodecTrainConfig, collect_features, encode_feature_map, save_codec, train_codec
    from langfield.features import ExtractConfig, extract_features

    scene_dir = Path(scene_dir)
    t0 = time.perf_counter()
    try:
        maps = extract_features(
            [View(v.name, v.viewmat, v.K, v.width, v.height, rgb=_cpu(v.rgb), semantics=_cpu(v.semantics)) for v in views],
            method,  # type: ignore[arg-type]
            clip=cfg.clip,
            sam=cfg.sam,
            cache_dir=scene_dir / FEATURES_CACHE_DIR,
            labels=capture.labels,
            progress=progress,
            config=ExtractConfig(device=cfg.device),
        )
    except LangfieldError as e:
        if not cfg.skip_if_unavailable:
            raise
        _remove_empty_tree(scene_dir / FEATURES_CACHE_DIR)
        msg = " ".join(str(e).split())
        # One logged warning (stderr): printing it as well showed the same long line twice.
        log.warning("language stage skipped (%s); pass --features none to silence, or --clip test-tiny for an offline demo", msg)
        return None
    t_features = time.perf_counter() - t0

    first = next(iter(maps.values()))
    level_names = tuple(first.level_names)
    feats = collect_features(maps.values())
    if feats.shape[0] == 0:
        raise LangfieldError(f"{capture.root}: no language features in any training view (empty segment maps)")
    codec_cfg = CodecConfig(embed_dim=int(feats.shape[1]), latent_dim=cfg.latent_dim, num_levels=len(level_names))
    reused = _saved_codec(scene_dir / CODEC_DIR, codec_cfg, cfg.device) if reuse_codec else None
    if reused is not None:
        codec, report_json = reused
    else:
        codec, report = train_codec(feats, codec_cfg, CodecTrainConfig(steps=cfg.codec_steps, seed=seed, device=cfg.device))
        save_codec(codec, scene_dir / CODEC_DIR, report)
        report_json = report.to_json()

    targets: dict[str, torch.Tensor] = {}
    valid: dict[str, torch.Tensor] = {}
    for v in views:
        lat, ok = encode_feature_map(codec, maps[v.name], size=(v.height, v.width))  # [L, H, W, D], [L, H, W]
        targets[v.name] = lat.permute(1, 2, 0, 3).reshape(v.height, v.width, -1).contiguous()
        valid[v.name] = ok.permute(1, 2, 0).contiguous()
    meta = {
        "method": method,
        "clip": cfg.clip,
        "sam": cfg.sam,
        "levels": list(level_names),
        "num_levels": len(level_names),
        "latent_dim": cfg.latent_dim,
        "embed_dim": int(feats.shape[1]),
        "codec_dir": CODEC_DIR,
        "codec_report": report_json,
        "feature_seconds": round(t_features, 3),
        "schedule": cfg.schedule,
    }
    return LanguageTargets(method, level_names, cfg.latent_dim, targets, valid, meta)


def _saved_codec(directory: Path, want: Any, device: str) -> Optional[tuple[Any, Optional[dict]]]:
    """(codec, report) saved in ``directory`` if it exists and has config ``want``, else None."""
    from langfield.scene import load_scene_codec

    if not directory.is_dir():
        return None
    try:
        codec, report = load_scene_codec(directory.parent, directory.name, device=device)
    except DataError as e:
        log.warning("retraining the codec: %s", e)
        return None
    return (codec, report) if codec.config == want else None


def _remove_empty_tree(path: Path) -> None:
    """Delete ``path`` if it holds only empty directories (a skipped stage leaves no trace)."""
    if not path.is_dir():
        return
    dirs = sorted((p for p in path.rglob("*")), key=lambda p: len(p.parts), reverse=True)
    if any(p.is_file() for p in dirs):
        return
    for p in dirs:
        p.rmdir()
    path.rmdir()


def _cpu(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if t is None else t.detach().cpu()


def latent_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, latent_dim: int) -> torch.Tensor:
    """Mean L1 over the latent channels of valid (pixel, level) pairs.

    ``pred``/``target`` [H, W, L*D], ``valid`` [H, W, L] bool.  0 (still
    differentiable) when nothing is valid.
    """
    h, w, total = pred.shape
    diff = split_levels((pred - target).abs(), latent_dim).sum(-1)  # [H, W, L]
    n = valid.sum()
    if n == 0:
        return pred.sum() * 0.0
    return (diff * valid).sum() / (n * latent_dim)


def add_zero_latents(params: torch.nn.ParameterDict, targets: LanguageTargets) -> None:
    """Give every Gaussian a trainable ``latents`` row of zeros ([N, L*D])."""
    n, device = params["means"].shape[0], params["means"].device
    params["latents"] = torch.nn.Parameter(torch.zeros(n, targets.num_levels * targets.latent_dim, device=device))


class JointLatentLoss:
    """The joint schedule's extra loss: ``weight * latent_loss`` of the step's rendered latents.

    Called by the Trainer with the view and the render of the step (which
    carries ``features`` = the rendered latents, composited in the same pass
    as RGB and differentiable w.r.t. latents *and* geometry).  Keeps the
    unweighted per-step losses in ``history`` for reporting.
    """

    def __init__(self, targets: LanguageTargets, weight: float, device: torch.device | str) -> None:
        self.latent_dim = targets.latent_dim
        self.weight = float(weight)
        self.targets = {k: v.to(device) for k, v in targets.targets.items()}
        self.valid = {k: v.to(device) for k, v in targets.valid.items()}
        self.history: list[float] = []
        self._pooled: dict[tuple[str, int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, view: View, out: RenderOutput) -> torch.Tensor:
        if out.features is None:
            raise ValueError("joint latent loss: the render carries no features (params lack 'latents'?)")
        pred = out.features[0]
        if view.name not in self.targets:  # a view without features contributes nothing
            return pred.sum() * 0.0
        target, valid = self._at_size(view.name, pred.shape[0], pred.shape[1])
        loss = latent_loss(pred, target, valid, self.latent_dim)
        self.history.append(float(loss.detach()))
        return self.weight * loss

    def _at_size(self, name: str, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Targets of view ``name`` at h x w: a coarse-to-fine step renders a downscaled view.

        Each coarse pixel averages the valid targets of its block (per level) and
        is valid when at least half of the block is, so segment borders do not
        pull latents towards the zeros of invalid pixels.
        """
        target, valid = self.targets[name], self.valid[name]
        if tuple(target.shape[:2]) == (h, w):
            return target, valid
        key = (name, h, w)
        if key not in self._pooled:
            f = target.shape[0] // h
            if f < 1 or target.shape[1] // f != w:
                raise ValueError(f"joint latent loss: cannot fit {tuple(target.shape[:2])} targets to {h}x{w}")
            n_levels = valid.shape[-1]
            t = target[: h * f, : w * f].reshape(h * f, w * f, n_levels, self.latent_dim)
            m = valid[: h * f, : w * f].to(t.dtype)
            t = (t * m[..., None]).permute(2, 3, 0, 1)  # [L, D, H, W]
            frac = torch.nn.functional.avg_pool2d(m.permute(2, 0, 1)[None], f)[0].permute(1, 2, 0)  # [h, w, L]
            mean = torch.nn.functional.avg_pool2d(t, f).permute(2, 3, 0, 1) / frac.clamp_min(1e-6)[..., None]
            self._pooled[key] = (mean.reshape(h, w, -1).contiguous(), frac >= 0.5)
        return self._pooled[key]

    def stats(self, window: int = 50) -> dict[str, float]:
        """First / mean-of-last-``window`` unweighted losses of this invocation (NaN when none)."""
        h = self.history
        last = sum(h[-window:]) / len(h[-window:]) if h else float("nan")
        return {"joint_latent_loss_first": h[0] if h else float("nan"), "joint_latent_loss_last": last,
                "joint_weight": self.weight}


def train_latents(
    params: torch.nn.ParameterDict,
    views: list[View],
    targets: LanguageTargets,
    cfg: LanguageConfig,
    *,
    backend: str = "auto",
    seed: int = 0,
    progress: bool = True,
) -> dict[str, float]:
    """Add ``params['latents']`` (zeros, [N, L*D]; the lift for refine / ``init_from_lift``) and fit only it.

    Returns loss statistics (the 2D loss, without the anchor term).

    Geometry and colours are detached inside the render, so they are not
    changed (the geometry-first schedule).
    """
    from tqdm.auto import tqdm

    from_lift = cfg.init_from_lift or cfg.schedule == "refine"
    n_steps = cfg.refine_iterations if cfg.schedule == "refine" else cfg.iterations
    add_zero_latents(params, targets)
    anchor: Optional[torch.Tensor] = None
    t_lift = 0.0
    if from_lift:
        lifted = lift_latents(params, views, targets, min_weight=cfg.lift_min_weight,
                              robust_iterations=cfg.lift_robust_iterations, backend=backend)
        t_lift = lifted.seconds
        with torch.no_grad():
            params["latents"].copy_(lifted.latents)
        if cfg.lift_anchor > 0:
            anchor = lifted.latents.detach().clone()
    opt = torch.optim.Adam([params["latents"]], lr=cfg.lr)
    device = params["means"].device
    gen = torch.Generator().manual_seed(seed + 7919)  # own stream: does not perturb geometry RNG use
    tgt = {k: v.to(device) for k, v in targets.targets.items()}
    val = {k: v.to(device) for k, v in targets.valid.items()}
    usable = [v for v in views if v.name in tgt]
    if not usable:
        raise LangfieldError("language stage: no training view has latent targets")
    first = last = float("nan")
    t0 = time.perf_counter()
    order: list[int] = []
    for step in tqdm(range(n_steps), desc="latents", disable=not progress, unit="step"):
        if not order:
            order = torch.randperm(len(usable), generator=gen).tolist()
        view = usable[order.pop()]
        pred, _ = render_latents(params, view, params["latents"], backend=backend)
        loss_2d = latent_loss(pred, tgt[view.name], val[view.name], targets.latent_dim)
        loss = loss_2d
        if anchor is not None:
            loss = loss + cfg.lift_anchor * (params["latents"] - anchor).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step == 0:
            first = loss_2d.item()  # the 2D loss alone, comparable across anchors
        last = loss_2d.item()
    params["latents"].requires_grad_(False)
    stats = {"latent_loss_first": first, "latent_loss_last": last, "latent_seconds": round(time.perf_counter() - t0, 3),
             "latent_iterations": n_steps}
    if from_lift:
        stats.update(lift_seconds=round(t_lift, 3), lift_anchor=cfg.lift_anchor)
    return stats



def lift_language(
    params: torch.nn.ParameterDict,
    views: list[View],
    targets: LanguageTargets,
    cfg: LanguageConfig,
    *,
    backend: str = "auto",
) -> tuple[dict[str, Any], torch.Tensor]:
    """The lift schedule: ``params['latents']`` = the lifted latents (no optimisation); (stats, contribution [N])."""
    res = lift_latents(params, views, targets, min_weight=cfg.lift_min_weight,
                       robust_iterations=cfg.lift_robust_iterations, backend=backend)
    params["latents"] = torch.nn.Parameter(res.latents, requires_grad=False)
    stats = {"lift_seconds": round(res.seconds, 3), "lift_views": len([v for v in views if v.name in targets.targets]),
             "lift_min_weight": cfg.lift_min_weight, "lift_robust_iterations": cfg.lift_robust_iterations}
    return stats, res.contribution
