"""Training-free lifting: per-Gaussian contributions (vs a brute-force reference), the lift, the lift schedule."""

from __future__ import annotations

import pytest
import torch

from langfield.gaussians.params import activate
from langfield.render import render
from langfield.train.language import LanguageConfig, LanguageTargets, lift_language
from langfield.train.lift import gaussian_contributions, lift_latents, total_contribution
from langfield.types import ConfigError


def _pixel_weights(params, view) -> torch.Tensor:
    """[H, W, N] blending weight of every Gaussian at every pixel: the torch reference renders the identity
    matrix as features, so channel g of pixel p is exactly w_gp."""
    g = activate(params)
    n = g.means.shape[0]
    out = render(g.means.detach(), g.quats.detach(), g.scales.detach(), g.opacities.detach(), view.viewmat[None],
                 view.K[None], int(view.width), int(view.height), colors=torch.zeros(n, 3), features=torch.eye(n),
                 render_depth=False, backend="torch")
    return out.features[0]


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_contributions_match_brute_force_weights(tiny_views, make_gaussians, backend):
    params = make_gaussians(40, seed=1)
    view = tiny_views[0]
    gen = torch.Generator().manual_seed(3)
    targets = torch.randn(view.height, view.width, 5, generator=gen)
    masks = (torch.rand(view.height, view.width, 2, generator=gen) > 0.3).float()
    w = _pixel_weights(params, view)  # [H, W, N]
    assert w.sum() > 1.0  # the view sees the Gaussians: the check is not vacuous
    wsum, wfeat = gaussian_contributions(params, view, targets, masks, backend=backend)
    torch.testing.assert_close(wsum, torch.einsum("hwn,hwk->nk", w, masks), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(wfeat, torch.einsum("hwn,hwc->nc", w, targets), atol=1e-4, rtol=1e-4)
    # without masks: the plain total weight
    total, none = gaussian_contributions(params, view, backend=backend)
    assert none is None
    torch.testing.assert_close(total[:, 0], w.sum((0, 1)), atol=1e-4, rtol=1e-4)


def _targets_from_labels(params, views, latent_of_gaussian, n_levels=1, d=2) -> LanguageTargets:
    """Per-view targets = the render of a per-Gaussian latent (so a perfect lift exists), valid where alpha > 0.5."""
    targets, valid = {}, {}
    for v in views:
        g = activate(params)
        out = render(g.means.detach(), g.quats.detach(), g.scales.detach(), g.opacities.detach(), v.viewmat[None],
                     v.K[None], v.width, v.height, colors=torch.zeros(g.means.shape[0], 3),
                     features=latent_of_gaussian, render_depth=False, backend="cpu")
        alpha = out.alpha[0]
        targets[v.name] = (out.features[0] / alpha.clamp_min(1e-6)) * (alpha > 0.5)
        valid[v.name] = (alpha > 0.5).expand(-1, -1, n_levels).contiguous()
    return LanguageTargets("labels", ("part",), d, targets, valid)


def test_lift_recovers_a_constant_latent_and_flags_unseen(tiny_views, make_gaussians):
    params = make_gaussians(40, seed=1)
    n = params["means"].shape[0]
    const = torch.tensor([[0.7, -0.3]]).expand(n, -1).contiguous()
    tg = _targets_from_labels(params, tiny_views, const)
    # a Gaussian far behind every camera's view (moved out of the room) is never seen
    with torch.no_grad():
        params["means"][0] = torch.tensor([1e3, 1e3, 1e3])
    res = lift_latents(params, tiny_views, tg, min_weight=0.05, backend="cpu")
    assert res.contribution[0] == 0 and res.latents[0].abs().sum() == 0
    seen = res.level_weight[:, 0] >= 0.05
    assert seen.sum() > n // 2
    torch.testing.assert_close(res.latents[seen], const[seen], atol=1e-4, rtol=1e-4)
    # the robust aggregate agrees on consistent data
    rob = lift_latents(params, tiny_views, tg, min_weight=0.05, robust_iterations=5, backend="cpu")
    torch.testing.assert_close(rob.latents[seen], const[seen], atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(total_contribution(params, tiny_views, backend="cpu"), res.contribution)


def test_robust_lift_resists_an_outlier_view(tiny_views, make_gaussians):
    params = make_gaussians(40, seed=1)
    n = params["means"].shape[0]
    good = _targets_from_labels(params, tiny_views, torch.tensor([[1.0, 0.0]]).expand(n, -1).contiguous())
    bad_view = tiny_views[0].name
    good.targets[bad_view] = good.targets[bad_view] * 0 + torch.tensor([-20.0, 20.0]) * good.valid[bad_view]
    mean = lift_latents(params, tiny_views, good, backend="cpu")
    rob = lift_latents(params, tiny_views, good, robust_iterations=10, backend="cpu")
    target = torch.tensor([1.0, 0.0])
    seen = mean.level_weight[:, 0] > 0.5
    err_mean = (mean.latents[seen] - target).norm(dim=-1).mean()
    err_rob = (rob.latents[seen] - target).norm(dim=-1).mean()
    assert err_rob < 0.5 * err_mean


def test_lift_schedule_sets_frozen_latents_and_config_checks(tiny_views, make_gaussians):
    params = make_gaussians(40, seed=1)
    n = params["means"].shape[0]
    tg = _targets_from_labels(params, tiny_views, torch.randn(n, 2, generator=torch.Generator().manual_seed(0)))
    stats, contribution = lift_language(params, tiny_views, tg, LanguageConfig(schedule="lift"), backend="cpu")
    assert params["latents"].shape == (n, 2) and not params["latents"].requires_grad
    assert stats["lift_views"] == len(tiny_views) and contribution.shape == (n,)
    with pytest.raises(ConfigError):
        LanguageConfig(schedule="lift", lift_min_weight=-1)


def _mean_2d_loss(params, views, tg) -> float:
    """The latent L1 loss of ``params['latents']`` averaged over all views."""
    from langfield.render.views import render_latents
    from langfield.train.language import latent_loss

    with torch.no_grad():
        return sum(float(latent_loss(render_latents(params, v, params["latents"], backend="cpu")[0],
                                     tg.targets[v.name], tg.valid[v.name], tg.latent_dim)) for v in views) / len(views)


def test_lift_anchor_keeps_weakly_seen_gaussians_at_the_lift(tiny_views, make_gaussians):
    """Sequential from the lift: the anchor holds the hardly visible Gaussians at their lifted latent (what the
    3D selection needs) while the 2D loss still falls below the lift's (what the renders need)."""
    from langfield.train.language import train_latents

    base = make_gaussians(40, seed=1)
    n = base["means"].shape[0]
    # per-Gaussian latents rendered as targets: Gaussians blend at borders, so the lift is not a perfect fit
    tg = _targets_from_labels(base, tiny_views, torch.randn(n, 2, generator=torch.Generator().manual_seed(0)))
    lifted = lift_latents(base, tiny_views, tg, backend="cpu")
    weak = (lifted.contribution > 0.05) & (lifted.contribution < lifted.contribution.median())
    assert weak.sum() >= 5

    def run(anchor: float):
        params = make_gaussians(40, seed=1)
        cfg = LanguageConfig(schedule="sequential", iterations=40, lr=0.05, init_from_lift=True, lift_anchor=anchor)
        stats = train_latents(params, tiny_views, tg, cfg, backend="cpu", progress=False)
        drift = (params["latents"] - lifted.latents).norm(dim=-1)
        return params, stats, drift

    free_params, free_stats, free_drift = run(0.0)
    held_params, held_stats, held_drift = run(5.0)
    assert free_stats["lift_anchor"] == 0.0 and held_stats["lift_anchor"] == 5.0 and "lift_seconds" in held_stats
    assert held_drift[weak].mean() < 0.5 * free_drift[weak].mean()
    lift_params = make_gaussians(40, seed=1)
    lift_params["latents"] = torch.nn.Parameter(lifted.latents.clone(), requires_grad=False)
    assert _mean_2d_loss(held_params, tiny_views, tg) < _mean_2d_loss(lift_params, tiny_views, tg)
    with pytest.raises(ConfigError):
        LanguageConfig(init_from_lift=True, lift_anchor=-1.0)
    with pytest.raises(ConfigError):
        LanguageConfig(schedule="refine", refine_iterations=0)


def test_refine_schedule_is_the_anchored_lift_with_its_own_step_count(tiny_views, make_gaussians):
    """schedule=refine == sequential from the lift with the anchor, for refine_iterations steps."""
    from langfield.train.language import train_latents

    params = make_gaussians(40, seed=1)
    n = params["means"].shape[0]
    tg = _targets_from_labels(params, tiny_views, torch.randn(n, 2, generator=torch.Generator().manual_seed(0)))
    refined = make_gaussians(40, seed=1)
    stats = train_latents(refined, tiny_views, tg, LanguageConfig(schedule="refine", refine_iterations=7, lift_anchor=5.0),
                          backend="cpu", progress=False)
    same = make_gaussians(40, seed=1)
    train_latents(same, tiny_views, tg, LanguageConfig(schedule="sequential", iterations=7, init_from_lift=True, lift_anchor=5.0),
                  backend="cpu", progress=False)
    assert stats["latent_iterations"] == 7 and stats["lift_anchor"] == 5.0
    torch.testing.assert_close(refined["latents"], same["latents"])
    lifted = lift_latents(params, tiny_views, tg, backend="cpu").latents
    assert 0 < (refined["latents"] - lifted).abs().max() < 1.0  # it moved, but stayed near the lift
