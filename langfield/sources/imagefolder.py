"""A plain folder of images without poses (a frontend estimates them later).

Frames get ``c2w=None`` and GUESSED intrinsics (focal 1.2 x max(w, h),
principal point at the centre); ``intrinsics_are_guessed`` tells a consumer
(e.g. an SfM frontend) to refine them rather than trust them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from langfield.sources.split import make_split
from langfield.sources.validate import check_frames, guessed_intrinsics, image_size, list_images
from langfield.types import Capture, DataError, Frame


def image_dir_of(root: Path, images: Optional[str]) -> Optional[Path]:
    """The folder holding the images: ``root/<images>`` when given, else ``root``, else ``root/images``."""
    cands = [root / images] if images is not None else [root, root / "images"]
    for d in cands:
        if d.is_dir() and list_images(d):
            return d
    return None


def read_image_folder(
    root: Path,
    *,
    images: Optional[str] = None,
    eval_every: int = 8,
    eval_file: Optional[Path] = None,
) -> Capture:
    """Frames for every image in the folder, sorted by file name, without poses."""
    root = root.resolve()
    folder = image_dir_of(root, images)
    if folder is None:
        raise DataError(f"{root / images if images else root}: no images found")
    frames = []
    for path in list_images(folder):
        w, h = image_size(path)
        frames.append(Frame(name=path.name, image_path=path, intrinsics=guessed_intrinsics(w, h), c2w=None))
    check_frames(frames, folder)
    train_ids, eval_ids = make_split(frames, eval_every, eval_file)
    return Capture(root=root, frames=frames, train_ids=train_ids, eval_ids=eval_ids, kind="images", scene_scale=1.0)


def intrinsics_are_guessed(capture: Capture) -> bool:
    """True when the capture's intrinsics are a guess (image folders), not a calibration."""
    return capture.kind == "images"
