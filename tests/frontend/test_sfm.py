"""pycolmap structure from motion: fern through estimate_poses, resume after a crash, bad-input errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from langfield.frontend import sfm as sfm_mod
from langfield.trajectory import median_relative_rotation_deg
from langfield.frontend.frames import FrameConfig
from langfield.frontend.poses import default_work_dir, estimate_poses
from langfield.frontend.sfm import SfmConfig, check_registration, finished_stages, run_sfm
from langfield.io import atomic_write_png
from langfield.sources import load_dataset
from langfield.sources.llff import read_llff
from langfield.types import DataError

FERN = Path(__file__).resolve().parents[3] / "shared" / "data" / "llff_fern"
needs_fern = pytest.mark.skipif(not (FERN / "images_8").is_dir(), reason="fern data not available")


@pytest.fixture(scope="module")
def fern_dataset(tmp_path_factory):
    """One SfM run of the 20 fern photos through estimate_poses, shared by the assertions below."""
    photos = tmp_path_factory.mktemp("fern_in") / "photos"
    shutil.copytree(FERN / "images_8", photos)
    out = tmp_path_factory.mktemp("fern_out") / "data"
    return photos, estimate_poses(photos, out, frames=FrameConfig(), sfm=SfmConfig(), progress=False)


@pytest.mark.slow
@needs_fern
def test_fern_poses(fern_dataset):
    photos, res = fern_dataset
    assert (res.registered, res.total, res.dropped) == (20, 20, [])
    cap = load_dataset(res.dataset, eval_every=0)
    ref = {f.name: f.c2w for f in read_llff(FERN, images="images_8").frames}
    names = [Path(f.name).name for f in cap.frames]
    est = np.stack([f.c2w for f in cap.frames])
    assert median_relative_rotation_deg(est, np.stack([ref[n] for n in names])) <= 1.0
    meta = json.loads((res.dataset / "transforms.json").read_text())
    assert meta["ply_file_path"] == "sparse_pc.ply" and cap.points is not None and len(cap.points) > 500
    centres = est[:, :3, 3]
    np.testing.assert_allclose(centres.mean(0), 0.0, atol=1e-5)
    assert 0.99 < np.linalg.norm(centres, axis=1).max() < 1.01
    up = -est[:, :3, 1].mean(0)
    assert up[2] / np.linalg.norm(up) > 0.999
    # the sparse points sit in front of the cameras in the normalised world (same frame as the poses)
    depth = (cap.points - centres[0]) @ est[0, :3, 2]
    assert np.median(depth) > 0
    assert set(res.seconds) >= {"frames", "extract", "match", "map", "undistort", "export", "total"}
    assert not default_work_dir(res.dataset).exists()  # removed after success
    assert sorted(p.name for p in photos.iterdir()) == names  # the input is untouched


def _small_photos(root: Path, n_fern: int = 8, n_noise: int = 2) -> Path:
    """Eight small fern photos plus images of noise that SfM cannot register."""
    photos = root / "photos"
    photos.mkdir(parents=True)
    for p in sorted((FERN / "images_16").glob("*.png"))[:n_fern]:
        shutil.copy(p, photos / p.name)
    rng = np.random.default_rng(0)
    for i in range(n_noise):
        atomic_write_png(photos / f"noise_{i}.png", rng.integers(0, 255, (189, 252, 3), dtype=np.uint8))
    return photos


@needs_fern
def test_resume_after_crash_and_partial_registration(tmp_path, monkeypatch, capsys):
    photos = _small_photos(tmp_path)
    out = tmp_path / "data"

    def crash(*a, **k):
        raise KeyboardInterrupt  # as Ctrl-C between the map and undistort stages

    real = sfm_mod._undistort
    monkeypatch.setattr(sfm_mod, "_undistort", crash)
    with pytest.raises(KeyboardInterrupt):
        estimate_poses(photos, out, progress=False)
    work = default_work_dir(out)
    assert finished_stages(work / "sfm") == ["extract", "match", "map"]
    assert not out.exists()

    monkeypatch.setattr(sfm_mod, "_undistort", real)
    capsys.readouterr()
    res = estimate_poses(photos, out, progress=False, keep_work=True)
    assert res.resumed == ["extract", "match", "map"]
    assert res.registered == 8 and res.total == 10 and sorted(res.dropped) == ["noise_0.png", "noise_1.png"]
    err = capsys.readouterr().err
    assert "warning:" in err and "8 of 10 images registered" in err and "noise_0.png" in err
    assert len(load_dataset(out, eval_every=0).frames) == 8
    with pytest.raises(DataError, match="already exists"):
        estimate_poses(photos, out, progress=False)

    # another mapper redoes mapping and undistortion only: the features and matches are reused
    frames = sorted((work / "frames").glob("*.png"))
    other = run_sfm(frames, work / "sfm", SfmConfig(mapper="global"), sequential=False, progress=False)
    assert other.resumed == ["extract", "match"] and other.mapper == "global" and len(other.registered) == 8

    # the same work with a stricter threshold: every stage resumes, the check fails naming the dropped images
    with pytest.raises(DataError, match=r"registered only 8 of 10 images \(need 10\).*noise_0\.png, noise_1\.png"):
        run_sfm(frames, work / "sfm", SfmConfig(mapper="global", min_registered_ratio=1.0), sequential=False,
                progress=False)


def test_registration_threshold_messages(capsys):
    cfg = SfmConfig()
    with pytest.raises(DataError, match=r"only 2 of 10 images \(need 5\); not registered: a, b, c"):
        check_registration(2, ["a", "b", "c", "d", "e", "f", "g", "h"], 10, cfg, Path("in"))
    with pytest.raises(DataError, match=r"only 2 of 3 images \(need 3\)"):
        check_registration(2, ["x"], 3, cfg, Path("in"))
    names = [f"f{i}" for i in range(14)]
    with pytest.raises(DataError, match="and 4 more"):
        check_registration(1, names, 15, cfg, Path("in"))
    check_registration(9, ["z.png"], 10, cfg, Path("in"))
    assert "9 of 10 images registered; dropped: z.png" in capsys.readouterr().err


@needs_fern
def test_static_camera_is_refused(tmp_path, capfd):
    """Copies of one photo: no parallax, so no model (or a degenerate one) -> a one-line DataError, pycolmap quiet."""
    photos = tmp_path / "static"
    photos.mkdir()
    src = sorted((FERN / "images_16").glob("*.png"))[0]
    for i in range(5):
        shutil.copy(src, photos / f"frame_{i:06d}.png")
    with pytest.raises(DataError, match="static camera") as info:
        run_sfm(sorted(photos.iterdir()), tmp_path / "work", SfmConfig(), sequential=True, progress=False)
    assert "\n" not in str(info.value)
    assert capfd.readouterr().err == ""  # pycolmap's own glog lines (even its errors) stay silent


def test_sequential_pairs_offsets():
    names = [f"frame_{i:06d}.png" for i in range(40)]
    offsets = lambda pairs: sorted({names.index(b) - names.index(a) for a, b in pairs})  # noqa: E731
    assert offsets(sfm_mod.sequential_pairs(names, 10, True)) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 16, 32]
    assert offsets(sfm_mod.sequential_pairs(names, 3, False)) == [1, 2, 3]
    pairs = sfm_mod.sequential_pairs(list(reversed(names)), 10, True)  # name order, whatever the input order
    assert len(pairs) == len(set(pairs)) == sum(40 - d for d in [*range(1, 11), 16, 32])
    assert all(a < b for a, b in pairs)


def test_sequential_matching_pairs_near_and_quadratic_neighbours(tmp_path):
    """COLMAP's quadratic overlap alone skips the near neighbours 3, 5-7 ... (COLMAP >= 3.12): the database must
    hold exactly ``sequential_pairs``, near neighbours and 2^k ones (features made up: every pair matches)."""
    import pycolmap

    db = tmp_path / "database.db"
    rng = np.random.default_rng(0)
    keypoints = rng.uniform(0, 100, (24, 2)).astype(np.float32)
    descriptors = pycolmap.FeatureDescriptors(pycolmap.FeatureExtractorType.SIFT,
                                              rng.integers(0, 128, (24, 128)).astype(np.uint8))
    names = [f"frame_{i:06d}.png" for i in range(16)]
    with pycolmap.Database.open(db) as database:
        cam = database.write_camera(
            pycolmap.Camera.create_from_model_id(1, pycolmap.CameraModelId.SIMPLE_PINHOLE, 100.0, 100, 100))
        for name in names:
            image_id = database.write_image(pycolmap.Image(name=name, camera_id=cam))
            database.write_keypoints(image_id, keypoints)
            database.write_descriptors(image_id, descriptors)
    with sfm_mod._colmap_log(False):
        sfm_mod._match(db, "sequential", SfmConfig(overlap=3, threads=1), redo=False)
    with pycolmap.Database.open(db) as database:
        got = set()
        for pair_id in database.read_all_matches()[0]:
            a, b = pycolmap.pair_id_to_image_pair(pair_id)
            got.add(tuple(sorted((database.read_image(a).name, database.read_image(b).name))))
    assert got == set(sfm_mod.sequential_pairs(names, 3, True))  # offsets 1, 2, 3 and 4
