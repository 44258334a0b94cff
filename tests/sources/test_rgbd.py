"""RGB-D sequence readers: synthetic, plain folder pair and Replica layouts, streaming, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from langfield.sources.rgbd import detect_layout, open_sequence, read_intrinsics_file
from langfield.synthetic import generate_scene
from langfield.types import DataError


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("syn")
    generate_scene(out, seed=1, width=64, height=48, n_train=6, n_eval=0, path="smooth")
    return out


def _bgr(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


@pytest.fixture(scope="module")
def plain(synthetic, tmp_path_factory) -> Path:
    """The synthetic sequence as rgb/ + depth/ (millimetres) + a 3x3 K in intrinsics.txt (OpenCV grid)."""
    out = tmp_path_factory.mktemp("plain") / "seq"
    (out / "rgb").mkdir(parents=True)
    (out / "depth").mkdir()
    seq = open_sequence(synthetic)
    for f in seq:
        cv2.imwrite(str(out / "rgb" / f"{f.index:04d}.png"), _bgr(f.rgb))
        cv2.imwrite(str(out / "depth" / f"{f.index:04d}.png"), np.rint(f.depth * 1000).astype(np.uint16))
    k = seq.intrinsics
    (out / "intrinsics.txt").write_text(f"# K\n{k.fx} 0 {k.cx - 0.5}\n0 {k.fy} {k.cy - 0.5}\n0 0 1\n")
    return out


@pytest.fixture(scope="module")
def replica(synthetic, tmp_path_factory) -> Path:
    """The synthetic sequence in NICE-SLAM's Replica layout, cam_params.json beside the scene folder."""
    root = tmp_path_factory.mktemp("Replica")
    out = root / "room0"
    (out / "results").mkdir(parents=True)
    seq = open_sequence(synthetic)
    rows = []
    for f in seq:
        cv2.imwrite(str(out / "results" / f"frame{f.index:06d}.jpg"), _bgr(f.rgb), [cv2.IMWRITE_JPEG_QUALITY, 98])
        cv2.imwrite(str(out / "results" / f"depth{f.index:06d}.png"), np.rint(f.depth * 6553.5).astype(np.uint16))
        rows.append(" ".join(repr(float(v)) for v in f.c2w_gt.reshape(-1)))
    (out / "traj.txt").write_text("\n".join(rows) + "\n")
    k = seq.intrinsics
    cam = {"w": k.width, "h": k.height, "fx": k.fx, "fy": k.fy, "cx": k.cx - 0.5, "cy": k.cy - 0.5, "scale": 6553.5}
    (root / "cam_params.json").write_text(json.dumps({"camera": cam}))
    return out


