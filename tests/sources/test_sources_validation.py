"""Validation with numbers: implausible intrinsics, distortion, depth scale, image sizes and splits are refused
with a one-line DataError that names the value and the file/frame; plausible extremes are accepted."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from langfield.sources import load_capture, load_dataset, load_split_views
from langfield.sources.validate import (FOCAL_RANGE, MAX_IMAGE_PIXELS, MIN_VIEW_SIDE, RADIAL_BOUND, TANGENTIAL_BOUND,
                                        check_intrinsics, image_size)
from langfield.types import DataError, Intrinsics


def _edit(path: Path, **top) -> Path:
    meta = json.loads(path.read_text())
    meta.update(top)
    path.write_text(json.dumps(meta))
    return path


def _message(path: Path) -> str:
    with pytest.raises(DataError) as info:
        load_capture(path)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


# The ns_scene fixture: 8x6 images, fl_x 10, fl_y 11, cx 4, cy 3.
@pytest.mark.parametrize(
    "top, needles",
    [
        ({"fl_x": 1e-300}, ["fx", "1e-300"]),
        ({"fl_x": 1e300}, ["fx", "1e+300"]),
        ({"fl_y": 1.5, "fl_x": 150.0}, ["fy", "1.5"]),
        ({"fl_x": 10.0, "fl_y": 45.0}, ["4.5-fold"]),
        ({"k1": 1e6}, ["k1", "1e+06"]),
        ({"k2": -11.0}, ["k2", "-11"]),
        ({"p1": 2.0}, ["p1", "2"]),
        ({"k4": 0.1}, ["k4", "0.1"]),
        ({"cx": 1e5}, ["cx", "100000"]),
        ({"cy": -4.0}, ["cy", "-4"]),
        ({"depth_unit_scale_factor": 0}, ["depth_unit_scale_factor", "0"]),
        ({"depth_unit_scale_factor": -0.001}, ["depth_unit_scale_factor", "-0.001"]),
        ({"fl_x": 10**400}, ["fl_x", "finite number"]),
        ({"w": 0}, ["w = 0"]),
        ({"w": 2.5}, ["w = 2.5"]),
        ({"fl_x": None, "fl_y": None, "camera_angle_x": 0.0}, ["camera_angle_x", "0"]),
        ({"fl_x": None, "fl_y": None, "camera_angle_x": 3.5}, ["camera_angle_x", "3.5"]),
    ],
)
def test_implausible_numbers_are_refused_naming_value_and_frame(ns_scene, top, needles):
    path, _ = ns_scene(n=3)
    meta = json.loads(path.read_text())
    for k, v in top.items():
        if v is None:
            meta.pop(k, None)
        else:
            meta[k] = v
    path.write_text(json.dumps(meta))
    msg = _message(path)
    for needle in needles:
        assert needle in msg, msg
    assert "frame_000" in msg or "transforms.json" in msg  # the frame (image) or the file that holds the value


def test_plausible_extremes_are_accepted(ns_scene):
    lo, hi = FOCAL_RANGE
    path, _ = ns_scene(n=3, extra={"fl_x": lo * 8 * 1.01, "fl_y": lo * 8 * 1.01, "k1": -RADIAL_BOUND * 0.99,
                                   "k2": RADIAL_BOUND * 0.99, "p1": TANGENTIAL_BOUND * 0.99, "cx": -3.9,
                                   "depth_unit_scale_factor": 1e-6, "camera_model": "OPENCV"})
    k = load_capture(path).frames[0].intrinsics
    assert k.distortion[:3] == (-RADIAL_BOUND * 0.99, RADIAL_BOUND * 0.99, TANGENTIAL_BOUND * 0.99)
    path = _edit(path, fl_x=hi * 8 * 0.99, fl_y=hi * 8 * 0.99, k1=0.0, k2=0.0, p1=0.0, cx=11.9)
    assert load_capture(path).frames[0].intrinsics.fx == pytest.approx(hi * 8 * 0.99)


def test_check_intrinsics_bounds_are_relative_to_the_larger_side():
    wide = Intrinsics(fx=1000.0, fy=1000.0, cx=500.0, cy=10.0, width=1000, height=20)  # a 50:1 strip
    check_intrinsics(wide, "strip")  # focal is 1x the width: fine although 50x the height
    with pytest.raises(DataError, match=r"fx = 49 px"):
        check_intrinsics(Intrinsics(fx=49.0, fy=49.0, cx=500.0, cy=10.0, width=1000, height=20), "strip")
    with pytest.raises(DataError, match="not a finite"):
        check_intrinsics(Intrinsics(fx=float("nan"), fy=10.0, cx=4.0, cy=3.0, width=8, height=6), "x")


@pytest.mark.parametrize(
    "edit, needle",
    [
        (lambda m: m["test_filenames"].__setitem__(0, None), "test_filenames[0]"),
        (lambda m: m.__setitem__("train_filenames", -1), "train_filenames must be a list"),
        (lambda m: m.__setitem__("test_filenames", True), "test_filenames must be a list"),
        (lambda m: m.__setitem__("val_filenames", {"a": 1}), "val_filenames must be a list"),
    ],
)
def test_malformed_split_lists_are_data_errors(ns_scene, edit, needle):
    """The three crashes the issue's fuzzing found (AttributeError / TypeError before)."""
    path, _ = ns_scene(n=4, extra={"train_filenames": ["images/frame_001.png"],
                                   "test_filenames": ["images/frame_000.png"]})
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))
    assert needle in _message(path)


