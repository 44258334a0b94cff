"""End-to-end checks of generated synthetic scenes: files, split, labels and geometric consistency."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from plyfile import PlyData

from langfield.synthetic import SceneConfig, generate_scene
from langfield.synthetic.__main__ import main as cli_main
from langfield.types import LangfieldError

W, H, N_TRAIN, N_EVAL = 160, 120, 10, 3
GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("syn") / "scene"
    path = generate_scene(out, seed=0, width=W, height=H, n_train=N_TRAIN, n_eval=N_EVAL, config=SceneConfig(n_points=3000))
    assert path == out / "transforms.json"
    return out


def _load(scene_dir: Path):
    meta = json.loads((scene_dir / "transforms.json").read_text())
    views = []
    for f in meta["frames"]:
        views.append(
            {
                "c2w": np.asarray(f["transform_matrix"], dtype=np.float64) @ GL_TO_CV,  # OpenGL -> OpenCV
                "rgb": np.asarray(Image.open(scene_dir / f["file_path"])),
                "depth": np.asarray(Image.open(scene_dir / f["depth_file_path"])),
                "sem": np.asarray(Image.open(scene_dir / f["semantics_path"])),
            }
        )
    K = np.array([[meta["fl_x"], 0, meta["cx"]], [0, meta["fl_y"], meta["cy"]], [0, 0, 1.0]])
    return meta, views, K


def test_transforms_layout_and_interleaved_split(scene_dir):
    meta, views, K = _load(scene_dir)
    assert set(meta) == {
        "camera_model", "fl_x", "fl_y", "cx", "cy", "w", "h", "depth_unit_scale_factor",
        "ply_file_path", "train_filenames", "test_filenames", "frames",
    }
    assert meta["camera_model"] == "PINHOLE" and (meta["w"], meta["h"]) == (W, H)
    assert meta["depth_unit_scale_factor"] == 0.001
    assert (meta["cx"], meta["cy"]) == (W / 2, H / 2)
    hfov = 2 * np.degrees(np.arctan(0.5 * W / meta["fl_x"]))
    assert 55 < hfov < 75
    names = [f["file_path"] for f in meta["frames"]]
    assert len(names) == N_TRAIN + N_EVAL
    assert sorted(meta["train_filenames"] + meta["test_filenames"]) == sorted(names)
    assert len(meta["test_filenames"]) == N_EVAL and not set(meta["train_filenames"]) & set(meta["test_filenames"])
    # Frames are in ring order: each held-out view sits between two training views.
    n = len(names)
    for name in meta["test_filenames"]:
        i = names.index(name)
        assert names[i - 1] in meta["train_filenames"] and names[(i + 1) % n] in meta["train_filenames"]
    for f in meta["frames"]:
        assert set(f) == {"file_path", "transform_matrix", "depth_file_path", "semantics_path"}
        c2w = np.asarray(f["transform_matrix"])
        np.testing.assert_allclose(c2w[:3, :3] @ c2w[:3, :3].T, np.eye(3), atol=1e-9)
        np.testing.assert_allclose(c2w[3], [0, 0, 0, 1])


def test_image_files_have_the_documented_types(scene_dir):
    _, views, _ = _load(scene_dir)
    for v in views:
        assert v["rgb"].shape == (H, W, 3) and v["rgb"].dtype == np.uint8
        assert v["depth"].shape == (H, W) and v["depth"].dtype == np.uint16
        assert v["sem"].shape == (H, W) and v["sem"].dtype == np.uint16
        assert v["depth"].min() > 0  # closed room: every pixel hits something
        assert v["depth"].max() < 12000  # millimetres, within the room diagonal
        assert v["rgb"].std() > 20  # textured, lit content, not a flat fill
    assert not (scene_dir.parent / "scene.tmp").exists()
    assert sorted(p.name for p in scene_dir.parent.iterdir()) == ["scene"]  # temporary dir renamed away


def test_semantic_ids_are_labelled_and_every_part_is_seen(scene_dir):
    _, views, _ = _load(scene_dir)
    labels = json.loads((scene_dir / "labels.json").read_text())
    assert all(int(k) > 0 and set(v) == {"part", "whole"} for k, v in labels.items())
    seen = set(np.unique(np.stack([v["sem"] for v in views])).tolist())
    assert 0 not in seen and seen <= {int(k) for k in labels}
    seen_parts = {labels[str(i)]["part"] for i in seen}
    # The ceiling is only grazed by the downward-looking cameras; every other part must show up.
    assert seen_parts >= {v["part"] for v in labels.values()} - {"ceiling"}
    wholes = {v["whole"] for v in labels.values()}
    assert {"table", "chair", "mug", "floor", "wall"} <= wholes
    parts_of = {w: {v["part"] for v in labels.values() if v["whole"] == w} for w in wholes}
    assert {"table top", "table leg"} <= parts_of["table"] and {"mug body", "mug handle"} <= parts_of["mug"]


def test_depth_reprojection_agrees_on_semantics(scene_dir):
    """Back-project view A with its depth, re-project into B: where B sees the same point, the ids match."""
    _, views, K = _load(scene_dir)
    vs, us = np.mgrid[0:H, 0:W]
    pix = np.stack([us.ravel() + 0.5, vs.ravel() + 0.5, np.ones(H * W)])
    checked = 0
    for a, b in [(0, 1), (0, 2), (3, 5), (6, 8), (10, 12)]:
        A, B = views[a], views[b]
        z = A["depth"].ravel() * 0.001
        x_cam = (np.linalg.inv(K) @ pix) * z
        x_world = A["c2w"][:3, :3] @ x_cam + A["c2w"][:3, 3:4]
        w2c_b = np.linalg.inv(B["c2w"])
        xb = w2c_b[:3, :3] @ x_world + w2c_b[:3, 3:4]
        front = xb[2] > 0.1
        uvb = (K @ xb)[:2] / np.where(front, xb[2], 1.0)
        ub, vb = np.floor(uvb).astype(int)
        ok = front & (ub >= 0) & (ub < W) & (vb >= 0) & (vb < H)
        idx = np.flatnonzero(ok)
        zb = B["depth"][vb[idx], ub[idx]] * 0.001
        visible = np.abs(zb - xb[2, idx]) < 0.01 + 0.01 * zb
        src = idx[visible]
        assert src.size > 0.2 * H * W, (a, b)
        same = A["sem"].ravel()[src] == B["sem"][vb[src], ub[src]]
        assert same.mean() > 0.97, (a, b, same.mean())
        checked += src.size
    assert checked > H * W


def test_cameras_look_at_the_scene_centre_in_opencv(scene_dir):
    meta, views, K = _load(scene_dir)
    scene = json.loads((scene_dir / "scene.json").read_text())
    centre = np.array([*scene["center"], 1.0])
    room_lo, room_hi = np.array(scene["room"]["lo"]), np.array(scene["room"]["hi"])
    for v in views:
        p = np.linalg.inv(v["c2w"]) @ centre
        assert p[2] > 0.5  # in front of the camera (OpenCV +z forward)
        u, w = (K @ p[:3])[:2] / p[2]
        assert abs(u - W / 2) < 0.15 * W and abs(w - H / 2) < 0.15 * H
        # OpenCV y axis points down in the world (z up): the camera is upright.
        assert v["c2w"][2, 1] < 0
        eye = v["c2w"][:3, 3]
        assert np.all(eye > room_lo + 0.3) and np.all(eye < room_hi - 0.3)
        for s in scene["surfaces"]:
            if s["shape"] is not None:
                assert _clearance(s["shape"], eye) > 0.2, s["part"]


def _clearance(shape: dict, p: np.ndarray) -> float:
    """Distance from ``p`` to a scene.json primitive (independent of the generator's maths; 0 inside)."""
    q = p - np.asarray(shape["center"])
    if shape["type"] == "sphere":
        return max(float(np.linalg.norm(q)) - shape["radius"], 0.0)
    if shape["type"] == "cylinder":
        outside = np.array([max(np.hypot(q[0], q[1]) - shape["radius"], 0.0), max(abs(q[2]) - shape["half_height"], 0.0)])
        return float(np.linalg.norm(outside))
    c, s = np.cos(shape["yaw"]), np.sin(shape["yaw"])
    local = np.array([c * q[0] + s * q[1], -s * q[0] + c * q[1], q[2]])
    return float(np.linalg.norm(np.maximum(np.abs(local) - np.asarray(shape["half_extents"]), 0.0)))


def test_point_cloud_lies_on_seen_surfaces(scene_dir):
    meta, views, K = _load(scene_dir)
    ply = PlyData.read(str(scene_dir / meta["ply_file_path"]))
    v = ply["vertex"].data
    assert v.dtype.names == ("x", "y", "z", "red", "green", "blue") and len(v) == 3000
    xyz = np.stack([v["x"], v["y"], v["z"]], axis=1).astype(np.float64)
    best = np.full(len(xyz), np.inf)
    train = set(meta["train_filenames"])
    for f, view in zip(meta["frames"], views):
        if f["file_path"] not in train:
            continue
        w2c = np.linalg.inv(view["c2w"])
        pc = xyz @ w2c[:3, :3].T + w2c[:3, 3]
        uv = (pc @ K.T)[:, :2] / np.maximum(pc[:, 2:3], 1e-6)
        u, w = np.floor(uv).astype(int).T
        ok = (pc[:, 2] > 0.1) & (u >= 0) & (u < W) & (w >= 0) & (w < H)
        err = np.full(len(xyz), np.inf)
        err[ok] = np.abs(view["depth"][w[ok], u[ok]] * 0.001 - pc[ok, 2])
        best = np.minimum(best, err)
    assert np.median(best) < 0.002 and (best < 0.02).mean() > 0.95
    assert np.stack([v["red"], v["green"], v["blue"]]).std() > 10


def _files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_deterministic_per_seed_and_different_across_seeds(tmp_path):
    kw = dict(width=64, height=48, n_train=5, n_eval=1, config=SceneConfig(n_points=500))
    a = _files(generate_scene(tmp_path / "a", seed=3, **kw).parent)
    b = _files(generate_scene(tmp_path / "b", seed=3, **kw).parent)
    c = _files(generate_scene(tmp_path / "c", seed=4, **kw).parent)
    assert a == b
    assert a.keys() == c.keys()
    for name in ("transforms.json", "scene.json", "points3d.ply", "images/frame_00000.png"):
        assert a[name] != c[name], name


def test_cli_regenerates_in_place_and_refuses_foreign_dirs(tmp_path, capsys):
    out = tmp_path / "cli"
    args = [str(out), "--seed", "1", "--width", "32", "--height", "24", "--n-train", "3", "--n-eval", "1", "--n-points", "100"]
    assert cli_main(args) == 0
    assert capsys.readouterr().out.strip() == str(out / "transforms.json")
    assert cli_main(args) == 0  # an existing synthetic scene is replaced
    assert len(json.loads((out / "transforms.json").read_text())["frames"]) == 4
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(LangfieldError, match="not empty"):
        generate_scene(foreign, width=32, height=24, n_train=2, n_eval=0)
    assert (foreign / "keep.txt").read_text() == "mine"
    with pytest.raises(LangfieldError):
        generate_scene(tmp_path / "bad", n_train=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cli", "foreign"]  # no temporary leftovers
