"""Dataset readers: every format becomes a ``langfield.types.Capture`` (OpenCV c2w poses).

``load_capture`` detects the format; ``load_rgb`` / ``load_depth`` /
``load_semantics`` read pixels; ``load_views`` builds training views.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from langfield.sources.colmap import find_model, read_colmap
from langfield.sources.dataset import NoPosesError, load_dataset, load_split_views
from langfield.sources.conventions import opengl_to_opencv_c2w
from langfield.sources.imagefolder import image_dir_of, intrinsics_are_guessed, read_image_folder
from langfield.sources.io import load_alpha, load_depth, load_rgb, load_semantics
from langfield.sources.llff import read_llff
from langfield.sources.nerfstudio import find_transforms, is_blender_dir, read_blender, read_nerfstudio
from langfield.sources.rgbd import RGBDFrame, RGBDSequence, open_sequence
from langfield.sources.views import load_views
from langfield.types import Capture, DataError

FORMATS = ("nerfstudio", "blender", "colmap", "llff", "images")

__all__ = [
    "FORMATS", "detect_format", "load_capture", "load_rgb", "load_alpha", "load_depth", "load_semantics",
    "load_views", "intrinsics_are_guessed", "opengl_to_opencv_c2w", "load_dataset", "load_split_views", "NoPosesError",
    "RGBDFrame", "RGBDSequence", "open_sequence",
]


def detect_format(path: Union[str, Path], images: Optional[str] = None) -> str:
    """Which reader handles ``path``: one of ``FORMATS`` (DataError when none does).

    Order matters: LLFF scenes often ship a COLMAP ``sparse/0`` too, and an
    explicit ``poses_bounds.npy`` says which poses to use.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    if find_transforms(path) is not None:
        return "nerfstudio"
    if is_blender_dir(path):
        return "blender"
    if path.is_file():
        raise DataError(f"{path}: not a dataset (expected a transforms.json or a directory)")
    if (path / "poses_bounds.npy").is_file():
        return "llff"
    if find_model(path) is not None:
        return "colmap"
    if image_dir_of(path, images) is not None:
        return "images"
    raise DataError(
        f"{path}: unrecognised dataset (no transforms.json, COLMAP sparse model, poses_bounds.npy or images)"
    )


def load_capture(
    path: Union[str, Path],
    *,
    images: Optional[str] = None,
    eval_every: int = 8,
    eval_file: Optional[Path] = None,
    kind: Optional[str] = None,
) -> Capture:
    """Read a dataset of any supported format into a validated ``Capture``.

    Args:
        path: a ``transforms.json``, or a directory (nerfstudio, Blender ``transforms_{train,test}.json``,
            COLMAP, LLFF, or a folder of images).
        images: image subfolder (COLMAP / LLFF / image folder), e.g. ``"images_8"``.
        eval_every: hold out frames 0, k, 2k, ... unless the dataset lists its own split; 0 = none.
        eval_file: text file naming held-out frames, one per line; overrides everything else.
        kind: force a reader (one of ``FORMATS``) instead of detecting it.

    Every image file is checked (exists, readable header, size matching its
    intrinsics) and every pose validated here, so training never starts on bad data.
    """
    path = Path(path)
    fmt = kind if kind is not None else detect_format(path, images)
    if fmt not in FORMATS:
        raise DataError(f"{path}: unknown dataset kind {fmt!r} (one of {', '.join(FORMATS)})")
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    eval_file = Path(eval_file) if eval_file is not None else None
    if fmt == "nerfstudio":
        json_path = find_transforms(path)
        if json_path is None:
            raise DataError(f"{path}: no transforms.json")
        return read_nerfstudio(json_path, eval_every=eval_every, eval_file=eval_file)
    if fmt == "blender":
        return read_blender(path, eval_every=eval_every, eval_file=eval_file)
    if fmt == "colmap":
        return read_colmap(path, images=images, eval_every=eval_every, eval_file=eval_file)
    if fmt == "llff":
        return read_llff(path, images=images, eval_every=eval_every, eval_file=eval_file)
    return read_image_folder(path, images=images, eval_every=eval_every, eval_file=eval_file)
