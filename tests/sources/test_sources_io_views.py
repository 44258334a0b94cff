"""Pixel loading (colour, alpha, depth, ids, downscale, undistortion) and View building."""

from pathlib import Path

import numpy as np
import pytest
import torch

from langfield.sources import load_alpha, load_capture, load_depth, load_rgb, load_semantics, load_views
from langfield.types import DataError, Frame, Intrinsics

W, H = 8, 6


def _frame(path: Path, w=W, h=H, **kw) -> Frame:
    k = kw.pop("intrinsics", Intrinsics(fx=10.0, fy=10.0, cx=w / 2, cy=h / 2, width=w, height=h))
    return Frame(name=path.name, image_path=path, intrinsics=k, c2w=np.eye(4), **kw)


def test_rgb_channel_order_alpha_and_area_downscale(tmp_path, write_image):
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (H, W, 4), dtype=np.uint8)
    rgba[0, 0] = [255, 0, 0, 17]
    frame = _frame(write_image(tmp_path / "a.png", rgba))
    rgb = load_rgb(frame)
    assert rgb.shape == (H, W, 3) and rgb.dtype == np.float32
    np.testing.assert_allclose(rgb[0, 0], [1, 0, 0])  # red stays red (no BGR mix-up), alpha dropped
    np.testing.assert_allclose(rgb, rgba[:, :, :3] / 255.0, atol=1e-6)
    np.testing.assert_allclose(load_alpha(frame), rgba[:, :, 3] / 255.0, atol=1e-6)
    # Downscale 2: each output pixel is the mean of its 2x2 block.
    half = load_rgb(frame, downscale=2)
    blocks = (rgba[:, :, :3] / 255.0).reshape(H // 2, 2, W // 2, 2, 3).mean(axis=(1, 3))
    assert half.shape == (3, 4, 3)
    np.testing.assert_allclose(half, blocks, atol=1e-5)
    # An RGB image has no alpha.
    assert load_alpha(_frame(write_image(tmp_path / "b.png", rgba[:, :, :3]))) is None


def test_grey_and_16bit_images(tmp_path, write_image):
    grey = np.arange(W * H, dtype=np.uint8).reshape(H, W) * 5
    out = load_rgb(_frame(write_image(tmp_path / "g.png", grey)))
    np.testing.assert_allclose(out, np.repeat(grey[:, :, None] / 255.0, 3, axis=2), atol=1e-6)
    deep = np.full((H, W, 3), 1000, np.uint16)
    deep[..., 2] = 65535
    out = load_rgb(_frame(write_image(tmp_path / "d.png", deep)))
    np.testing.assert_allclose(out[0, 0], [1000 / 65535, 1000 / 65535, 1.0], rtol=1e-6)


def test_downscale_matches_scaled_intrinsics_for_odd_sizes(tmp_path, write_image):
    frame = _frame(write_image(tmp_path / "o.png", np.zeros((7, 9, 3), np.uint8)), w=9, h=7)
    for ds in (2, 3, 4):
        k = frame.intrinsics.scaled(ds)
        assert load_rgb(frame, ds).shape == (k.height, k.width, 3)


def test_depth_and_semantics_nearest(tmp_path, write_image):
    raw = (np.arange(W * H, dtype=np.uint16).reshape(H, W) + 1) * 10
    ids = np.repeat(np.array([0, 3, 3, 9, 9, 9, 12, 12], np.uint16)[None], H, axis=0)
    frame = _frame(write_image(tmp_path / "rgb.png", np.zeros((H, W, 3), np.uint8)),
                   depth_path=write_image(tmp_path / "d.png", raw), depth_scale=0.01,
                   semantics_path=write_image(tmp_path / "s.png", ids))
    np.testing.assert_allclose(load_depth(frame), raw * 0.01, rtol=1e-6)
    d2 = load_depth(frame, 2)
    assert d2.shape == (3, 4) and np.isin(np.round(d2 / 0.01), raw).all()  # no averaged depths
    s2 = load_semantics(frame, 2)
    assert s2.dtype == np.int64 and s2.shape == (3, 4) and set(np.unique(s2)) <= {0, 3, 9, 12}
    # .npy depth is metres as stored; non-finite and negative become unknown (0).
    arr = np.full((H, W), 2.5, np.float32)
    arr[0, 0], arr[0, 1] = np.nan, -1.0
    np.save(tmp_path / "d.npy", arr)
    frame.depth_path = tmp_path / "d.npy"
    d = load_depth(frame)
    assert d[0, 0] == 0 and d[0, 1] == 0 and d[1, 1] == 2.5
    assert load_depth(_frame(tmp_path / "rgb.png")) is None and load_semantics(_frame(tmp_path / "rgb.png")) is None


def _centroid(img: np.ndarray) -> tuple[float, float]:
    w = img.astype(np.float64)
    ys, xs = np.mgrid[: w.shape[0], : w.shape[1]]
    return float((w * (xs + 0.5)).sum() / w.sum()), float((w * (ys + 0.5)).sum() / w.sum())


def test_undistortion_moves_a_point_to_its_pinhole_projection(tmp_path, write_image):
    k1, p1 = 0.5, 0.01
    w, h, f, cx, cy = 64, 48, 40.0, 32.0, 24.0
    xn, yn = 0.5, 0.35
    r2 = xn**2 + yn**2
    xd = xn * (1 + k1 * r2) + 2 * p1 * xn * yn
    yd = yn * (1 + k1 * r2) + p1 * (r2 + 2 * yn**2)
    ud, vd = f * xd + cx, f * yd + cy  # where the lens puts the point (pixel centres at +0.5)
    ys, xs = np.mgrid[:h, :w] + 0.5
    blob = np.exp(-((xs - ud) ** 2 + (ys - vd) ** 2) / (2 * 1.2**2))
    img = np.repeat((blob * 65535).astype(np.uint16)[:, :, None], 3, axis=2)
    k = Intrinsics(fx=f, fy=f, cx=cx, cy=cy, width=w, height=h, model="OPENCV", distortion=(k1, 0.0, p1, 0.0))
    frame = _frame(write_image(tmp_path / "dist.png", img), w=w, h=h, intrinsics=k)
    raw = load_rgb(frame, undistort_pixels=False)[:, :, 0]
    fixed = load_rgb(frame)[:, :, 0]
    assert np.allclose(_centroid(raw), (ud, vd), atol=0.05)
    assert np.allclose(_centroid(fixed), (f * xn + cx, f * yn + cy), atol=0.1)
    # Downscaled loads undistort with the scaled K: the point lands at half the coordinates.
    assert np.allclose(_centroid(load_rgb(frame, 2)[:, :, 0]), ((f * xn + cx) / 2, (f * yn + cy) / 2), atol=0.15)


def test_load_views(ns_scene, write_image):
    path, poses = ns_scene(n=3, frame_extra=lambda i: {"depth_file_path": f"depth/{i}.png"})
    for i in range(3):
        write_image(path.parent / f"depth/{i}.png", np.full((H, W), 1500, np.uint16))
    cap = load_capture(path)
    views = load_views(cap, [2, 0], downscale=2)
    assert [v.name for v in views] == [cap.frames[2].name, cap.frames[0].name]
    v = views[0]
    assert v.viewmat.dtype == torch.float32 and v.K.dtype == torch.float32
    torch.testing.assert_close(v.viewmat.double() @ torch.from_numpy(poses[2]), torch.eye(4, dtype=torch.float64),
                               atol=1e-5, rtol=0)
    k = cap.frames[2].intrinsics.scaled(2)
    torch.testing.assert_close(v.K, k.K())
    assert (v.width, v.height) == (4, 3) and v.rgb.shape == (3, 4, 3)
    assert v.depth.shape == (3, 4, 1) and torch.allclose(v.depth, torch.tensor(1.5)) and v.semantics is None
    with pytest.raises(DataError, match="out of range"):
        load_views(cap, [3])


def test_pixel_errors_name_the_file(tmp_path, write_image):
    frame = _frame(write_image(tmp_path / "ok.png", np.zeros((H, W, 3), np.uint8)))
    (tmp_path / "ok.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="ok.png: corrupt or unreadable image"):
        load_rgb(frame)
    with pytest.raises(DataError, match="gone.png: image file not found"):
        load_rgb(_frame(tmp_path / "gone.png"))
    frame = _frame(write_image(tmp_path / "big.png", np.zeros((H, W * 2, 3), np.uint8)))
    with pytest.raises(DataError, match="big.png: image is 16x6 but its intrinsics say 8x6"):
        load_rgb(frame)
    frame = _frame(write_image(tmp_path / "c.png", np.zeros((H, W, 3), np.uint8)),
                   semantics_path=write_image(tmp_path / "s.png", np.zeros((H, W, 3), np.uint8)))
    with pytest.raises(DataError, match="s.png: semantics must be single-channel"):
        load_semantics(frame)
