"""COLMAP sparse model reader (binary or text, through pycolmap).

COLMAP stores world-to-camera poses with OpenCV axes, so a stored c2w is just
the rigid inverse.  Distortion parameters are mapped to OpenCV's
(k1, k2, p1, p2) order; images are undistorted on load (see ``views``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from langfield.sources.conventions import invert_rigid
from langfield.sources.points import check_finite_points
from langfield.sources.split import make_split
from langfield.sources.validate import check_frames, check_pose, scene_scale
from langfield.types import CAMERA_MODELS, Capture, DataError, Frame, Intrinsics

_MODEL_FILES = ("cameras", "images")


def is_model_dir(path: Path) -> bool:
    """True when ``path`` holds cameras and images files (binary or text)."""
    return all((path / f"{n}.bin").is_file() or (path / f"{n}.txt").is_file() for n in _MODEL_FILES)


def find_model(root: Path) -> Optional[Path]:
    """The model folder of a COLMAP scene directory: ``sparse/0``, ``sparse`` or the directory itself."""
    for cand in (root / "sparse" / "0", root / "sparse", root):
        if cand.is_dir() and is_model_dir(cand):
            return cand
    return None


def camera_intrinsics(cam, where: str) -> Intrinsics:
    """pycolmap Camera -> Intrinsics (OpenCV-order distortion); unknown models fail."""
    model = cam.model_name if hasattr(cam, "model_name") else str(cam.model).split(".")[-1]
    p = [float(x) for x in cam.params]
    w, h = int(cam.width), int(cam.height)
    if model == "SIMPLE_PINHOLE":
        fx = fy = p[0]
        cx, cy = p[1], p[2]
        dist: tuple[float, ...] = ()
    elif model == "PINHOLE":
        fx, fy, cx, cy = p[:4]
        dist = ()
    elif model == "SIMPLE_RADIAL":
        fx = fy = p[0]
        cx, cy = p[1], p[2]
        dist = (p[3], 0.0, 0.0, 0.0)
    elif model == "RADIAL":
        fx = fy = p[0]
        cx, cy = p[1], p[2]
        dist = (p[3], p[4], 0.0, 0.0)
    elif model == "OPENCV":
        fx, fy, cx, cy = p[:4]
        dist = tuple(p[4:8])
    else:
        raise DataError(f"{where}: unsupported COLMAP camera model {model} (supported: {', '.join(CAMERA_MODELS)})")
    if not any(dist):
        dist = ()
    return Intrinsics(fx=fx, fy=fy, cx=cx, cy=cy, width=w, height=h, model=model, distortion=dist)


def _cam_from_world(image) -> np.ndarray:
    # pycolmap >= 3.12 exposes cam_from_world as a method, older versions as a property.
    pose = image.cam_from_world
    pose = pose() if callable(pose) else pose
    m = np.eye(4)
    m[:3, :] = np.asarray(pose.matrix(), dtype=np.float64)
    return m


def read_colmap(
    root: Path,
    *,
    images: Optional[str] = None,
    eval_every: int = 8,
    eval_file: Optional[Path] = None,
) -> Capture:
    """Read a COLMAP scene: model from ``find_model(root)``, pixels from ``root/<images or 'images'>``."""
    import pycolmap  # heavy import, only when a COLMAP scene is read

    root = root.resolve()
    model = find_model(root)
    if model is None:
        raise DataError(f"{root}: no COLMAP model (cameras + images files) found")
    image_dir = root / (images or "images")
    if not image_dir.is_dir() and model.parent.name == "sparse":
        # The model folder itself was given: images sit beside ``sparse/``.
        image_dir = model.parent.parent / (images or "images")
    if not image_dir.is_dir():
        raise DataError(f"{image_dir}: image folder not found")
    try:
        rec = pycolmap.Reconstruction(str(model))
    except Exception as exc:  # pycolmap raises ValueError/RuntimeError with C++ text
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{model}: cannot read COLMAP model ({msg})") from None

    ext = "bin" if (model / "cameras.bin").is_file() else "txt"
    intr = {cid: camera_intrinsics(cam, f"{model / f'cameras.{ext}'} camera {cid}") for cid, cam in rec.cameras.items()}
    named = []
    for img in rec.images.values():
        try:
            named.append((img.name, img))
        except UnicodeDecodeError:  # pybind11 decodes the C++ string on access
            raise DataError(f"{model / f'images.{ext}'}: image {img.image_id} has a name that is not UTF-8") from None
    frames: list[Frame] = []
    for name, img in sorted(named, key=lambda item: item[0]):
        if hasattr(img, "has_pose") and not img.has_pose:
            continue  # registered-less images carry no pose to train with
        where = f"{model / f'images.{ext}'} image {name}"
        c2w = invert_rigid(check_pose(_cam_from_world(img), where))
        frames.append(Frame(name=name, image_path=image_dir / name, intrinsics=intr[img.camera_id], c2w=c2w))
    check_frames(frames, model)
    train_ids, eval_ids = make_split(frames, eval_every, eval_file)

    pts = list(rec.points3D.values())
    points = colors = None
    if pts:
        with np.errstate(over="ignore"):  # float32 overflow becomes inf, refused just below
            points = np.array([p.xyz for p in pts], dtype=np.float32)
        colors = np.array([p.color for p in pts], dtype=np.uint8)
        check_finite_points(points, model / f"points3D.{ext}")
    return Capture(
        root=root, frames=frames, train_ids=train_ids, eval_ids=eval_ids, points=points,
        point_colors=colors, kind="colmap", scene_scale=scene_scale(frames),
    )
