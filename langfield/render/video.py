"""mp4 files written frame by frame, atomically (OpenCV's FFmpeg backend, a dependency already).

OpenCV chooses the container from the file name, so it cannot write into ``io``'s ``.NAME.*.tmp``
temp file: frames are encoded into a private temp directory and the finished file is then copied
onto the target with ``langfield.io.atomic_write_with`` -- a crash or a cancelled render leaves
the old video (or none), never half of one.  The codec is MPEG-4 part 2 (``mp4v``), which every
OpenCV wheel can encode; it needs even frame sizes.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Optional, Union

import numpy as np

from langfield.io import atomic_write_with
from langfield.types import DataError

PathLike = Union[str, Path]
VIDEO_SUFFIXES: tuple[str, ...] = (".mp4",)
"""File suffixes ``VideoWriter`` writes."""


def check_video_path(path: PathLike, flag: str = "--out") -> Path:
    """``path`` as a Path; DataError unless it ends in a suffix the writer supports."""
    p = Path(path)
    if p.suffix.lower() not in VIDEO_SUFFIXES:
        raise DataError(f"{flag} {p}: a video file must end in {' or '.join(VIDEO_SUFFIXES)}")
    if p.exists() and p.is_dir():
        raise DataError(f"{flag} {p}: is a directory, expected a video file name")
    return p


class VideoWriter:
    """Write RGB uint8 frames [H, W, 3] to an mp4 file; ``close()`` publishes it, ``abort()`` drops it.

    A context manager: leaving the ``with`` block normally closes, an exception aborts.
    """

    def __init__(self, path: PathLike, fps: float, width: int, height: int) -> None:
        import cv2

        self.path = check_video_path(path)
        if width < 2 or height < 2 or width % 2 or height % 2:
            raise DataError(f"{self.path}: video size {width}x{height}: both sides must be even and >= 2")
        if not fps > 0:
            raise DataError(f"{self.path}: fps must be > 0, got {fps}")
        self.width, self.height, self.fps = int(width), int(height), float(fps)
        self.frames = 0
        self._dir = tempfile.mkdtemp(prefix="langfield-video-")
        self._tmp = Path(self._dir) / f"video{self.path.suffix.lower()}"
        self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps,
                                       (self.width, self.height))
        if not self._writer.isOpened():
            self._cleanup()
            raise DataError(f"{self.path}: OpenCV cannot encode mp4 here (no FFmpeg mp4v encoder)")

    def write(self, frame: np.ndarray) -> None:
        """Append one frame: [H, W, 3] uint8 RGB at the writer's size."""
        frame = np.asarray(frame)
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise DataError(f"video frame {self.frames}: expected uint8 [{self.height}, {self.width}, 3], got "
                            f"{frame.dtype} {list(frame.shape)}")
        self._writer.write(np.ascontiguousarray(frame[..., ::-1]))  # OpenCV wants BGR
        self.frames += 1

    def close(self) -> Path:
        """Finish the file and move it onto ``path`` atomically; returns ``path``."""
        try:
            self._writer.release()
            if self.frames == 0 or not self._tmp.is_file() or self._tmp.stat().st_size == 0:
                raise DataError(f"{self.path}: no video was encoded ({self.frames} frames)")
            with open(self._tmp, "rb") as src:
                atomic_write_with(self.path, lambda fh: shutil.copyfileobj(src, fh, 1 << 20))
        finally:
            self._cleanup()
        return self.path

    def abort(self) -> None:
        """Drop what was written; ``path`` is left as it was."""
        try:
            self._writer.release()
        finally:
            self._cleanup()

    def _cleanup(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type: Optional[type], exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def read_video(path: PathLike) -> tuple[np.ndarray, float]:
    """(frames [F, H, W, 3] uint8 RGB, fps) of a video file, decoded with OpenCV (for checks and tests)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise DataError(f"{path}: cannot open the video")
    frames = []
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            frames.append(bgr[..., ::-1])
        fps = float(cap.get(cv2.CAP_PROP_FPS))
    finally:
        cap.release()
    if not frames:
        raise DataError(f"{path}: the video holds no frames")
    return np.stack(frames), fps
