"""LLFF reader: ``poses_bounds.npy`` + an image folder (+ optional COLMAP sparse points).

Each row is a flattened 3x5 matrix ``[R | t | (H, W, f)]`` with rotation
columns in [down, right, backwards] order and hwf at the ORIGINAL resolution,
then near/far bounds.  Images are usually a downscaled copy (``images_8``), so
intrinsics are rescaled to the size actually found; this is the one reader
where stored image size and pose-file size differ by design.  The near/far
bounds are not kept (``Capture`` has no field for them).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import numpy as np

from langfield.sources.conventions import llff_to_opencv_c2w
from langfield.sources.io import read_npy
from langfield.sources.points import read_colmap_points
from langfield.sources.split import make_split
from langfield.sources.validate import check_frames, check_pose, image_size, list_images, scene_scale
from langfield.types import Capture, DataError, Frame, Intrinsics

_ASPECT_TOL = 0.02  # relative; downscaled sizes are rounded to whole pixels


def pick_image_dir(root: Path, images: Optional[str]) -> Path:
    """``images=`` if given, else ``images/``, else the smallest-resolution ``images_<k>`` (largest k)."""
    if images is not None:
        d = root / images
        if not d.is_dir():
            raise DataError(f"{d}: image folder not found")
        return d
    if (root / "images").is_dir():
        return root / "images"
    factors = []
    for d in root.iterdir():
        m = re.fullmatch(r"images_(\d+)", d.name)
        if m and d.is_dir():
            factors.append((int(m.group(1)), d))
    if not factors:
        raise DataError(f"{root}: no images/ or images_<k>/ folder beside poses_bounds.npy")
    return max(factors)[1]


def read_llff(
    root: Path,
    *,
    images: Optional[str] = None,
    eval_every: int = 8,
    eval_file: Optional[Path] = None,
) -> Capture:
    """Read an LLFF scene directory (see the module docstring)."""
    root = root.resolve()
    pb_path = root / "poses_bounds.npy"
    if not pb_path.is_file():
        raise DataError(f"{pb_path}: not a file")
    pb = read_npy(pb_path, "poses_bounds")
    if pb.dtype.kind not in "fiu":
        raise DataError(f"{pb_path}: expected real numbers, got dtype {pb.dtype}")
    if pb.ndim != 2 or pb.shape[1] != 17:
        raise DataError(f"{pb_path}: expected shape [N, 17], got {list(pb.shape)}")
    if len(pb) == 0:
        raise DataError(f"{pb_path}: no frames found")
    image_dir = pick_image_dir(root, images)
    files = list_images(image_dir)
    if len(files) != len(pb):
        raise DataError(f"{image_dir}: {len(files)} images but {pb_path.name} has {len(pb)} poses")

    mats = pb[:, :15].reshape(-1, 3, 5)
    frames: list[Frame] = []
    for i, (m, path) in enumerate(zip(mats, files)):
        where = f"{pb_path} row {i}"
        pose = check_pose(llff_to_opencv_c2w(m[:, :4]), where)
        full_h, full_w, focal = (float(x) for x in m[:, 4])
        if not (np.isfinite([full_h, full_w, focal]).all() and min(full_h, full_w, focal) > 0):
            raise DataError(f"{where}: bad (H, W, focal) = ({full_h}, {full_w}, {focal})")
        w, h = image_size(path)
        sx, sy = w / full_w, h / full_h
        if abs(sx - sy) > _ASPECT_TOL * max(sx, sy):
            raise DataError(f"{path}: image is {w}x{h}, not a rescale of the {full_w:g}x{full_h:g} in {pb_path.name}")
        intr = Intrinsics(fx=focal * sx, fy=focal * sy, cx=w / 2.0, cy=h / 2.0, width=w, height=h)
        frames.append(Frame(name=path.name, image_path=path, intrinsics=intr, c2w=pose))
    check_frames(frames, pb_path)
    train_ids, eval_ids = make_split(frames, eval_every, eval_file)

    points = colors = None
    for name in ("points3D.bin", "points3D.txt"):
        p = root / "sparse" / "0" / name
        if p.is_file():
            points, colors = read_colmap_points(p)
            break
    return Capture(
        root=root, frames=frames, train_ids=train_ids, eval_ids=eval_ids, points=points,
        point_colors=colors, kind="llff", scene_scale=scene_scale(frames),
    )
