"""`langfield eval SCENE --trajectory GT.txt`: ATE/RPE of the scene's trajectory_tum.txt against a TUM file."""

from __future__ import annotations

import json

import numpy as np

from langfield.cli import main
from langfield.geometry import look_at
from langfield.scene import TRAJECTORY_FILE
from langfield.trajectory import write_tum


def _trajectory(n: int) -> np.ndarray:
    t = np.linspace(0, np.pi, n)
    eyes = np.stack([2 * np.cos(t), 2 * np.sin(t), 1 + 0.2 * np.sin(3 * t)], axis=1)
    return np.stack([np.asarray(look_at(e, np.zeros(3)), dtype=np.float64) for e in eyes])


def test_eval_trajectory_reports_ate_after_alignment(tmp_path, capsys):
    gt = _trajectory(40)
    ts = np.arange(40) / 30.0
    # The estimate: the truth in another world frame (rotated, shifted) plus a known 1 cm offset on every
    # other pose; SE(3) alignment removes the frame, the offsets remain.
    rot = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    est = gt.copy()
    est[:, :3, :3] = rot @ gt[:, :3, :3]
    est[:, :3, 3] = gt[:, :3, 3] @ rot.T + np.array([5.0, -1.0, 0.5])
    est[::2, :3, 3] += np.array([0.0, 0.0, 0.01])
    scene = tmp_path / "scene"
    scene.mkdir()
    write_tum(scene / TRAJECTORY_FILE, ts + 0.004, est)  # clocks a little apart, within the tolerance
    write_tum(tmp_path / "gt.txt", ts, gt)
    assert main(["eval", str(scene), "--trajectory", str(tmp_path / "gt.txt")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_associated"] == 40
    assert 0.004 < out["ate_rmse_m"] < 0.006  # the +-5 mm left of alternating 1 cm offsets


def test_eval_trajectory_errors(tmp_path, capsys):
    scene = tmp_path / "scene"
    scene.mkdir()
    assert main(["eval", str(scene), "--trajectory", str(tmp_path / "gt.txt")]) == 2
    assert "no estimated trajectory" in capsys.readouterr().err
    write_tum(scene / TRAJECTORY_FILE, np.arange(5.0), _trajectory(5))
    write_tum(tmp_path / "gt.txt", np.arange(5.0) + 100.0, _trajectory(5))
    assert main(["eval", str(scene), "--trajectory", str(tmp_path / "gt.txt")]) == 2
    assert "associate" in capsys.readouterr().err