def test_synthetic_sequence_streams_frames_in_file_order(synthetic):
    seq = open_sequence(synthetic)
    assert (seq.layout, len(seq), seq.size, seq.has_gt, seq.name) == ("synthetic", 6, (64, 48), True, synthetic.name)
    meta = json.loads((synthetic / "transforms.json").read_text())
    frames = list(seq)
    assert [f.name for f in frames] == [fr["file_path"] for fr in meta["frames"]]
    np.testing.assert_allclose(seq.timestamps, np.arange(6) / 30.0)
    f = frames[2]
    assert f.rgb.dtype == np.uint8 and f.rgb.shape == (48, 64, 3)
    assert f.depth.dtype == np.float32 and f.depth.shape == (48, 64)
    ref = cv2.cvtColor(cv2.imread(str(synthetic / meta["frames"][2]["file_path"])), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(f.rgb, ref)
    raw = cv2.imread(str(synthetic / meta["frames"][2]["depth_file_path"]), cv2.IMREAD_UNCHANGED)
    np.testing.assert_allclose(f.depth, raw / 1000.0, atol=1e-6)  # millimetres -> metres
    # OpenGL transform_matrix -> OpenCV: camera y and z columns flip.
    gl = np.array(meta["frames"][2]["transform_matrix"])
    np.testing.assert_allclose(f.c2w_gt, gl @ np.diag([1.0, -1.0, -1.0, 1.0]))
    sub = seq.subset(1, None, 2)
    assert len(sub) == 3 and sub[0].name == frames[1].name and sub[-1].name == frames[5].name
    assert seq.gt_poses().shape == (6, 4, 4)


def test_plain_layout_matches_the_native_sequence(synthetic, plain):
    native, seq = open_sequence(synthetic), open_sequence(plain)
    assert seq.layout == "plain" and not seq.has_gt and seq.depth_factor == 1000.0
    assert seq.intrinsics == native.intrinsics and seq.intrinsics_source == "intrinsics.txt"
    for a, b in zip(native, seq):
        np.testing.assert_array_equal(a.rgb, b.rgb)
        assert np.abs(a.depth - b.depth).max() <= 0.5e-3 + 1e-7 and b.c2w_gt is None


def test_intrinsics_file_formats(tmp_path):
    (tmp_path / "a.txt").write_text("500 501 320 240\n")
    (tmp_path / "b.txt").write_text("500 0 320 0\n0 501 240 0\n0 0 1 0\n0 0 0 1\n")  # ScanNet 4x4
    (tmp_path / "c.json").write_text('{"fx": 500, "fy": 501, "cx": 320, "cy": 240, "depth_factor": 5000}')
    (tmp_path / "d.txt").write_text("500 501\n")
    (tmp_path / "e.json").write_text('{"fx": 500, "fy": 501}')
    assert read_intrinsics_file(tmp_path / "a.txt") == ((500, 501, 320, 240), {})
    assert read_intrinsics_file(tmp_path / "b.txt") == ((500, 501, 320, 240), {})
    assert read_intrinsics_file(tmp_path / "c.json") == ((500, 501, 320, 240), {"depth_factor": 5000})
    with pytest.raises(DataError, match="expected 4 numbers .* got 2"):
        read_intrinsics_file(tmp_path / "d.txt")
    with pytest.raises(DataError, match="missing cx, cy"):
        read_intrinsics_file(tmp_path / "e.json")


def test_plain_depth_factor_from_json_and_option(synthetic, plain, tmp_path):
    seq_dir = tmp_path / "seq"
    shutil.copytree(plain, seq_dir)
    (seq_dir / "intrinsics.txt").unlink()
    k = open_sequence(synthetic).intrinsics
    (seq_dir / "intrinsics.json").write_text(json.dumps(
        {"fx": k.fx, "fy": k.fy, "cx": k.cx - 0.5, "cy": k.cy - 0.5, "width": 64, "height": 48, "depth_factor": 500}))
    ref = open_sequence(plain)[0].depth
    np.testing.assert_allclose(open_sequence(seq_dir)[0].depth, 2 * ref, rtol=1e-6)
    np.testing.assert_allclose(open_sequence(seq_dir, depth_factor=1000)[0].depth, ref, rtol=1e-6)
    (seq_dir / "intrinsics.json").write_text(json.dumps({"fx": 50, "fy": 50, "cx": 32, "cy": 24, "width": 640}))
    with pytest.raises(DataError, match="width = 640 but 0000.png is 64x48"):
        open_sequence(seq_dir)


def test_replica_layout_with_cam_params_in_the_parent(synthetic, replica):
    native, seq = open_sequence(synthetic), open_sequence(replica)
    assert seq.layout == "replica" and seq.name == "room0" and seq.depth_factor == 6553.5
    assert seq.intrinsics == native.intrinsics and seq.intrinsics_source.endswith("cam_params.json")
    for a, b in zip(native, seq):
        assert b.name == f"results/frame{a.index:06d}.jpg"
        jpg = cv2.cvtColor(cv2.imread(str(replica / b.name)), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(b.rgb, jpg)
        assert np.abs(a.rgb.astype(int) - b.rgb).mean() < 8.0  # only JPEG's loss
        assert np.abs(a.depth - b.depth).max() <= 0.5 / 6553.5 + 1e-6
        np.testing.assert_array_equal(a.c2w_gt, b.c2w_gt)


def test_replica_bad_input(replica, tmp_path):
    root = tmp_path / "Replica"
    shutil.copytree(replica, root / "room0")
    with pytest.raises(DataError, match="no cam_params.json here or in .*pass --intrinsics"):
        open_sequence(root / "room0")
    shutil.copy(replica.parent / "cam_params.json", root / "room0" / "cam_params.json")
    lines = (root / "room0" / "traj.txt").read_text().splitlines()
    (root / "room0" / "traj.txt").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DataError, match="traj.txt: 5 poses for 6 frames"):
        open_sequence(root / "room0")
    (root / "room0" / "traj.txt").write_text("\n".join(lines[:2] + ["1 2 3"] + lines[3:]) + "\n")
    with pytest.raises(DataError, match="traj.txt line 3: expected 16 values, got 3"):
        open_sequence(root / "room0")


def test_count_mismatch_of_the_plain_layout(plain, tmp_path):
    seq_dir = tmp_path / "seq"
    shutil.copytree(plain, seq_dir)
    (seq_dir / "depth" / "0003.png").unlink()
    with pytest.raises(DataError, match=r"6 RGB images in rgb/ but 5 depth images in depth/") as err:
        open_sequence(seq_dir)
    assert str(seq_dir) in str(err.value)


def test_size_mismatch_and_unreadable_frames_fail_when_reached(plain, tmp_path):
    seq_dir = tmp_path / "seq"
    shutil.copytree(plain, seq_dir)
    cv2.imwrite(str(seq_dir / "depth" / "0002.png"), np.zeros((24, 32), np.uint16))
    (seq_dir / "rgb" / "0004.png").write_bytes(b"not a png")
    seq = open_sequence(seq_dir)  # opening reads no pixels
    it = iter(seq)
    assert [next(it).index for _ in range(2)] == [0, 1]
    size_msg = r"depth/0002.png: depth is 32x24 but its RGB image 0002.png is 64x48 \(frame 2 of 6\)"
    with pytest.raises(DataError, match=size_msg):
        next(it)
    with pytest.raises(DataError, match=r"rgb/0004.png: corrupt or unreadable RGB image \(frame 4 of 6\)"):
        seq[4]
    (seq_dir / "rgb" / "0005.png").unlink()
    with pytest.raises(DataError, match=r"0005.png: RGB file not found \(frame 5 of 6\)"):
        seq[5]


def test_missing_intrinsics_and_unknown_layouts(plain, tmp_path):
    seq_dir = tmp_path / "seq"
    shutil.copytree(plain, seq_dir)
    (seq_dir / "intrinsics.txt").unlink()
    with pytest.raises(DataError, match="no intrinsics: add intrinsics.json / intrinsics.txt .* --intrinsics"):
        open_sequence(seq_dir)
    assert open_sequence(seq_dir, intrinsics="50,50,31.5,23.5").intrinsics.cx == 32.0
    with pytest.raises(DataError, match="not an RGB-D sequence"):
        detect_layout(tmp_path)
    with pytest.raises(DataError, match="no such file"):
        open_sequence(tmp_path / "missing")


def test_train_only_drops_the_held_out_frames(synthetic, tmp_path):
    seq_dir = tmp_path / "syn"
    shutil.copytree(synthetic, seq_dir)
    meta = json.loads((seq_dir / "transforms.json").read_text())
    names = [fr["file_path"] for fr in meta["frames"]]
    meta["train_filenames"], meta["test_filenames"] = names[:2] + names[3:], [names[2]]
    (seq_dir / "transforms.json").write_text(json.dumps(meta))
    assert len(open_sequence(seq_dir)) == 6
    seq = open_sequence(seq_dir, train_only=True)
    assert [f.name for f in seq.frames] == names[:2] + names[3:]
    np.testing.assert_allclose(seq.timestamps, np.array([0, 1, 3, 4, 5]) / 30.0)


def test_first_frame_size_mismatch_and_replica_without_traj_fail_at_open(plain, replica, tmp_path):
    seq_dir = tmp_path / "seq"
    shutil.copytree(plain, seq_dir)
    cv2.imwrite(str(seq_dir / "depth" / "0000.png"), np.zeros((24, 32), np.uint16))
    # Opening reads headers only, yet a first frame whose depth has another size is refused there (not mid-run).
    msg = r"0000.png: depth is 32x24 but its RGB image 0000.png is 64x48 \(frame 0 of 6\)"
    with pytest.raises(DataError, match=msg):
        open_sequence(seq_dir)
    scene = tmp_path / "Replica" / "room0"
    shutil.copytree(replica, scene)
    (scene / "traj.txt").unlink()
    assert detect_layout(scene) == "replica"  # results/frame* is enough to say which file is missing
    with pytest.raises(DataError, match=r"traj.txt: not found"):
        open_sequence(scene, intrinsics="50,50,31.5,23.5")
