"""``estimate_poses``: a video or an unposed photo folder -> a posed nerfstudio dataset.

frames (``frames.prepare_frames``) -> structure from motion (``sfm.run_sfm``) -> scene
normalisation (``normalize``) -> dataset (``export``).  Everything a rerun can reuse lives
in a work directory beside the output (``.NAME.work``: the selected frames, the COLMAP
database, the sparse models, the stage markers); it survives a crash or Ctrl-C, so the
next run with the same arguments resumes after the last finished stage, and it is removed
once the dataset is in place (unless ``keep_work``).  The input is only read.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from langfield.frontend.export import export_dataset, model_poses
from langfield.frontend.frames import FrameConfig, prepare_frames
from langfield.frontend.normalize import Normalization, normalize_cameras
from langfield.frontend.sfm import SfmConfig, run_sfm
from langfield.outputs import check_output, input_dir, resolve_path
from langfield.scene_lock import note_recovery, recover_interrupted_swap, scene_lock
from langfield.types import DataError

WORK_SUFFIX = ".work"


@dataclass
class PosesResult:
    """What ``estimate_poses`` wrote and measured."""

    dataset: Path
    """The nerfstudio dataset directory (transforms.json, images/, sparse_pc.ply, colmap/sparse/0)."""
    kind: str
    """Input kind: "video" or "photos"."""
    registered: int
    """Images registered by SfM."""
    total: int
    """Images given to SfM (the selected frames)."""
    dropped: list[str]
    """Source names (photo file names, or video frame labels) of the images SfM dropped."""
    normalization: Normalization
    """The similarity from the COLMAP model's world to the dataset's."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Seconds per stage (frames, extract, match, map, undistort, export) and "total"."""
    resumed: list[str] = field(default_factory=list)
    """SfM stages a previous run had finished."""
    frames: dict[str, Any] = field(default_factory=dict)
    """Frame-selection counts (read, rejected as blurred, kept)."""
    work_dir: Optional[Path] = None
    """The work directory when kept (keep_work), else None."""


def default_work_dir(out: Path) -> Path:
    """``PARENT/.NAME.work`` beside the output dataset."""
    out = resolve_path(out)
    return out.parent / f".{out.name}{WORK_SUFFIX}"


def _frame_counts(fs: Any) -> dict[str, Any]:
    keys = ("kind", "read", "rejected_blur", "kept", "fps", "scale", "size")
    return {k: getattr(fs, k) for k in keys if hasattr(fs, k)}


def _source_name(fs: Any, name: str) -> str:
    """The user's name for SfM image ``name`` (photo file name, or the video frame label)."""
    names = [p.name for p in fs.paths]
    src = getattr(fs, "source_names", None)
    if src and name in names and len(src) == len(names):
        return str(src[names.index(name)])
    return name


def estimate_poses(
    input: Path,
    out: Path,
    *,
    frames: Optional[FrameConfig] = None,
    sfm: Optional[SfmConfig] = None,
    work_dir: Optional[Path] = None,
    overwrite: bool = False,
    keep_work: bool = False,
    progress: bool = True,
) -> PosesResult:
    """Frames -> SfM -> normalisation -> nerfstudio dataset at ``out`` (see the module docstring).

    DataError for bad input, too few registered images or a degenerate model, and when ``out``
    exists without ``overwrite``; nothing is written to ``out`` unless the whole dataset is.
    """
    frames = frames or FrameConfig()
    sfm = sfm or SfmConfig()
    input, out = Path(input), Path(out)
    if not input.exists():
        raise DataError(f"{input}: no such file or directory")
    check_output(out, [input_dir(input) if input.is_dir() else input])
    work = Path(work_dir) if work_dir is not None else default_work_dir(out)
    check_output(work, [input_dir(input) if input.is_dir() else input], flag="--work-dir")
    t_start = time.perf_counter()
    with scene_lock(out, create_parent=True) as lock:
        note_recovery(out, recover_interrupted_swap(lock.scene))
        if os.path.lexists(out) and not overwrite:
            raise DataError(f"{out} already exists; pass --overwrite to replace it")
        t0 = time.perf_counter()
        existed = work.exists()
        try:
            fs = prepare_frames(input, work, frames, progress=progress)  # frames land in work/frames/
            seconds = {"frames": time.perf_counter() - t0}
            result = run_sfm(list(fs.paths), work / "sfm", sfm, sequential=fs.kind == "video", progress=progress,
                             label=input)
        except DataError:
            # The input itself is unusable: nothing there is worth resuming, so leave nothing behind (a crash
            # or Ctrl-C is not a DataError and keeps the finished stages for the rerun).
            if not keep_work and not (existed and work_dir is not None):
                shutil.rmtree(work, ignore_errors=True)
            raise
        seconds.update(result.seconds)

        t0 = time.perf_counter()
        import pycolmap

        _, c2w = model_poses(pycolmap.Reconstruction(str(result.model_dir)))
        norm = normalize_cameras(c2w)
        dropped = [_source_name(fs, n) for n in result.dropped]
        counts = _frame_counts(fs)
        export_dataset(result, out, norm, overwrite=overwrite,
                       report={"input": str(input), "frames": counts, "dropped_sources": dropped})
        seconds["export"] = time.perf_counter() - t0
        seconds["total"] = time.perf_counter() - t_start
        if progress:
            print(f"poses: {len(result.registered)} of {result.total} images registered, "
                  f"dataset written to {out} ({seconds['total']:.1f} s)", file=sys.stderr, flush=True)
        if not keep_work:  # inside the lock: a second run on this output may not be reusing it
            shutil.rmtree(work, ignore_errors=True)
    return PosesResult(
        dataset=out, kind=fs.kind, registered=len(result.registered), total=result.total, dropped=dropped,
        normalization=norm, seconds=seconds, resumed=result.resumed, frames=counts,
        work_dir=work if keep_work else None,
    )
