"""`langfield check DATA`: the summary matches the dataset, suspicious data gives warnings, bad data the
first error (exit 2), and nothing is written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from langfield.cli import main


def _check(capsys, *args: str) -> dict:
    assert main(["check", *args]) == 0
    return json.loads(capsys.readouterr().out)


def _error(capsys, *args: str) -> str:
    assert main(["check", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.fixture
def room(synthetic_dataset, tmp_path) -> Path:
    """A private copy of the synthetic room (64x48, 12 + 4 views, depth, semantics, labels, points)."""
    return Path(shutil.copytree(synthetic_dataset, tmp_path / "room"))


def test_summary_matches_the_dataset(room, capsys):
    from plyfile import PlyData

    before = sorted(p.relative_to(room) for p in room.rglob("*"))
    meta = json.loads((room / "transforms.json").read_text())
    summary = _check(capsys, str(room))
    assert summary["format"] == "nerfstudio"
    assert summary["frames"] == {"total": len(meta["frames"]), "train": len(meta["train_filenames"]),
                                 "eval": len(meta["test_filenames"])}
    assert summary["image_sizes"] == [f"{meta['w']}x{meta['h']}"] == summary["loaded_sizes"]
    assert summary["intrinsics"]["fx"] == [pytest.approx(meta["fl_x"])] * 2
    assert summary["depth"]["frames"] == len(meta["frames"])
    assert summary["depth"]["unit_scale_m"] == [meta.get("depth_unit_scale_factor", 0.001)]
    assert 0 < summary["depth"]["range_m"][0] <= summary["depth"]["median_m"] <= summary["depth"]["range_m"][1]
    assert summary["labels"] == len(json.loads((room / "labels.json").read_text()))
    assert summary["sparse_points"] == PlyData.read(str(room / meta["ply_file_path"]))["vertex"].count
    assert summary["warnings"] == []
    assert sorted(p.relative_to(room) for p in room.rglob("*")) == before  # check writes nothing


def test_downscale_is_checked_as_reconstruct_loads_it(room, capsys):
    assert _check(capsys, str(room), "--downscale", "2")["loaded_sizes"] == ["32x24"]
    line = _error(capsys, str(room), "--downscale", "4")
    assert "16x12 after --downscale 4" in line and "16x16" in line


def test_first_error_is_reported(room, capsys):
    meta = json.loads((room / "transforms.json").read_text())
    meta["depth_unit_scale_factor"] = 0
    (room / "transforms.json").write_text(json.dumps(meta))
    assert "depth_unit_scale_factor = 0" in _error(capsys, str(room))
    assert "no such file" in _error(capsys, str(room / "missing"))


def test_warnings_for_suspicious_data(room, capsys):
    labels = json.loads((room / "labels.json").read_text())
    dropped = sorted(labels, key=int)[0]
    del labels[dropped]
    (room / "labels.json").write_text(json.dumps(labels))
    meta = json.loads((room / "transforms.json").read_text())
    blank = meta["frames"][0]["file_path"]
    w, h = Image.open(room / blank).size
    Image.fromarray(np.full((h, w, 3), 7, np.uint8)).save(room / blank)
    warnings = _check(capsys, str(room))["warnings"]
    assert any(f"semantic ids {dropped}" in w and "labels.json" in w for w in warnings), warnings
    assert any("blank" in w and Path(blank).name in w for w in warnings), warnings


def test_unposed_images_are_refused_like_reconstruct(tmp_path, capsys):
    for i in range(3):
        Image.fromarray(np.full((24, 32, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    assert "langfield poses" in _error(capsys, str(tmp_path))
