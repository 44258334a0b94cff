"""Replica RGB-D sequences as NICE-SLAM and SplaTAM distribute them.

Layout of one scene folder (e.g. ``Replica/room0``)::

    results/frame000000.jpg ...   colour
    results/depth000000.png ...   16-bit depth, ``scale`` (6553.5) units per metre
    traj.txt                      one camera-to-world pose per line: 16 numbers, a row-major 4x4
                                  (OpenCV camera axes, as NICE-SLAM and SplaTAM read them)
    cam_params.json               {"camera": {"w", "h", "fx", "fy", "cx", "cy", "scale"}}

NICE-SLAM ships one ``cam_params.json`` beside the scene folders (``Replica/cam_params.json``),
so it is looked for in the scene folder first, then its parent.  Without one, ``--intrinsics``
must be given (the size then comes from the first image, the depth scale defaults to 6553.5).
The sequence has no timestamps: frame i is at ``i / fps``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Optional

import numpy as np

from langfield.sources.jsonio import read_json
from langfield.sources.rgbd import DEFAULT_FPS, FrameFiles, RGBDSequence, opencv_intrinsics
from langfield.sources.validate import check_pose, image_size
from langfield.trajectory import parse_tum_lines
from langfield.types import DataError

REPLICA_DEPTH_FACTOR = 6553.5
"""Depth units per metre of the NICE-SLAM Replica renders."""
_NUMBER = re.compile(r"(\d+)")


def _frame_key(p: Path) -> tuple[int, str]:
    # Sort by the frame number (names are zero-padded, but a number sort survives unpadded copies too).
    m = _NUMBER.findall(p.stem)
    return (int(m[-1]) if m else -1, p.name)


def find_cam_params(path: Path) -> Optional[Path]:
    """``cam_params.json`` of the scene folder, else of its parent, else None."""
    for cand in (path / "cam_params.json", path.resolve().parent / "cam_params.json"):
        if cand.is_file():
            return cand
    return None


def read_traj(path: Path) -> np.ndarray:
    """``traj.txt`` -> [N, 4, 4] float64 c2w, every pose validated (rigid, finite), naming the bad line."""
    if not path.is_file():
        raise DataError(f"{path}: not found (a Replica scene needs traj.txt, one camera-to-world 4x4 per frame)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read trajectory ({exc})") from None
    poses = []
    for no, fields in parse_tum_lines(text, str(path), 16):
        try:
            vals = np.array([float(v) for v in fields[:16]])
        except ValueError:
            raise DataError(f"{path} line {no}: not a number in {' '.join(fields)[:80]!r}") from None
        poses.append(check_pose(vals.reshape(4, 4), f"{path} line {no}"))
    if not poses:
        raise DataError(f"{path}: no poses (expected one row-major 4x4 camera-to-world per line)")
    return np.stack(poses)


def read_replica_sequence(
    path: Path, *, intrinsics: Optional[tuple[float, float, float, float]] = None,
    depth_factor: Optional[float] = None, fps: float = DEFAULT_FPS,
) -> RGBDSequence:
    """A Replica scene folder (module docstring) as an ``RGBDSequence``."""
    results = path / "results"
    rgbs = sorted(results.glob("frame*.jpg"), key=_frame_key) or sorted(results.glob("frame*.png"), key=_frame_key)
    depths = sorted(results.glob("depth*.png"), key=_frame_key)
    if not rgbs:
        raise DataError(f"{results}: no frame*.jpg colour images")
    if len(rgbs) != len(depths):
        raise DataError(f"{results}: {len(rgbs)} colour frames (frame*) but {len(depths)} depth frames (depth*.png)")
    poses = read_traj(path / "traj.txt")
    if len(poses) != len(rgbs):
        raise DataError(f"{path / 'traj.txt'}: {len(poses)} poses for {len(rgbs)} frames in {results}")
    w, h = image_size(rgbs[0])
    cam_file = find_cam_params(path)
    factor = REPLICA_DEPTH_FACTOR
    if intrinsics is not None:
        k = opencv_intrinsics(*intrinsics, w, h, "--intrinsics")
        source = "--intrinsics"
        if cam_file is not None:
            factor = _cam_params(cam_file, w, h)[1]
    elif cam_file is not None:
        vals, factor = _cam_params(cam_file, w, h)
        k = opencv_intrinsics(*vals, w, h, str(cam_file))
        source = str(cam_file)
    else:
        raise DataError(f"{path}: no intrinsics: no cam_params.json here or in {path.resolve().parent}; "
                        "pass --intrinsics FX,FY,CX,CY")
    frames = [
        FrameFiles(name=f"results/{r.name}", rgb_path=r, depth_path=d, timestamp=i / fps, c2w_gt=poses[i])
        for i, (r, d) in enumerate(zip(rgbs, depths))
    ]
    return RGBDSequence(
        name=path.resolve().name, root=path, layout="replica", intrinsics=k, frames=frames,
        depth_factor=factor if depth_factor is None else depth_factor, intrinsics_source=source,
    )


def _cam_params(path: Path, w: int, h: int) -> tuple[tuple[float, float, float, float], float]:
    """((fx, fy, cx, cy), depth scale) of a cam_params.json, its w/h checked against the images."""
    meta = read_json(path)
    cam = meta.get("camera") if isinstance(meta, dict) else None
    if not isinstance(cam, dict):
        raise DataError(f"{path}: expected {{\"camera\": {{\"w\", \"h\", \"fx\", \"fy\", \"cx\", \"cy\", \"scale\"}}}}")
    vals = []
    for key in ("fx", "fy", "cx", "cy"):
        if key not in cam:
            raise DataError(f"{path}: camera.{key} is missing (needs camera.fx, fy, cx, cy in pixels)")
        v = cam[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise DataError(f"{path}: camera.{key} must be a finite number, got {v!r:.40}")
        vals.append(float(v))
    for key, actual in (("w", w), ("h", h)):
        if key in cam and cam[key] != actual:
            raise DataError(f"{path}: camera.{key} = {cam[key]!r} but the images are {w}x{h}")
    scale = cam.get("scale", REPLICA_DEPTH_FACTOR)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (math.isfinite(scale) and scale > 0):
        raise DataError(f"{path}: camera.scale must be a positive number of depth units per metre, got {scale!r:.40}")
    return (vals[0], vals[1], vals[2], vals[3]), float(scale)
