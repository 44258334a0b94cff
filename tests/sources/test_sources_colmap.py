"""COLMAP reader (pycolmap, binary and text models)."""

from pathlib import Path

import numpy as np
import pycolmap
import pytest

from langfield.sources import load_capture
from langfield.types import DataError

W, H = 8, 6
CAMERAS = {
    1: ("PINHOLE", [10.0, 11.0, 4.0, 3.0]),
    2: ("OPENCV", [9.0, 9.5, 4.1, 2.9, 0.1, -0.01, 0.002, 0.003]),
    3: ("SIMPLE_RADIAL", [12.0, 4.0, 3.0, 0.05]),
    4: ("RADIAL", [12.0, 4.0, 3.0, 0.05, 0.01]),
    5: ("SIMPLE_PINHOLE", [13.0, 4.0, 3.0]),
}
EXPECTED = {  # (fx, fy, cx, cy, OpenCV-order distortion)
    1: (10.0, 11.0, 4.0, 3.0, ()),
    2: (9.0, 9.5, 4.1, 2.9, (0.1, -0.01, 0.002, 0.003)),
    3: (12.0, 12.0, 4.0, 3.0, (0.05, 0.0, 0.0, 0.0)),
    4: (12.0, 12.0, 4.0, 3.0, (0.05, 0.01, 0.0, 0.0)),
    5: (13.0, 13.0, 4.0, 3.0, ()),
}


def _write_scene(root: Path, fmt: str, write_image, poses, cameras=CAMERAS, image_dir="images") -> dict:
    """A COLMAP scene: one image per pose cycling through ``cameras``; returns name -> (cam id, w2c)."""
    rec = pycolmap.Reconstruction()
    for cid, (model, params) in cameras.items():
        cam = pycolmap.Camera.create_from_model_name(cid, model, 10.0, W, H)
        cam.params = params
        rec.add_camera_with_trivial_rig(cam)
    truth = {}
    ids = list(cameras)
    # Names deliberately out of id order: the reader sorts frames by name.
    for i, c2w in enumerate(poses):
        w2c = np.linalg.inv(c2w)
        name = f"img_{len(poses) - i:02d}.png"
        cid = ids[i % len(ids)]
        img = pycolmap.Image(name=name, camera_id=cid, image_id=i + 1)
        rec.add_image_with_trivial_frame(img, pycolmap.Rigid3d(pycolmap.Rotation3d(w2c[:3, :3]), w2c[:3, 3]))
        write_image(root / image_dir / name, np.full((H, W, 3), 40 * i % 255, np.uint8))
        truth[name] = (cid, w2c)
    for xyz, rgb in (([1.0, 2.0, 3.0], [255, 0, 0]), ([-1.0, 0.5, 4.0], [0, 128, 255])):
        rec.add_point3D(np.array(xyz), pycolmap.Track(), np.array(rgb, np.uint8))
    model = root / "sparse" / "0"
    model.mkdir(parents=True)
    (rec.write_binary if fmt == "bin" else rec.write_text)(str(model))
    return truth


@pytest.mark.parametrize("fmt", ["bin", "txt"])
def test_colmap_round_trip(tmp_path, write_image, random_poses, fmt):
    truth = _write_scene(tmp_path, fmt, write_image, random_poses(6))
    assert any(p.suffix == f".{fmt}" for p in (tmp_path / "sparse/0").iterdir())
    cap = load_capture(tmp_path)
    assert cap.kind == "colmap" and len(cap.frames) == 6
    assert [f.name for f in cap.frames] == sorted(truth)
    for f in cap.frames:
        cid, w2c = truth[f.name]
        np.testing.assert_allclose(f.c2w, np.linalg.inv(w2c), atol=1e-9)
        k = f.intrinsics
        fx, fy, cx, cy, dist = EXPECTED[cid]
        assert k.model == CAMERAS[cid][0] and (k.width, k.height) == (W, H)
        np.testing.assert_allclose([k.fx, k.fy, k.cx, k.cy], [fx, fy, cx, cy])
        np.testing.assert_allclose(k.distortion, dist)
        assert f.image_path == (tmp_path / "images" / f.name).resolve()
    order = np.argsort(cap.points[:, 2])
    np.testing.assert_allclose(cap.points[order], [[1, 2, 3], [-1, 0.5, 4]])
    np.testing.assert_array_equal(cap.point_colors[order], [[255, 0, 0], [0, 128, 255]])
    assert cap.eval_ids == [0] and cap.train_ids == [1, 2, 3, 4, 5]


def test_images_subfolder_argument(tmp_path, write_image, random_poses):
    _write_scene(tmp_path, "bin", write_image, random_poses(2), image_dir="images_2")
    with pytest.raises(DataError, match="images"):
        load_capture(tmp_path)
    cap = load_capture(tmp_path, images="images_2")
    assert all(f.image_path.parent.name == "images_2" for f in cap.frames)


def test_unknown_camera_model_names_it(tmp_path, write_image, random_poses):
    cams = {1: ("OPENCV_FISHEYE", [10.0, 10.0, 4.0, 3.0, 0.1, 0.0, 0.0, 0.0])}
    _write_scene(tmp_path, "bin", write_image, random_poses(2), cameras=cams)
    with pytest.raises(DataError) as exc_info:
        load_capture(tmp_path)
    msg = str(exc_info.value)
    assert "OPENCV_FISHEYE" in msg and "sparse/0/cameras.bin" in msg and "\n" not in msg


def test_missing_and_wrong_size_images(tmp_path, write_image, random_poses):
    truth = _write_scene(tmp_path, "txt", write_image, random_poses(3))
    victim = sorted(truth)[1]
    (tmp_path / "images" / victim).unlink()
    with pytest.raises(DataError, match=victim):
        load_capture(tmp_path)
    write_image(tmp_path / "images" / victim, np.zeros((H * 2, W * 2, 3), np.uint8))
    with pytest.raises(DataError, match=f"{victim}: image is 16x12"):
        load_capture(tmp_path)


def test_corrupt_or_empty_model(tmp_path, write_image, random_poses):
    model = tmp_path / "bad" / "sparse" / "0"
    model.mkdir(parents=True)
    (tmp_path / "bad" / "images").mkdir()
    for name in ("cameras.bin", "images.bin", "points3D.bin"):
        (model / name).write_bytes(b"garbage bytes")
    with pytest.raises(DataError, match="sparse/0: cannot read COLMAP model"):
        load_capture(tmp_path / "bad")
    _write_scene(tmp_path / "empty", "txt", write_image, [])
    (tmp_path / "empty" / "images").mkdir()
    with pytest.raises(DataError, match="sparse/0: no frames found"):
        load_capture(tmp_path / "empty")
