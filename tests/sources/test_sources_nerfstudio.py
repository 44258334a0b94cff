"""nerfstudio transforms.json reader: poses, intrinsics, depth/semantics/labels, split, errors."""

import json
import math

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from langfield.sources import load_capture, load_depth, load_semantics
from langfield.types import DataError, Label

W, H = 8, 6


def test_known_opencv_poses_read_back(ns_scene):
    path, poses = ns_scene(n=9)
    cap = load_capture(path)
    assert cap.kind == "nerfstudio" and cap.has_poses and len(cap.frames) == 9
    for frame, pose in zip(cap.frames, poses):
        np.testing.assert_allclose(frame.c2w, pose, atol=1e-12)
        k = frame.intrinsics
        assert (k.fx, k.fy, k.cx, k.cy, k.width, k.height) == (10.0, 11.0, 4.0, 3.0, W, H)
        assert k.model == "PINHOLE" and k.distortion == ()
    assert cap.frames[2].name == "images/frame_002.png"
    assert cap.frames[2].image_path == (path.parent / "images/frame_002.png").resolve()
    # A point 2 units along the camera's viewing axis is in front of it after conversion.
    c2w = cap.frames[0].c2w
    p_world = c2w[:3, 3] + 2.0 * poses[0][:3, 2]
    w2c = np.linalg.inv(c2w)
    assert np.isclose((w2c[:3, :3] @ p_world + w2c[:3, 3])[2], 2.0)
    # Default split holds out every 8th frame starting at 0.
    assert cap.eval_ids == [0, 8] and cap.train_ids == [1, 2, 3, 4, 5, 6, 7]
    centres = np.array([p[:3, 3] for p in poses])
    expected = 1.1 * np.linalg.norm(centres - centres.mean(0), axis=1).max()
    assert math.isclose(cap.scene_scale, expected)
    # A directory containing transforms.json is detected the same way.
    assert len(load_capture(path.parent).frames) == 9


def test_blender_camera_angle_and_per_frame_intrinsics(ns_scene):
    angle = 0.8
    path, _ = ns_scene(n=3, frame_extra=lambda i: {"fl_x": 20.0, "fl_y": 21.0} if i == 1 else {})
    meta = json.loads(path.read_text())
    for key in ("fl_x", "fl_y", "cx", "cy", "w", "h"):
        del meta[key]
    meta["camera_angle_x"] = angle
    path.write_text(json.dumps(meta))
    cap = load_capture(path)
    k0, k1 = cap.frames[0].intrinsics, cap.frames[1].intrinsics
    assert (k0.width, k0.height) == (W, H)  # read from the image header
    assert math.isclose(k0.fx, 0.5 * W / math.tan(0.5 * angle)) and k0.fy == k0.fx
    assert (k0.cx, k0.cy) == (W / 2, H / 2)
    assert (k1.fx, k1.fy) == (20.0, 21.0)


def test_opencv_distortion_order(ns_scene):
    path, _ = ns_scene(n=2, extra={"camera_model": "OPENCV", "k1": 0.1, "k2": -0.02, "p1": 0.003, "p2": 0.004})
    k = load_capture(path).frames[0].intrinsics
    assert k.model == "OPENCV" and k.distortion == (0.1, -0.02, 0.003, 0.004)
    path, _ = ns_scene(n=2, extra={"camera_model": "OPENCV", "k1": 0.1, "k3": 0.5})
    assert load_capture(path).frames[0].intrinsics.distortion == (0.1, 0.0, 0.0, 0.0, 0.5)


