"""Readers for open-vocabulary segmentation ground truth: LERF-OVS and 3D-OVS.

Both produce ``{frame: {query text: Annotation}}`` where an ``Annotation`` is
a binary mask [H, W] plus boxes [K, 4] (x1, y1, x2, y2 in pixels).

**LERF-OVS** (LangSplat's release of LERF's localisation labels): one
``frame_XXXXX.json`` per test frame, next to ``frame_XXXXX.jpg``::

    {"info": {"width": W, "height": H, "name": "frame_00041.jpg"},
     "objects": [{"category": "sheep", "bbox": [x1, y1, x2, y2],
                  "segmentation": [[x, y], [x, y], ...]}, ...]}

Objects sharing a category are merged: masks OR-ed, boxes stacked. Plain
LabelMe files (``"shapes": [{"label", "points", "shape_type"}]``,
``imageWidth``/``imageHeight``) are accepted too: polygons fill the mask,
rectangles give boxes (and fill the mask when a label has no polygon). The
frame key is the json file's stem (``frame_00041``); note LangSplat's script
indexes frames as ``int(number) - 1`` instead.

Polygons are rasterised like LangSplat does (``cv2.fillPoly`` on vertices
truncated to int), so IoUs are comparable with published numbers.

**3D-OVS**: ``segmentations/classes.txt`` (one class per line; ``class.txt``
also accepted) and ``segmentations/<view>/<class>.png`` binary masks (0/255 or 0/1, see
``_read_mask_png``). A class without a PNG in a view is absent from that
view. Boxes are the masks' tight bounds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Union

import cv2
import numpy as np
from PIL import Image

from langfield.types import DataError


@dataclass
class Annotation:
    """Ground truth of one query text in one frame."""

    mask: np.ndarray
    """[H, W] bool, True on the object."""
    boxes: np.ndarray
    """[K, 4] float64 boxes (x1, y1, x2, y2) in pixel units; K >= 0."""

    def __iter__(self) -> Iterator[np.ndarray]:
        """Unpacks as ``mask, boxes``."""
        return iter((self.mask, self.boxes))


FrameAnnotations = dict[str, Annotation]
"""Query text -> annotation, for one frame."""


def mask_box(mask: np.ndarray) -> np.ndarray:
    """[1, 4] tight box (x1, y1, x2, y2) of the True pixels (inclusive pixel indices); [0, 4] if empty."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return np.zeros((0, 4))
    return np.array([[xs.min(), ys.min(), xs.max(), ys.max()]], dtype=np.float64)


def _polygon_mask(shape: tuple[int, int], points: Any, where: str) -> np.ndarray:
    try:
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: polygon is not a list of [x, y] points") from exc
    if pts.shape[0] < 3 or not np.isfinite(pts).all():
        raise DataError(f"{where}: polygon needs at least 3 finite points, got {pts.shape[0]}")
    mask = np.zeros(shape, dtype=np.uint8)
    cv2.fillPoly(mask, [pts.astype(np.int32)], 1)
    return mask.astype(bool)


def _box(values: Any, where: str) -> np.ndarray:
    try:
        box = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: bbox is not numeric") from exc
    if box.shape != (4,) or not np.isfinite(box).all():
        raise DataError(f"{where}: bbox must be [x1, y1, x2, y2], got {values!r}")
    x1, y1, x2, y2 = box
    return np.array([min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)])


def _add(frame: dict[str, list], label: str, mask: np.ndarray, box: np.ndarray | None) -> None:
    entry = frame.setdefault(label, [None, []])
    entry[0] = mask if entry[0] is None else (entry[0] | mask)
    if box is not None:
        entry[1].append(box)


def _image_size(path: Path, wkey: str, hkey: str, container: dict) -> tuple[int, int]:
    try:
        h, w = int(container[hkey]), int(container[wkey])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: missing or invalid image size ({hkey}/{wkey})") from exc
    if h <= 0 or w <= 0:
        raise DataError(f"{path}: image size must be positive, got {w}x{h}")
    return h, w


def _parse_lerf_objects(data: dict, path: Path) -> dict[str, list]:
    if not isinstance(data.get("info"), dict):
        raise DataError(f"{path}: missing 'info' with width/height")
    h, w = _image_size(path, "width", "height", data["info"])
    if not isinstance(data["objects"], list):
        raise DataError(f"{path}: 'objects' must be a list")
    frame: dict[str, list] = {}
    for i, obj in enumerate(data["objects"]):
        where = f"{path}: object {i}"
        if not isinstance(obj, dict) or not isinstance(obj.get("category"), str) or "segmentation" not in obj:
            raise DataError(f"{where} needs a 'category' string and a 'segmentation' polygon")
        mask = _polygon_mask((h, w), obj["segmentation"], where)
        box = _box(obj["bbox"], where) if "bbox" in obj else mask_box(mask).reshape(-1)
        _add(frame, obj["category"], mask, box if box.size else None)
    return frame


