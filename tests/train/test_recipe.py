"""The default training recipe: refine window fitted to the run, Gaussian budget from the image size."""

from __future__ import annotations

from langfield.gaussians.strategy import DefaultStrategy
from langfield.train.config import TrainConfig, config_from_dict, config_to_dict


def test_short_run_keeps_refine_interval_and_fits_the_window():
    s = TrainConfig(iterations=2000).resolved_strategy()
    # Refining every 100 steps (not more often on short runs) keeps growth from compounding.
    assert (s.refine_every, s.reset_every) == (100, 3000)
    assert (s.refine_start_iter, s.refine_stop_iter) == (500, 1500)
    demo = TrainConfig(iterations=800).resolved_strategy()
    refines = [t for t in range(800) if demo.refine_start_iter < t < demo.refine_stop_iter and t % demo.refine_every == 0]
    assert refines == [300, 400, 500]
    fixed = TrainConfig(iterations=2000, scale_strategy_schedule=False).resolved_strategy()
    assert (fixed.refine_start_iter, fixed.refine_stop_iter) == (500, 15_000)


def test_default_budget_follows_pixels_unless_capped_explicitly():
    cfg = TrainConfig(iterations=2000)
    assert cfg.resolved_strategy(160 * 120).max_gaussians == round(0.9 * 160 * 120)
    assert cfg.resolved_strategy(None).max_gaussians is None  # no image size known: no budget
    assert cfg.strategy.max_gaussians is None  # the user's strategy object is not modified
    cfg.strategy.max_gaussians = 500
    assert cfg.resolved_strategy(160 * 120).max_gaussians == 500
    off = TrainConfig(iterations=2000, gaussians_per_pixel=0)
    assert off.resolved_strategy(160 * 120).max_gaussians is None


def test_default_strategy_culls_like_splatfacto_and_round_trips():
    cfg = TrainConfig()
    assert cfg.strategy.prune_opa == 0.1
    assert DefaultStrategy().prune_opa == 0.005  # the gsplat-like class keeps gsplat's default
    assert config_from_dict(config_to_dict(cfg)) == cfg
