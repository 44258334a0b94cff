"""End to end: a synthetic video through `langfield reconstruct VIDEO` (frames -> SfM -> training -> scene)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from langfield.cli import main
from langfield.eval.poses import compare_poses
from langfield.scene_lock import frontend_path
from langfield.synthetic.video import render_video


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("video")
    mp4, gt = root / "room.mp4", root / "gt"
    # 320x240 is about the smallest size at which SIFT finds enough texture in the room (at 256x192 only a
    # few frames register).
    render_video(mp4, seed=4, n_frames=30, width=320, height=240, gt_dir=gt, turns=0.3)
    return mp4, gt


@pytest.mark.slow
def test_reconstruct_from_video(video, tmp_path, capsys):
    mp4, gt = video
    scene = tmp_path / "scene"
    rc = main(["reconstruct", str(mp4), "--out", str(scene), "--frames.num-frames", "24", "--iterations", "150",
               "--features", "none", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    data = scene / "data"
    # The posed dataset lives in the scene; the work beside it is gone; the scene records it as its own.
    assert (data / "transforms.json").is_file() and (data / "sparse_pc.ply").is_file()
    assert not frontend_path(scene).exists()
    config = json.loads((scene / "config.json").read_text())
    assert Path(config["data"]) == data.resolve() and config["frontend_data"] is True
    acc = compare_poses(data, gt)
    assert acc["matched"] >= 0.95 * 24, acc
    assert acc["ate_pct_extent"] < 2.0, acc
    assert acc["rot_err_median_deg"] < 2.0, acc
    report = json.loads((scene / "eval" / "report.json").read_text())
    assert report["mean_psnr"] > 15.0

    # A scene made from a video resumes like any other (its own data/ is not an input it must avoid).
    rc = main(["reconstruct", str(mp4), "--out", str(scene), "--resume", "--iterations", "160", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    assert json.loads((scene / "config.json").read_text())["iterations"] == 160
    # --overwrite of the video-made scene with its own data/ as a posed input is refused (it would delete it).
    rc = main(["reconstruct", str(data), "--out", str(scene), "--overwrite", "--quiet"])
    assert rc == 2 and "never writes into its inputs" in capsys.readouterr().err
    assert (data / "transforms.json").is_file()


def test_poses_refuses_static_video(tmp_path, capsys):
    mp4 = tmp_path / "static.mp4"
    render_video(mp4, seed=2, n_frames=12, width=128, height=96, kind="static")
    rc = main(["poses", str(mp4), "--out", str(tmp_path / "ds"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "ds").exists()
