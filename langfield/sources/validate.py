"""Checks shared by every reader, each failing with a one-line ``DataError``.

Readers run these at ``load_capture`` time (image sizes from headers only) so
that training never starts on data that would fail later.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from langfield.sources.io import read_npy
from langfield.types import DataError, Frame, Intrinsics

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".exr", ".webp")
ROTATION_TOL = 1e-3

MAX_IMAGE_PIXELS = 89_478_485
"""Largest image (width x height) a dataset may hold: PIL's own decompression-bomb threshold (about
9459 x 9459, 0.25 GiB of RGBA).  Every frame is decoded whole and kept in memory as float32 while
training, so larger photos are refused; use a downscaled copy (``--images images_2``)."""
MAX_COORDINATE = 1e6
"""Largest |x|, |y|, |z| of a camera centre: float32 training loses all precision beyond this."""
MIN_VIEW_SIDE = 16
"""Smallest width or height of a loaded view (after ``--downscale``): the 11 px SSIM window of the
training loss and evaluation (``render.image_metrics.SSIM_WINDOW``) plus a margin, one 16 px tile."""
FOCAL_RANGE = (0.05, 50.0)
"""Plausible focal lengths, as a multiple of the larger image side: 0.05 is a 172 degree field of view,
50 a 1.1 degree one.  Values outside are unit mistakes (metres, millimetres, normalised) or garbage."""
PRINCIPAL_POINT_MARGIN = 0.5
"""The principal point may lie at most this fraction of the image size outside the image (cropped
images move it off-centre, never far)."""
MAX_ASPECT = 4.0
"""Largest fx / fy (or fy / fx) ratio: real pixels are close to square."""
RADIAL_BOUND = 10.0
"""Largest |k1|, |k2|, |k3|, |k4| (OpenCV model, normalised image coordinates); calibrations of even
strong wide-angle lenses stay below ~2."""
TANGENTIAL_BOUND = 1.0
"""Largest |p1|, |p2|; real lenses are below ~0.01."""


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image from its header (PIL opens lazily, pixels are not decoded).

    Images above ``MAX_IMAGE_PIXELS`` (or that PIL calls a decompression bomb) fail with a DataError.
    """
    try:
        found = path.is_file()
    except OSError as exc:  # e.g. ENAMETOOLONG: pathlib only hides "does not exist" errors
        raise DataError(f"{str(path)[:200]}: not a usable image path ({exc.strerror})") from None
    if not found:
        raise DataError(f"{path}: image file not found")
    if path.suffix.lower() == ".npy":
        arr = read_npy(path, "image", mmap=True)
        if arr.ndim < 2:
            raise DataError(f"{path}: expected a 2D array, got shape {arr.shape}")
        size = int(arr.shape[1]), int(arr.shape[0])
    else:
        try:
            with warnings.catch_warnings():
                # PIL only warns between 1x and 2x its threshold: make that an error too.
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as im:
                    size = int(im.size[0]), int(im.size[1])
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise DataError(
                f"{path}: image is larger than the {MAX_IMAGE_PIXELS:,} pixel limit (PIL decompression-bomb guard); "
                "use a downscaled copy of the images"
            ) from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            # PIL raises SyntaxError for some malformed headers (e.g. broken PPM/XBM files).
            raise DataError(f"{path}: corrupt or unreadable image ({type(exc).__name__})") from None
    w, h = size
    if w < 1 or h < 1:
        raise DataError(f"{path}: image is {w}x{h}, which holds no pixels")
    if w * h > MAX_IMAGE_PIXELS:
        raise DataError(
            f"{path}: image is {w}x{h} = {w * h:,} pixels, above the {MAX_IMAGE_PIXELS:,} pixel limit; "
            "use a downscaled copy of the images"
        )
    return size


