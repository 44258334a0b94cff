"""nerfstudio / Blender ``transforms.json`` reader.

Poses in the file are OpenGL camera-to-world; they become OpenCV through
``conventions.opengl_to_opencv_c2w``.  Intrinsics may be global or per frame
(per-frame keys win); Blender files give ``camera_angle_x`` instead of focal
lengths.  See ARCHITECTURE.md "Datasets with labels" for depth / semantics.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

from langfield.sources.conventions import opengl_to_opencv_c2w
from langfield.sources.jsonio import read_json, read_labels
from langfield.sources.points import read_ply_points
from langfield.sources.split import make_split, name_list, resolve_names
from langfield.sources.validate import check_frames, check_pose, image_size, scene_scale
from langfield.types import CAMERA_MODELS, Capture, DataError, Frame, Intrinsics

_INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h", "k1", "k2", "k3", "k4", "p1", "p2", "camera_model",
                   "camera_angle_x", "camera_angle_y")


def _number(d: dict[str, Any], key: str, where: str) -> Optional[float]:
    val = d.get(key)
    if val is None:
        return None
    if isinstance(val, bool) or not isinstance(val, (int, float)):
        raise DataError(f"{where}: {key} must be a finite number, got {val!r:.40}")
    try:
        out = float(val)  # an integer beyond float range overflows here
    except OverflowError:
        out = math.inf
    if not math.isfinite(out):
        raise DataError(f"{where}: {key} must be a finite number, got {val!r:.40}")
    return out


def _size(cam: dict[str, Any], key: str, where: str) -> Optional[int]:
    val = _number(cam, key, where)
    if val is not None and (val != int(val) or val < 1):
        raise DataError(f"{where}: {key} = {val:g} must be a positive whole number of pixels")
    return None if val is None else int(val)


def _focal_from_angle(cam: dict[str, Any], key: str, size: int, where: str) -> Optional[float]:
    """Focal length in pixels from a full field of view in radians (Blender ``camera_angle_x``)."""
    angle = _number(cam, key, where)
    if angle is None:
        return None
    if not 0.0 < angle < math.pi:
        raise DataError(f"{where}: {key} = {angle:g} must be a field of view in radians, between 0 and pi")
    return 0.5 * size / math.tan(0.5 * angle)


def _intrinsics(cam: dict[str, Any], image_path: Path, where: str) -> Intrinsics:
    model = cam.get("camera_model", "PINHOLE")
    if model not in CAMERA_MODELS:
        raise DataError(f"{where}: unknown camera model {model!r} (supported: {', '.join(CAMERA_MODELS)})")
    w, h = _size(cam, "w", where), _size(cam, "h", where)
    if w is None or h is None:
        w, h = image_size(image_path)  # header only
    fx, fy = _number(cam, "fl_x", where), _number(cam, "fl_y", where)
    if fx is None:
        fx = _focal_from_angle(cam, "camera_angle_x", w, where)
        if fx is None:
            raise DataError(f"{where}: no focal length (need fl_x or camera_angle_x)")
    if fy is None:
        fy = _focal_from_angle(cam, "camera_angle_y", h, where)
        fy = fx if fy is None else fy
    if fx <= 0 or fy <= 0:
        raise DataError(f"{where}: focal lengths must be positive, got fl_x = {fx:g}, fl_y = {fy:g}")
    cx = _number(cam, "cx", where)
    cy = _number(cam, "cy", where)
    if _number(cam, "k4", where):
        # OpenCV's 5th..8th terms are a rational model, nerfstudio's k4 a fisheye term: neither is supported.
        raise DataError(f"{where}: k4 = {cam['k4']!r} is not supported (camera model {model} uses k1, k2, k3, p1, p2)")
    coeffs = [_number(cam, k, where) or 0.0 for k in ("k1", "k2", "p1", "p2", "k3")]
    # OpenCV order (k1, k2, p1, p2[, k3]); k3 only when used so the common 4-term case stays short.
    dist: tuple[float, ...] = tuple(coeffs if coeffs[4] != 0.0 else coeffs[:4])
    if not any(dist):
        dist = ()
    return Intrinsics(
        fx=fx, fy=fy, cx=w / 2.0 if cx is None else cx, cy=h / 2.0 if cy is None else cy,
        width=w, height=h, model=model, distortion=dist,
    )


def _resolve(base: Path, rel: str, where: str, what: str) -> Path:
    if not isinstance(rel, str) or not rel:
        raise DataError(f"{where}: {what} must be a non-empty string")
    p = Path(rel)
    p = p if p.is_absolute() else base / p
    try:
        # Blender synthetic files omit the extension ("./train/r_0").
        if not p.exists() and p.suffix == "" and p.with_suffix(".png").exists():
            p = p.with_suffix(".png")
    except OSError as exc:  # e.g. ENAMETOOLONG: pathlib only hides "does not exist" errors
        raise DataError(f"{where}: {what} {rel[:60]!r}... is not a usable path ({exc.strerror})") from None
    return p


def find_transforms(path: Path) -> Optional[Path]:
    """The transforms.json that ``path`` is or contains, else None."""
    if path.is_file() and path.suffix == ".json":
        return path
    cand = path / "transforms.json"
    return cand if cand.is_file() else None


def read_nerfstudio(json_path: Path, *, eval_every: int = 8, eval_file: Optional[Path] = None) -> Capture:
    """Read a nerfstudio ``transforms.json`` (and ``labels.json`` beside it) into a Capture."""
    json_path = json_path.resolve()
    meta = read_json(json_path)
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list):
        raise DataError(f"{json_path}: expected an object with a 'frames' list")
    return _capture_from_meta(meta, json_path, [json_path] * len(meta["frames"]), eval_every, eval_file, "nerfstudio")


def is_blender_dir(path: Path) -> bool:
    """A NeRF-synthetic style folder: ``transforms_train.json`` (+ ``_val``/``_test``), no transforms.json."""
    return path.is_dir() and (path / "transforms_train.json").is_file()


def read_blender(root: Path, *, eval_every: int = 8, eval_file: Optional[Path] = None) -> Capture:
    """NeRF-synthetic layout: frames of ``transforms_train.json`` train, ``transforms_test.json`` evaluate.

    ``transforms_val.json`` is not read (the usual protocol trains on train and
    reports test).  ``eval_file`` still overrides the split.
    """
    root = root.resolve()
    frames: list[dict] = []
    sources: list[Path] = []
    names: dict[str, list[str]] = {"train_filenames": [], "test_filenames": []}
    for split in ("train", "test"):
        path = root / f"transforms_{split}.json"
        if not path.is_file():
            continue
        meta = read_json(path)
        if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list):
            raise DataError(f"{path}: expected an object with a 'frames' list")
        cam = {k: meta[k] for k in _INTRINSIC_KEYS if k in meta}
        for fr in meta["frames"]:
            if not isinstance(fr, dict):
                raise DataError(f"{path}: every frame must be an object")
            frames.append({**cam, **fr})
            sources.append(path)
            names[f"{split}_filenames"].append(fr.get("file_path", ""))
    merged = {"frames": frames, **names}
    return _capture_from_meta(merged, root / "transforms_train.json", sources, eval_every, eval_file, "blender")


def parse_frame(
    fr: Any, i: int, src: Path, base: Path, glob: dict[str, Any], depth_scale: float, *, need_image: bool = True
) -> Frame:
    """Frame ``i`` of the transforms file ``src``: pose to OpenCV, the frame's intrinsics keys over ``glob``.

    The one per-frame parser (datasets and ``langfield render --cameras``).  ``need_image``
    False reads cameras whose images need not exist (then ``w``/``h`` must be given).
    """
    where = f"{src} frame {i}"
    if not isinstance(fr, dict) or "file_path" not in fr or "transform_matrix" not in fr:
        raise DataError(f"{where}: needs 'file_path' and 'transform_matrix'")
    where = f"{src} frame {i} ({str(fr['file_path'])[:80]})"
    image_path = _resolve(base, fr["file_path"], where, "file_path")
    if need_image and not image_path.is_file():
        raise DataError(f"{image_path}: image file not found (listed in {src.name} frame {i})")
    cam = {**glob, **{k: fr[k] for k in _INTRINSIC_KEYS if k in fr}}
    try:
        gl_pose = check_pose(fr["transform_matrix"], where)
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"{where}: transform_matrix is not a 4x4 array of numbers") from None
    return Frame(
        name=str(fr["file_path"]),
        image_path=image_path,
        intrinsics=_intrinsics(cam, image_path, where),
        c2w=opengl_to_opencv_c2w(gl_pose),
        depth_path=_resolve(base, fr["depth_file_path"], where, "depth_file_path")
        if fr.get("depth_file_path") else None,
        depth_scale=depth_scale,
        semantics_path=_resolve(base, fr["semantics_path"], where, "semantics_path")
        if fr.get("semantics_path") else None,
    )


def read_transforms_frames(json_path: Path) -> tuple[list[Frame], list[dict[str, Any]]]:
    """Cameras of a transforms.json whose images need not exist: (frames, the raw frame objects).

    Each frame is checked as a dataset's would be (``parse_frame``); the raw objects
    give callers their extra keys (e.g. a frame's ``split``).
    """
    json_path = Path(json_path)
    meta = read_json(json_path)
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list) or not meta["frames"]:
        raise DataError(f"{json_path}: expected an object with a non-empty 'frames' list")
    glob = {k: meta[k] for k in _INTRINSIC_KEYS if k in meta}
    frames = [parse_frame(fr, i, json_path, json_path.parent, glob, 0.001, need_image=False)
              for i, fr in enumerate(meta["frames"])]
    return frames, meta["frames"]


def _capture_from_meta(
    meta: dict, json_path: Path, sources: list[Path], eval_every: int, eval_file: Optional[Path], kind: str
) -> Capture:
    """Frames, split, points and labels of a parsed transforms file; ``sources[i]`` names frame i's file."""
    base = json_path.parent
    depth_scale = _number(meta, "depth_unit_scale_factor", str(json_path))
    depth_scale = 0.001 if depth_scale is None else depth_scale
    if depth_scale <= 0:
        raise DataError(f"{json_path}: depth_unit_scale_factor = {depth_scale:g} must be positive (metres per "
                        "depth unit, e.g. 0.001 for millimetres)")
    glob = {k: meta[k] for k in _INTRINSIC_KEYS if k in meta}

    frames = [parse_frame(fr, i, src, base, glob, depth_scale)
              for i, (fr, src) in enumerate(zip(meta["frames"], sources))]
    check_frames(frames, json_path)

    listed = None
    if any(k in meta for k in ("train_filenames", "val_filenames", "test_filenames")):
        lists = {k: name_list(meta[k], k, json_path) for k in ("train_filenames", "val_filenames", "test_filenames")
                 if k in meta}
        held = resolve_names(frames, [*lists.get("val_filenames", []), *lists.get("test_filenames", [])], json_path)
        if "train_filenames" in lists:
            train = resolve_names(frames, lists["train_filenames"], json_path)
        else:
            train = [i for i in range(len(frames)) if i not in set(held)]
        listed = (train, held)
    train_ids, eval_ids = make_split(frames, eval_every, eval_file, listed)

    points = colors = None
    if meta.get("ply_file_path"):
        points, colors = read_ply_points(_resolve(base, meta["ply_file_path"], str(json_path), "ply_file_path"))
    labels_path = base / "labels.json"
    labels = read_labels(labels_path) if labels_path.is_file() else None

    return Capture(
        root=base, frames=frames, train_ids=train_ids, eval_ids=eval_ids, points=points,
        point_colors=colors, labels=labels, kind=kind, scene_scale=scene_scale(frames),
    )
