"""Frames for structure from motion: a video's sharpest frames, or a photo folder's oriented images.

``prepare_frames(input, work_dir, cfg)`` turns a video file or a folder of photos into a
folder of equally sized, upright images under ``work_dir/frames/`` plus a manifest
(``work_dir/frames.json``) and returns them as a ``FrameSet``.

Video frame selection: the decoded frames are split into ``num_frames`` windows of equal
duration (by the frames' presentation timestamps, so a variable-frame-rate phone video is
sampled evenly in time, not densely where it recorded more frames per second; a container
without usable timestamps is spaced by frame index, which the manifest records) and each
window keeps its sharpest frame by the variance of the Laplacian of the grey image (computed at the output
size, so every frame is scored at the same scale).  A window whose best frame still scores
below ``blur_ratio`` x the median of all windows' best scores is dropped as blurred: the
median of the candidates is the video's typical sharpness, robust to a minority of blurred
windows, and the Laplacian variance of a frame with a few pixels of motion blur falls well
below a quarter of that of a sharp frame of the same scene (while the content of sharp views
of one scene varies it by less than that).

Orientation: OpenCV >= 4.5 rotates frames by the stream's display matrix when
``CAP_PROP_ORIENTATION_AUTO`` is on (the default on OpenCV 5.0 with FFmpeg, which then also
reports the rotated width and height).  To rotate exactly once whatever the version does by
default, auto-rotation is switched off and the frames are turned here by
``CAP_PROP_ORIENTATION_META`` (degrees clockwise); a backend that refuses the switch is left
to its own behaviour.

Resuming: the manifest is written last (atomically) and records the input's size and mtime
(per photo for a folder) and the config; a rerun with the same input and config returns the
stored result without decoding anything, anything else redoes the work in a staging folder
that replaces ``frames/`` only when complete.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np

from langfield.io import atomic_write_bytes, atomic_write_json
from langfield.sources.validate import IMAGE_SUFFIXES
from langfield.types import ConfigError, DataError

from .images import PHOTO_SUFFIXES, output_size, photo_signature, prepare_photos

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".3gp", ".mts", ".m2ts")
"""File name endings taken for videos by ``is_video`` (any other file is still tried with OpenCV)."""
MANIFEST = "frames.json"
"""Name of the manifest in ``work_dir``; its presence (with matching input and config) means "done"."""
FRAMES_DIR = "frames"
"""Folder under ``work_dir`` holding the kept frames."""
_STAGING = "frames.partial"
_VERSION = 2  # 2: windows by timestamp


@dataclass
class FrameConfig:
    """How ``prepare_frames`` picks and sizes the frames handed to SfM."""

    num_frames: int = 120
    """Target number of frames kept from a video: one per equal time window (fewer if the video has fewer
    frames or windows are rejected as blurred).  Sized for SfM on a 2-core CPU."""
    max_side: int = 1280
    """Longest side of the frames handed to SfM, pixels: larger frames (and photos) are downscaled to it,
    smaller ones are never upscaled.  Independent of the training ``--downscale``."""
    blur_ratio: float = 0.25
    """A video window is rejected as blurred when its sharpest frame's Laplacian variance is below this
    fraction of the median over all windows' sharpest frames; 0 keeps every window."""
    min_frames: int = 8
    """Fewest decodable video frames, and fewest frames kept after blur rejection; fewer is a DataError
    (capped at ``num_frames``: asking for fewer frames lowers the minimum with it)."""
    min_photos: int = 3
    """Fewest photos in a folder (structure from motion needs a few overlapping views); fewer is a DataError."""

    def __post_init__(self) -> None:
        if self.num_frames < 1:
            raise ConfigError(f"FrameConfig.num_frames must be >= 1, got {self.num_frames}")
        if self.max_side < 16:
            raise ConfigError(f"FrameConfig.max_side must be >= 16 pixels, got {self.max_side}")
        if not 0.0 <= self.blur_ratio < 1.0:
            raise ConfigError(f"FrameConfig.blur_ratio must lie in [0, 1), got {self.blur_ratio}")
        if self.min_frames < 1 or self.min_photos < 1:
            raise ConfigError(f"FrameConfig.min_frames and min_photos must be >= 1, got {self.min_frames}, {self.min_photos}")


