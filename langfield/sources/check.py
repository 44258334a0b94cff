"""``langfield check DATA``: read a dataset exactly as ``reconstruct`` will and summarise it, without training.

The frames, intrinsics, distortion, depth, labels, split and points are read and
validated by the one public loader (``load_dataset``) and every pixel by
``load_split_views`` at the requested ``downscale``, so a dataset that passes
here gets past ``reconstruct``'s loading stage; the first problem is raised as
the same ``DataError`` ``reconstruct`` would raise.  What is legal but
suspicious (no held-out views, depth maps without a valid pixel, semantic ids
missing from ``labels.json`` ...) becomes a warning in the summary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from langfield.sources.dataset import load_dataset, load_split_views
from langfield.types import Capture, View

BLANK_STD = 1.0 / 255.0
"""A loaded image whose pixel standard deviation is below this (one 8-bit step) is reported as blank."""
FAR_DEPTH_M = 1000.0
"""A median depth beyond this many metres suggests a wrong ``depth_unit_scale_factor``."""


def _range(values: Sequence[float]) -> list[float]:
    return [float(min(values)), float(max(values))]


def _depth_summary(capture: Capture, views: Sequence[View], warnings: list[str]) -> Optional[dict[str, Any]]:
    with_depth = [v for v in views if v.depth is not None]
    if not with_depth:
        return None
    scales = sorted({float(f.depth_scale) for f in capture.frames if f.depth_path is not None})
    valid: list[np.ndarray] = []
    for v in with_depth:
        d = v.depth.detach().cpu().numpy().reshape(-1)  # type: ignore[union-attr]
        good = d[d > 0]
        if good.size == 0:
            warnings.append(f"depth map of {v.name} has no valid (> 0) pixel")
            continue
        valid.append(good)
    out: dict[str, Any] = {"frames": len(with_depth), "unit_scale_m": scales}
    if valid:
        allv = np.concatenate(valid)
        out["range_m"] = [float(allv.min()), float(allv.max())]
        out["median_m"] = float(np.median(allv))
        out["valid_fraction"] = float(allv.size / sum(int(v.depth.numel()) for v in with_depth))  # type: ignore[union-attr]
        if out["median_m"] > FAR_DEPTH_M:
            warnings.append(f"median depth is {out['median_m']:.4g} m: is depth_unit_scale_factor {scales} right?")
    missing = sum(f.depth_path is None for f in capture.frames)
    if missing:
        warnings.append(f"{missing} of {len(capture.frames)} frames have no depth map")
    return out


def _label_summary(capture: Capture, views: Sequence[View], warnings: list[str]) -> dict[str, Any]:
    with_sem = [v for v in views if v.semantics is not None]
    ids: set[int] = set()
    for v in with_sem:
        ids.update(int(i) for i in np.unique(v.semantics.detach().cpu().numpy()))  # type: ignore[union-attr]
    ids.discard(0)
    labels = capture.labels
    if with_sem and labels is None:
        warnings.append(f"{len(with_sem)} frames have semantics but there is no labels.json beside the transforms")
    if labels is not None and not with_sem:
        warnings.append("labels.json is present but no frame has a semantics_path")
    unknown = sorted(ids - set(labels or {}))
    if labels is not None and unknown:
        shown = ", ".join(str(i) for i in unknown[:8]) + (" ..." if len(unknown) > 8 else "")
        warnings.append(f"semantic ids {shown} appear in the masks but not in labels.json")
    return {"labels": len(labels) if labels is not None else 0, "semantics_frames": len(with_sem),
            "ids_in_masks": len(ids)}


def check_dataset(
    path: Union[str, Path],
    *,
    images: Optional[str] = None,
    downscale: int = 1,
    eval_every: int = 8,
) -> dict[str, Any]:
    """Validate the dataset at ``path`` as ``reconstruct`` reads it; returns a JSON-ready summary.

    Raises the first ``DataError`` (or ``NoPosesError``) ``reconstruct`` would raise.
    """
    capture = load_dataset(Path(path), images=images, eval_every=eval_every)
    train, evals = load_split_views(capture, downscale=downscale)
    views = [*train, *evals]
    warnings: list[str] = []

    if not capture.eval_ids:
        warnings.append("no held-out frames: the evaluation will score training views")
    overlap = sorted(set(capture.train_ids) & set(capture.eval_ids))
    if overlap:
        warnings.append(f"{len(overlap)} frames are both in the training and the held-out split")
    if len(capture.train_ids) < 3:
        warnings.append(f"only {len(capture.train_ids)} training frames")
    for v in views:
        if float(v.rgb.std()) < BLANK_STD:  # type: ignore[union-attr]
            warnings.append(f"image {v.name} is blank (a single colour)")

    ks = [f.intrinsics for f in capture.frames]
    intrinsics = {
        "models": sorted({k.model for k in ks}),
        "fx": _range([k.fx for k in ks]),
        "fy": _range([k.fy for k in ks]),
        "cx": _range([k.cx for k in ks]),
        "cy": _range([k.cy for k in ks]),
        "distorted_frames": sum(bool(any(k.distortion)) for k in ks),
    }
    if capture.points is None or len(capture.points) == 0:
        points = 0
        if not any(v.depth is not None for v in views):
            warnings.append("no sparse points and no depth maps: Gaussians start at random positions")
    else:
        points = int(len(capture.points))
    return {
        "data": str(Path(path)),
        "format": capture.kind,
        "frames": {"total": len(capture.frames), "train": len(capture.train_ids), "eval": len(capture.eval_ids)},
        "image_sizes": sorted({f"{k.width}x{k.height}" for k in ks}),
        "loaded_sizes": sorted({f"{v.width}x{v.height}" for v in views}),
        "downscale": downscale,
        "intrinsics": intrinsics,
        "depth": _depth_summary(capture, views, warnings),
        **_label_summary(capture, views, warnings),
        "sparse_points": points,
        "scene_scale": float(capture.scene_scale),
        "warnings": warnings,
    }
