"""Camera paths: interpolation through keyframes, smoothness (no rotation flips), the JSON file, the mp4 writer."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from langfield.io import is_temp_file
from langfield.render.camera_path import (
    CAMERA_PATH_FORMAT,
    CameraPath,
    consistent_signs,
    intrinsics_from_fov,
    read_camera_path,
    write_camera_path,
)
from langfield.render.video import VideoWriter, read_video
from langfield.trajectory import rotmat_to_quat
from langfield.types import DataError


def _pose(rotvec, centre) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    m[:3, 3] = centre
    return m


def _random_poses(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [_pose(rng.normal(size=3) * 0.8, rng.normal(size=3)) for _ in range(n)]


def _turning_poses(degrees=(0, 100, 200, 300)) -> list[np.ndarray]:
    """Keyframes turning about z: from 200 degrees on the w >= 0 quaternions jump to the other hemisphere."""
    return [_pose([0.0, 0.0, math.radians(a)], [i, 0.5 * i * i, 0.0]) for i, a in enumerate(degrees)]


def _velocities(path: CameraPath, t: float, eps: float = 1e-5) -> tuple[np.ndarray, ...]:
    """Left and right linear and angular velocities at time ``t`` (finite differences)."""
    c, _ = path.sample(np.array([t - eps, t, t + eps]))
    vl, vr = (c[1, :3, 3] - c[0, :3, 3]) / eps, (c[2, :3, 3] - c[1, :3, 3]) / eps
    wl = Rotation.from_matrix(c[0, :3, :3].T @ c[1, :3, :3]).as_rotvec() / eps
    wr = Rotation.from_matrix(c[1, :3, :3].T @ c[2, :3, :3]).as_rotvec() / eps
    return vl, vr, wl, wr


@pytest.mark.parametrize("loop", [False, True])
def test_the_path_passes_exactly_through_every_keyframe(loop):
    poses = _random_poses(5)
    fovs = [0.6, 0.9, 1.1, 0.7, 0.8]
    path = CameraPath.uniform(poses, fovs, width=64, height=48, fps=10, seconds=4, loop=loop)
    c2w, fov = path.sample(np.array([k.time for k in path.keyframes]))
    np.testing.assert_allclose(c2w, np.stack(poses), atol=1e-12)
    np.testing.assert_allclose(fov, fovs, atol=1e-12)
    # just off a keyframe the curve is near it (the exact hit is not a special case glued on)
    near, _ = path.sample(np.array([path.keyframes[2].time + 1e-7]))
    np.testing.assert_allclose(near[0], poses[2], atol=1e-5)


@pytest.mark.parametrize("loop", [False, True])
def test_velocity_is_continuous_across_keyframes(loop):
    path = CameraPath.uniform(_random_poses(5, seed=1), [0.8] * 5, width=64, height=48, fps=10, seconds=4, loop=loop)
    for k in path.keyframes[1:-1]:
        vl, vr, wl, wr = _velocities(path, k.time)
        assert np.linalg.norm(vl) > 0.05 and np.linalg.norm(wl) > 0.05  # the camera really moves here
        np.testing.assert_allclose(vl, vr, atol=1e-3 * max(1.0, np.linalg.norm(vl)))
        np.testing.assert_allclose(wl, wr, atol=1e-3 * max(1.0, np.linalg.norm(wl)))
    if loop:  # the seam: leaving keyframe 0 at the start as smoothly as arriving at the end
        c_end, _ = path.sample(np.array([path.seconds - 1e-5, path.seconds - 1e-9]))
        c0, _ = path.sample(np.array([0.0, 1e-5]))
        v_in = (c_end[1, :3, 3] - c_end[0, :3, 3]) / (1e-5 - 1e-9)
        v_out = (c0[1, :3, 3] - c0[0, :3, 3]) / 1e-5
        np.testing.assert_allclose(v_in, v_out, atol=1e-3 * max(1.0, np.linalg.norm(v_in)))


@pytest.mark.parametrize("loop", [False, True])
def test_rotation_never_flips_when_quaternion_signs_alternate(loop):
    poses = _turning_poses()
    q = rotmat_to_quat(np.stack(poses)[:, :3, :3])
    assert (np.sum(q[1:] * q[:-1], axis=1) < 0).any()  # the trap is really set: raw neighbours disagree in sign
    assert (np.sum(consistent_signs(q)[1:] * consistent_signs(q)[:-1], axis=1) >= 0).all()
    path = CameraPath.uniform(poses, [0.8] * 4, width=64, height=48, fps=10, seconds=3, loop=loop)
    t = np.linspace(0.0, path.seconds, 3001)
    c2w, _ = path.sample(t)
    yaw = np.unwrap(np.arctan2(c2w[:, 1, 0], c2w[:, 0, 0]))
    steps = np.degrees(np.diff(yaw))
    assert (steps > 0).all()  # always turning the same way: never back, never the long way round
    total = 360.0 if loop else 300.0
    assert yaw[-1] - yaw[0] == pytest.approx(math.radians(total), abs=1e-6)
    assert steps.max() < 4 * total / len(steps)  # no sudden spin anywhere


def test_frame_times_cover_the_ends_or_one_period():
    poses = _random_poses(3)
    open_path = CameraPath.uniform(poses, [0.8] * 3, width=64, height=48, fps=5, seconds=2, loop=False)
    t = open_path.frame_times()
    assert len(t) == open_path.num_frames == 10 and t[0] == 0.0 and t[-1] == 2.0
    c2w, K = open_path.frames()
    np.testing.assert_allclose(c2w[-1], poses[-1], atol=1e-12)  # the video ends on the last keyframe
    assert K.shape == (10, 3, 3)
    loop_path = CameraPath.uniform(poses, [0.8] * 3, width=64, height=48, fps=5, seconds=2, loop=True)
    t = loop_path.frame_times()
    assert len(t) == 10 and t[-1] < 2.0  # frame 0 is not repeated at the end of a loop
    np.testing.assert_allclose(np.diff(t), 0.2)


def test_intrinsics_from_fov_match_the_vertical_field_of_view():
    K = intrinsics_from_fov(math.radians(60), 64, 48)
    assert 2 * math.atan(24 / K[1, 1]) == pytest.approx(math.radians(60))
    assert (K[0, 2], K[1, 2], K[0, 0]) == (32.0, 24.0, K[1, 1])


def test_one_keyframe_is_a_still_camera():
    pose = _random_poses(1)[0]
    path = CameraPath.uniform([pose], [0.7], width=32, height=24, fps=4, seconds=1)
    c2w, fov = path.sample(path.frame_times())
    assert np.allclose(c2w, pose) and np.allclose(fov, 0.7) and len(c2w) == 4


@pytest.mark.parametrize("loop", [False, True])
def test_file_round_trip(tmp_path, loop):
    path = CameraPath.uniform(_random_poses(4), [0.6, 0.7, 0.8, 0.9], width=320, height=240, fps=24, seconds=3.5,
                              loop=loop)
    file = write_camera_path(tmp_path / "sub" / "path.json", path)
    assert not [p for p in file.parent.iterdir() if is_temp_file(p)]
    obj = json.loads(file.read_text())
    assert obj["format"] == CAMERA_PATH_FORMAT and obj["camera_convention"] == "opencv"
    back = read_camera_path(file)
    assert (back.width, back.height, back.fps, back.seconds, back.loop) == (320, 240, 24.0, 3.5, loop)
    for a, b in zip(path.keyframes, back.keyframes):
        np.testing.assert_allclose(a.c2w, b.c2w, atol=1e-12)
        assert a.fov_y == pytest.approx(b.fov_y) and a.time == pytest.approx(b.time)
    np.testing.assert_allclose(back.frames()[0], path.frames()[0], atol=1e-9)


def test_nerfstudio_camera_path_is_read_with_opengl_axes_converted(tmp_path):
    poses = _random_poses(3)
    gl = [p @ np.diag([1.0, -1.0, -1.0, 1.0]) for p in poses]  # the same cameras with OpenGL axes
    obj = {"camera_type": "perspective", "render_width": 64, "render_height": 48, "fps": 2, "seconds": 1.5,
           "camera_path": [{"camera_to_world": m.reshape(-1).tolist(), "fov": 50.0, "aspect": 4 / 3} for m in gl]}
    (tmp_path / "ns.json").write_text(json.dumps(obj))
    path = read_camera_path(tmp_path / "ns.json")
    np.testing.assert_allclose(np.stack([k.c2w for k in path.keyframes]), np.stack(poses), atol=1e-12)
    assert [k.time for k in path.keyframes] == [0.0, 0.75, 1.5]
    assert path.keyframes[0].fov_y == pytest.approx(math.radians(50.0)) and path.num_frames == 3


def _good() -> dict:
    path = CameraPath.uniform(_random_poses(2), [0.8, 0.8], width=64, height=48, fps=10, seconds=1)
    from langfield.render.camera_path import camera_path_to_json

    return camera_path_to_json(path)


def _edit(change):
    obj = _good()
    change(obj)
    return obj


BAD_FILES = {
    "not json": "{nope",
    "not an object": "[1, 2]",
    "wrong format": json.dumps({"format": "something"}),
    "odd width": json.dumps(_edit(lambda o: o.update(resolution=[63, 48]))),
    "fps zero": json.dumps(_edit(lambda o: o.update(fps=0))),
    "no keyframes": json.dumps(_edit(lambda o: o.update(keyframes=[]))),
    "times not increasing": json.dumps(_edit(lambda o: o["keyframes"][1].update(time=0.0))),
    "not a rotation": json.dumps(_edit(lambda o: o["keyframes"][0].update(
        camera_to_world=[[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]))),
    "matrix shape": json.dumps(_edit(lambda o: o["keyframes"][0].update(camera_to_world=[1, 2, 3]))),
    "fov string": json.dumps(_edit(lambda o: o["keyframes"][0].update(fov_y_degrees="wide"))),
    "fov 180": json.dumps(_edit(lambda o: o["keyframes"][0].update(fov_y_degrees=180))),
    "future version": json.dumps(_edit(lambda o: o.update(version=99))),
    "loop keyframe at the period": json.dumps(_edit(lambda o: o.update(loop=True))),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_files_are_one_line_data_errors(tmp_path, name):
    file = tmp_path / "bad.json"
    file.write_text(BAD_FILES[name])
    with pytest.raises(DataError) as info:
        read_camera_path(file)
    msg = str(info.value)
    assert "\n" not in msg and str(file) in msg


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_camera_path(tmp_path / "missing.json")


def test_video_writer_round_trip_and_atomic_output(tmp_path):
    out = tmp_path / "v.mp4"
    frames = [np.full((24, 32, 3), 40 * i, np.uint8) for i in range(5)]
    with VideoWriter(out, 5, 32, 24) as w:
        for f in frames:
            w.write(f)
    back, fps = read_video(out)
    assert back.shape == (5, 24, 32, 3) and fps == pytest.approx(5.0)
    assert np.abs(back.astype(int).mean(axis=(1, 2, 3)) - [40 * i for i in range(5)]).max() < 4  # lossy, close
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]
    # an aborted write (an exception in the block) leaves the old file untouched
    before = out.read_bytes()
    with pytest.raises(RuntimeError):
        with VideoWriter(out, 5, 32, 24) as w:
            w.write(frames[0])
            raise RuntimeError("stop")
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]


def test_video_writer_refuses_odd_sizes_wrong_frames_and_suffixes(tmp_path):
    with pytest.raises(DataError, match="even"):
        VideoWriter(tmp_path / "v.mp4", 5, 33, 24)
    with pytest.raises(DataError, match=".mp4"):
        VideoWriter(tmp_path / "v.gif", 5, 32, 24)
    w = VideoWriter(tmp_path / "v.mp4", 5, 32, 24)
    with pytest.raises(DataError, match="expected uint8"):
        w.write(np.zeros((24, 30, 3), np.uint8))
    w.abort()
    assert not (tmp_path / "v.mp4").exists()