@dataclass
class FrameSet:
    """The frames ``prepare_frames`` kept, in time (video) or file-name (photos) order."""

    kind: str
    """"video" or "photos"."""
    paths: list[Path]
    """The kept frames, all under ``work_dir/frames/``: PNG ``frame_NNNNNN.png`` for a video; for photos a copy
    named like the photo (re-encoded only when EXIF orientation or ``max_side`` changed it)."""
    source_names: list[str]
    """Per kept frame its source name: "frame_000123" (index 123 in the video) or the photo's file name."""
    source_index: list[int]
    """Per kept frame the video frame index (photos: position in the name-sorted folder)."""
    size: tuple[int, int]
    """(width, height) of every kept frame, upright."""
    scale: float
    """Kept size / original (upright) size; 1.0 when not resized."""
    read: int
    """Frames decoded from the video (photos: images in the folder)."""
    rejected_blur: int
    """Video windows dropped because even their sharpest frame was blurred (photos: 0)."""
    kept: int
    """Number of kept frames (= len(paths))."""
    fps: Optional[float]
    """The video's frame rate as OpenCV reports it; None for photos or when unknown."""


def is_video(path: Path) -> bool:
    """True for an existing file whose name ends like a video (``VIDEO_SUFFIXES``, case-insensitive)."""
    path = Path(path)
    return path.suffix.lower() in VIDEO_SUFFIXES and path.is_file()


def laplacian_variance(grey: np.ndarray) -> float:
    """Sharpness of a grey image: the variance of its 3x3 Laplacian (higher = sharper)."""
    import cv2

    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


def window_of(i: int, n: int, k: int) -> int:
    """Window (0 .. k-1) of frame ``i`` when ``n`` frames are split into ``k`` windows of equal length (+-1 frame)."""
    return min(i * k // n, k - 1)


def frame_times(raw: list[Optional[float]], fps: Optional[float]) -> tuple[list[float], bool]:
    """Per decoded frame its time in seconds, and whether these are the container's timestamps.

    The decoder's timestamps are used when every frame has one and they strictly increase;
    otherwise (a raw stream, a broken index) frames are spaced equally by index (at ``fps``)."""
    if raw and all(t is not None and math.isfinite(t) for t in raw):
        ts = [float(t) for t in raw]  # type: ignore[arg-type]
        if all(b > a for a, b in zip(ts, ts[1:])):
            return ts, True
    step = 1.0 / fps if fps else 1.0
    return [i * step for i in range(len(raw))], False


def windows_by_time(times: list[float], k: int) -> list[int]:
    """Window (0 .. k-1) of each frame when the video's duration is split into ``k`` equal time windows.

    Each frame is shown until the next one; the last one as long as the one before it.  So the
    duration runs from the first frame to one last interval after the last frame, and at a
    constant frame rate this is exactly ``window_of`` by index."""
    n = len(times)
    if n == 0:
        return []
    if n == 1:
        return [0]
    span = times[-1] - times[0] + (times[-1] - times[-2])
    # The small epsilon keeps a frame exactly on a boundary (i * span / k) in the window it starts.
    return [min(int((t - times[0]) / span * k + 1e-9), k - 1) for t in times]


def blurred_windows(best_scores: list[float], blur_ratio: float) -> list[int]:
    """Positions of the windows whose best score is below ``blur_ratio`` x the median best score."""
    if not best_scores or blur_ratio <= 0:
        return []
    threshold = blur_ratio * float(np.median(best_scores))
    return [w for w, s in enumerate(best_scores) if s < threshold]


# ---------------------------------------------------------------- video decoding


@dataclass
class _VideoInfo:
    frame_count: int
    """What the container claims (0 when unknown)."""
    fps: Optional[float]
    rotation: int
    """Degrees clockwise this module still has to turn each decoded frame (0 when the backend does it)."""


def _open_video(path: Path) -> tuple[Any, int]:
    """An open capture of ``path`` and the clockwise rotation (degrees) its frames still need to be upright."""
    # FFmpeg and OpenCV log their own lines about a broken file on stderr; the DataError below says it in one.
    # OpenCV reads the FFmpeg level once, when its FFmpeg backend starts; a level the user set is kept.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    import cv2

    api = cv2.CAP_FFMPEG if cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG) else cv2.CAP_ANY
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        cap = cv2.VideoCapture(str(path), api)
    finally:
        cv2.utils.logging.setLogLevel(level)
    if not cap.isOpened():
        cap.release()
        raise DataError(f"{path}: not a video OpenCV can decode ({path.stat().st_size} bytes)")
    rotation = 0
    # Turn frames here, exactly once: only if the backend accepts to stop rotating them itself.
    if cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0) and cap.get(cv2.CAP_PROP_ORIENTATION_AUTO) == 0:
        meta = cap.get(cv2.CAP_PROP_ORIENTATION_META)
        rotation = int(round(meta)) % 360 if math.isfinite(meta) else 0
        if rotation not in (0, 90, 180, 270):
            rotation = 0  # odd angles: no upright way to store the frame; leave it as stored
    return cap, rotation


