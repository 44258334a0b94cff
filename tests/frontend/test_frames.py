"""Frame preparation for SfM: video frame selection (blur rejection, counts, size, rotation), photo folders, bad input, resume."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from langfield.frontend import frames as frames_mod
from langfield.frontend.frames import (
    FrameConfig, FrameSet, blurred_windows, frame_times, is_video, prepare_frames, window_of, windows_by_time,
)
from langfield.synthetic.video import write_video
from langfield.types import ConfigError, DataError

W, H = 96, 64


def _texture(seed: int, h: int, w: int) -> np.ndarray:
    """Random 4x4-pixel blocks: strong edges that survive mp4v compression."""
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3), dtype=np.uint8)
    return np.kron(cells, np.ones((4, 4, 1), np.uint8))[:h, :w]


def _frames(n: int, blurred: set[int], w: int = W, h: int = H) -> list[np.ndarray]:
    """A camera panning over a texture by 2 px per frame; the frames in ``blurred`` Gaussian-blurred (sigma 2.5)."""
    tex = _texture(0, h, w + 2 * n)
    out = []
    for i in range(n):
        f = np.ascontiguousarray(tex[:, 2 * i : 2 * i + w])
        out.append(cv2.GaussianBlur(f, (0, 0), 2.5) if i in blurred else f)
    return out


def _sharpest_per_window(n: int, k: int, seed: int) -> tuple[list[int], set[int]]:
    """One sharp frame at a random place in each of ``k`` windows of ``n`` frames; all the others blurred."""
    rng = np.random.default_rng(seed)
    sharp = []
    for w in range(k):
        members = [i for i in range(n) if window_of(i, n, k) == w]
        sharp.append(int(rng.choice(members)))
    return sharp, set(range(n)) - set(sharp)


def test_window_and_threshold_rules():
    # Equal windows (+-1 frame), in order, covering every frame.
    n, k = 50, 7
    ws = [window_of(i, n, k) for i in range(n)]
    assert ws == sorted(ws) and set(ws) == set(range(k))
    sizes = np.bincount(ws)
    assert sizes.max() - sizes.min() <= 1
    assert blurred_windows([10.0, 9.0, 1.0, 11.0], 0.25) == [2]
    assert blurred_windows([10.0, 9.0, 1.0, 11.0], 0.0) == []
    with pytest.raises(ConfigError):
        FrameConfig(blur_ratio=1.5)
    with pytest.raises(ConfigError):
        FrameConfig(num_frames=0)


def test_time_windows_match_index_windows_at_a_constant_rate_and_follow_time_otherwise():
    n, k = 50, 7
    assert windows_by_time([i / 30 for i in range(n)], k) == [window_of(i, n, k) for i in range(n)]
    # 30 frames in the first second, 5 in the next: two windows per second, not three in the first.
    vfr = [i / 30 for i in range(30)] + [1.0 + i / 5 for i in range(5)]
    ws = windows_by_time(vfr, 4)
    assert ws[:15] == [0] * 15 and ws[15:30] == [1] * 15 and ws[30:] == [2, 2, 2, 3, 3] and ws != [
        window_of(i, 35, 4) for i in range(35)]
    # Missing or non-increasing timestamps: frames spaced by index at the frame rate, and said so.
    assert frame_times([0.0, None, 0.2], 10.0) == ([0.0, 0.1, 0.2], False)
    assert frame_times([0.0, 0.3, 0.2], 10.0) == ([0.0, 0.1, 0.2], False)
    assert frame_times([0.5, 0.6, 0.9], 10.0) == ([0.5, 0.6, 0.9], True)


def test_variable_frame_rate_video_is_sampled_evenly_in_time(tmp_path, monkeypatch):
    # The container says 35 frames at 30 fps; the (patched) timestamps say 30 fps for 1 s, then 5 fps.
    video = write_video(tmp_path / "vfr.mp4", _frames(35, set()), fps=30)
    vfr = [i / 30 for i in range(30)] + [1.0 + i / 5 for i in range(5)]
    real = frames_mod.decode_video
    calls = []

    def variable_rate(*args, **kwargs):
        calls.append(1)
        for i, (frame, _) in enumerate(real(*args, **kwargs)):
            yield frame, vfr[i]

    monkeypatch.setattr(frames_mod, "decode_video", variable_rate)
    fs = prepare_frames(video, tmp_path / "w", FrameConfig(num_frames=4, min_frames=2, blur_ratio=0.0), progress=False)
    kept_times = [vfr[i] for i in fs.source_index]
    # One frame in each half second, although 30 of the 35 frames lie in the first second.
    assert [int(t // 0.5) for t in kept_times] == [0, 1, 2, 3]
    assert len(calls) == 2  # the container's duration (35/30 s) was wrong: a second pass with the true times
    assert json.loads((tmp_path / "w" / "frames.json").read_text())["windows_by"] == "timestamp"


def test_blur_rejection_keeps_the_sharp_frame_of_each_window(tmp_path):
    n, k = 30, 6
    sharp, blurred = _sharpest_per_window(n, k, seed=1)
    # Window 3 has no sharp frame at all: it must be rejected, not represented by a blurred frame.
    all_blurred = 3
    blurred.add(sharp[all_blurred])
    video = write_video(tmp_path / "pan.mp4", _frames(n, blurred), fps=24)
    fs = prepare_frames(video, tmp_path / "work", FrameConfig(num_frames=k, min_frames=3), progress=False)
    assert fs.kind == "video" and fs.fps == pytest.approx(24.0)
    assert fs.source_index == [s for w, s in enumerate(sharp) if w != all_blurred]
    assert fs.source_names == [f"frame_{i:06d}" for i in fs.source_index]
    # Counts add up: every decoded frame read, one frame per window either kept or rejected.
    assert (fs.read, fs.rejected_blur, fs.kept) == (n, 1, k - 1)
    assert fs.kept == len(fs.paths) == len(fs.source_index)
    assert [p.name for p in fs.paths] == [f"{s}.png" for s in fs.source_names]
    assert all(p.parent == tmp_path / "work" / "frames" for p in fs.paths)
    assert sorted(p.name for p in (tmp_path / "work" / "frames").iterdir()) == [p.name for p in fs.paths]
    # The kept image is the decoded frame itself (same content as the source frame, up to compression).
    src = _frames(n, blurred)[fs.source_index[0]]
    kept = cv2.cvtColor(cv2.imread(str(fs.paths[0])), cv2.COLOR_BGR2RGB)
    assert np.abs(kept.astype(float) - src).mean() < 12


def test_without_blur_every_window_is_kept_and_short_videos_keep_every_frame(tmp_path):
    video = write_video(tmp_path / "v.mp4", _frames(10, set()))
    fs = prepare_frames(video, tmp_path / "w1", FrameConfig(num_frames=4, min_frames=2), progress=False)
    assert (fs.read, fs.rejected_blur, fs.kept) == (10, 0, 4)
    assert [window_of(i, 10, 4) for i in fs.source_index] == [0, 1, 2, 3]
    fs = prepare_frames(video, tmp_path / "w2", FrameConfig(num_frames=50, min_frames=2), progress=False)
    assert fs.source_index == list(range(10))


def test_max_side_downscales_and_never_upscales(tmp_path):
    video = write_video(tmp_path / "v.mp4", _frames(8, set(), w=160, h=120))
    fs = prepare_frames(video, tmp_path / "small", FrameConfig(num_frames=8, min_frames=2, max_side=80), progress=False)
    assert fs.size == (80, 60) and fs.scale == pytest.approx(0.5)
    assert all(Image.open(p).size == (80, 60) for p in fs.paths)
    fs = prepare_frames(video, tmp_path / "big", FrameConfig(num_frames=8, min_frames=2, max_side=4000), progress=False)
    assert fs.size == (160, 120) and fs.scale == 1.0
    assert Image.open(fs.paths[0]).size == (160, 120)


def _marked_portrait(n: int) -> list[np.ndarray]:
    """Upright portrait frames (48 wide, 80 high) with a red block in the top-left corner."""
    out = []
    for f in _frames(n, set(), w=48, h=80):
        f = f // 3
        f[:20, :16] = (255, 0, 0)
        out.append(f)
    return out


@pytest.mark.parametrize("rotate", [90, 180, 270])
def test_rotation_metadata_gives_upright_frames_once(tmp_path, rotate):
    upright = _marked_portrait(8)
    video = write_video(tmp_path / "phone.mp4", upright, rotate=rotate)
    cap = cv2.VideoCapture(str(video))
    assert cap.get(cv2.CAP_PROP_ORIENTATION_META) == rotate  # the metadata is really there
    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)
    ok, stored = cap.read()
    cap.release()
    assert ok and (stored.shape[0] < stored.shape[1]) == (rotate != 180)  # stored sideways, except 180
    fs = prepare_frames(video, tmp_path / "work", FrameConfig(num_frames=8, min_frames=2), progress=False)
    assert fs.size == (48, 80)
    img = cv2.cvtColor(cv2.imread(str(fs.paths[0])), cv2.COLOR_BGR2RGB).astype(float)
    assert img.shape == (80, 48, 3)
    red = (img[..., 0] > 180) & (img[..., 1] < 90) & (img[..., 2] < 90)
    ys, xs = np.nonzero(red)
    assert red.sum() > 0.6 * 20 * 16 and xs.mean() < 12 and ys.mean() < 14  # top-left, as the upright frame


def _save_oriented_jpeg(path: Path, upright: Image.Image, orientation: int) -> None:
    """Store ``upright`` as a camera would with EXIF ``orientation`` (6: stored turned 90 degrees counter-clockwise)."""
    stored = {1: upright, 6: upright.transpose(Image.Transpose.ROTATE_90), 3: upright.transpose(Image.Transpose.ROTATE_180)}
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "langfield-test"  # Make: must survive re-encoding
    stored[orientation].save(path, format="JPEG", quality=95, exif=exif.tobytes())


def test_photo_folder_applies_exif_orientation(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    upright = [Image.fromarray(f) for f in _marked_portrait(3)]
    for i, (img, orient) in enumerate(zip(upright, (6, 1, 3))):
        _save_oriented_jpeg(folder / f"IMG_{i}.jpg", img, orient)
    (folder / "notes.txt").write_text("not a photo")
    fs = prepare_frames(folder, tmp_path / "work", FrameConfig(), progress=False)
    assert fs.kind == "photos" and fs.size == (48, 80) and fs.scale == 1.0 and fs.fps is None
    assert fs.source_names == ["IMG_0.jpg", "IMG_1.jpg", "IMG_2.jpg"] and fs.source_index == [0, 1, 2]
    assert (fs.read, fs.rejected_blur, fs.kept) == (3, 0, 3)
    for p, src in zip(fs.paths, upright):
        with Image.open(p) as im:
            assert im.size == (48, 80) and im.getexif().get(0x0112, 1) == 1
            assert im.getexif().get(0x010F) == "langfield-test"
            diff = np.abs(np.asarray(im.convert("RGB"), float) - np.asarray(src, float)).mean()
            assert diff < 10, p.name
    # A photo that needs nothing is copied byte for byte.
    assert fs.paths[1].read_bytes() == (folder / "IMG_1.jpg").read_bytes()


def test_photos_are_downscaled_to_max_side(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, f in enumerate(_frames(3, set(), w=160, h=120)):
        Image.fromarray(f).save(folder / f"p{i}.png")
    fs = prepare_frames(folder, tmp_path / "work", FrameConfig(max_side=100), progress=False)
    assert fs.size == (100, 75) and fs.scale == pytest.approx(100 / 160)
    assert [Image.open(p).size for p in fs.paths] == [(100, 75)] * 3
    assert [p.suffix for p in fs.paths] == [".png"] * 3


def test_bad_photo_folders(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no photos found"):
        prepare_frames(empty, tmp_path / "w", FrameConfig(), progress=False)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for i, (w, h) in enumerate([(40, 30), (40, 30), (30, 40), (40, 30)]):
        Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(mixed / f"m{i}.png")
    with pytest.raises(DataError) as err:
        prepare_frames(mixed, tmp_path / "w", FrameConfig(), progress=False)
    msg = str(err.value)
    assert "m0.png is 40x30" in msg and "m2.png is 30x40" in msg and "\n" not in msg
    assert not (tmp_path / "w" / "frames.json").exists()


def test_bad_video_inputs(tmp_path):
    cfg = FrameConfig(num_frames=20, min_frames=8)
    with pytest.raises(DataError, match="not found"):
        prepare_frames(tmp_path / "missing.mp4", tmp_path / "w", cfg, progress=False)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.mp4: file is empty \(0 bytes\)"):
        prepare_frames(empty, tmp_path / "w", cfg, progress=False)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(DataError, match=r"junk\.mp4: not a video OpenCV can decode \(5000 bytes\)"):
        prepare_frames(junk, tmp_path / "w", cfg, progress=False)
    short = write_video(tmp_path / "short.mp4", _frames(5, set()))
    with pytest.raises(DataError, match=r"short\.mp4: only 5 decodable frames, need at least 8"):
        prepare_frames(short, tmp_path / "w", cfg, progress=False)
    # A third of the windows blurred (the typical sharpness is the median window's): 8 sharp ones left.
    blurry = write_video(tmp_path / "blurry.mp4", _frames(12, {1, 4, 7, 10}))
    with pytest.raises(DataError, match=r"only 8 of 12 frame windows have a sharp frame \(4 rejected as blurred\)"):
        prepare_frames(blurry, tmp_path / "w", FrameConfig(num_frames=12, min_frames=10), progress=False)
    image = tmp_path / "one.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    with pytest.raises(DataError, match="single image"):
        prepare_frames(image, tmp_path / "w", cfg, progress=False)
    # Nothing was ever marked finished.
    assert not (tmp_path / "w" / "frames.json").exists() and not (tmp_path / "w" / "frames.partial").exists()
    assert is_video(short) and not is_video(image) and not is_video(tmp_path / "missing.mp4")


def test_resume_returns_the_stored_result_without_decoding(tmp_path, monkeypatch):
    video = write_video(tmp_path / "v.mp4", _frames(12, {1, 4}))
    cfg = FrameConfig(num_frames=4, min_frames=2)
    work = tmp_path / "work"
    calls = []
    real = frames_mod.decode_video

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(frames_mod, "decode_video", counting)
    first = prepare_frames(video, work, cfg, progress=False)
    assert len(calls) == 1
    mtimes = [p.stat().st_mtime_ns for p in first.paths]
    again = prepare_frames(video, work, cfg, progress=False)
    assert len(calls) == 1 and isinstance(again, FrameSet) and again == first
    assert [p.stat().st_mtime_ns for p in again.paths] == mtimes
    # Another config, or a changed input, redoes the work.
    other = prepare_frames(video, work, FrameConfig(num_frames=3, min_frames=2), progress=False)
    assert len(calls) == 2 and other.kept == 3
    assert sorted(p.name for p in (work / "frames").iterdir()) == [p.name for p in other.paths]
    st = video.stat()
    os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    prepare_frames(video, work, FrameConfig(num_frames=3, min_frames=2), progress=False)
    assert len(calls) == 3
    # A missing frame file means the stored result is not usable: redone.
    other.paths[0].unlink()
    redone = prepare_frames(video, work, FrameConfig(num_frames=3, min_frames=2), progress=False)
    assert len(calls) == 4 and redone.paths[0].is_file()
    assert json.loads((work / "frames.json").read_text())["source_index"] == redone.source_index


def test_interrupted_run_is_not_taken_as_finished(tmp_path, monkeypatch):
    video = write_video(tmp_path / "v.mp4", _frames(12, set()))
    cfg = FrameConfig(num_frames=6, min_frames=2)
    work = tmp_path / "work"
    prepare_frames(video, work, FrameConfig(num_frames=4, min_frames=2), progress=False)
    real = frames_mod.decode_video

    def dies(*args, **kwargs):
        for i, f in enumerate(real(*args, **kwargs)):
            if i == 7:
                raise KeyboardInterrupt
            yield f

    monkeypatch.setattr(frames_mod, "decode_video", dies)
    with pytest.raises(KeyboardInterrupt):
        prepare_frames(video, work, cfg, progress=False)
    assert not (work / "frames.json").exists() and not (work / "frames.partial").exists()
    monkeypatch.setattr(frames_mod, "decode_video", real)
    fs = prepare_frames(video, work, cfg, progress=False)
    assert fs.kept == 6 and (work / "frames.json").is_file()


def test_lossless_rotated_video_gives_back_the_exact_upright_frames(tmp_path):
    upright = _marked_portrait(6)
    video = write_video(tmp_path / "phone.mov", upright, rotate=270, codec="png")
    fs = prepare_frames(video, tmp_path / "work", FrameConfig(num_frames=3, min_frames=2), progress=False)
    assert fs.size == (48, 80) and len(fs.paths) == 3
    for p, i in zip(fs.paths, fs.source_index):
        np.testing.assert_array_equal(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB), upright[i])


@pytest.mark.parametrize("claimed", [0, 5, 30])
def test_a_wrong_or_missing_frame_count_still_gives_equal_windows(tmp_path, monkeypatch, claimed):
    n, k = 12, 4
    sharp, blurred = _sharpest_per_window(n, k, seed=5)
    video = write_video(tmp_path / "v.mp4", _frames(n, blurred))
    real = frames_mod._video_info

    def misreported(path):
        info = real(path)
        info.frame_count = claimed  # 0: the container does not say (counted first); else a wrong count
        return info

    monkeypatch.setattr(frames_mod, "_video_info", misreported)
    fs = prepare_frames(video, tmp_path / "work", FrameConfig(num_frames=k, min_frames=2), progress=False)
    assert fs.source_index == sharp and fs.read == n
