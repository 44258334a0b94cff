"""Write an SfM result as an ordinary nerfstudio dataset, all at once or not at all.

Layout (what ``ns-process-data`` writes, plus a ``sparse`` link for gsplat's COLMAP parser)::

    transforms.json        PINHOLE intrinsics (top level for one camera, per frame otherwise),
                           OpenGL camera-to-world per frame in the normalised world,
                           applied_transform (COLMAP world -> this world), ply_file_path
    images/                the undistorted images
    sparse_pc.ply          the sparse points (x y z red green blue) in the normalised world
    colmap/sparse/0/       the undistorted COLMAP model, in the SfM's own world
    sparse -> colmap/sparse   (gsplat reads DATA/sparse/0 with DATA/images)
    sfm_report.json        registration counts, dropped images, stage seconds, the normalisation

The dataset is built in ``.NAME.partial`` beside ``out`` and renamed into place; an
existing ``out`` (``overwrite``) is moved to ``.NAME.old`` first and removed after, so a
crash leaves the old dataset or the new one, never half of one.  The caller holds the
writer lock of ``out`` (``langfield.scene_lock``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Optional

import numpy as np

from langfield.frontend.normalize import Normalization
from langfield.frontend.sfm import SfmResult
from langfield.io import atomic_write_bytes, atomic_write_json, atomic_write_with
from langfield.scene_lock import staging_path, swap_in
from langfield.sources.conventions import invert_rigid, opengl_to_opencv_c2w
from langfield.types import DataError

TRANSFORMS = "transforms.json"
POINTS = "sparse_pc.ply"
REPORT = "sfm_report.json"


def _cam_from_world(image: Any) -> np.ndarray:
    pose = image.cam_from_world
    pose = pose() if callable(pose) else pose  # a method since pycolmap 3.12
    m = np.eye(4)
    m[:3, :] = np.asarray(pose.matrix(), dtype=np.float64)
    return m


def _pinhole(cam: Any, where: str) -> dict[str, Any]:
    model = cam.model_name if hasattr(cam, "model_name") else str(cam.model).split(".")[-1]
    p = [float(x) for x in cam.params]
    if model == "PINHOLE":
        fx, fy, cx, cy = p[:4]
    elif model == "SIMPLE_PINHOLE":
        fx = fy = p[0]
        cx, cy = p[1], p[2]
    else:
        raise DataError(f"{where}: expected undistorted PINHOLE cameras, got {model}")
    return {"camera_model": "PINHOLE", "fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy,
            "w": int(cam.width), "h": int(cam.height)}


def write_points_ply(path: Path, xyz: np.ndarray, rgb: np.ndarray) -> None:
    """Binary little-endian PLY of points ``x y z`` (float32) with ``red green blue`` (uint8), atomically."""
    from plyfile import PlyData, PlyElement

    verts = np.empty(len(xyz), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                      ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    for i, c in enumerate("xyz"):
        verts[c] = xyz[:, i]
    for i, c in enumerate(("red", "green", "blue")):
        verts[c] = rgb[:, i]
    ply = PlyData([PlyElement.describe(verts, "vertex")], text=False, byte_order="<")
    atomic_write_with(path, ply.write)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)  # same file system: no bytes copied (the work dir is removed afterwards anyway)
    except OSError:
        atomic_write_bytes(dst, src.read_bytes())


def registered_images(rec: Any) -> list[Any]:
    """The posed images of a pycolmap Reconstruction, sorted by name (the dataset's frame order)."""
    return sorted((img for img in rec.images.values() if img.has_pose), key=lambda im: im.name)


def model_poses(rec: Any) -> tuple[list[str], np.ndarray]:
    """(names, [N, 4, 4] OpenCV camera-to-world poses in the model's world) of the registered images."""
    images = registered_images(rec)
    return [im.name for im in images], np.stack([invert_rigid(_cam_from_world(im)) for im in images])


def transforms_meta(rec: Any, norm: Normalization, where: str) -> tuple[dict[str, Any], list[str]]:
    """The transforms.json object of a PINHOLE model moved by ``norm``, and its image names in frame order."""
    images = registered_images(rec)
    cams = {cid: _pinhole(cam, f"{where} camera {cid}") for cid, cam in rec.cameras.items()}
    shared = len({img.camera_id for img in images}) == 1
    meta: dict[str, Any] = dict(cams[images[0].camera_id]) if shared else {"camera_model": "PINHOLE"}
    frames = []
    for img in images:
        c2w = norm.poses(invert_rigid(_cam_from_world(img))[None])[0]
        fr: dict[str, Any] = {"file_path": f"images/{img.name}",
                              "transform_matrix": opengl_to_opencv_c2w(c2w).tolist(),  # the flip is its own inverse
                              "colmap_im_id": int(img.image_id)}
        if not shared:
            fr.update({k: v for k, v in cams[img.camera_id].items() if k != "camera_model"})
        frames.append(fr)
    meta["frames"] = frames
    meta["applied_transform"] = norm.matrix[:3, :].tolist()
    meta["ply_file_path"] = POINTS
    return meta, [img.name for img in images]


def export_dataset(
    sfm: SfmResult, out: Path, norm: Normalization, *, overwrite: bool = False,
    report: Optional[dict[str, Any]] = None,
) -> Path:
    """Write ``sfm`` (normalised by ``norm``) as a nerfstudio dataset at ``out``; returns ``out``.

    ``report``: extra entries for ``sfm_report.json`` (e.g. frame-selection counts).
    DataError when ``out`` exists and not ``overwrite``.
    """
    out = Path(out)
    if os.path.lexists(out) and not overwrite:
        raise DataError(f"{out} already exists; pass --overwrite to replace it")
    stage = staging_path(out)
    shutil.rmtree(stage, ignore_errors=True)
    try:
        _build(sfm, stage, norm, report)
        swap_in(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)  # never leave half a dataset behind
        raise
    return out


def _build(sfm: SfmResult, stage: Path, norm: Normalization, report: Optional[dict[str, Any]]) -> None:
    import pycolmap

    (stage / "images").mkdir(parents=True)
    rec = pycolmap.Reconstruction(str(sfm.model_dir))
    meta, names = transforms_meta(rec, norm, str(sfm.model_dir))
    for name in names:
        src = sfm.image_dir / name
        if not src.is_file():
            raise DataError(f"{src}: undistorted image missing from the SfM work directory")
        _link_or_copy(src, stage / "images" / name)
    model = stage / "colmap" / "sparse" / "0"
    model.mkdir(parents=True)
    for f in sorted(sfm.model_dir.iterdir()):
        if f.is_file():
            _link_or_copy(f, model / f.name)
    os.symlink(Path("colmap") / "sparse", stage / "sparse")
    pts = list(rec.points3D.values())
    xyz = norm.points(np.array([p.xyz for p in pts], dtype=np.float64)) if pts else np.zeros((0, 3))
    rgb = np.array([p.color for p in pts], dtype=np.uint8).reshape(-1, 3)
    write_points_ply(stage / POINTS, xyz, rgb)
    atomic_write_json(stage / REPORT, {
        "registered": len(sfm.registered), "total": sfm.total, "dropped": sfm.dropped,
        "mapper": sfm.mapper, "matcher": sfm.matcher, "cameras": sfm.num_cameras, "points": sfm.num_points,
        "median_triangulation_deg": sfm.median_triangulation_deg,
        "mean_reprojection_error_px": sfm.mean_reprojection_error,
        "seconds": sfm.seconds, "cpu_seconds": sfm.cpu_seconds, "resumed_stages": sfm.resumed,
        "normalization": {"matrix": norm.matrix.tolist(), "scale": norm.scale,
                          "note": "x_dataset = matrix @ x_colmap; colmap/sparse/0 is in the COLMAP world"},
        **(report or {}),
    })
    atomic_write_json(stage / TRANSFORMS, meta)  # last: a staging dir with transforms.json is complete