def check_intrinsics(k: Intrinsics, where: str) -> None:
    """Plausible numbers: finite, focal within ``FOCAL_RANGE`` x the image size, principal point near the
    image, near-square pixels and bounded distortion.  The message names the value and ``where``."""
    if k.width < 1 or k.height < 1:
        raise DataError(f"{where}: image size {k.width}x{k.height} holds no pixels")
    values = {"fx": k.fx, "fy": k.fy, "cx": k.cx, "cy": k.cy}
    for name, val in values.items():
        if not math.isfinite(val):
            raise DataError(f"{where}: {name} = {val} is not a finite number")
    side = max(k.width, k.height)
    lo, hi = FOCAL_RANGE[0] * side, FOCAL_RANGE[1] * side
    for name in ("fx", "fy"):
        f = values[name]
        if not lo <= f <= hi:
            raise DataError(
                f"{where}: focal length {name} = {f:.6g} px is implausible for a {k.width}x{k.height} image "
                f"(expected {lo:.4g} to {hi:.4g} px, i.e. {FOCAL_RANGE[0]:g} to {FOCAL_RANGE[1]:g} x {side} px)"
            )
    ratio = max(k.fx / k.fy, k.fy / k.fx)
    if ratio > MAX_ASPECT:
        raise DataError(
            f"{where}: fx = {k.fx:.6g} and fy = {k.fy:.6g} differ {ratio:.3g}-fold (at most {MAX_ASPECT:g}: "
            "pixels are nearly square)"
        )
    for name, val, size in (("cx", k.cx, k.width), ("cy", k.cy, k.height)):
        m = PRINCIPAL_POINT_MARGIN * size
        if not -m <= val <= size + m:
            raise DataError(
                f"{where}: principal point {name} = {val:.6g} px is far outside the {size} px image "
                f"(expected {-m:g} to {size + m:g})"
            )
    # OpenCV order (k1, k2, p1, p2[, k3[, k4 ...]]).
    names = ("k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6")
    for name, val in zip(names, k.distortion):
        bound = TANGENTIAL_BOUND if name.startswith("p") else RADIAL_BOUND
        if not math.isfinite(val) or abs(val) > bound:
            raise DataError(
                f"{where}: distortion {name} = {val:.6g} is implausible (|{name}| <= {bound:g} for real lenses)"
            )


def check_view_size(k: Intrinsics, where: str, downscale: int = 1) -> None:
    """A view loaded at ``k`` (already downscaled) is at least ``MIN_VIEW_SIDE`` px on each side."""
    if k.width < MIN_VIEW_SIDE or k.height < MIN_VIEW_SIDE:
        how = f" after --downscale {downscale}" if downscale != 1 else ""
        raise DataError(
            f"{where}: image is {k.width}x{k.height}{how}, smaller than the minimum "
            f"{MIN_VIEW_SIDE}x{MIN_VIEW_SIDE} (the 11 px SSIM window of the loss needs room); "
            + ("use a smaller --downscale" if downscale != 1 else "use larger images")
        )


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
    with np.errstate(all="ignore"):  # huge finite entries overflow to inf: not rigid either way
        err = float(np.abs(r.T @ r - np.eye(3)).max())
        det = float(np.linalg.det(r))
    if not err <= ROTATION_TOL or det < 0:
        raise DataError(f"{where}: pose rotation is not rigid (|R^T R - I| = {err:.2g}, det = {det:.3g})")
    if np.abs(m[:3, 3]).max() > MAX_COORDINATE:
        raise DataError(f"{where}: camera position {m[:3, 3].tolist()} is beyond {MAX_COORDINATE:g} scene units")
    return m


def check_frame_files(frame: Frame, where: Optional[str] = None) -> None:
    """Image exists, is readable and has exactly the intrinsics' size; same for depth/semantics."""
    w, h = image_size(frame.image_path)
    k = frame.intrinsics
    src = f" ({where})" if where else ""
    if (w, h) != (k.width, k.height):
        raise DataError(
            f"{frame.image_path}: image is {w}x{h} but its intrinsics{src} say {k.width}x{k.height}"
        )
    check_intrinsics(k, f"{frame.image_path}{src}")
    if not math.isfinite(frame.depth_scale) or frame.depth_scale <= 0:
        raise DataError(f"{frame.image_path}{src}: depth scale {frame.depth_scale} must be a positive number "
                        "(metres per depth unit)")
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
