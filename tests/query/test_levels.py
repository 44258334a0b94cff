"""Box filter and level choice."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from langfield.query.levels import box_filter, choose_level, gather_levels, level_scores


@pytest.mark.parametrize("k", [1, 3, 4, 7])
def test_box_filter_matches_opencv(k):
    x = torch.rand(2, 11, 13, generator=torch.Generator().manual_seed(k))
    got = box_filter(x, k)
    kernel = np.ones((k, k), np.float32) / (k * k)
    for i in range(2):
        want = cv2.filter2D(x[i].numpy(), -1, kernel)  # LangSplat's call, default border
        np.testing.assert_allclose(got[i].numpy(), want, atol=1e-5)


def test_box_filter_tiny_map_keeps_shape():
    x = torch.rand(1, 3, 2, 2)
    assert box_filter(x, 30).shape == x.shape


def test_choose_level_prefers_a_region_over_a_lone_pixel():
    h = w = 24
    maps = torch.full((3, 2, h, w), 0.4)
    maps[0, :, 5, 5] = 0.99  # level 0: one hot pixel (noise)
    maps[1, 0, 8:16, 8:16] = 0.8  # level 1: an object for query 0
    maps[2, 1, 2:10, 12:20] = 0.7  # level 2: an object for query 1
    levels = choose_level(maps, kernel=5)
    assert levels.tolist() == [1, 2]
    # without smoothing the lone pixel wins, which is why we smooth
    assert choose_level(maps, kernel=1).tolist() == [0, 0]
    scores = level_scores(maps, 5)
    assert scores.shape == (3, 2)
    chosen = gather_levels(maps, levels)
    assert torch.equal(chosen[0], maps[1, 0]) and torch.equal(chosen[1], maps[2, 1])


def test_fixed_level():
    maps = torch.rand(3, 4, 6, 6)
    assert choose_level(maps, 3, fixed=2).tolist() == [2] * 4
    assert choose_level(maps, 3, fixed=-1).tolist() == [2] * 4
    with pytest.raises(IndexError):
        choose_level(maps, 3, fixed=3)
