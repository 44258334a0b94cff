"""Scene directory I/O and the training config."""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from pathlib import Path

import numpy as np
import pytest
import torch

from langfield.scene import (SceneCamera, load_cameras, load_scene, read_transforms_cameras, save_cameras,
                             save_scene, write_transforms_json)
from langfield.scene_config import BACKGROUNDS, SCENE_FORMAT_VERSION, SceneConfig, TrainSection
from langfield.train.config import Background, TrainConfig, config_from_dict, config_to_dict
from langfield.types import ConfigError, DataError


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
    with pytest.raises(ConfigError, match="downscale must be >= 1"):
        TrainConfig(downscale=0)


# --------------------------------------------------------------------------- SceneConfig (config.json, typed)

def _written_config(tmp_path, make_gaussians, **extra) -> dict:
    """A config.json as save_scene writes it."""
    cfg = TrainConfig(iterations=30, background="white", eval_every=4, downscale=2, images="images_2")
    save_scene(tmp_path / "s", make_gaussians(3, seed=0), [_camera(0)],
               {"data": "/data/room", "capture_kind": "nerfstudio", "train": config_to_dict(cfg), "finished": True,
                "iterations": 30, "wall_time_s": 1.5, **extra})
    return json.loads((tmp_path / "s" / "config.json").read_text())


def _rewrite_config(scene, raw: dict) -> None:
    """Replace config.json as a user editing it would (the manifest, which would flag the edit, goes too)."""
    (scene / "manifest.json").unlink(missing_ok=True)
    (scene / "config.json").write_text(json.dumps(raw))


def test_scene_config_reads_what_save_scene_writes(tmp_path, make_gaussians):
    raw = _written_config(tmp_path, make_gaussians, language={"num_levels": 2, "levels": ["part", "whole"]})
    sc = load_scene(tmp_path / "s").settings
    assert sc == SceneConfig.from_dict(raw)
    assert (sc.version, sc.source_version) == (SCENE_FORMAT_VERSION, SCENE_FORMAT_VERSION)
    assert sc.data == Path("/data/room") and sc.capture_kind == "nerfstudio" and sc.finished
    assert (sc.iterations, sc.wall_time_s) == (30, 1.5)
    t = sc.train
    assert (t.background, t.eval_every, t.downscale, t.images, t.iterations) == ("white", 4, 2, "images_2", 30)
    assert config_from_dict(t.raw) == config_from_dict(raw["train"])  # train/ rebuilds the TrainConfig from it
    assert sc.has_language and sc.language["levels"] == ["part", "whole"]


def test_scene_config_defaults_are_the_train_config_defaults():
    view, cfg = TrainSection(), TrainConfig()
    for f in dataclasses.fields(TrainSection):
        if f.name != "raw":
            assert getattr(view, f.name) == getattr(cfg, f.name), f.name
    assert BACKGROUNDS == typing.get_args(Background)


def test_scene_config_upgrades_an_unversioned_file():
    # format 0: no "version" key (older scenes, and the provisional config.json of an unfinished run)
    old = {"data": "/d", "train": {"iterations": 50}}
    sc = SceneConfig.from_dict(old)
    assert (sc.source_version, sc.version, sc.raw["version"]) == (0, SCENE_FORMAT_VERSION, SCENE_FORMAT_VERSION)
    assert sc.train.iterations == 50 and sc.train.background == "black" and sc.train.eval_every == 8
    assert not sc.finished and sc.iterations is None and not sc.has_language
    assert "version" not in old  # the caller's dict is not modified


def test_scene_config_refuses_a_newer_version(tmp_path, make_gaussians):
    raw = _written_config(tmp_path, make_gaussians)
    raw["version"] = SCENE_FORMAT_VERSION + 1
    _rewrite_config(tmp_path / "s", raw)
    with pytest.raises(DataError, match=r"config.json: written by a newer langfield \(scene format 2"):
        load_scene(tmp_path / "s")


@pytest.mark.parametrize("patch,message", [
    ({"train": "garbage"}, "section 'train' must be a JSON object, got str"),
    ({"language": [1, 2]}, "section 'language' must be a JSON object"),
    ({"version": "one"}, "'version' must be a non-negative integer"),
    ({"iterations": "many"}, "'iterations' must be int, got str"),
    ({"finished": 1}, "'finished' must be bool"),
    ({"train": {"downscale": 0}}, "train.downscale must be an integer >= 1"),
    ({"train": {"eval_every": True}}, "'eval_every' must be int, got bool"),
    ({"train": {"background": "pink"}}, "train.background must be black, white, random"),
])
def test_malformed_scene_config_is_a_one_line_data_error(patch, message, tmp_path, make_gaussians):
    raw = {**_written_config(tmp_path, make_gaussians), **patch}
    _rewrite_config(tmp_path / "s", raw)
    with pytest.raises(DataError, match=re.escape(message)) as info:
        load_scene(tmp_path / "s")
    assert "\n" not in str(info.value) and str(tmp_path / "s" / "config.json") in str(info.value)
    with pytest.raises(DataError):
        SceneConfig.from_dict("not a dict")
