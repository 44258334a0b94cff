"""LLFF reader: the real fern scene and small synthetic poses_bounds files."""

from pathlib import Path

import numpy as np
import pytest

from langfield.sources import load_capture
from langfield.types import DataError

# The project's shared data sits beside the checkout (../shared), in CI too.
FERN = Path(__file__).resolve().parents[3] / "shared" / "data" / "llff_fern"
needs_fern = pytest.mark.skipif(not (FERN / "poses_bounds.npy").is_file(), reason="fern data not present")


def _project(frame, pts):
    w2c = np.linalg.inv(frame.c2w)
    cam = pts @ w2c[:3, :3].T + w2c[:3, 3]
    k = frame.intrinsics
    z = cam[:, 2]
    u = k.fx * cam[:, 0] / z + k.cx
    v = k.fy * cam[:, 1] / z + k.cy
    return z, u, v


@needs_fern
def test_fern_images_8():
    cap = load_capture(FERN, images="images_8")
    assert cap.kind == "llff" and len(cap.frames) == 20 and cap.has_poses
    assert {(f.intrinsics.width, f.intrinsics.height) for f in cap.frames} == {(504, 378)}
    assert cap.eval_ids == [0, 8, 16] and len(cap.train_ids) == 17
    assert [f.name for f in cap.frames] == sorted(f.name for f in cap.frames)
    k = cap.frames[0].intrinsics
    # hwf says f = 3260.53 px at 4032 wide; images_8 is 1/8 of that.
    assert k.fx == pytest.approx(3260.526333 / 8, rel=1e-6) and (k.cx, k.cy) == (252.0, 189.0)
    # The sparse points live in the poses' world frame: most are in front of and inside every camera.
    pts = cap.points.astype(np.float64)
    assert pts.shape == (10091, 3) and cap.point_colors.shape == (10091, 3)
    for f in cap.frames:
        z, u, v = _project(f, pts)
        inside = (z > 0) & (u >= 0) & (u < k.width) & (v >= 0) & (v < k.height)
        assert (z > 0).mean() > 0.99 and inside.mean() > 0.9
    assert cap.scene_scale > 1e-3


@needs_fern
def test_fern_images_16_and_default_folder():
    cap = load_capture(FERN, images="images_16")
    k = cap.frames[3].intrinsics
    assert (k.width, k.height) == (252, 189) and k.fx == pytest.approx(3260.526333 / 16, rel=1e-6)
    # Without images=, the smallest images_<k> (largest k) is used.
    assert load_capture(FERN).frames[0].image_path.parent.name == "images_16"


def _llff_scene(root: Path, write_image, poses, full=(12.0, 16.0, 20.0), img_size=(8, 6)):
    """poses_bounds.npy from OpenCV c2w poses (hwf at 'full' size) + images at img_size."""
    rows = []
    for c2w in poses:
        cols = np.stack([c2w[:3, 1], c2w[:3, 0], -c2w[:3, 2], c2w[:3, 3], np.array(full)], axis=1)
        rows.append(np.concatenate([cols.reshape(-1), [1.0, 10.0]]))
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "poses_bounds.npy", np.array(rows))
    for i in range(len(poses)):
        write_image(root / "images_2" / f"{i:03d}.png", np.zeros((img_size[1], img_size[0], 3), np.uint8))


def test_synthetic_llff_round_trip(tmp_path, write_image, random_poses):
    poses = random_poses(10)
    _llff_scene(tmp_path, write_image, poses)
    cap = load_capture(tmp_path, eval_every=4)
    for f, p in zip(cap.frames, poses):
        np.testing.assert_allclose(f.c2w, p, atol=1e-12)
        # full 16x12 with f=20 -> images at 8x6: focal halves, principal point centred.
        assert (f.intrinsics.fx, f.intrinsics.fy, f.intrinsics.cx, f.intrinsics.cy) == (10.0, 10.0, 4.0, 3.0)
    assert cap.eval_ids == [0, 4, 8] and cap.points is None


def test_llff_errors(tmp_path, write_image, random_poses):
    _llff_scene(tmp_path / "a", write_image, random_poses(3))
    (tmp_path / "a" / "images_2" / "001.png").unlink()
    with pytest.raises(DataError, match="2 images but poses_bounds.npy has 3 poses"):
        load_capture(tmp_path / "a")

    _llff_scene(tmp_path / "b", write_image, random_poses(3), img_size=(8, 8))
    with pytest.raises(DataError, match=r"000\.png: image is 8x8, not a rescale"):
        load_capture(tmp_path / "b")

    poses = random_poses(3)
    poses[2][1, 3] = np.inf
    _llff_scene(tmp_path / "c", write_image, poses)
    with pytest.raises(DataError, match="poses_bounds.npy row 2: pose contains NaN or inf"):
        load_capture(tmp_path / "c")

    (tmp_path / "d").mkdir()
    np.save(tmp_path / "d" / "poses_bounds.npy", np.zeros((3, 15)))
    with pytest.raises(DataError, match=r"poses_bounds.npy: expected shape \[N, 17\]"):
        load_capture(tmp_path / "d")
