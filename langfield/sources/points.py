"""Sparse point clouds that come with a dataset: PLY files and bare COLMAP ``points3D`` files.

A full COLMAP model is read through pycolmap (``colmap.py``); this module
reads ``points3D.bin|txt`` alone, which pycolmap cannot do when the model's
``images`` file is missing (as in the redistributed LLFF scenes).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from langfield.types import DataError

Points = tuple[np.ndarray, np.ndarray]  # [P, 3] float32 xyz, [P, 3] uint8 rgb


def read_ply_points(path: Path) -> Points:
    """Vertices (x, y, z) and colours (red, green, blue; grey when absent) of a PLY file."""
    from plyfile import PlyData  # local import: only nerfstudio captures with a ply need it

    if not path.is_file():
        raise DataError(f"{path}: point cloud file not found")
    try:
        ply = PlyData.read(str(path))
        v = ply["vertex"].data
        xyz = np.stack([v["x"], v["y"], v["z"]], axis=1).astype(np.float32)
    except (KeyError, ValueError, OSError, struct.error, IndexError) as exc:
        raise DataError(f"{path}: unreadable PLY point cloud ({type(exc).__name__}: {exc})") from None
    names = v.dtype.names or ()
    if all(c in names for c in ("red", "green", "blue")):
        rgb = np.stack([v["red"], v["green"], v["blue"]], axis=1)
        if rgb.dtype != np.uint8:
            # Float colours are in [0, 1] by PLY convention; wider ints are rescaled.
            top = 1.0 if np.issubdtype(rgb.dtype, np.floating) else float(np.iinfo(rgb.dtype).max)
            rgb = np.clip(np.round(rgb.astype(np.float64) / top * 255.0), 0, 255)
        rgb = rgb.astype(np.uint8)
    else:
        rgb = np.full((len(xyz), 3), 128, np.uint8)
    _check_finite(xyz, path)
    return xyz, rgb


def read_colmap_points(path: Path) -> Points:
    """``points3D.bin`` or ``points3D.txt`` -> xyz and colours (tracks skipped)."""
    if not path.is_file():
        raise DataError(f"{path}: points file not found")
    try:
        pts = _read_points_bin(path) if path.suffix == ".bin" else _read_points_txt(path)
    except (struct.error, ValueError, IndexError) as exc:
        raise DataError(f"{path}: corrupt COLMAP points file ({type(exc).__name__})") from None
    _check_finite(pts[0], path)
    return pts


def _read_points_bin(path: Path) -> Points:
    data = path.read_bytes()
    (n,) = struct.unpack_from("<Q", data, 0)
    off = 8
    xyz = np.empty((n, 3), np.float64)
    rgb = np.empty((n, 3), np.uint8)
    # Record: id u64, xyz 3*f64, rgb 3*u8, error f64, track length u64, then (image_id, point2D_idx) i32 pairs.
    head = struct.Struct("<Q3d3BdQ")
    for i in range(n):
        rec = head.unpack_from(data, off)
        xyz[i] = rec[1:4]
        rgb[i] = rec[4:7]
        off += head.size + 8 * rec[8]
    if off != len(data):
        raise ValueError("trailing bytes")
    return xyz.astype(np.float32), rgb


def _read_points_txt(path: Path) -> Points:
    xyz: list[list[float]] = []
    rgb: list[list[int]] = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        tok = line.split()
        xyz.append([float(t) for t in tok[1:4]])
        rgb.append([int(t) for t in tok[4:7]])
    return np.asarray(xyz, np.float32).reshape(-1, 3), np.asarray(rgb, np.uint8).reshape(-1, 3)


def _check_finite(xyz: np.ndarray, path: Path) -> None:
    if not np.all(np.isfinite(xyz)):
        raise DataError(f"{path}: point cloud contains NaN or inf")
