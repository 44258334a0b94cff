"""Checks shared by every reader, each failing with a one-line ``DataError``.

Readers run these at ``load_capture`` time (image sizes from headers only) so
that training never starts on data that would fail later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from langfield.types import DataError, Frame, Intrinsics

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".exr", ".webp")
ROTATION_TOL = 1e-3


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image from its header (PIL opens lazily, pixels are not decoded)."""
    if not path.is_file():
        raise DataError(f"{path}: image file not found")
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: unreadable .npy file ({exc})") from None
        if arr.ndim < 2:
            raise DataError(f"{path}: expected a 2D array, got shape {arr.shape}")
        return int(arr.shape[1]), int(arr.shape[0])
    try:
        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{path}: corrupt or unreadable image ({type(exc).__name__})") from None


def check_pose(c2w: np.ndarray, where: str) -> np.ndarray:
    """Validate a camera-to-world pose ([3, 4] or [4, 4]); returns it as float64 [4, 4].

    ``where`` names the file (and frame) for the error message.
    """
    m = np.asarray(c2w, dtype=np.float64)
    if m.shape == (3, 4):
        m = np.vstack([m, [0.0, 0.0, 0.0, 1.0]])
    if m.shape != (4, 4):
        raise DataError(f"{where}: pose must be 4x4 or 3x4, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise DataError(f"{where}: pose contains NaN or inf")
    if not np.allclose(m[3], [0.0, 0.0, 0.0, 1.0], atol=1e-6):
        raise DataError(f"{where}: pose bottom row is {m[3].tolist()}, expected [0, 0, 0, 1]")
    r = m[:3, :3]
    err = float(np.abs(r.T @ r - np.eye(3)).max())
    if err > ROTATION_TOL or np.linalg.det(r) < 0:
        raise DataError(
            f"{where}: pose rotation is not rigid (|R^T R - I| = {err:.2g}, det = {np.linalg.det(r):.3g})"
        )
    return m


def check_frame_files(frame: Frame, where: Optional[str] = None) -> None:
    """Image exists, is readable and has exactly the intrinsics' size; same for depth/semantics."""
    w, h = image_size(frame.image_path)
    k = frame.intrinsics
    if (w, h) != (k.width, k.height):
        src = f" ({where})" if where else ""
        raise DataError(
            f"{frame.image_path}: image is {w}x{h} but its intrinsics{src} say {k.width}x{k.height}"
        )
    for kind, p in (("depth", frame.depth_path), ("semantics", frame.semantics_path)):
        if p is None:
            continue
        if not p.is_file():
            raise DataError(f"{p}: {kind} file not found (frame {frame.name})")
        dw, dh = image_size(p)
        if (dw, dh) != (w, h):
            raise DataError(f"{p}: {kind} map is {dw}x{dh} but its image is {w}x{h}")


def check_frames(frames: Sequence[Frame], source: Path) -> None:
    """Non-empty frame list and per-frame file checks."""
    if not frames:
        raise DataError(f"{source}: no frames found")
    for f in frames:
        check_frame_files(f, where=str(source.name))


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder`` sorted by name (hidden files ignored)."""
    return sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def scene_scale(frames: Sequence[Frame]) -> float:
    """1.1 x the largest distance of a camera centre from their mean (3DGS), >= 1e-3; 1.0 for < 2 poses."""
    centres = np.array([f.c2w[:3, 3] for f in frames if f.c2w is not None])
    if len(centres) < 2:
        return 1.0
    radius = float(np.linalg.norm(centres - centres.mean(axis=0), axis=1).max())
    return max(1.1 * radius, 1e-3)


def guessed_intrinsics(width: int, height: int) -> Intrinsics:
    """A plausible pinhole camera for an uncalibrated image: focal 1.2 x max(w, h), centred."""
    f = 1.2 * max(width, height)
    return Intrinsics(fx=f, fy=f, cx=width / 2.0, cy=height / 2.0, width=width, height=height)
