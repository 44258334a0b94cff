"""The one public dataset loader: what ``reconstruct``, ``eval`` and ``check`` read a dataset with."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import torch

from langfield.types import Capture, DataError, LangfieldError, View


class NoPosesError(LangfieldError):
    """The capture has no camera poses (the pose front end, ``langfield.frontend``, makes them)."""


def load_dataset(
    path: Union[str, Path],
    *,
    images: Optional[str] = None,
    eval_every: int = 8,
    require_poses: bool = True,
) -> Capture:
    """Read and validate a dataset of any supported format (``load_capture``) for training.

    ``require_poses``: raise ``NoPosesError`` for a capture without camera poses
    (an image folder) and ``DataError`` when no frame is left for training.
    """
    from langfield.sources import load_capture

    # Checked here although a dataset's own split lists make it unused: a bad value is a user error either way.
    if isinstance(eval_every, bool) or not isinstance(eval_every, int) or eval_every < 0:
        raise DataError(f"eval_every must be an integer >= 0 (0 = no held-out frames), got {eval_every!r}")
    capture = load_capture(Path(path), images=images, eval_every=eval_every)
    if require_poses and not capture.has_poses:
        raise NoPosesError(
            f"{path}: the images have no camera poses; estimate them with `langfield poses {path} --out DATASET` "
            "(or `langfield reconstruct` on the folder, which does so first), or provide a posed dataset "
            "(nerfstudio transforms.json, COLMAP sparse model or LLFF poses_bounds.npy)"
        )
    if not capture.train_ids:
        raise DataError(f"{path}: no training frames")
    return capture


def load_split_views(
    capture: Capture, *, downscale: int = 1, device: Union[str, torch.device] = "cpu"
) -> tuple[list[View], list[View]]:
    """(train views, eval views) of a capture, images loaded at ``1 / downscale``.

    Every view must keep at least ``MIN_VIEW_SIDE`` pixels a side (checked on the
    intrinsics, before any pixel is read): smaller ones cannot be trained or scored.
    """
    from langfield.sources.validate import check_view_size
    from langfield.sources.views import load_views

    if isinstance(downscale, bool) or not isinstance(downscale, int) or downscale < 1:
        raise DataError(f"downscale must be a positive integer, got {downscale!r}")
    for i in [*capture.train_ids, *capture.eval_ids]:
        frame = capture.frames[i]
        check_view_size(frame.intrinsics.scaled(downscale), str(frame.image_path), downscale)
    train = load_views(capture, capture.train_ids, downscale=downscale, device=device)
    evals = load_views(capture, capture.eval_ids, downscale=downscale, device=device) if capture.eval_ids else []
    return train, evals
