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
    except Exception as exc:  # plyfile raises header/element parse errors, UnicodeDecodeError, ValueError ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: not a readable PLY point cloud ({reason})") from None
    if "vertex" not in ply:
        raise DataError(f"{path}: PLY point cloud has no 'vertex' element")
    v = ply["vertex"].data
    names = v.dtype.names or ()
    for c in ("x", "y", "z", "red", "green", "blue"):
        if c in names and (v.dtype[c].subdtype is not None or v.dtype[c].kind not in "fiu"):
            raise DataError(f"{path}: vertex property {c!r} is not a scalar number")
    for c in ("x", "y", "z"):
        if c not in names:
            raise DataError(f"{path}: PLY point cloud lacks vertex property {c!r}")
    xyz = np.stack([v["x"], v["y"], v["z"]], axis=1).astype(np.float32)
    if all(c in names for c in ("red", "green", "blue")):
        rgb = np.stack([v["red"], v["green"], v["blue"]], axis=1)
        if rgb.dtype != np.uint8:
            # Float colours are in [0, 1] by PLY convention; wider ints are rescaled.
            top = 1.0 if np.issubdtype(rgb.dtype, np.floating) else float(np.iinfo(rgb.dtype).max)
            rgb = np.clip(np.round(np.nan_to_num(rgb.astype(np.float64) / top * 255.0)), 0, 255)
        rgb = rgb.astype(np.uint8)
    else:
        rgb = np.full((len(xyz), 3), 128, np.uint8)
    check_finite_points(xyz, path)
    return xyz, rgb


def read_colmap_points(path: Path) -> Points:
    """``points3D.bin`` or ``points3D.txt`` -> xyz and colours (tracks skipped)."""
    if not path.is_file():
        raise DataError(f"{path}: points file not found")
    try:
        pts = _read_points_bin(path) if path.suffix == ".bin" else _read_points_txt(path)
    except (struct.error, ValueError, IndexError, OverflowError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: corrupt COLMAP points file ({type(exc).__name__})") from None
    check_finite_points(pts[0], path)
    return pts


def _read_points_bin(path: Path) -> Points:
    data = path.read_bytes()
    (n,) = struct.unpack_from("<Q", data, 0)
    off = 8
    head = struct.Struct("<Q3d3BdQ")
    if n * head.size > len(data) - off:
        raise ValueError(f"{n} points cannot fit in {len(data)} bytes")
    xyz = np.empty((n, 3), np.float64)
    rgb = np.empty((n, 3), np.uint8)
    # Record: id u64, xyz 3*f64, rgb 3*u8, error f64, track length u64, then (image_id, point2D_idx) i32 pairs.
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
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        tok = line.split()
        if len(tok) < 7:
            raise ValueError(f"point line has {len(tok)} fields, expected >= 7")
        xyz.append([float(t) for t in tok[1:4]])
        rgb.append([int(t) for t in tok[4:7]])
        if not all(0 <= c <= 255 for c in rgb[-1]):
            raise ValueError(f"colour {rgb[-1]} outside 0..255")
    return np.asarray(xyz, np.float32).reshape(-1, 3), np.asarray(rgb, np.uint8).reshape(-1, 3)


def check_finite_points(xyz: np.ndarray, path: Path) -> None:
    """DataError naming ``path`` when a point coordinate is NaN or inf (float32 overflow included)."""
    if not np.all(np.isfinite(xyz)):
        raise DataError(f"{path}: point cloud contains NaN or inf")
