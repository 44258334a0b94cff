"""Normalisation, mask rule and heatmap PNGs."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from langfield.query.masks import (
    heatmap_overlay,
    majority_filter,
    normalize_relevancy,
    relevancy_mask,
    save_heatmap_png,
    save_mask_png,
    turbo_colormap,
)
from langfield.query.relevancy import QueryConfig


def test_normalize_modes():
    r = torch.tensor([[0.2, 0.4], [0.5, 0.6]])
    mm = normalize_relevancy(r, "minmax")
    torch.testing.assert_close(mm, (r - 0.2) / 0.4, atol=1e-6, rtol=0)
    ls = normalize_relevancy(r, "langsplat")
    # lower half of the map's range -> 0; top -> 1; 0.5 -> n = 0.75 -> 0.5
    torch.testing.assert_close(ls, torch.tensor([[0.0, 0.0], [0.5, 1.0]]), atol=1e-6, rtol=0)
    le = normalize_relevancy(r, "lerf")
    torch.testing.assert_close(le, torch.tensor([[0.0, 0.0], [0.0, 1.0]]), atol=1e-5, rtol=0)
    assert normalize_relevancy(torch.full((3, 3), 0.3), "lerf").max() == 0  # nothing beats the negatives


def test_majority_filter_removes_speckle_keeps_blob():
    m = torch.zeros(20, 20, dtype=torch.bool)
    m[2, 2] = True  # speckle
    m[8:16, 8:16] = True  # blob
    out = majority_filter(m, 7)
    assert not out[2, 2]
    assert out[10:14, 10:14].all()
    assert not out[0:5, 0:5].any()
    assert torch.equal(majority_filter(m, 1), m)


def test_relevancy_mask_finds_the_object():
    h, w = 40, 48
    r = torch.full((h, w), 0.45) + 0.01 * torch.rand(h, w, generator=torch.Generator().manual_seed(0))
    r[10:30, 12:30] = 0.75
    cfg = QueryConfig(smoothing_kernel=5)
    mask = relevancy_mask(r, cfg)
    gt = torch.zeros(h, w, dtype=torch.bool)
    gt[10:30, 12:30] = True
    inter = (mask & gt).sum().item()
    union = (mask | gt).sum().item()
    assert inter / union > 0.8
    # a stricter threshold gives a subset
    strict = relevancy_mask(r, QueryConfig(smoothing_kernel=5, mask_threshold=0.9))
    assert strict.sum() < mask.sum() and not (strict & ~mask).any()


def test_turbo_endpoints_and_overlay(tmp_path):
    c = turbo_colormap(np.array([0.15, 0.5, 1.0]))
    assert c.shape == (3, 3) and c.min() >= 0 and c.max() <= 1
    assert c[0, 2] > c[0, 0]  # blue low end
    assert c[2, 0] > c[2, 2]  # red end
    assert c[1, 1] > 0.8  # bright green-ish middle
    rgb = np.full((4, 5, 3), 200, np.uint8)
    v = np.zeros((4, 5), np.float32)
    v[1, 2] = 1.0
    out = heatmap_overlay(rgb, v, opacity=0.6, dim=0.3)
    assert out.dtype == np.uint8 and out.shape == (4, 5, 3)
    assert (out[0, 0] == round(200 * 0.3)).all()  # cold pixels dimmed
    expected = (0.4 * 200 / 255 + 0.6 * turbo_colormap(np.array(1.0))) * 255
    np.testing.assert_allclose(out[1, 2], expected, atol=1)
    r = torch.full((4, 5), 0.4)
    r[1, 2] = 0.9
    path = save_heatmap_png(tmp_path / "sub" / "heat.png", torch.from_numpy(rgb), r)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), out)
    mpath = save_mask_png(tmp_path / "mask.png", r > 0.5)
    assert np.asarray(Image.open(mpath)).tolist() == ((r > 0.5).numpy() * 255).tolist()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["heat.png", "mask.png", "sub"]
