"""Pixel loading for a ``Frame``: colour, alpha mask, depth and semantic ids.

All loaders return arrays at ``frame.intrinsics.scaled(downscale)`` size
exactly.  Colour is area-averaged (``cv2.INTER_AREA``); depth and ids use
nearest neighbour so no value is invented between surfaces or labels.

Alpha: RGBA images have their alpha DROPPED from ``load_rgb`` (the colour
channels are returned as stored, not composited on any background); use
``load_alpha`` to get the mask.

Undistortion: when a frame's intrinsics carry non-zero distortion, every
loader (``undistort=True``, the default) remaps the pixels to the ideal
pinhole camera with the SAME K, so renders with ``intrinsics.K()`` line up.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from langfield.types import DataError, Frame, Intrinsics


def read_npy(path: Path, what: str, *, mmap: bool = False) -> np.ndarray:
    """``np.load`` without pickles; a malformed file is a DataError naming it.

    numpy reports damaged headers with ValueError, OSError, EOFError, SyntaxError or a
    tokenize error depending on where the damage is, hence the broad except.
    """
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - see above
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: unreadable {what} .npy file ({reason[:120]})") from None


def _read(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: {what} file not found")
    if path.suffix.lower() == ".npy":
        return read_npy(path, what)
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DataError(f"{path}: corrupt or unreadable {what} image")
    return img


def _target(frame: Frame, downscale: int) -> Intrinsics:
    if downscale < 1 or int(downscale) != downscale:
        raise DataError(f"{frame.image_path}: downscale must be a positive integer, got {downscale}")
    return frame.intrinsics.scaled(downscale)


def _check_size(arr: np.ndarray, frame: Frame, path: Path) -> None:
    h, w = arr.shape[:2]
    k = frame.intrinsics
    if (w, h) != (k.width, k.height):
        raise DataError(f"{path}: image is {w}x{h} but its intrinsics say {k.width}x{k.height}")


def _resize(arr: np.ndarray, k: Intrinsics) -> np.ndarray:
    """Area-average resize (colour, alpha) to the target size."""
    if arr.shape[1] == k.width and arr.shape[0] == k.height:
        return arr
    return cv2.resize(arr, (k.width, k.height), interpolation=cv2.INTER_AREA)


def _resize_nearest(arr: np.ndarray, k: Intrinsics) -> np.ndarray:
    """Nearest-neighbour resize sampling at pixel centres (any dtype, no value mixing)."""
    h, w = arr.shape[:2]
    if (w, h) == (k.width, k.height):
        return arr
    rows = np.minimum(((np.arange(k.height) + 0.5) * h / k.height).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(k.width) + 0.5) * w / k.width).astype(np.int64), w - 1)
    return arr[rows[:, None], cols[None, :]]


@lru_cache(maxsize=8)
def _undistort_maps(k: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    # OpenCV puts pixel centres at integer coordinates, langfield at +0.5: shift the principal point.
    mat = np.array([[k.fx, 0.0, k.cx - 0.5], [0.0, k.fy, k.cy - 0.5], [0.0, 0.0, 1.0]])
    dist = np.asarray(k.distortion, dtype=np.float64)
    return cv2.initUndistortRectifyMap(mat, dist, None, mat, (k.width, k.height), cv2.CV_32FC1)


def undistort(arr: np.ndarray, k: Intrinsics, interp: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Remap an image taken with ``k`` (incl. distortion) to the pinhole camera with the same K."""
    if not any(k.distortion):
        return arr
    mx, my = _undistort_maps(k)
    return cv2.remap(arr, mx, my, interpolation=interp, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _to_unit(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    if img.dtype == np.uint16:
        return img.astype(np.float32) / 65535.0
    return np.clip(img.astype(np.float32), 0.0, 1.0)


def load_rgb(frame: Frame, downscale: int = 1, *, undistort_pixels: bool = True) -> np.ndarray:
    """[H, W, 3] float32 colour in [0, 1] (alpha dropped, see ``load_alpha``)."""
    k = _target(frame, downscale)
    img = _read(frame.image_path, "image")
    _check_size(img, frame, frame.image_path)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    elif img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    else:
        raise DataError(f"{frame.image_path}: unsupported channel count {img.shape[2]}")
    # Convert before resizing so INTER_AREA averages in float and 16-bit images keep their precision.
    out = _resize(_to_unit(img), k)
    if undistort_pixels:
        out = undistort(out, k)
    return np.ascontiguousarray(out, dtype=np.float32)


def load_alpha(frame: Frame, downscale: int = 1, *, undistort_pixels: bool = True) -> Optional[np.ndarray]:
    """[H, W] float32 alpha in [0, 1] of an RGBA image, or None when the image has no alpha."""
    k = _target(frame, downscale)
    img = _read(frame.image_path, "image")
    _check_size(img, frame, frame.image_path)
    if img.ndim != 3 or img.shape[2] != 4:
        return None
    out = _resize(_to_unit(img[:, :, 3]), k)
    if undistort_pixels:
        out = undistort(out, k)
    return np.ascontiguousarray(out, dtype=np.float32)


def _single_channel(arr: np.ndarray, path: Path, what: str) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim != 2:
        raise DataError(f"{path}: {what} must be single-channel, got shape {list(arr.shape)}")
    return arr


def load_depth(frame: Frame, downscale: int = 1, *, undistort_pixels: bool = True) -> Optional[np.ndarray]:
    """[H, W] float32 metres (0 = unknown), or None when the frame has no depth.

    Integer images are multiplied by ``frame.depth_scale``; ``.npy`` files are metres already.
    """
    if frame.depth_path is None:
        return None
    k = _target(frame, downscale)
    raw = _single_channel(_read(frame.depth_path, "depth"), frame.depth_path, "depth")
    _check_size(raw, frame, frame.depth_path)
    depth = raw.astype(np.float32)
    if np.issubdtype(raw.dtype, np.integer):
        depth *= np.float32(frame.depth_scale)
    depth[~np.isfinite(depth) | (depth < 0)] = 0.0
    depth = _resize_nearest(depth, k)
    if undistort_pixels:
        depth = undistort(depth, k, cv2.INTER_NEAREST)
    return np.ascontiguousarray(depth, dtype=np.float32)


def load_semantics(frame: Frame, downscale: int = 1, *, undistort_pixels: bool = True) -> Optional[np.ndarray]:
    """[H, W] int64 label ids (0 = none), or None when the frame has no semantics."""
    if frame.semantics_path is None:
        return None
    k = _target(frame, downscale)
    raw = _single_channel(_read(frame.semantics_path, "semantics"), frame.semantics_path, "semantics")
    _check_size(raw, frame, frame.semantics_path)
    if not np.issubdtype(raw.dtype, np.integer):
        raise DataError(f"{frame.semantics_path}: semantics must hold integer ids, got {raw.dtype}")
    ids = _resize_nearest(raw.astype(np.int64), k)
    if undistort_pixels and any(k.distortion):
        # cv2.remap has no int64; float32 holds ids exactly up to 2^24 (uint16 PNG ids fit).
        ids = np.rint(undistort(ids.astype(np.float32), k, cv2.INTER_NEAREST)).astype(np.int64)
    return np.ascontiguousarray(ids, dtype=np.int64)