def _video_info(path: Path) -> _VideoInfo:
    import cv2

    cap, rotation = _open_video(path)
    try:
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        fps = cap.get(cv2.CAP_PROP_FPS)
    finally:
        cap.release()
    return _VideoInfo(
        frame_count=int(count) if math.isfinite(count) and count > 0 else 0,
        fps=float(fps) if math.isfinite(fps) and fps > 0 else None,
        rotation=rotation,
    )


def _decode(path: Path, desc: str, total: Optional[int], progress: bool) -> Iterator[tuple[np.ndarray, Optional[float]]]:
    """Every decodable frame of the video (BGR uint8, as stored: never auto-rotated) with its presentation
    time in seconds (None when the backend gives none), with a progress bar.

    Stops at the first frame that fails to decode."""
    import cv2
    from tqdm.auto import tqdm

    cap, _ = _open_video(path)
    try:
        with tqdm(total=total or None, desc=desc, unit="frame", disable=not progress, dynamic_ncols=True) as bar:
            while True:
                ok, frame = cap.read()
                if not ok or frame is None:
                    return
                bar.update(1)
                msec = cap.get(cv2.CAP_PROP_POS_MSEC)
                yield frame, (msec / 1000.0 if math.isfinite(msec) and msec >= 0 else None)
    finally:
        cap.release()


def _count_frames(path: Path, progress: bool) -> int:
    """Frames of a video whose container does not say: one ``grab`` pass (no colour conversion)."""
    from tqdm.auto import tqdm

    cap, _ = _open_video(path)
    n = 0
    try:
        with tqdm(desc="count frames", unit="frame", disable=not progress, dynamic_ncols=True) as bar:
            while cap.grab():
                n += 1
                bar.update(1)
    finally:
        cap.release()
    return n


def _upright(frame: np.ndarray, size: tuple[int, int], rotation: int) -> np.ndarray:
    """Downscale (INTER_AREA) a stored BGR frame to the stored-orientation ``size`` and turn it upright."""
    import cv2

    if (frame.shape[1], frame.shape[0]) != size:
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    if rotation:
        codes = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}
        frame = cv2.rotate(frame, codes[rotation])
    return frame


class _PngWriter:
    """Encodes and writes PNGs on one background thread, overlapping the decoding (``cv2.imencode`` releases the GIL).

    At most ``max_pending`` frames wait in memory; leaving the ``with`` block waits for every write and
    re-raises the first failure.
    """

    def __init__(self, max_pending: int = 4) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="frames-png")
        self._pending: list[Any] = []
        self._max = max_pending

    @staticmethod
    def _write(path: Path, bgr: np.ndarray) -> None:
        import cv2

        # zlib level 1: PNG encoding at the default level costs more than decoding the frame.
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if not ok:
            raise DataError(f"{path}: could not encode the frame as PNG")
        atomic_write_bytes(path, buf.tobytes())

    def submit(self, path: Path, bgr: np.ndarray) -> None:
        self._pending.append(self._pool.submit(self._write, path, bgr))
        while len(self._pending) > self._max:
            self._pending.pop(0).result()

    def wait(self) -> None:
        while self._pending:
            self._pending.pop(0).result()

    def __enter__(self) -> "_PngWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        # No write may land in the folder after the caller cleans it up; after a failure the queued ones are dropped.
        self._pool.shutdown(wait=True, cancel_futures=exc[0] is not None)
        if exc[0] is None:
            self.wait()


# Seam for tests: ``prepare_frames`` decodes through this name, so a test can count decodes.
decode_video: Callable[[Path, str, Optional[int], bool], Iterator[tuple[np.ndarray, Optional[float]]]] = _decode


@dataclass
class _Pass:
    best: list[tuple[float, int]]
    """Per window in order: (Laplacian variance, frame index) of its sharpest frame (each written as PNG)."""
    n_read: int
    stored_size: tuple[int, int]
    """Output size in the stored (not yet upright) orientation."""
    scale: float
    windows: list[int]
    """The window each decoded frame was put in."""
    raw_times: list[Optional[float]]
    """Each decoded frame's presentation time (seconds) as the decoder gave it."""


Assign = Callable[[int, Optional[float], Optional[float]], int]
"""(frame index, its time, the first frame's time) -> window."""


