"""Shading behaviour of the synthetic ray caster: shadows only darken, supersampling only touches edges."""

from __future__ import annotations

import numpy as np

from langfield.synthetic.cameras import ring_cameras
from langfield.synthetic.config import SceneConfig
from langfield.synthetic.layout import build_scene
from langfield.synthetic.raycast import render_view


def _renders(shadows: bool, supersample: bool):
    cfg = SceneConfig()
    scene = build_scene(5, cfg)
    cams = ring_cameras(scene, cfg, 5, 4, 80, 60)
    return [render_view(scene, c, cfg.ambient, shadows, supersample) for c in cams]


def test_shadows_only_darken_and_keep_geometry():
    lit, shadowed = _renders(False, False), _renders(True, False)
    darker = 0
    for a, b in zip(lit, shadowed):
        np.testing.assert_array_equal(a.semantics, b.semantics)
        np.testing.assert_array_equal(a.depth, b.depth)
        assert (b.rgb <= a.rgb + 1e-12).all()
        darker += int((b.rgb.sum(-1) < a.rgb.sum(-1) - 0.05).sum())
    assert darker > 0.02 * sum(a.depth.size for a in lit)  # objects do cast visible shadows


def test_supersampling_changes_only_edge_pixels_and_stays_in_range():
    plain, aa = _renders(True, False), _renders(True, True)
    for a, b in zip(plain, aa):
        np.testing.assert_array_equal(a.semantics, b.semantics)
        assert b.rgb.min() >= 0.0 and b.rgb.max() <= 1.0
        changed = np.any(np.abs(a.rgb - b.rgb) > 1e-9, axis=-1)
        # Pixels on a semantic boundary are re-shaded from 4 sub-rays; smooth interiors keep the centre ray.
        sem = a.semantics
        near_edge = np.zeros_like(changed)
        near_edge[:, 1:] |= sem[:, 1:] != sem[:, :-1]
        near_edge[:, :-1] |= sem[:, 1:] != sem[:, :-1]
        near_edge[1:] |= sem[1:] != sem[:-1]
        near_edge[:-1] |= sem[1:] != sem[:-1]
        assert near_edge.any()
        assert changed[near_edge].mean() > 0.95
        assert changed.mean() < 0.5
