"""The language stage of reconstruct: latent loss, method choice, latent optimisation with frozen geometry."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from langfield.train.language import (
    LanguageConfig,
    LanguageTargets,
    latent_loss,
    resolve_method,
    train_latents,
)
from langfield.render.views import render_latents
from langfield.types import Capture, Label, LangfieldError


def test_latent_loss_ignores_invalid_pixels_and_levels():
    g = torch.Generator().manual_seed(0)
    h, w, n_levels, d = 5, 4, 2, 3
    pred = torch.randn(h, w, n_levels * d, generator=g)
    target = torch.randn(h, w, n_levels * d, generator=g)
    valid = torch.rand(h, w, n_levels, generator=g) > 0.5
    loss = latent_loss(pred, target, valid, d)
    # changing the target where it is invalid leaves the loss unchanged
    target2 = target.clone().reshape(h, w, n_levels, d)
    target2[~valid] += 100.0
    assert torch.allclose(latent_loss(pred, target2.reshape(h, w, -1), valid, d), loss)
    # equals the mean |error| over the valid (pixel, level) channels
    err = (pred - target).abs().reshape(h, w, n_levels, d)[valid]
    assert torch.allclose(loss, err.mean())


def test_latent_loss_is_zero_without_valid_pixels_and_keeps_gradient():
    pred = torch.randn(3, 3, 4, requires_grad=True)
    loss = latent_loss(pred, torch.zeros(3, 3, 4), torch.zeros(3, 3, 2, dtype=torch.bool), 2)
    loss.backward()
    assert loss.item() == 0.0 and pred.grad is not None


def _capture(labels):
    return Capture(root=Path("/nowhere"), frames=[], train_ids=[], eval_ids=[], labels=labels)


def test_resolve_method_defaults_and_errors():
    labelled = _capture({1: Label("leg", "table")})
    assert resolve_method(LanguageConfig(), labelled) == "labels"
    assert resolve_method(LanguageConfig(), _capture(None)) == "sam-clip"
    assert resolve_method(LanguageConfig(features="none"), labelled) is None
    assert resolve_method(LanguageConfig(features="dense"), labelled) == "dense"
    with pytest.raises(LangfieldError, match="labels.json"):
        resolve_method(LanguageConfig(features="labels"), _capture(None))
    with pytest.raises(LangfieldError):
        LanguageConfig(latent_dim=0)


def test_train_latents_fits_targets_and_freezes_geometry(tiny_views, make_gaussians):
    params = make_gaussians(40, seed=1)
    before = {k: v.detach().clone() for k, v in params.items()}
    views = tiny_views[:4]
    # Targets: what a known latent field renders, so the optimum is reachable.
    truth = torch.randn(40, 4, generator=torch.Generator().manual_seed(3))
    targets, valid = {}, {}
    with torch.no_grad():
        for v in views:
            img, _ = render_latents(params, v, truth, backend="cpu")
            targets[v.name] = img
            valid[v.name] = torch.ones(v.height, v.width, 2, dtype=torch.bool)
    lt = LanguageTargets("labels", ("part", "whole"), 2, targets, valid)
    stats = train_latents(params, views, lt, LanguageConfig(schedule="sequential", iterations=150, lr=0.05), backend="cpu", progress=False)
    assert params["latents"].shape == (40, 4)
    assert stats["latent_loss_last"] < 0.3 * stats["latent_loss_first"]
    for k, v in before.items():
        assert torch.equal(params[k].detach(), v), f"{k} changed during the latent stage"