def _estimated_windows(info: _VideoInfo, n_est: int, n_windows: int) -> Assign:
    """Windows before the video's true timestamps are known: by time over the container's claimed duration
    (frame count / fps), or by index when it gives no frame rate or timestamps."""
    span = n_est / info.fps if info.fps else None

    def assign(i: int, t: Optional[float], t0: Optional[float]) -> int:
        if span and t is not None and t0 is not None:
            return min(max(int((t - t0) / span * n_windows + 1e-9), 0), n_windows - 1)
        return window_of(i, max(n_est, 1), n_windows)

    return assign


def _select_pass(path: Path, out: Path, cfg: FrameConfig, info: _VideoInfo, n_windows: int, assign: Assign,
                 n_est: int, progress: bool) -> _Pass:
    """One decode of the video: the sharpest frame of each of ``n_windows`` windows (``assign``), written to ``out``."""
    import cv2

    best: list[tuple[float, int]] = []
    windows: list[int] = []
    raw_times: list[Optional[float]] = []
    cur: Optional[tuple[float, int, np.ndarray]] = None  # the current window's best so far
    cur_w, n_read, size0, stored_size, scale = -1, 0, (0, 0), (0, 0), 1.0
    with _PngWriter() as writer:

        def finish_window() -> None:
            if cur is not None:
                best.append((cur[0], cur[1]))
                writer.submit(out / f"frame_{cur[1]:06d}.png", cur[2])

        for i, (frame, t) in enumerate(decode_video(path, "decode video", n_est, progress)):
            n_read = i + 1
            raw_times.append(t)
            if i == 0:
                size0 = (frame.shape[1], frame.shape[0])
                stored_size, scale = output_size(*size0, cfg.max_side)
            elif (frame.shape[1], frame.shape[0]) != size0:
                raise DataError(f"{path}: frame {i} is {frame.shape[1]}x{frame.shape[0]}, frame 0 is {size0[0]}x{size0[1]}")
            # Windows never go back: a timestamp out of order stays in the current window.
            w = max(assign(i, t, raw_times[0]), cur_w)
            windows.append(w)
            # Score at the output size, on the grey image only (a third of the resizing); turning by 90
            # degrees does not change the score, so only the frames that become a window's best are
            # resized in colour and turned upright.
            grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            if stored_size != size0:
                grey = cv2.resize(grey, stored_size, interpolation=cv2.INTER_AREA)
            score = laplacian_variance(grey)
            if w != cur_w:
                finish_window()
                cur, cur_w = None, w
            if cur is None or score > cur[0]:
                cur = (score, i, _upright(frame, stored_size, info.rotation))
        finish_window()
    return _Pass(best, n_read, stored_size, scale, windows, raw_times)


def _select_video(path: Path, out: Path, cfg: FrameConfig, progress: bool) -> dict:
    """Decode ``path`` once (twice if the container misstates its frame count or duration) keeping each
    window's sharpest frame."""
    info = _video_info(path)
    min_frames = min(cfg.min_frames, cfg.num_frames)
    n_est = info.frame_count or _count_frames(path, progress)
    n_windows = max(1, min(cfg.num_frames, n_est))
    res = _select_pass(path, out, cfg, info, n_windows, _estimated_windows(info, n_est, n_windows), n_est, progress)
    if res.n_read == 0:
        raise DataError(f"{path}: OpenCV opened the file but decoded no frame ({path.stat().st_size} bytes)")
    times, timestamped = frame_times(res.raw_times, info.fps)
    true_windows = windows_by_time(times, max(1, min(cfg.num_frames, res.n_read)))
    if true_windows != res.windows and res.n_read >= min_frames:
        # The container's frame count or duration was wrong (or the frame rate varies), so the windows were
        # not equal in time: redo them with the true timestamps of this pass.
        for p in out.iterdir():
            p.unlink()
        exact = true_windows
        res = _select_pass(path, out, cfg, info, max(exact) + 1, lambda i, t, t0: exact[min(i, len(exact) - 1)],
                           res.n_read, progress)
    if res.n_read < min_frames:
        raise DataError(f"{path}: only {res.n_read} decodable frames, need at least {min_frames}")
    rejected = set(blurred_windows([s for s, _ in res.best], cfg.blur_ratio))
    kept = [idx for w, (_, idx) in enumerate(res.best) if w not in rejected]
    for w in rejected:
        (out / f"frame_{res.best[w][1]:06d}.png").unlink()
    if len(kept) < min_frames:
        raise DataError(
            f"{path}: only {len(kept)} of {len(res.best)} frame windows have a sharp frame "
            f"({len(rejected)} rejected as blurred), need at least {min_frames}"
        )
    w_out, h_out = res.stored_size if info.rotation in (0, 180) else res.stored_size[::-1]
    return {
        "kind": "video",
        "files": [f"frame_{i:06d}.png" for i in kept],
        "source_names": [f"frame_{i:06d}" for i in kept],
        "source_index": kept,
        "size": [w_out, h_out],
        "scale": res.scale,
        "read": res.n_read,
        "rejected_blur": len(rejected),
        "fps": info.fps,
        "rotation": info.rotation,
        "windows_by": "timestamp" if timestamped else "frame index",
    }


