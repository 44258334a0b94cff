"""Scene directory I/O and the training config."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from langfield.scene import (SceneCamera, load_cameras, load_scene, read_transforms_cameras, save_cameras,
                             save_scene, write_transforms_json)
from langfield.train.config import TrainConfig, config_from_dict, config_to_dict
from langfield.types import DataError


def _camera(i: int) -> SceneCamera:
    rng = np.random.default_rng(i)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    c2w = np.eye(4)
    c2w[:3, :3] = q * np.sign(np.linalg.det(q))
    c2w[:3, 3] = rng.normal(size=3)
    K = np.array([[50.0 + i, 0, 31.5], [0, 52.0, 23.5], [0, 0, 1]])
    return SceneCamera(f"images/frame_{i:03d}.jpg", "train" if i else "eval", 64, 48, K, c2w)


def test_cameras_round_trip_through_json_and_transforms(tmp_path):
    cams = [_camera(i) for i in range(3)]
    save_cameras(tmp_path / "cameras.json", cams)
    back = load_cameras(tmp_path / "cameras.json")
    write_transforms_json(tmp_path / "transforms.json", cams)
    via_ns = read_transforms_cameras(tmp_path / "transforms.json")
    for a, b, c in zip(cams, back, via_ns):
        assert (a.name, a.split, a.width, a.height) == (b.name, b.split, b.width, b.height)
        np.testing.assert_allclose(a.c2w, b.c2w, atol=1e-12)
        np.testing.assert_allclose(a.K, c.K, atol=1e-12)
        np.testing.assert_allclose(a.c2w, c.c2w, atol=1e-12)
        assert c.name == a.name
    # transforms.json stores OpenGL axes: camera y and z flipped
    frame = json.loads((tmp_path / "transforms.json").read_text())["frames"][1]
    np.testing.assert_allclose(np.asarray(frame["transform_matrix"])[:3, 1], -cams[1].c2w[:3, 1])
    # viewmat is the inverse pose
    np.testing.assert_allclose(cams[1].viewmat().double().numpy() @ cams[1].c2w, np.eye(4), atol=1e-5)


def test_load_scene_errors_name_the_file(tmp_path, make_gaussians):
    with pytest.raises(DataError, match="does not exist"):
        load_scene(tmp_path / "nope")
    save_scene(tmp_path / "s", make_gaussians(5, seed=0), [_camera(0)], {"data": "x"})
    scene = load_scene(tmp_path / "s")
    assert scene.num_gaussians == 5 and scene.cameras[0].name == _camera(0).name
    (tmp_path / "s" / "point_cloud.ply").write_bytes(b"ply\nformat garbage\n")
    with pytest.raises(DataError, match="point_cloud.ply"):
        load_scene(tmp_path / "s")
    (tmp_path / "s" / "config.json").write_text("{")
    with pytest.raises(DataError, match="config.json"):
        load_scene(tmp_path / "s")


def test_config_round_trip_and_schedules():
    cfg = TrainConfig(iterations=300, seed=5, background="random")
    cfg.strategy.max_gaussians = 1000
    again = config_from_dict(json.loads(json.dumps(config_to_dict(cfg))))
    assert again == cfg
    assert [cfg.active_sh_degree(s) for s in (0, 999, 1000, 2500, 9999)] == [0, 0, 1, 2, 3]
    assert cfg.means_lr(0) == pytest.approx(1.6e-4)
    assert cfg.means_lr(300) == pytest.approx(1.6e-6)
    assert cfg.means_lr(0) > cfg.means_lr(100) > cfg.means_lr(200)
    short = cfg.resolved_strategy()
    assert short.seed == 5 and short.max_gaussians == 1000
    assert 0 < short.refine_start_iter < short.refine_stop_iter <= 300
    assert cfg.strategy.refine_stop_iter == 15_000  # the user's strategy object is not modified
    long = TrainConfig(iterations=30_000).resolved_strategy()
    assert (long.refine_start_iter, long.refine_stop_iter, long.refine_every) == (500, 15_000, 100)
    with pytest.raises(ValueError):
        TrainConfig(downscale=0)