def _parse_labelme(data: dict, path: Path) -> dict[str, list]:
    h, w = _image_size(path, "imageWidth", "imageHeight", data)
    if not isinstance(data["shapes"], list):
        raise DataError(f"{path}: 'shapes' must be a list")
    frame: dict[str, list] = {}
    rect_only: dict[str, list[np.ndarray]] = {}
    for i, shape in enumerate(data["shapes"]):
        where = f"{path}: shape {i}"
        if not isinstance(shape, dict) or not isinstance(shape.get("label"), str) or "points" not in shape:
            raise DataError(f"{where} needs a 'label' string and 'points'")
        kind = shape.get("shape_type", "polygon")
        label = shape["label"]
        if kind == "polygon":
            mask = _polygon_mask((h, w), shape["points"], where)
            _add(frame, label, mask, mask_box(mask).reshape(-1) if mask.any() else None)
        elif kind == "rectangle":
            rect_only.setdefault(label, []).append(_box(shape["points"], where))
        else:
            raise DataError(f"{where}: unsupported shape_type {kind!r} (polygon or rectangle)")
    for label, boxes in rect_only.items():
        if label in frame:
            # explicit boxes replace the ones derived from polygons
            frame[label][1] = list(boxes)
            continue
        mask = np.zeros((h, w), dtype=np.uint8)
        for x1, y1, x2, y2 in boxes:
            cv2.rectangle(mask, (int(x1), int(y1)), (int(x2), int(y2)), 1, thickness=-1)
        frame[label] = [mask.astype(bool), list(boxes)]
    return frame


def read_lerf_ovs_file(path: Union[str, Path]) -> FrameAnnotations:
    """Annotations of one LERF-OVS (or LabelMe) json file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read annotation json ({exc})") from exc
    if not isinstance(data, dict):
        raise DataError(f"{path}: annotation json must be an object")
    if "objects" in data:
        frame = _parse_lerf_objects(data, path)
    elif "shapes" in data:
        frame = _parse_labelme(data, path)
    else:
        raise DataError(f"{path}: neither a LERF-OVS ('objects') nor a LabelMe ('shapes') annotation")
    return {
        label: Annotation(mask=m, boxes=np.stack(b).astype(np.float64) if b else np.zeros((0, 4)))
        for label, (m, b) in frame.items()
    }


def read_lerf_ovs(directory: Union[str, Path]) -> dict[str, FrameAnnotations]:
    """All ``*.json`` annotations of one LERF-OVS scene folder, keyed by file stem, sorted."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: LERF-OVS label folder not found")
    files = sorted(directory.glob("*.json"))
    if not files:
        raise DataError(f"{directory}: no *.json annotation files")
    return {f.stem: read_lerf_ovs_file(f) for f in files}


def _read_mask_png(path: Path) -> np.ndarray:
    """Binary mask of a PNG: 8-bit masks are True at >= 128, 0/1-valued images at 1."""
    try:
        with Image.open(path) as im:
            a = np.asarray(im.convert("L") if im.mode not in ("L", "1", "I;16", "I") else im)
    except OSError as exc:
        raise DataError(f"{path}: cannot read mask image ({exc})") from exc
    if a.dtype == bool:
        return a
    # 0/255 masks are the norm; some tools write 0/1, which a mid-grey threshold would lose.
    return a > 0 if a.max() <= 1 else a >= (128 if a.dtype == np.uint8 else a.max() / 2)


def read_3dovs(directory: Union[str, Path]) -> dict[str, FrameAnnotations]:
    """3D-OVS masks of one scene: ``directory`` is the scene or its ``segmentations`` folder.

    Returns ``{view folder name: {class: Annotation}}`` (boxes = tight mask bounds).
    """
    directory = Path(directory)
    seg = directory / "segmentations" if (directory / "segmentations").is_dir() else directory
    class_file = next((seg / n for n in ("classes.txt", "class.txt") if (seg / n).is_file()), None)
    if class_file is None:
        raise DataError(f"{seg}: no classes.txt (3D-OVS segmentation folder expected)")
    classes = [line.strip() for line in class_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not classes:
        raise DataError(f"{class_file}: lists no classes")
    views = sorted((p for p in seg.iterdir() if p.is_dir()), key=lambda p: (len(p.name), p.name))
    if not views:
        raise DataError(f"{seg}: no per-view mask folders")
    out: dict[str, FrameAnnotations] = {}
    for view in views:
        frame: FrameAnnotations = {}
        shape = None
        for cls in classes:
            png = view / f"{cls}.png"
            if not png.is_file():
                continue
            mask = _read_mask_png(png)
            if mask.ndim != 2:
                raise DataError(f"{png}: mask must be a single-channel image")
            if shape is not None and mask.shape != shape:
                raise DataError(f"{png}: mask size {mask.shape[::-1]} differs from the view's {shape[::-1]}")
            shape = mask.shape
            frame[cls] = Annotation(mask=mask, boxes=mask_box(mask))
        if not frame and any(view.glob("*.png")):
            raise DataError(f"{view}: none of its masks is named after a class in {class_file.name}")
        out[view.name] = frame
    return out
