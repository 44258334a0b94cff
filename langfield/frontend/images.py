"""A folder of photos as SfM input: upright (EXIF orientation applied), equally sized, at most ``max_side``.

Every photo is copied under the output folder with its own file name, so the SfM stage
sees one self-contained image folder and the input stays read-only.  A photo that needs
no turning and no downscaling is copied byte for byte; the others are re-encoded in
their own format (JPEG at quality 95 keeping the EXIF block minus its orientation, so
SfM can still read the focal length; PNG losslessly).  COLMAP's image reader does not
apply EXIF orientation, which is why upright copies are written rather than the
originals passed on.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from langfield.io import atomic_write_bytes, atomic_write_with
from langfield.sources.validate import image_size, list_images
from langfield.types import DataError

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
"""Photo formats read from a folder (case-insensitive); other files are ignored."""
_ORIENTATION_TAG = 0x0112
_SWAPS_AXES = (5, 6, 7, 8)  # EXIF orientations that turn the image by 90 degrees (transpose/rotate/transverse)


def output_size(width: int, height: int, max_side: int) -> tuple[tuple[int, int], float]:
    """((w, h), scale) after downscaling so the longest side is at most ``max_side`` (never upscaling)."""
    scale = min(1.0, max_side / max(width, height))
    if scale >= 1.0:
        return (width, height), 1.0
    return (max(1, round(width * scale)), max(1, round(height * scale))), scale


def list_photos(folder: Path) -> list[Path]:
    """The JPEG/PNG files directly in ``folder``, sorted by name; DataError when there are none."""
    try:
        images = list_images(folder)
    except OSError as exc:
        raise DataError(f"{folder}: cannot list the folder ({exc.strerror})") from None
    photos = [p for p in images if p.suffix.lower() in PHOTO_SUFFIXES]
    if not photos:
        other = f" ({len(images)} images of other formats: {images[0].name} ...)" if images else ""
        raise DataError(f"{folder}: no photos found (JPEG or PNG){other}")
    return photos


def photo_signature(folder: Path) -> list[list[Any]]:
    """[name, size, mtime_ns] of every photo: what a resumed run compares to decide the folder is unchanged."""
    out = []
    for p in list_photos(folder):
        st = p.stat()
        out.append([p.name, st.st_size, st.st_mtime_ns])
    return out


def exif_orientation(path: Path) -> int:
    """The EXIF Orientation tag (1-8) of an image, 1 when absent or unreadable."""
    try:
        with Image.open(path) as im:
            value = im.getexif().get(_ORIENTATION_TAG, 1)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise DataError(f"{path}: corrupt or unreadable image") from None
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else 1


def upright_size(path: Path) -> tuple[int, int]:
    """(width, height) of a photo once its EXIF orientation is applied, from the header only."""
    w, h = image_size(path)
    return (h, w) if exif_orientation(path) in _SWAPS_AXES else (w, h)


def _write_photo(src: Path, dst: Path, size: tuple[int, int], resize: bool) -> None:
    """Decode ``src``, turn it upright, downscale it to ``size`` if ``resize`` and write it as ``dst`` (same format)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(src) as raw:
                fmt = raw.format
                raw.load()
                im = ImageOps.exif_transpose(raw)  # a turned copy; its info["exif"] no longer holds the orientation
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"{src}: corrupt or unreadable image ({type(exc).__name__})") from None
    if resize:
        if im.mode == "P":  # palette images resample only by nearest neighbour
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        im = im.resize(size, Image.Resampling.LANCZOS)
    if (im.width, im.height) != size:
        raise DataError(f"{src}: decodes to {im.width}x{im.height}, its header says {size[0]}x{size[1]}")
    options: dict[str, Any] = {}
    if im.info.get("icc_profile"):
        options["icc_profile"] = im.info["icc_profile"]
    if fmt == "JPEG":
        if im.info.get("exif"):
            options["exif"] = im.info["exif"]
        options.update(quality=95, subsampling=0)
    else:
        options["compress_level"] = 1  # fast zlib level: the default costs more than the decode
    atomic_write_with(dst, lambda fh: im.save(fh, format="JPEG" if fmt == "JPEG" else "PNG", **options))


def _check_decodes(src: Path) -> None:
    try:
        with Image.open(src) as im:
            im.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{src}: corrupt or unreadable image ({type(exc).__name__})") from None


def prepare_photos(folder: Path, out: Path, max_side: int, min_photos: int, *, progress: bool = True) -> dict:
    """Upright copies of the photos of ``folder`` in ``out`` (see the module doc); returns the manifest fields.

    Refused with a one-line DataError: no photos, fewer than ``min_photos``, photos of different
    (upright) sizes (naming two of them), a photo that does not decode.
    """
    from tqdm.auto import tqdm

    photos = list_photos(folder)
    if len(photos) < min_photos:
        raise DataError(f"{folder}: only {len(photos)} photos, need at least {min_photos} for structure from motion")
    sizes = [upright_size(p) for p in photos]
    for p, s in zip(photos, sizes):
        if s != sizes[0]:
            raise DataError(
                f"{folder}: photos differ in size: {photos[0].name} is {sizes[0][0]}x{sizes[0][1]}, "
                f"{p.name} is {s[0]}x{s[1]} (after EXIF orientation); use photos of one camera setting"
            )
    (w, h), scale = output_size(*sizes[0], max_side)
    for p in tqdm(photos, desc="prepare photos", unit="photo", disable=not progress, dynamic_ncols=True):
        dst = out / p.name
        if scale == 1.0 and exif_orientation(p) == 1:
            _check_decodes(p)
            atomic_write_bytes(dst, p.read_bytes())
        else:
            _write_photo(p, dst, (w, h), resize=scale < 1.0)
    return {
        "kind": "photos",
        "files": [p.name for p in photos],
        "source_names": [p.name for p in photos],
        "source_index": list(range(len(photos))),
        "size": [w, h],
        "scale": scale,
        "read": len(photos),
        "rejected_blur": 0,
        "fps": None,
    }