def test_depth_semantics_labels_and_ply(ns_scene, write_image):
    depth_raw = np.arange(W * H, dtype=np.uint16).reshape(H, W) * 100
    sem = np.zeros((H, W), np.uint16)
    sem[:, 4:] = 7

    def extra(i):
        return {"depth_file_path": f"depth/{i}.png", "semantics_path": f"sem/{i}.png"}

    path, _ = ns_scene(n=2, extra={"depth_unit_scale_factor": 0.002, "ply_file_path": "sparse_pc.ply"},
                       frame_extra=extra)
    for i in range(2):
        write_image(path.parent / f"depth/{i}.png", depth_raw)
        write_image(path.parent / f"sem/{i}.png", sem)
    (path.parent / "labels.json").write_text(json.dumps({"7": {"part": "leaf", "whole": "fern"}}))
    verts = np.array([(0.0, 1.0, 2.0, 255, 0, 10), (3.0, 4.0, 5.0, 1, 2, 3)],
                     dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    PlyData([PlyElement.describe(verts, "vertex")]).write(str(path.parent / "sparse_pc.ply"))

    cap = load_capture(path)
    assert cap.has_depth and cap.labels == {7: Label(part="leaf", whole="fern")}
    np.testing.assert_allclose(cap.points, [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(cap.point_colors, [[255, 0, 10], [1, 2, 3]])
    assert cap.points.dtype == np.float32 and cap.point_colors.dtype == np.uint8
    depth = load_depth(cap.frames[1])
    np.testing.assert_allclose(depth, depth_raw * 0.002, rtol=1e-6)
    assert depth[0, 0] == 0.0  # 0 stays "unknown"
    ids = load_semantics(cap.frames[0])
    assert ids.dtype == np.int64 and set(np.unique(ids)) == {0, 7}


def test_split_lists_and_overrides(ns_scene, tmp_path):
    names = [f"images/frame_{i:03d}.png" for i in range(5)]
    path, _ = ns_scene(n=5, extra={"train_filenames": names[:3], "val_filenames": [names[3]],
                                   "test_filenames": [names[4]]})
    cap = load_capture(path)
    assert cap.train_ids == [0, 1, 2] and cap.eval_ids == [3, 4]
    eval_file = tmp_path / "holdout.txt"
    eval_file.write_text("frame_001.png\n# a comment\n\nimages/frame_002.png\n")
    cap = load_capture(path, eval_file=eval_file)
    assert cap.eval_ids == [1, 2] and cap.train_ids == [0, 3, 4]
    path, _ = ns_scene(n=5)
    assert load_capture(path, eval_every=0).eval_ids == []
    assert load_capture(path, eval_every=2).eval_ids == [0, 2, 4]


def _assert_one_line_naming(exc_info, name: str) -> None:
    msg = str(exc_info.value)
    assert name in msg and "\n" not in msg, msg


def _edit_json(path, fn):
    meta = json.loads(path.read_text())
    fn(meta)
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "case",
    ["nan_pose", "scaled_rotation", "reflection", "unknown_model", "empty", "missing_image", "size_mismatch",
     "bad_matrix"],
)
def test_bad_inputs_raise_data_error_naming_file(ns_scene, case):
    path, _ = ns_scene(n=3)

    def edit(meta):
        m = np.array(meta["frames"][1]["transform_matrix"])
        if case == "nan_pose":
            m[0, 3] = float("nan")
        elif case == "scaled_rotation":
            m[:3, :3] *= 1.01
        elif case == "reflection":
            m[:3, 0] *= -1
        elif case == "unknown_model":
            meta["camera_model"] = "OPENCV_FISHEYE"
        elif case == "empty":
            meta["frames"] = []
            return
        elif case == "missing_image":
            meta["frames"][1]["file_path"] = "images/nope.png"
        elif case == "size_mismatch":
            meta["w"] = 16
        elif case == "bad_matrix":
            meta["frames"][1]["transform_matrix"] = [[1, 0], [0, 1]]
            return
        meta["frames"][1]["transform_matrix"] = m.tolist()

    _edit_json(path, edit)
    with pytest.raises(DataError) as exc_info:
        load_capture(path)
    name = "nope.png" if case == "missing_image" else ("frame_000.png" if case == "size_mismatch" else path.name)
    _assert_one_line_naming(exc_info, name)
    if case == "unknown_model":
        assert "OPENCV_FISHEYE" in str(exc_info.value)


def test_malformed_json_reports_position(ns_scene):
    path, _ = ns_scene(n=2)
    path.write_text('{"frames": [\n  {"file_path": "a.png",,}\n]}')
    with pytest.raises(DataError) as exc_info:
        load_capture(path)
    _assert_one_line_naming(exc_info, str(path))
    assert "line 2 column" in str(exc_info.value)


def test_corrupt_image_and_bad_labels(ns_scene):
    path, _ = ns_scene(n=2)
    (path.parent / "images/frame_001.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError) as exc_info:
        load_capture(path)
    _assert_one_line_naming(exc_info, "frame_001.png")

    path, _ = ns_scene(n=2, seed=1)
    (path.parent / "labels.json").write_text(json.dumps({"x": {"part": "a", "whole": "b"}}))
    with pytest.raises(DataError) as exc_info:
        load_capture(path)
    _assert_one_line_naming(exc_info, "labels.json")


def test_missing_depth_file_and_unknown_eval_name(ns_scene, tmp_path):
    path, _ = ns_scene(n=2, frame_extra=lambda i: {"depth_file_path": f"depth/{i}.png"})
    with pytest.raises(DataError) as exc_info:
        load_capture(path)
    _assert_one_line_naming(exc_info, "0.png")

    path, _ = ns_scene(n=2, seed=3)
    eval_file = tmp_path / "eval.txt"
    eval_file.write_text("ghost.png\n")
    with pytest.raises(DataError) as exc_info:
        load_capture(path, eval_file=eval_file)
    _assert_one_line_naming(exc_info, "eval.txt")


def test_blender_split_files(tmp_path, write_image, random_poses):
    poses = random_poses(3)
    gl = [p @ np.diag([1.0, -1.0, -1.0, 1.0]) for p in poses]
    for split, idx in (("train", [0, 1]), ("test", [2])):
        frames = []
        for j, i in enumerate(idx):
            write_image(tmp_path / split / f"r_{j}.png", np.zeros((H, W, 4), np.uint8))
            frames.append({"file_path": f"./{split}/r_{j}", "transform_matrix": gl[i].tolist()})
        (tmp_path / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": 0.7, "frames": frames}))
    cap = load_capture(tmp_path)
    assert cap.kind == "blender" and cap.train_ids == [0, 1] and cap.eval_ids == [2]
    assert cap.frames[2].image_path.name == "r_0.png" and cap.frames[2].image_path.parent.name == "test"
    for f, p in zip(cap.frames, poses):
        np.testing.assert_allclose(f.c2w, p, atol=1e-12)
    (tmp_path / "test" / "r_0.png").unlink()
    with pytest.raises(DataError, match="transforms_test.json frame 2"):
        load_capture(tmp_path)
