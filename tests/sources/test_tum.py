"""TUM RGB-D sequences: association, ground truth, calibration, the TUM copy of a synthetic sequence, bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from langfield.sources.rgbd import open_sequence
from langfield.sources.tum import freiburg_sensor, gt_at, read_tum_sequence, write_tum_copy
from langfield.synthetic import generate_scene
from langfield.trajectory import interpolate_poses, read_tum, write_tum
from langfield.types import DataError


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("syn")
    generate_scene(out, seed=1, width=64, height=48, n_train=10, n_eval=0, path="smooth")
    return out


@pytest.fixture(scope="module")
def tum_copy(synthetic, tmp_path_factory) -> tuple[Path, tuple]:
    out = tmp_path_factory.mktemp("tum") / "synthetic_seq"
    return out, write_tum_copy(synthetic, out, seed=3)


def _copy(tum_copy, tmp_path: Path) -> Path:
    dst = tmp_path / tum_copy[0].name
    shutil.copytree(tum_copy[0], dst)
    return dst


def test_tum_copy_reads_back_as_the_native_sequence(synthetic, tum_copy):
    """Done-means 4: same frames (pixel-identical RGB, depth within 1/5000 m) and the same trajectory."""
    path, k = tum_copy
    native = open_sequence(synthetic)
    tum = open_sequence(path, intrinsics=k)
    assert (native.layout, tum.layout) == ("synthetic", "tum")
    assert len(tum) == len(native) == 10 and tum.notes == ()
    assert tum.intrinsics == native.intrinsics  # --intrinsics on OpenCV's grid becomes langfield's again
    # The copy's timestamps really were jittered apart (association had work to do).
    rgb_t = np.loadtxt(path / "rgb.txt", usecols=0)
    depth_t = np.loadtxt(path / "depth.txt", usecols=0)
    assert 0.001 < np.abs(rgb_t - depth_t).max() < 0.02
    gt_t, _ = read_tum(path / "groundtruth.txt")
    assert len(gt_t) == 2 * len(native)  # a different rate than the frames
    np.testing.assert_array_equal(tum.timestamps, rgb_t)
    worst = 0.0
    for a, b in zip(native, tum):
        assert a.index == b.index
        np.testing.assert_array_equal(a.rgb, b.rgb)
        assert np.abs(a.depth - b.depth).max() <= 1.0 / 5000 + 1e-7
        worst = max(worst, float(np.abs(a.c2w_gt - b.c2w_gt).max()))
    assert worst < 1e-9


def test_groundtruth_is_interpolated_at_rgb_times():
    rng = np.random.default_rng(0)
    from scipy.spatial.transform import Rotation

    knots = np.tile(np.eye(4), (3, 1, 1))
    knots[:, :3, :3] = Rotation.from_rotvec(rng.normal(scale=0.3, size=(3, 3))).as_matrix()
    knots[:, :3, 3] = rng.normal(size=(3, 3))
    gt_t = np.array([10.00, 10.01, 10.04])
    got = gt_at(np.array([10.004, 10.01, 10.025, 10.055, 10.2]), gt_t, knots, tol=0.02)
    np.testing.assert_allclose(got[0], interpolate_poses(np.array([10.004]), gt_t, knots)[0], atol=1e-12)
    np.testing.assert_array_equal(got[1], knots[1])  # exact hit
    # 10.025 lies within 0.02 of both neighbours: interpolated; 10.055: only 10.04 is near -> nearest; 10.2: none.
    np.testing.assert_allclose(got[2], interpolate_poses(np.array([10.025]), gt_t, knots)[0], atol=1e-12)
    np.testing.assert_array_equal(got[3], knots[2])
    assert got[4] is None


def test_greedy_association_pairs_the_nearest_and_drops_the_rest(tum_copy, tmp_path):
    path = _copy(tum_copy, tmp_path)
    lines = (path / "depth.txt").read_text().splitlines()
    # Move the last depth frame 0.5 s away: the last RGB frame no longer has a partner.
    t, name = lines[-1].split()
    lines[-1] = f"{float(t) + 0.5:.6f} {name}"
    (path / "depth.txt").write_text("\n".join(lines) + "\n")
    seq = open_sequence(path, intrinsics=tum_copy[1])
    assert len(seq) == 9
    assert seq.notes == ("1 of 10 RGB frames have no depth within 0.02 s and are skipped",)
    # Every kept frame still pairs with its own depth image (the file names carry the frame's position).
    rgb_names = [ln.split()[1] for ln in (path / "rgb.txt").read_text().splitlines() if not ln.startswith("#")]
    depth_names = [ln.split()[1] for ln in lines if not ln.startswith("#")]
    for f in seq.frames:
        i = rgb_names.index(f.name)
        assert f.depth_path == path / depth_names[i]


def test_timestamps_that_do_not_associate_say_how_many_and_the_tolerance(tum_copy, tmp_path):
    path = _copy(tum_copy, tmp_path)
    lines = [ln.split() for ln in (path / "depth.txt").read_text().splitlines() if not ln.startswith("#")]
    (path / "depth.txt").write_text("".join(f"{float(t) + 1.0:.6f} {n}\n" for t, n in lines))
    with pytest.raises(DataError, match=r"only 0 of 10 RGB frames associate with one of the 10 depth frames "
                                        r"within 0.02 s") as err:
        open_sequence(path, intrinsics=tum_copy[1])
    # The message shows both clocks so an offset is visible.
    depth_t = [float(t) + 1.0 for t, _ in lines]
    assert str(path) in str(err.value) and f"depth.txt {min(depth_t):.6f}..{max(depth_t):.6f}" in str(err.value)


def test_groundtruth_far_from_every_frame_is_an_error(tum_copy, tmp_path):
    path = _copy(tum_copy, tmp_path)
    gt_t, gt_c2w = read_tum(path / "groundtruth.txt")
    write_tum(path / "groundtruth.txt", gt_t + 100.0, gt_c2w)
    with pytest.raises(DataError, match="none of its 20 poses"):
        open_sequence(path, intrinsics=tum_copy[1])
    (path / "groundtruth.txt").unlink()
    seq = open_sequence(path, intrinsics=tum_copy[1])
    assert not seq.has_gt and seq.gt_poses() is None and seq[0].c2w_gt is None


def test_missing_intrinsics_names_the_option(tum_copy):
    with pytest.raises(DataError, match="freiburg1/2/3; pass --intrinsics FX,FY,CX,CY"):
        open_sequence(tum_copy[0])
    with pytest.raises(DataError, match="1,2,3.: expected four finite numbers FX,FY,CX,CY"):
        open_sequence(tum_copy[0], intrinsics="1,2,3")


def test_freiburg_calibration_is_chosen_by_name_and_undistorts(tmp_path):
    assert freiburg_sensor(Path("/data/rgbd_dataset_freiburg2_desk")) == 2
    assert freiburg_sensor(Path("/data/freiburg3/seq")) == 3
    assert freiburg_sensor(Path("/data/office")) is None
    seq_dir = tmp_path / "rgbd_dataset_freiburg1_xyz"
    (seq_dir / "rgb").mkdir(parents=True)
    (seq_dir / "depth").mkdir()
    rgb = np.zeros((480, 640, 3), np.uint8)
    rgb[:, 320:] = 255  # a vertical edge: undistortion bends it
    cv2.imwrite(str(seq_dir / "rgb" / "1.000000.png"), rgb)
    cv2.imwrite(str(seq_dir / "depth" / "1.001000.png"), np.full((480, 640), 5000, np.uint16))
    (seq_dir / "rgb.txt").write_text("# timestamp filename\n1.000000 rgb/1.000000.png\n")
    (seq_dir / "depth.txt").write_text("1.001000 depth/1.001000.png\n")
    seq = read_tum_sequence(seq_dir)
    k = seq.intrinsics
    assert (k.fx, k.fy, k.cx, k.cy) == (517.3, 516.5, 319.1, 255.8)  # published fr1 values, +0.5 px grid shift
    assert k.distortion[0] == 0.2624 and seq.intrinsics_source == "published freiburg1 calibration"
    frame = seq[0]
    assert frame.rgb.shape == (480, 640, 3) and frame.depth.shape == (480, 640)
    assert frame.timestamp == 1.0 and frame.c2w_gt is None
    assert not np.array_equal(frame.rgb, rgb)  # undistorted
    centre = frame.depth[200:280, 280:360]
    np.testing.assert_allclose(centre, 1.0)  # 5000 units = 1 m; the centre is barely moved by undistortion
    assert seq.depth_factor == 5000.0


def test_tum_copy_refuses_to_write_into_its_source(synthetic):
    from langfield.types import LangfieldError

    with pytest.raises(LangfieldError):
        write_tum_copy(synthetic, synthetic / "tum")
    assert not (synthetic / "tum").exists()


def test_association_is_greedy_nearest_within_tolerance_and_depth_is_5000_per_metre(tmp_path):
    """Read through files: depth stamps jittered so that a neighbour's depth is a candidate too.

    RGB 1 is nearer depth 0 (0.016 s) than its own depth 1 (0.018 s), but depth 0 is nearer still to
    RGB 0 (0.008 s): greedy pairing by smallest difference (TUM's associate.py) gives each RGB frame its
    own depth, a per-frame nearest search would give RGB 1 depth 0.  RGB 3 has no depth within 0.02 s.
    Depth j holds 5000 * (j + 1) units: (j + 1) metres at 5000 units per metre.
    """
    seq_dir = tmp_path / "office"
    (seq_dir / "rgb").mkdir(parents=True)
    (seq_dir / "depth").mkdir()
    rgb_t = [1.000, 1.024, 1.060, 1.200]
    depth_t = [1.008, 1.042, 1.071, 1.150]
    for i, t in enumerate(rgb_t):
        cv2.imwrite(str(seq_dir / "rgb" / f"{t:.6f}.png"), np.full((6, 8, 3), 10 * i, np.uint8))
    for j, t in enumerate(depth_t):
        cv2.imwrite(str(seq_dir / "depth" / f"{t:.6f}.png"), np.full((6, 8), 5000 * (j + 1), np.uint16))
    (seq_dir / "rgb.txt").write_text("".join(f"{t:.6f} rgb/{t:.6f}.png\n" for t in rgb_t))
    (seq_dir / "depth.txt").write_text("# depth\n" + "".join(f"{t:.6f} depth/{t:.6f}.png\n" for t in depth_t))
    seq = open_sequence(seq_dir, intrinsics="10,10,3.5,2.5")
    assert seq.layout == "tum" and seq.depth_factor == 5000.0
    assert len(seq) == 3 and "1 of 4 RGB frames have no depth within 0.02 s" in seq.notes[0]
    np.testing.assert_array_equal(seq.timestamps, rgb_t[:3])  # a frame is stamped with its RGB time
    for i, frame in enumerate(seq):
        assert frame.rgb[0, 0, 0] == 10 * i
        np.testing.assert_array_equal(frame.depth, np.full((6, 8), float(i + 1), np.float32))
    # A tighter tolerance drops the pairs it no longer allows (0.018 s and 0.011 s), and then opening fails
    # because fewer than half the RGB frames associate.
    with pytest.raises(DataError, match="only 1 of 4 RGB frames associate"):
        open_sequence(seq_dir, intrinsics="10,10,3.5,2.5", max_time_difference=0.01)


def test_tum_copy_depth_pngs_hold_5000_units_per_metre(synthetic, tum_copy):
    native = open_sequence(synthetic)
    tum = open_sequence(tum_copy[0], intrinsics=tum_copy[1])
    for f, files in zip(native, tum.frames):
        raw = cv2.imread(str(files.depth_path), cv2.IMREAD_UNCHANGED)
        assert raw.dtype == np.uint16
        np.testing.assert_array_equal(raw, np.rint(f.depth.astype(np.float64) * 5000).astype(np.uint16))


@pytest.mark.slow
def test_slam_on_the_tum_copy_gives_the_native_trajectory(tmp_path):
    """Done-means 4 end to end: the same frames tracked from both layouts give the same poses."""
    from langfield.frontend.slam import SlamConfig, run_slam

    # The first 8 views of a 60-view path: steps small enough that the odometry really tracks (ATE ~1 cm).
    full = tmp_path / "full"
    generate_scene(full, seed=1, width=48, height=36, n_train=60, n_eval=0, path="smooth")
    tum = tmp_path / "synthetic_tum"
    k = write_tum_copy(full, tum, seed=5)
    cfg = SlamConfig(max_frames=8, track_downscale=1, map_downscale=1, map_iters=2, progress=False)
    a = run_slam(full, tmp_path / "native_scene", cfg)
    b = run_slam(tum, tmp_path / "tum_scene", cfg, intrinsics=k)
    assert len(a.c2w) == len(b.c2w) == 8 and a.num_keyframes == b.num_keyframes
    np.testing.assert_allclose(b.gt_c2w, a.gt_c2w, atol=1e-9)  # the first frame is anchored at the same pose
    # Identical pixels, depths (5000 vs 1000 units per metre hold the same millimetres) and intrinsics: the
    # trajectories agree to float noise (measured 5e-16), not merely to tracking accuracy.
    np.testing.assert_allclose(b.c2w, a.c2w, atol=1e-9)
    ts, c2w = read_tum(tmp_path / "tum_scene" / "trajectory_tum.txt")
    np.testing.assert_array_equal(ts, np.loadtxt(tum / "rgb.txt", usecols=0)[:8])  # the input's timestamps
    # the file holds the poses as text (translation and quaternion to ~8 significant digits)
    np.testing.assert_allclose(c2w, b.c2w, atol=1e-6)