# ---------------------------------------------------------------- manifest and entry point


def _signature(path: Path) -> Any:
    """What identifies the input's content cheaply: size and mtime (per photo for a folder)."""
    if path.is_dir():
        return photo_signature(path)
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _load_manifest(work_dir: Path, expect: dict) -> Optional[FrameSet]:
    """The stored FrameSet when ``work_dir``'s manifest matches ``expect`` and every frame exists, else None."""
    try:
        meta = json.loads((work_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or any(meta.get(k) != v for k, v in expect.items()):
        return None
    try:
        paths = [work_dir / FRAMES_DIR / f for f in meta["files"]]
        if not all(p.is_file() for p in paths):
            return None
        return FrameSet(
            kind=str(meta["kind"]),
            paths=paths,
            source_names=[str(s) for s in meta["source_names"]],
            source_index=[int(i) for i in meta["source_index"]],
            size=(int(meta["size"][0]), int(meta["size"][1])),
            scale=float(meta["scale"]),
            read=int(meta["read"]),
            rejected_blur=int(meta["rejected_blur"]),
            kept=len(paths),
            fps=None if meta["fps"] is None else float(meta["fps"]),
        )
    except (KeyError, TypeError, ValueError, IndexError):
        return None


def _check_input(path: Path) -> None:
    try:
        exists = path.exists()
    except OSError as exc:
        raise DataError(f"{str(path)[:200]}: not a usable input path ({exc.strerror})") from None
    if not exists:
        raise DataError(f"{path}: input not found (expected a video file or a folder of photos)")
    if path.is_dir():
        return
    if not path.is_file():
        raise DataError(f"{path}: not a regular file or folder")
    if not os.access(path, os.R_OK):
        raise DataError(f"{path}: file is not readable (permission denied)")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty (0 bytes); expected a video")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        raise DataError(f"{path}: a single image; give a video file or a folder of photos")


def prepare_frames(input: Path, work_dir: Path, cfg: FrameConfig, *, progress: bool = True) -> FrameSet:
    """The frames of a video or photo folder ``input``, written under ``work_dir/frames/`` (see the module doc).

    Resumable: with the same input (size and mtime) and config as the stored manifest the stored result
    is returned without reading the input again.  Bad input raises a one-line ``DataError`` naming the
    file and the numbers; nothing is marked finished then.
    """
    input, work_dir = Path(input).absolute(), Path(work_dir).absolute()
    _check_input(input)
    expect = {"version": _VERSION, "input": str(input), "signature": _signature(input), "config": asdict(cfg)}
    stored = _load_manifest(work_dir, expect)
    if stored is not None:
        if progress:
            print(f"frames: reusing the {stored.kept} frames prepared before in {work_dir / FRAMES_DIR}", file=sys.stderr)
        return stored
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / MANIFEST).unlink(missing_ok=True)  # from here on the old result is no longer "finished"
    staging = work_dir / _STAGING
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        if input.is_dir():
            result = prepare_photos(input, staging, cfg.max_side, cfg.min_photos, progress=progress)
        else:
            result = _select_video(input, staging, cfg, progress)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    final = work_dir / FRAMES_DIR
    shutil.rmtree(final, ignore_errors=True)
    os.replace(staging, final)
    atomic_write_json(work_dir / MANIFEST, {**expect, **result})
    stored = _load_manifest(work_dir, expect)
    assert stored is not None, "the manifest just written must load"
    if progress:
        what = "read" if stored.kind == "video" else "photos"
        print(f"frames: {stored.read} {what}, {stored.rejected_blur} rejected as blurred, {stored.kept} kept "
              f"at {stored.size[0]}x{stored.size[1]}", file=sys.stderr, flush=True)  # fmt: skip
    return stored


__all__ = [
    "FrameConfig", "FrameSet", "PHOTO_SUFFIXES", "VIDEO_SUFFIXES", "blurred_windows", "is_video",
    "frame_times", "laplacian_variance", "output_size", "prepare_frames", "window_of", "windows_by_time",
]  # fmt: skip
