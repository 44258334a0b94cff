"""The joint language schedule: latents trained with the geometry in one render pass."""

from __future__ import annotations

import json

import torch

from langfield.gaussians.strategy import DefaultStrategy
from langfield.scene import load_scene
from langfield.train.config import TrainConfig
from langfield.train.language import (
    JointLatentLoss,
    LanguageConfig,
    LanguageTargets,
    add_zero_latents,
)
from langfield.train.reconstruct import reconstruct
from langfield.train.trainer import Trainer, seed_everything
from langfield.render.views import render_latents, render_params

TINY = "test-tiny"


def _known_field_targets(params, views, seed: int = 3) -> LanguageTargets:
    """Targets that a known latent field renders (2 levels x D=2), so the optimum is reachable."""
    truth = torch.randn(params["means"].shape[0], 4, generator=torch.Generator().manual_seed(seed))
    targets, valid = {}, {}
    with torch.no_grad():
        for v in views:
            targets[v.name], _ = render_latents(params, v, truth, backend="cpu")
            valid[v.name] = torch.ones(v.height, v.width, 2, dtype=torch.bool)
    return LanguageTargets("labels", ("part", "whole"), 2, targets, valid)


def _densifying_config(iterations: int, **kw) -> TrainConfig:
    strategy = DefaultStrategy(refine_start_iter=4, refine_every=5, refine_stop_iter=iterations, reset_every=10_000,
                               grow_grad2d=1e-7, max_gaussians=150)
    cfg = TrainConfig(iterations=iterations, seed=2, sh_degree=1, backend="cpu", checkpoint_every=0,
                      strategy=strategy, scale_strategy_schedule=False, **kw)
    cfg.lr.latents = 0.05
    return cfg


def test_latent_loss_reaches_the_geometry(tiny_views, make_gaussians):
    params = make_gaussians(40, seed=1)
    lt = _known_field_targets(params, tiny_views[:1])
    add_zero_latents(params, lt)
    with torch.no_grad():
        params["latents"].normal_()
    out = render_params(params, tiny_views[0], sh_degree=1, background=torch.zeros(3), backend="cpu",
                        render_depth=False, features=params["latents"])
    JointLatentLoss(lt, 1.0, "cpu")(tiny_views[0], out).backward()
    for key in ("means", "scales", "quats", "opacities", "latents"):
        g = params[key].grad
        assert g is not None and g.abs().sum() > 0, f"no latent-loss gradient reaches {key}"


def test_joint_trainer_fits_latents_and_densifies_them(tiny_views, make_gaussians):
    views = tiny_views[:6]
    lt = _known_field_targets(make_gaussians(40, seed=1), views)

    def run(weight: float, iterations: int, densify: bool) -> tuple[Trainer, JointLatentLoss]:
        seed_everything(2)
        params = make_gaussians(40, seed=1)  # the geometry the targets were rendered with
        add_zero_latents(params, lt)
        cfg = _densifying_config(iterations)
        if not densify:
            cfg.strategy.refine_start_iter = iterations
        loss = JointLatentLoss(lt, weight, "cpu")
        tr = Trainer(cfg, views, params, scene_scale=1.0, extra_loss=loss)
        tr.train(progress=False)
        return tr, loss

    tr, loss = run(1.0, 80, densify=True)
    n = tr.num_gaussians
    assert n != 40, "densification should have changed the count"
    assert tr.params["latents"].shape == (n, 4)
    assert tr.optimizers["latents"].state[tr.params["latents"]]["exp_avg"].shape == (n, 4)
    h = loss.history
    assert len(h) == 80 and sum(h[-10:]) / 10 < 0.5 * h[0]

    # The geometry is not frozen: the same run with the latent loss weighted 0 ends elsewhere.
    a, _ = run(1.0, 10, densify=False)
    b, _ = run(0.0, 10, densify=False)
    assert not torch.allclose(a.params["means"], b.params["means"])
    assert torch.count_nonzero(b.params["latents"]) == 0  # weight 0: no latent gradient at all


def test_reconstruct_joint_writes_scene_and_resumes_exactly(synthetic_dataset, tmp_path):
    lang = LanguageConfig(features="labels", clip=TINY, codec_steps=150, schedule="joint", joint_weight=0.5)
    iters = 40

    straight = reconstruct(synthetic_dataset, tmp_path / "a", _densifying_config(iters), language=lang,
                           progress=False)
    assert straight is not None
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    section = cfg["language"]
    assert cfg["language_config"]["schedule"] == "joint" and section["schedule"] == "joint"
    assert cfg["train"]["lr"]["latents"] == lang.lr
    assert section["joint_latent_loss_last"] < section["joint_latent_loss_first"]
    scene = load_scene(tmp_path / "a")
    assert scene.params["latents"].shape == (scene.num_gaussians, section["num_levels"] * section["latent_dim"])

    # Interrupted half-way, then resumed (no language given: the recorded one is used) == straight run.
    assert reconstruct(synthetic_dataset, tmp_path / "b", _densifying_config(iters), language=lang,
                       progress=False, stop_after=iters // 2) is None
    resumed = reconstruct(None, tmp_path / "b", resume=True, progress=False)
    assert resumed is not None and resumed.num_gaussians == straight.num_gaussians
    other = load_scene(tmp_path / "b")
    for key in scene.params.keys():
        torch.testing.assert_close(other.params[key], scene.params[key], rtol=0, atol=1e-5, msg=key)


def test_cli_language_schedule_option(tmp_path):
    import tyro

    from langfield.cli import Reconstruct

    args = tyro.cli(Reconstruct, args=[str(tmp_path), "--out", str(tmp_path / "s"), "--features", "labels",
                                       "--language-schedule", "joint", "--joint-weight", "0.3"])
    lang = args.language
    assert (lang.schedule, lang.joint_weight) == ("joint", 0.3)
    assert LanguageConfig().schedule == "refine"
