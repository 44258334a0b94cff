"""langfield.trajectory: Umeyama alignment, ATE / RPE, timestamp association, TUM files."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from langfield.trajectory import (
    align_trajectory, apply_similarity, associate, ate, ate_rmse, interpolate_poses, read_tum, rotmat_to_quat, rpe,
    umeyama, write_tum,
)
from langfield.types import DataError


def _trajectory(n: int, seed: int = 0) -> np.ndarray:
    """A smooth-ish random walk of OpenCV c2w poses (distinct, non-collinear centres)."""
    rng = np.random.default_rng(seed)
    rots = Rotation.from_rotvec(np.cumsum(rng.normal(scale=0.1, size=(n, 3)), axis=0)).as_matrix()
    out = np.tile(np.eye(4), (n, 1, 1))
    out[:, :3, :3] = rots
    out[:, :3, 3] = np.cumsum(rng.normal(scale=0.2, size=(n, 3)), axis=0)
    return out


def _similarity(seed: int = 1) -> tuple[np.ndarray, np.ndarray, float]:
    rot = Rotation.random(random_state=seed).as_matrix()
    return rot, np.array([0.3, -1.2, 2.5]), 1.7


@pytest.mark.parametrize("with_scale", [False, True])
def test_umeyama_recovers_a_known_transform_exactly(with_scale):
    rng = np.random.default_rng(0)
    src = rng.normal(size=(20, 3))
    rot, t, s = _similarity()
    s = s if with_scale else 1.0
    dst = s * src @ rot.T + t
    r_fit, t_fit, s_fit = umeyama(src, dst, with_scale=with_scale)
    np.testing.assert_allclose(r_fit, rot, atol=1e-12)
    np.testing.assert_allclose(t_fit, t, atol=1e-12)
    assert s_fit == pytest.approx(s, abs=1e-12)
    assert np.linalg.det(r_fit) == pytest.approx(1.0)


def test_umeyama_never_returns_a_reflection():
    rng = np.random.default_rng(2)
    src = rng.normal(size=(10, 3))
    dst = src * np.array([1.0, 1.0, -1.0])  # a mirror image: the best rotation is not the mirror
    r_fit, _, _ = umeyama(src, dst)
    assert np.linalg.det(r_fit) == pytest.approx(1.0)


def test_umeyama_rejects_mismatched_or_too_few_points():
    with pytest.raises(DataError, match="3 points, dst 4"):
        umeyama(np.zeros((3, 3)), np.zeros((4, 3)))
    with pytest.raises(DataError, match="at least 2"):
        umeyama(np.zeros((1, 3)), np.zeros((1, 3)))


def test_ate_is_zero_after_alignment_of_a_moved_copy_and_not_before():
    gt = _trajectory(30)
    rot, t, s = _similarity()
    moved = apply_similarity(gt, rot, t)
    assert ate_rmse(moved, gt) < 1e-10
    assert ate_rmse(moved, gt, align="none") > 0.1
    scaled = apply_similarity(gt, rot, t, s)
    assert ate_rmse(scaled, gt, align="se3") > 1e-3  # SE(3) cannot undo a scale
    res = ate(scaled, gt, align="sim3")
    assert res.rmse < 1e-10 and res.scale == pytest.approx(1.0 / s)


def test_align_trajectory_moves_rotations_too():
    gt = _trajectory(15)
    rot, t, _ = _similarity()
    aligned, (r_fit, _, _) = align_trajectory(apply_similarity(gt, rot, t), gt)
    np.testing.assert_allclose(aligned, gt, atol=1e-10)
    np.testing.assert_allclose(r_fit, rot.T, atol=1e-10)


def test_ate_of_a_known_offset_per_frame():
    gt = _trajectory(40)
    est = gt.copy()
    rng = np.random.default_rng(3)
    dirs = rng.normal(size=(40, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    est[:, :3, 3] += 0.01 * dirs  # every centre moved by exactly 1 cm
    res = ate(est, gt, align="none")
    assert res.rmse == pytest.approx(0.01) and res.max == pytest.approx(0.01) and res.n == 40
    assert ate_rmse(est, gt) <= 0.01 + 1e-12  # alignment can only reduce the error


def test_rpe_of_a_constant_extra_step():
    gt = _trajectory(25)
    # Each estimated relative motion has an extra 2 cm step along camera x and a 1 degree turn about camera z.
    extra = np.eye(4)
    extra[:3, :3] = Rotation.from_euler("z", 1.0, degrees=True).as_matrix()
    extra[:3, 3] = [0.02, 0.0, 0.0]
    est = [gt[0]]
    for i in range(1, len(gt)):
        est.append(est[-1] @ (np.linalg.inv(gt[i - 1]) @ gt[i]) @ extra)
    est = np.stack(est)
    res = rpe(est, gt, delta=1)
    assert res.n_pairs == 24 and res.delta == 1
    assert res.trans_rmse == pytest.approx(0.02, rel=1e-9)
    assert res.rot_rmse_deg == pytest.approx(1.0, rel=1e-9)
    assert rpe(gt, gt, delta=3).trans_rmse < 1e-12
    # RPE ignores a global motion of the whole estimate.
    rot, t, _ = _similarity()
    assert rpe(apply_similarity(est, rot, t), gt).trans_rmse == pytest.approx(0.02, rel=1e-9)
    with pytest.raises(DataError, match="delta"):
        rpe(est, gt, delta=0)


def test_quaternions_follow_tum_order_and_match_scipy(tmp_path):
    gt = _trajectory(12, seed=5)
    ts = 1305031102.175304 + np.arange(12) / 30.0
    path = write_tum(tmp_path / "traj.txt", ts, gt, header="test\ntwo lines")
    lines = path.read_text().splitlines()
    assert lines[:2] == ["# test", "# two lines"] and len(lines) == 14
    vals = np.array([[float(v) for v in ln.split()] for ln in lines[2:]])
    np.testing.assert_allclose(vals[:, 1:4], gt[:, :3, 3])
    # scipy's as_quat is (x, y, z, w): TUM's order; up to sign, and ours has w >= 0.
    ref = Rotation.from_matrix(gt[:, :3, :3]).as_quat()
    ref *= np.sign(ref[:, 3:4])
    np.testing.assert_allclose(vals[:, 4:8], ref, atol=1e-12)
    assert (vals[:, 7] >= 0).all()


def test_tum_round_trip_is_exact_and_reads_commas_comments_and_unnormalised_quats(tmp_path):
    gt = _trajectory(20, seed=7)
    ts = np.arange(20) * 0.1 + 17.0
    path = write_tum(tmp_path / "t.txt", ts, gt)
    ts2, c2w2 = read_tum(path)
    np.testing.assert_array_equal(ts2, ts)
    np.testing.assert_allclose(c2w2, gt, atol=1e-14)
    other = tmp_path / "o.txt"
    other.write_text("# timestamp tx ty tz qx qy qz qw\n\n1.5,1,2,3,0,0,0,2\n2.5 0 0 0 0 0 2 0  # 180 about z\n")
    ts3, c2w3 = read_tum(other)
    np.testing.assert_array_equal(ts3, [1.5, 2.5])
    np.testing.assert_allclose(c2w3[0], [[1, 0, 0, 1], [0, 1, 0, 2], [0, 0, 1, 3], [0, 0, 0, 1]], atol=1e-15)
    np.testing.assert_allclose(c2w3[1, :3, :3], np.diag([-1.0, -1.0, 1.0]), atol=1e-15)


def test_rotmat_to_quat_handles_half_turns():
    rots = Rotation.from_rotvec(np.pi * np.eye(3)).as_matrix()  # 180 degrees about x, y, z: trace -1
    q = rotmat_to_quat(rots)
    np.testing.assert_allclose(np.abs(q), np.hstack([np.zeros((3, 1)), np.eye(3)]), atol=1e-12)


@pytest.mark.parametrize(
    "text, match",
    [
        ("1 2 3\n", "line 1: expected 8 values, got 3"),
        ("# c\n1 0 0 0 0 0 0 x\n", "line 2: not a number"),
        ("1 0 0 nan 0 0 0 1\n", "line 1: NaN or infinite"),
        ("1 0 0 0 0 0 0 0\n", "line 1: zero quaternion"),
        ("# only a comment\n", "no poses"),
    ],
)
def test_read_tum_names_the_bad_line(tmp_path, text, match):
    p = tmp_path / "bad.txt"
    p.write_text(text)
    with pytest.raises(DataError, match=match) as err:
        read_tum(p)
    assert str(p) in str(err.value)
    with pytest.raises(DataError, match="not found"):
        read_tum(tmp_path / "missing.txt")


def test_associate_is_greedy_by_smallest_difference_and_uses_each_once():
    a = np.array([0.00, 0.10, 0.20, 0.30])
    b = np.array([0.005, 0.012, 0.21, 0.50])
    # 0.00 pairs with 0.005 (diff 0.005); 0.012 is left over (0.10 is too far); 0.20 with 0.21; 0.30 unmatched.
    assert associate(a, b, 0.02) == [(0, 0), (2, 2)]
    # A timestamp of b that is nearest to two of a goes to the closer one only.
    assert associate(np.array([1.0, 1.015]), np.array([1.01]), 0.02) == [(1, 0)]
    assert associate(a, b + 1.0, 0.02, offset=-1.0) == [(0, 0), (2, 2)]
    assert associate(a, np.array([]), 0.02) == []


def test_interpolate_poses_hits_knots_and_midpoints():
    gt = _trajectory(5, seed=9)
    tk = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(interpolate_poses(tk, tk, gt), gt, atol=1e-12)
    mid = interpolate_poses(np.array([0.5]), tk, gt)[0]
    np.testing.assert_allclose(mid[:3, 3], 0.5 * (gt[0, :3, 3] + gt[1, :3, 3]), atol=1e-12)
    rel = np.linalg.inv(gt[0, :3, :3]) @ gt[1, :3, :3]
    half = np.linalg.inv(gt[0, :3, :3]) @ mid[:3, :3]
    np.testing.assert_allclose(Rotation.from_matrix(half).as_rotvec(), 0.5 * Rotation.from_matrix(rel).as_rotvec(),
                               atol=1e-10)
    with pytest.raises(DataError, match="leave the known range"):
        interpolate_poses(np.array([4.5]), tk, gt)


def test_compare_trajectories_associates_by_time_first():
    from langfield.trajectory import compare_trajectories

    gt = _trajectory(40, seed=11)
    gt_t = np.arange(40) * 0.01  # 100 Hz ground truth
    est_t = gt_t[::3] + 0.002  # 33 Hz estimate, 2 ms clock skew
    rot, t, _ = _similarity()
    est = apply_similarity(gt[::3], rot, t)
    res = compare_trajectories(est_t, est, gt_t, gt)
    assert res.n_associated == len(est_t) == 14 and res.n_ground_truth == 40
    assert res.ate.rmse < 1e-10 and res.rpe is not None and res.rpe.trans_rmse < 1e-10
    d = res.as_dict()
    assert d["ate_rmse_m"] == res.ate.rmse and d["rpe_delta"] == 1
    with pytest.raises(DataError, match="only 0 of 14 estimated poses associate with one of the 40 ground-truth "
                                        "poses within 0.02 s"):
        compare_trajectories(est_t + 5.0, est, gt_t, gt)
