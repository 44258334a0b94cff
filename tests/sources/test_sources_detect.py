"""Format detection and the pose-less image folder reader."""

import numpy as np
import pytest

from langfield.sources import detect_format, intrinsics_are_guessed, load_capture, load_views
from langfield.types import DataError


def test_image_folder_without_poses(tmp_path, write_image):
    for i in (2, 0, 1):
        write_image(tmp_path / f"shot_{i}.jpg", np.zeros((6, 8, 3), np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    cap = load_capture(tmp_path)
    assert cap.kind == "images" and not cap.has_poses and intrinsics_are_guessed(cap)
    assert [f.name for f in cap.frames] == ["shot_0.jpg", "shot_1.jpg", "shot_2.jpg"]
    k = cap.frames[0].intrinsics
    assert (k.fx, k.fy, k.cx, k.cy, k.width, k.height) == (9.6, 9.6, 4.0, 3.0, 8, 6)
    assert cap.scene_scale == 1.0 and cap.eval_ids == [0]
    with pytest.raises(DataError, match="shot_1.jpg: frame has no pose"):
        load_views(cap, [1])


def test_image_subfolder_and_detection_order(tmp_path, write_image, ns_scene):
    write_image(tmp_path / "scene" / "images" / "a.png", np.zeros((6, 8, 3), np.uint8))
    assert detect_format(tmp_path / "scene", images="images") == "images"
    assert load_capture(tmp_path / "scene", images="images").frames[0].name == "a.png"
    assert load_capture(tmp_path / "scene").frames[0].image_path.parent.name == "images"
    path, _ = ns_scene(n=2)
    assert detect_format(path) == "nerfstudio" and detect_format(path.parent) == "nerfstudio"
    # poses_bounds.npy wins over a COLMAP-looking sparse/0 (LLFF scenes ship both).
    llff = tmp_path / "llff"
    (llff / "sparse" / "0").mkdir(parents=True)
    for n in ("cameras.bin", "images.bin"):
        (llff / "sparse" / "0" / n).write_bytes(b"")
    assert detect_format(llff) == "colmap"
    np.save(llff / "poses_bounds.npy", np.zeros((1, 17)))
    assert detect_format(llff) == "llff"


def test_nothing_matches(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: unrecognised dataset"):
        load_capture(tmp_path / "empty")
    with pytest.raises(DataError, match="missing: no such file"):
        load_capture(tmp_path / "missing")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DataError, match="x.txt: not a dataset"):
        load_capture(tmp_path / "x.txt")
    with pytest.raises(DataError, match="unknown dataset kind"):
        load_capture(tmp_path / "empty", kind="tum")