@pytest.mark.parametrize("key", ["file_path", "depth_file_path", "ply_file_path"])
def test_overlong_paths_are_data_errors(ns_scene, key):
    """ENAMETOOLONG escapes pathlib's exists()/is_file() (found by scripts/fuzz_loaders.py)."""
    path, _ = ns_scene(n=3)
    meta = json.loads(path.read_text())
    (meta if key == "ply_file_path" else meta["frames"][0])[key] = "x" * 5000
    path.write_text(json.dumps(meta))
    assert "not a usable path" in _message(path)


def test_garbage_point_cloud_is_one_line_data_error(ns_scene):
    path, _ = ns_scene(n=3, extra={"ply_file_path": "points3d.ply"})
    (path.parent / "points3d.ply").write_bytes(b"\x00garbage\xff" * 20)
    msg = _message(path)
    assert "points3d.ply" in msg and "PLY" in msg
    (path.parent / "points3d.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n"
                                               b"property float y\nproperty list uchar float z\nend_header\n1 2 1 3\n")
    assert "'z' is not a scalar" in _message(path)


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose IHDR claims ``width`` x ``height`` (no pixel data): PIL reads only the header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("side", [15000, 10000])  # PIL's error (> 2x its limit) and its warning (1x..2x)
def test_decompression_bomb_images_are_refused(tmp_path, side):
    with pytest.raises(DataError, match="pixel limit"):
        image_size(_png_header_only(tmp_path / "big.png", side, side))


def test_image_cap_holds_without_pil_guard(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # a user who switched PIL's guard off
    side = int(MAX_IMAGE_PIXELS**0.5) + 1
    with pytest.raises(DataError, match=f"{side}x{side}"):
        image_size(_png_header_only(tmp_path / "big.png", side, side))
    assert image_size(_png_header_only(tmp_path / "ok.png", 4000, 3000)) == (4000, 3000)


def _posed_dataset(root: Path, w: int, h: int, n: int = 3) -> Path:
    (root / "images").mkdir(parents=True)
    frames = []
    for i in range(n):
        Image.fromarray(np.full((h, w, 3), 30 * i, np.uint8)).save(root / f"images/{i}.png")
        c2w = np.eye(4)
        c2w[0, 3] = 0.1 * i
        frames.append({"file_path": f"images/{i}.png", "transform_matrix": c2w.tolist()})
    f = 1.0 * max(w, h)
    (root / "transforms.json").write_text(json.dumps({"fl_x": f, "fl_y": f, "w": w, "h": h, "frames": frames}))
    return root


@pytest.mark.parametrize("size, downscale, shown", [((1, 1), 1, "1x1"), ((64, 48), 4, "16x12 after --downscale 4"),
                                                    ((160, 120), 16, "10x8 after --downscale 16")])
def test_views_below_the_minimum_size_are_refused_before_loading(tmp_path, size, downscale, shown):
    cap = load_dataset(_posed_dataset(tmp_path / "d", *size), eval_every=0)
    with pytest.raises(DataError) as info:
        load_split_views(cap, downscale=downscale)
    msg = str(info.value)
    assert shown in msg and f"{MIN_VIEW_SIDE}x{MIN_VIEW_SIDE}" in msg


def test_minimum_view_size_covers_the_ssim_window(tmp_path):
    from langfield.render.image_metrics import SSIM_WINDOW

    assert MIN_VIEW_SIDE > SSIM_WINDOW
    cap = load_dataset(_posed_dataset(tmp_path / "d", 64, 48), eval_every=0)
    train, _ = load_split_views(cap, downscale=3)  # 21x16: the smallest height that is allowed
    assert (train[0].width, train[0].height) == (21, 16)
