"""Dataset export: a (synthesized) PINHOLE model becomes a nerfstudio dataset our readers load, written atomically."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pycolmap
import pytest

from langfield.frontend.export import POINTS, REPORT, export_dataset, model_poses
from langfield.frontend.normalize import normalize_cameras
from langfield.frontend.sfm import SfmResult
from langfield.io import atomic_write_png
from langfield.sources import load_capture, load_dataset
from langfield.types import DataError


def _model(tmp: Path, rigs: int = 1) -> SfmResult:
    """A synthesized PINHOLE reconstruction with tiny images: what run_sfm leaves after undistortion."""
    o = pycolmap.SyntheticDatasetOptions()
    o.num_rigs, o.num_cameras_per_rig, o.num_frames_per_rig = rigs, 1, 6
    o.camera_width, o.camera_height = 64, 48
    o.camera_model_id = pycolmap.CameraModelId.PINHOLE
    o.camera_params = [60.0, 62.0, 32.0, 24.0]
    o.num_points3D = 40
    pycolmap.set_random_seed(0)
    rec = pycolmap.synthesize_dataset(o)
    model, images = tmp / "undistorted" / "sparse", tmp / "undistorted" / "images"
    model.mkdir(parents=True)
    images.mkdir(parents=True)
    rec.write(model)
    rng = np.random.default_rng(0)
    names = sorted(img.name for img in rec.images.values())
    for n in names:
        atomic_write_png(images / n, rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    return SfmResult(model_dir=model, image_dir=images, registered=names, dropped=[], total=len(names),
                     num_cameras=rec.num_cameras(), num_points=rec.num_points3D(), median_triangulation_deg=10.0,
                     mean_reprojection_error=0.0, mapper="incremental", matcher="exhaustive")


def _export(tmp_path: Path, rigs: int = 1, **kw):
    sfm = _model(tmp_path / "work", rigs)
    rec = pycolmap.Reconstruction(str(sfm.model_dir))
    names, c2w = model_poses(rec)
    norm = normalize_cameras(c2w)
    out = export_dataset(sfm, tmp_path / "data", norm, **kw)
    return sfm, rec, names, c2w, norm, out


def test_dataset_reads_back_normalised(tmp_path):
    sfm, rec, names, c2w, norm, out = _export(tmp_path)
    meta = json.loads((out / "transforms.json").read_text())
    assert meta["camera_model"] == "PINHOLE" and meta["fl_x"] == 60.0 and meta["w"] == 64  # shared camera on top
    assert meta["ply_file_path"] == POINTS
    assert "fl_x" not in meta["frames"][0]
    np.testing.assert_allclose(np.array(meta["applied_transform"]), norm.matrix[:3])
    cap = load_dataset(out, eval_every=0)
    assert [Path(f.name).name for f in cap.frames] == names
    got = np.stack([f.c2w for f in cap.frames])
    np.testing.assert_allclose(got, norm.poses(c2w), atol=1e-6)
    centres = got[:, :3, 3]
    np.testing.assert_allclose(centres.mean(0), 0.0, atol=1e-6)
    assert np.linalg.norm(centres, axis=1).max() == pytest.approx(1.0, abs=1e-6)
    up = -got[:, :3, 1].mean(0)
    assert up[2] / np.linalg.norm(up) == pytest.approx(1.0, abs=1e-6)
    # the sparse points are in the same (normalised) world as the cameras
    pts = np.array([p.xyz for p in rec.points3D.values()])
    assert cap.points.shape == pts.shape
    np.testing.assert_allclose(np.sort(cap.points, axis=0), np.sort(norm.points(pts), axis=0), atol=1e-4)
    # the COLMAP model (also at sparse/0 for gsplat) keeps the SfM world: applied_transform maps it over
    col = load_capture(out, kind="colmap", eval_every=0)
    np.testing.assert_allclose(norm.poses(np.stack([f.c2w for f in col.frames])), got, atol=1e-6)
    assert (out / "sparse" / "0" / "images.bin").is_file() and (out / "colmap" / "sparse" / "0").is_dir()
    report = json.loads((out / REPORT).read_text())
    assert report["registered"] == report["total"] == 6
    np.testing.assert_allclose(np.array(report["normalization"]["matrix"]) @ norm.inverse, np.eye(4), atol=1e-9)


def test_per_image_cameras_go_per_frame(tmp_path):
    *_, out = _export(tmp_path, rigs=2)
    meta = json.loads((out / "transforms.json").read_text())
    assert "fl_x" not in meta and all("fl_x" in fr and "w" in fr for fr in meta["frames"])
    assert len(load_dataset(out, eval_every=0).frames) == 12


def test_existing_output_refused_then_replaced(tmp_path):
    sfm, rec, names, c2w, norm, out = _export(tmp_path)
    with pytest.raises(DataError, match="already exists"):
        export_dataset(sfm, out, norm)
    (out / "marker.txt").write_text("old")
    export_dataset(sfm, out, norm, overwrite=True)
    assert not (out / "marker.txt").exists() and (out / "transforms.json").is_file()
    assert not any(p.name.startswith(".data.") for p in out.parent.iterdir())  # no staging / old left


def test_failure_leaves_no_half_dataset(tmp_path):
    sfm, rec, names, c2w, norm, out = _export(tmp_path)
    before = sorted(p.name for p in out.iterdir())
    (sfm.image_dir / names[3]).unlink()
    with pytest.raises(DataError, match="missing"):
        export_dataset(sfm, out, norm, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == before  # the old dataset is untouched
    with pytest.raises(DataError, match="missing"):
        export_dataset(sfm, tmp_path / "fresh", norm)
    assert not (tmp_path / "fresh").exists()
    assert not any(p.name.endswith(".partial") for p in tmp_path.iterdir())
