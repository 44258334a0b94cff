"""Accuracy of estimated camera poses against ground truth: two posed datasets, frames matched by image name.

Used for the pose front end (``langfield poses`` / ``reconstruct VIDEO``): the
estimate lives in its own normalised world, so camera centres are compared after
a Sim(3) (Umeyama) alignment, as for monocular SLAM/SfM (the TUM benchmark's and
evo's ATE with scale); rotations are compared pairwise (relative rotation error,
which needs no alignment at all).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from langfield.trajectory import ate, relative_rotation_errors_deg, trajectory_extent
from langfield.types import DataError

PathLike = Union[str, Path]


def _poses_by_stem(dataset: PathLike, images: Optional[str] = None) -> dict[str, np.ndarray]:
    from langfield.sources import load_capture

    capture = load_capture(Path(dataset), images=images, eval_every=0)
    return {Path(f.image_path).stem: np.asarray(f.c2w, dtype=np.float64) for f in capture.frames if f.c2w is not None}


def compare_poses(estimate: PathLike, truth: PathLike, *, truth_images: Optional[str] = None) -> dict[str, Any]:
    """Registration and pose accuracy of dataset ``estimate`` against dataset ``truth`` (any readable format).

    Frames match by image file stem.  Returns: ``matched`` / ``truth_frames`` counts, ``missing`` (truth frames
    without an estimate), ``ate_rmse`` (after Sim(3) alignment, truth units), ``extent`` (diagonal of the truth
    camera centres' bounding box), ``ate_pct_extent``, ``rot_err_median_deg`` / ``rot_err_max_deg`` (pairwise
    relative rotation errors) and ``scale`` (of the alignment).
    """
    est, gt = _poses_by_stem(estimate), _poses_by_stem(truth, truth_images)
    common = sorted(set(est) & set(gt))
    if len(common) < 3:
        raise DataError(f"{estimate}: only {len(common)} frames match {truth} by image name (need 3)")
    e = np.stack([est[k] for k in common])
    g = np.stack([gt[k] for k in common])
    errors = ate(e, g, align="sim3")
    extent = trajectory_extent(g)
    rot = relative_rotation_errors_deg(e, g)
    return {
        "matched": len(common),
        "truth_frames": len(gt),
        "missing": sorted(set(gt) - set(est)),
        "ate_rmse": errors.rmse,
        "extent": extent,
        "ate_pct_extent": 100.0 * errors.rmse / max(extent, 1e-12),
        "rot_err_median_deg": float(np.median(rot)),
        "rot_err_max_deg": float(np.max(rot)),
        "scale": float(errors.scale),
    }
