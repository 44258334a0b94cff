"""Smooth synthetic camera paths, datasets rendered along them, and synthetic videos (with rotation metadata)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from langfield.synthetic import SceneConfig, generate_scene, render_video, smooth_path
from langfield.synthetic.__main__ import main as cli_main
from langfield.synthetic.generate import _check_cameras
from langfield.synthetic.layout import build_scene
from langfield.synthetic.video import set_mp4_rotation, write_video
from langfield.types import LangfieldError

GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])
CFG = SceneConfig()


def _poses(seed: int, n: int, kind: str = "orbit") -> tuple[np.ndarray, np.ndarray]:
    scene = build_scene(seed, CFG)
    cams = smooth_path(scene, CFG, seed, n, 64, 48, kind=kind)
    _check_cameras(scene, cams)  # inside the room, clear of every object
    c2w = np.stack([c.c2w for c in cams])
    return c2w[:, :3, 3], c2w[:, :3, :3]


def _step_angles(rot: np.ndarray) -> np.ndarray:
    """Rotation angle (degrees) between consecutive camera orientations."""
    rel = np.einsum("nji,njk->nik", rot[:-1], rot[1:])
    cos = np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1)
    return np.degrees(np.arccos(cos))


@pytest.mark.parametrize("seed", [0, 3])
def test_orbit_is_smooth_with_parallax(seed):
    centres, rot = _poses(seed, 120)
    extent = np.linalg.norm(centres.max(0) - centres.min(0))
    steps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    # A walk around the room (metres of baseline), in small, even steps.
    assert extent > 3.0 and steps.sum() > 1.2 * extent
    assert steps.max() < 0.02 * extent and steps.max() < 2.5 * np.median(steps) and steps.min() > 0.2 * np.median(steps)
    angles = _step_angles(rot)
    assert angles.max() < 5.0 and angles.max() < 3 * np.median(angles) + 0.5
    # The camera turns with the walk (most of a turn): some frames look back against the first one.
    assert np.degrees(np.arccos(np.clip(rot[:, :, 2] @ rot[0][:, 2], -1, 1))).max() > 120
    # Continuity: twice the frames along the same path, half the step.
    centres2, rot2 = _poses(seed, 240)
    np.testing.assert_allclose(centres2[0], centres[0]) and np.testing.assert_allclose(centres2[-1], centres[-1])
    assert np.linalg.norm(np.diff(centres2, axis=0), axis=1).max() < 0.6 * steps.max()
    assert _step_angles(rot2).max() < 0.6 * angles.max()


def test_paths_are_deterministic_and_seeded():
    a, ra = _poses(1, 30)
    b, rb = _poses(1, 30)
    c, _ = _poses(2, 30)
    assert np.array_equal(a, b) and np.array_equal(ra, rb)
    assert not np.allclose(a, c)


def test_static_path_has_no_parallax():
    centres, rot = _poses(0, 20, kind="static")
    assert np.ptp(centres, axis=0).max() == 0.0
    angles = _step_angles(rot)
    assert 0 < angles.sum() and np.degrees(np.arccos(np.clip(rot[0][:, 2] @ rot[-1][:, 2], -1, 1))) < 2.0
    with pytest.raises(LangfieldError, match="kind"):
        smooth_path(build_scene(0, CFG), CFG, 0, 5, 64, 48, kind="zigzag")


def test_generate_scene_renders_the_smooth_path(tmp_path):
    cfg = SceneConfig(n_points=200, shadows=False, supersample=False)
    out = tmp_path / "smooth"
    generate_scene(out, seed=2, width=32, height=24, n_train=6, n_eval=2, config=cfg, path="smooth")
    meta = json.loads((out / "transforms.json").read_text())
    c2w = np.stack([np.asarray(f["transform_matrix"]) @ GL_TO_CV for f in meta["frames"]])
    want = np.stack([c.c2w for c in smooth_path(build_scene(2, cfg), cfg, 2, 8, 32, 24)])
    np.testing.assert_allclose(c2w, want, atol=1e-9)  # the same cameras, in path order
    assert meta["test_filenames"] == ["images/frame_00002.png", "images/frame_00006.png"]
    assert all((out / f["depth_file_path"]).is_file() for f in meta["frames"])
    assert json.loads((out / "scene.json").read_text())["camera_path"] == "smooth"
    with pytest.raises(LangfieldError, match="camera path"):
        generate_scene(tmp_path / "bad", width=32, height=24, n_train=2, n_eval=0, config=cfg, path="spiral")


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    root = tmp_path_factory.mktemp("video")
    mp4 = render_video(root / "room.mp4", seed=1, n_frames=8, width=64, height=48, fps=12, gt_dir=root / "gt",
                       config=SceneConfig(n_points=200))  # fmt: skip
    return mp4, root / "gt"


def test_render_video_matches_its_ground_truth_dataset(video):
    mp4, gt = video
    meta = json.loads((gt / "transforms.json").read_text())
    names = [f["file_path"] for f in meta["frames"]]
    assert names == [f"images/frame_{i:06d}.png" for i in range(8)]
    assert "test_filenames" not in meta and (meta["w"], meta["h"]) == (64, 48)
    want = np.stack([c.c2w for c in smooth_path(build_scene(1, CFG), CFG, 1, 8, 64, 48)])
    np.testing.assert_allclose(np.stack([np.asarray(f["transform_matrix"]) @ GL_TO_CV for f in meta["frames"]]), want)
    cap = cv2.VideoCapture(str(mp4))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(12.0)
    decoded = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        decoded.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
    assert len(decoded) == 8
    for i, frame in enumerate(decoded):
        truth = np.asarray(Image.open(gt / names[i]), float)
        other = np.asarray(Image.open(gt / names[(i + 4) % 8]), float)
        err = np.abs(frame - truth).mean()
        assert err < 12 and err < 0.5 * np.abs(frame - other).mean()


def test_portrait_video_carries_rotation_metadata(tmp_path, video):
    _, gt = video
    upright = [np.asarray(Image.open(p)) for p in sorted((gt / "images").iterdir())][:3]
    portrait = [np.ascontiguousarray(np.rot90(f, 1)) for f in upright]  # 48 wide, 64 high
    mp4 = write_video(tmp_path / "portrait.mp4", portrait, rotate=90)
    cap = cv2.VideoCapture(str(mp4))
    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
    assert cap.get(cv2.CAP_PROP_ORIENTATION_META) == 90
    ok, shown = cap.read()
    assert ok and shown.shape == (64, 48, 3)  # a player shows it upright
    assert np.abs(cv2.cvtColor(shown, cv2.COLOR_BGR2RGB) - portrait[0].astype(float)).mean() < 12
    cap = cv2.VideoCapture(str(mp4))
    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)
    ok, stored = cap.read()
    assert ok and stored.shape == (48, 64, 3)  # stored landscape, as a phone does
    # Lossless (PNG in MOV): a player's upright frames are exactly the given ones.
    mov = write_video(tmp_path / "portrait.mov", portrait, rotate=90, codec="png")
    cap = cv2.VideoCapture(str(mov))
    for want in portrait:
        ok, shown = cap.read()
        assert ok
        np.testing.assert_array_equal(cv2.cvtColor(shown, cv2.COLOR_BGR2RGB), want)
    with pytest.raises(LangfieldError, match=r"needs a \.mov file"):
        write_video(tmp_path / "x.mp4", portrait, codec="png")
    with pytest.raises(LangfieldError, match="rotation"):
        set_mp4_rotation(mp4.read_bytes(), 45)
    with pytest.raises(LangfieldError, match="no video track"):
        set_mp4_rotation(b"\x00\x00\x00\x10ftypisom\x00\x00\x00\x00", 90)


def test_cli_writes_a_video(tmp_path, capsys):
    rc = cli_main([str(tmp_path / "gt"), "--video", str(tmp_path / "v.mp4"), "--frames", "3", "--width", "32",
                   "--height", "24", "--no-shadows", "--no-supersample", "--n-points", "50"])  # fmt: skip
    assert rc == 0 and capsys.readouterr().out.strip() == str(tmp_path / "v.mp4")
    cap = cv2.VideoCapture(str(tmp_path / "v.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    assert len(json.loads((tmp_path / "gt" / "transforms.json").read_text())["frames"]) == 3
