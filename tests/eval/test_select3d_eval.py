"""The 3D-selection protocol's pieces: label texts, projection and the visibility test."""

from __future__ import annotations

import torch

from langfield.eval.select3d_eval import DEPTH_TOLERANCE, label_text_ids, visible_in_mask
from langfield.types import Label, View


def _view(w: int = 8, h: int = 6) -> View:
    K = torch.tensor([[4.0, 0.0, w / 2], [0.0, 4.0, h / 2], [0.0, 0.0, 1.0]])
    return View("v", torch.eye(4), K, w, h)


def test_label_text_ids_groups_parts_and_wholes():
    labels = {1: Label("table leg", "table"), 2: Label("table top", "table"), 3: Label("floor", "floor")}
    ids = label_text_ids(labels)
    assert ids == {"floor": [3], "table": [1, 2], "table leg": [1], "table top": [2]}


def test_visibility_is_a_depth_test_against_the_rendered_surface():
    view = _view()
    depth = torch.full((6, 8), 2.0)
    gt = torch.zeros(6, 8, dtype=torch.bool)
    gt[:, :4] = True  # left half is the object
    pts = torch.tensor([
        [-0.5, 0.0, 2.0],    # on the surface, left half: visible and on the mask
        [0.5, 0.0, 2.0],     # on the surface, right half: visible, off the mask
        [-0.5, 0.0, 2.0 * (1 + DEPTH_TOLERANCE) + 0.1],  # behind the surface: hidden
        [-0.5, 0.0, 1.0],    # in front of the surface (a floater): visible
        [-0.5, 0.0, -2.0],   # behind the camera
        [50.0, 0.0, 2.0],    # outside the image
    ])
    vis, on = visible_in_mask(pts, view, depth, gt)
    assert vis.tolist() == [True, True, False, True, False, False]
    assert on.tolist() == [True, False, False, True, False, False]
    # where nothing was rendered (depth 0) nothing is visible
    vis0, _ = visible_in_mask(pts, view, torch.zeros(6, 8), gt)
    assert not vis0.any()
