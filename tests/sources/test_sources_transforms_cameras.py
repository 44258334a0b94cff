"""``langfield render --cameras``: a transforms.json read by the dataset reader's own per-frame parser."""

import json
import math
import shutil

import numpy as np
import pytest

from langfield.scene import read_transforms_cameras
from langfield.sources import load_capture
from langfield.types import DataError

W, H = 8, 6


def test_cameras_match_the_dataset_reader_and_images_need_not_exist(ns_scene):
    path, poses = ns_scene(n=4, frame_extra=lambda i: {"fl_x": 20.0, "split": "eval"} if i == 2 else {})
    frames = load_capture(path).frames
    shutil.rmtree(path.parent / "images")  # cameras only: the images may be gone
    cams = read_transforms_cameras(path)
    assert [c.name for c in cams] == [f.name for f in frames]
    assert [c.split for c in cams] == ["render", "render", "eval", "render"]
    for cam, frame, pose in zip(cams, frames, poses):
        k = frame.intrinsics
        np.testing.assert_array_equal(cam.K, [[k.fx, 0, k.cx], [0, k.fy, k.cy], [0, 0, 1]])
        np.testing.assert_array_equal(cam.c2w, frame.c2w)
        np.testing.assert_allclose(cam.c2w, pose, atol=1e-12)
        assert (cam.width, cam.height) == (k.width, k.height) == (W, H)
    assert cams[2].K[0, 0] == 20.0 and cams[2].K[1, 1] == 11.0  # per-frame keys win over the top level


def test_blender_field_of_view_without_images(ns_scene):
    path, _ = ns_scene(n=2)
    meta = json.loads(path.read_text())
    for key in ("fl_x", "fl_y", "cx", "cy"):
        del meta[key]
    meta["camera_angle_x"] = 0.8
    path.write_text(json.dumps(meta))
    shutil.rmtree(path.parent / "images")
    cam = read_transforms_cameras(path)[0]
    assert math.isclose(cam.K[0, 0], 0.5 * W / math.tan(0.4)) and cam.K[1, 1] == cam.K[0, 0]
    assert (cam.K[0, 2], cam.K[1, 2]) == (W / 2, H / 2)


@pytest.mark.parametrize("frame_patch,message", [
    ({"transform_matrix": np.diag([2.0, 1.0, 1.0, 1.0]).tolist()}, "not rigid"),  # the old parser took any matrix
    ({"transform_matrix": [[1, 0], [0, 1]]}, "pose must be 4x4 or 3x4"),
    ({"fl_x": -5.0}, "focal lengths must be positive"),
    ({"camera_model": "FISHEYE"}, "unknown camera model"),
])
def test_cameras_get_the_dataset_checks(ns_scene, frame_patch, message):
    path, _ = ns_scene(n=3, frame_extra=lambda i: frame_patch if i == 1 else {})
    with pytest.raises(DataError, match=message) as info:
        read_transforms_cameras(path)
    assert "frame 1" in str(info.value) and "\n" not in str(info.value)


def test_sizes_come_from_the_file_or_the_images(ns_scene):
    path, _ = ns_scene(n=2)
    meta = json.loads(path.read_text())
    del meta["w"], meta["h"]
    path.write_text(json.dumps(meta))
    assert (read_transforms_cameras(path)[0].width, read_transforms_cameras(path)[0].height) == (W, H)  # headers
    shutil.rmtree(path.parent / "images")
    with pytest.raises(DataError, match="image file not found"):  # no size anywhere
        read_transforms_cameras(path)
    path.write_text(json.dumps({"frames": []}))
    with pytest.raises(DataError, match="non-empty 'frames' list"):
        read_transforms_cameras(path)
