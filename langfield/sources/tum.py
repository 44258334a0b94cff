"""TUM RGB-D sequences: ``rgb.txt`` / ``depth.txt`` / ``groundtruth.txt``, and writing a TUM-layout copy.

Reading follows the TUM benchmark tools:

* RGB and depth frames pair up as ``associate.py`` pairs them (``trajectory.associate``):
  candidate pairs within ``max_time_difference`` (0.02 s) taken greedily by smallest time
  difference, each image used once.  A frame is the pair, stamped with its RGB time.
* Ground truth is given to each frame at its RGB time by **interpolation**: linear in
  position, spherical-linear in rotation, between the two ground-truth poses around it
  when both are within the tolerance (the motion-capture rate, 100 Hz, is higher than
  the camera's); else the nearest pose within the tolerance; else the frame has none.
* Frames dropped by association, and frames without ground truth, are counted in the
  sequence's ``notes`` (``langfield slam`` prints them as warnings).
* Depth PNGs hold 5000 units per metre.
* Intrinsics: ``intrinsics=`` (``--intrinsics``), else the published calibration of the
  sensor named ``freiburg1/2/3`` in the sequence's path (with its distortion: fr1 and fr2
  frames are undistorted when read; fr3 images ship undistorted), else a DataError.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Optional

import numpy as np

from langfield.io import atomic_write_png, atomic_write_text
from langfield.outputs import check_output, input_dir
from langfield.sources.rgbd import FrameFiles, RGBDSequence, opencv_intrinsics, read_synthetic_sequence
from langfield.sources.validate import image_size
from langfield.trajectory import associate, interpolate_poses, parse_tum_lines, read_tum, write_tum
from langfield.types import DataError

TUM_DEPTH_FACTOR = 5000.0
"""Depth units per metre of TUM RGB-D depth PNGs."""
MIN_ASSOCIATED = 0.5
"""Below this fraction of RGB frames finding a depth frame, opening fails (the clocks or tolerance are wrong)."""

# Published calibration of the three Kinects (TUM RGB-D "File Formats" page, ROS / OpenCV pixel grid):
# fx, fy, cx, cy and OpenCV distortion (k1, k2, p1, p2, k3).
FREIBURG_CALIBRATION: dict[int, tuple[tuple[float, float, float, float], tuple[float, ...]]] = {
    1: ((517.3, 516.5, 318.6, 255.3), (0.2624, -0.9531, -0.0054, 0.0026, 1.1633)),
    2: ((520.9, 521.0, 325.1, 249.7), (0.2312, -0.7849, -0.0033, -0.0001, 0.9172)),
    3: ((535.4, 539.2, 320.1, 247.6), ()),
}
_FREIBURG = re.compile(r"freiburg([123])", re.IGNORECASE)


def freiburg_sensor(path: Path) -> Optional[int]:
    """1, 2 or 3 when a component of ``path`` names ``freiburgN`` (nearest the sequence first), else None."""
    for part in reversed(path.resolve().parts):
        m = _FREIBURG.search(part)
        if m:
            return int(m.group(1))
    return None


def read_file_list(path: Path) -> tuple[np.ndarray, list[str]]:
    """A TUM ``timestamp filename`` list (rgb.txt / depth.txt) -> (timestamps, file names), file order."""
    if not path.is_file():
        raise DataError(f"{path}: file not found (a TUM sequence needs rgb.txt and depth.txt)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    rows = parse_tum_lines(text, str(path), 2)
    stamps, names = [], []
    for no, fields in rows:
        try:
            t = float(fields[0])
        except ValueError:
            raise DataError(f"{path} line {no}: timestamp {fields[0][:40]!r} is not a number") from None
        if not math.isfinite(t):
            raise DataError(f"{path} line {no}: timestamp {fields[0][:40]!r} is not finite")
        stamps.append(t)
        names.append(fields[1])
    if not names:
        raise DataError(f"{path}: lists no images")
    return np.array(stamps, dtype=np.float64), names


def gt_at(times: np.ndarray, gt_t: np.ndarray, gt_c2w: np.ndarray, tol: float) -> list[Optional[np.ndarray]]:
    """Ground-truth pose at each time (module docstring: interpolated, else nearest within ``tol``, else None)."""
    order = np.argsort(gt_t, kind="stable")
    gt_t, gt_c2w = gt_t[order], gt_c2w[order]
    out: list[Optional[np.ndarray]] = []
    for t in times:
        j = int(np.searchsorted(gt_t, t, side="left"))
        if j < len(gt_t) and gt_t[j] == t:
            out.append(gt_c2w[j].copy())
            continue
        lo, hi = j - 1, j
        if lo >= 0 and hi < len(gt_t) and t - gt_t[lo] <= tol and gt_t[hi] - t <= tol:
            out.append(interpolate_poses(np.array([t]), gt_t[lo:hi + 1], gt_c2w[lo:hi + 1])[0])
            continue
        near = [k for k in (lo, hi) if 0 <= k < len(gt_t) and abs(gt_t[k] - t) <= tol]
        out.append(gt_c2w[min(near, key=lambda k: abs(gt_t[k] - t))].copy() if near else None)
    return out


def read_tum_sequence(
    path: Path, *, intrinsics: Optional[tuple[float, float, float, float]] = None,
    depth_factor: Optional[float] = None, max_time_difference: float = 0.02,
) -> RGBDSequence:
    """A TUM RGB-D sequence folder as an ``RGBDSequence`` (module docstring for the rules)."""
    if not (math.isfinite(max_time_difference) and max_time_difference > 0):
        raise DataError(f"association tolerance {max_time_difference!r} s must be positive")
    rgb_t, rgb_names = read_file_list(path / "rgb.txt")
    depth_t, depth_names = read_file_list(path / "depth.txt")
    # Frames in time order even if a hand-edited rgb.txt is not (TUM's lists are sorted).
    pairs = sorted(associate(rgb_t, depth_t, max_time_difference), key=lambda p: (rgb_t[p[0]], p[0]))
    n_rgb, n_depth = len(rgb_t), len(depth_t)
    if len(pairs) < max(1, MIN_ASSOCIATED * n_rgb):
        raise DataError(
            f"{path}: only {len(pairs)} of {n_rgb} RGB frames associate with one of the {n_depth} depth frames "
            f"within {max_time_difference:g} s (rgb.txt {rgb_t.min():.6f}..{rgb_t.max():.6f}, depth.txt "
            f"{depth_t.min():.6f}..{depth_t.max():.6f}); are both lists on one clock? (else raise the tolerance)"
        )
    notes = []
    if len(pairs) < n_rgb:
        notes.append(f"{n_rgb - len(pairs)} of {n_rgb} RGB frames have no depth within {max_time_difference:g} s "
                     "and are skipped")

    times = rgb_t[[i for i, _ in pairs]]
    gts: list[Optional[np.ndarray]] = [None] * len(pairs)
    gt_file = path / "groundtruth.txt"
    if gt_file.is_file():
        gt_t, gt_c2w = read_tum(gt_file)
        gts = gt_at(times, gt_t, gt_c2w, max_time_difference)
        missing = sum(g is None for g in gts)
        if missing == len(gts):
            raise DataError(
                f"{gt_file}: none of its {len(gt_t)} poses ({gt_t.min():.6f}..{gt_t.max():.6f}) lies within "
                f"{max_time_difference:g} s of the {len(gts)} frames ({times.min():.6f}..{times.max():.6f})"
            )
        if missing:
            notes.append(f"{missing} of {len(gts)} frames have no ground-truth pose within {max_time_difference:g} s")

    frames = [
        FrameFiles(name=rgb_names[i], rgb_path=path / rgb_names[i], depth_path=path / depth_names[j],
                   timestamp=float(rgb_t[i]), c2w_gt=g)
        for (i, j), g in zip(pairs, gts)
    ]
    w, h = image_size(frames[0].rgb_path)
    sensor = freiburg_sensor(path)
    if intrinsics is not None:
        k = opencv_intrinsics(*intrinsics, w, h, "--intrinsics")
        source = "--intrinsics"
    elif sensor is not None:
        vals, dist = FREIBURG_CALIBRATION[sensor]
        k = opencv_intrinsics(*vals, w, h, f"freiburg{sensor} calibration", distortion=dist)
        source = f"published freiburg{sensor} calibration"
    else:
        raise DataError(
            f"{path}: no intrinsics: the sequence's name does not say freiburg1/2/3; pass --intrinsics FX,FY,CX,CY"
        )
    return RGBDSequence(
        name=path.resolve().name, root=path, layout="tum", intrinsics=k, frames=frames,
        depth_factor=TUM_DEPTH_FACTOR if depth_factor is None else depth_factor, intrinsics_source=source,
        notes=notes,
    )


# ----------------------------------------------------------------------------- TUM copy


def write_tum_copy(
    synthetic_dir: Path, out_dir: Path, *, seed: int = 0, jitter: float = 0.008, t0: float = 1305031102.0,
) -> tuple[float, float, float, float]:
    """Write a synthetic RGB-D sequence in the TUM layout; returns its ``--intrinsics`` (fx, fy, cx, cy).

    The copy exercises what reading TUM data involves: RGB and depth timestamps are
    jittered independently by up to ``jitter`` seconds (so pairs differ by up to
    2 x jitter, within the 0.02 s tolerance, and neighbours' pairs are candidates too),
    and ``groundtruth.txt`` runs at twice the frame rate (poses at each RGB time and
    interpolated midway ones) from 0.1 s before the first frame.  Depth is 16-bit at
    5000 units per metre (depth beyond 13.1 m, which 16 bits cannot hold, becomes 0).
    The intrinsics are returned on OpenCV's pixel grid, as ``--intrinsics`` takes them.
    """
    check_output(out_dir, [input_dir(synthetic_dir)])  # never write into (or around) the source sequence
    seq = read_synthetic_sequence(Path(synthetic_dir))
    out_dir = Path(out_dir)
    (out_dir / "rgb").mkdir(parents=True, exist_ok=True)
    (out_dir / "depth").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n = len(seq)
    base = t0 + np.arange(n) / 30.0
    rgb_t = base + rng.uniform(-jitter, jitter, n)
    depth_t = base + rng.uniform(-jitter, jitter, n)
    rgb_lines = ["# color images", "# timestamp filename"]
    depth_lines = ["# depth maps", "# timestamp filename"]
    poses = []
    for i, frame in enumerate(seq):
        rgb_name, depth_name = f"rgb/{rgb_t[i]:.6f}.png", f"depth/{depth_t[i]:.6f}.png"
        atomic_write_png(out_dir / rgb_name, frame.rgb)
        units = np.rint(frame.depth.astype(np.float64) * TUM_DEPTH_FACTOR)
        units[units > 65535] = 0
        atomic_write_png(out_dir / depth_name, units.astype(np.uint16))
        rgb_lines.append(f"{rgb_t[i]:.6f} {rgb_name}")
        depth_lines.append(f"{depth_t[i]:.6f} {depth_name}")
        poses.append(frame.c2w_gt)
    atomic_write_text(out_dir / "rgb.txt", "\n".join(rgb_lines) + "\n")
    atomic_write_text(out_dir / "depth.txt", "\n".join(depth_lines) + "\n")
    # The file's timestamps are what readers see: pose knots at the RGB times as written (6 decimals).
    written_t = np.array([float(f"{t:.6f}") for t in rgb_t])
    c2w = np.stack(poses)
    mids = 0.5 * (written_t[:-1] + written_t[1:])
    gt_t = np.concatenate([[written_t[0] - 0.1], written_t, mids])
    gt_c2w = np.concatenate([c2w[:1], c2w, interpolate_poses(mids, written_t, c2w)])
    order = np.argsort(gt_t)
    write_tum(out_dir / "groundtruth.txt", gt_t[order], gt_c2w[order],
              header=f"ground truth trajectory of {seq.name} (langfield synthetic)\ntimestamp tx ty tz qx qy qz qw")
    k = seq.intrinsics
    return k.fx, k.fy, k.cx - 0.5, k.cy - 0.5
