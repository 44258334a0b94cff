"""Synthetic test videos: a smooth camera path through the room, written as MP4 (OpenCV, ``mp4v``).

``render_video`` renders ``smooth_path`` and writes the frames as a video and, optionally,
as an ordinary nerfstudio dataset with the true poses (``frame_000000.png`` ... by video
index), so the frames a front end picks can be matched to ground truth by index.

Rotation metadata: OpenCV's ``VideoWriter`` has no property for it (checked on OpenCV 5.0:
no ``VIDEOWRITER_PROP_*`` for orientation) and no ffmpeg binary is installed, so
``set_mp4_rotation`` writes the display matrix of the MP4 track header (``tkhd``) itself,
the same matrix ffmpeg's muxer writes for a ``rotate`` tag and phones write for portrait
video.  FFmpeg (and so OpenCV's reader) turns it into the stream's display rotation.
"""

from __future__ import annotations

import shutil
import struct
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

from langfield.io import atomic_write_bytes
from langfield.types import LangfieldError

from .config import SceneConfig
from .generate import _check_cameras, _to_uint8, write_dataset
from .layout import build_scene
from .paths import PATH_KINDS, smooth_path
from .raycast import render_view

CODECS = {"mp4v": "mp4v", "png": "png "}
"""Video codecs ``Mp4Writer`` offers -> their fourcc: ``mp4v`` (MPEG-4 part 2, lossy: about 33-34 dB PSNR on
the 640x480 room, like a phone's compression) and ``png`` (lossless; needs a ``.mov`` file name)."""
ROTATIONS = (0, 90, 180, 270)
"""Supported display rotations, degrees clockwise (ffmpeg's ``rotate`` tag, OpenCV's ``CAP_PROP_ORIENTATION_META``)."""

_CONTAINERS = (b"moov", b"trak")


def _boxes(data: bytes | bytearray, start: int, end: int) -> Iterable[tuple[bytes, int, int]]:
    """(type, payload start, box end) of the ISO-BMFF boxes in ``data[start:end]``."""
    off = start
    while off + 8 <= end:
        size, typ = struct.unpack(">I4s", data[off : off + 8])
        hdr = 8
        if size == 1:  # 64-bit size follows the type
            size = struct.unpack(">Q", data[off + 8 : off + 16])[0]
            hdr = 16
        elif size == 0:  # box runs to the end of its parent
            size = end - off
        if size < hdr or off + size > end:
            raise LangfieldError(f"MP4 box {typ!r} at byte {off} has a bad size {size}")
        yield typ, off + hdr, off + size
        off += size


def _rotation_matrix(degrees: int, width: int, height: int) -> tuple[int, ...]:
    """The 3x3 tkhd display matrix (16.16 fixed point, last column 2.30) for a clockwise display rotation."""
    one, w = 1 << 16, 1 << 30
    a, b, c, d, tx, ty = {
        0: (1, 0, 0, 1, 0, 0),
        90: (0, 1, -1, 0, height, 0),
        180: (-1, 0, 0, -1, width, height),
        270: (0, -1, 1, 0, 0, width),
    }[degrees]
    return (a * one, b * one, 0, c * one, d * one, 0, tx * one, ty * one, w)


def set_mp4_rotation(data: bytes, degrees: int) -> bytes:
    """``data`` (an MP4 file) with every video track's display rotation set to ``degrees`` clockwise."""
    if degrees not in ROTATIONS:
        raise LangfieldError(f"video rotation {degrees}: expected one of {ROTATIONS}")
    buf = bytearray(data)
    patched = 0

    def walk(start: int, end: int) -> None:
        nonlocal patched
        for typ, body, box_end in _boxes(buf, start, end):
            if typ in _CONTAINERS:
                walk(body, box_end)
            elif typ == b"tkhd":
                # version 0: 4 (version+flags) + 5 x 4 (times, id, reserved, duration) + 8 + 4 x 2 = 40 bytes;
                # version 1 has 64-bit creation/modification times and duration (+12).
                m = body + (40 if buf[body] == 0 else 52)
                w16, h16 = struct.unpack(">II", buf[m + 36 : m + 44])
                if w16 and h16:  # audio tracks have no size
                    buf[m : m + 36] = struct.pack(">9i", *_rotation_matrix(degrees, w16 >> 16, h16 >> 16))
                    patched += 1

    walk(0, len(buf))
    if not patched:
        raise LangfieldError("MP4 has no video track header (tkhd) to set the rotation in")
    return bytes(buf)


class Mp4Writer:
    """Streams upright RGB uint8 frames ``[H, W, 3]`` into an MP4/MOV (``CODECS``) stored with display rotation ``rotate``.

    With ``rotate=90`` each frame is stored turned 90 degrees counter-clockwise and tagged "rotate 90
    clockwise for display", as a phone stores portrait video; a reader that honours the tag shows
    the frames as given.  OpenCV writes to a path only, so the video is staged in a temp dir;
    ``finish`` checks that it decodes back to as many frames as were added and moves it into
    place atomically.  Use as a context manager: leaving it by an exception writes nothing.
    """

    def __init__(self, out_mp4: Path | str, *, fps: float = 30.0, rotate: int = 0, codec: str = "mp4v") -> None:
        import cv2

        if codec not in CODECS:
            raise LangfieldError(f"video codec {codec!r}: expected one of {', '.join(CODECS)}")
        if codec == "png" and Path(out_mp4).suffix.lower() != ".mov":
            raise LangfieldError(f"{out_mp4}: the lossless png codec needs a .mov file (the MP4 format has no PNG codec)")
        if rotate not in ROTATIONS:
            raise LangfieldError(f"video rotation {rotate}: expected one of {ROTATIONS}")
        if not fps > 0:
            raise LangfieldError(f"video fps must be positive (got {fps})")
        self.out = Path(out_mp4)
        self.fps, self.rotate, self.count, self.fourcc = float(fps), rotate, 0, CODECS[codec]
        self._store = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}.get(rotate)
        self._dir = Path(tempfile.mkdtemp(prefix=".video-"))
        self._tmp = self._dir / f"video{self.out.suffix or '.mp4'}"  # the container follows the name
        self._writer = None

    def add(self, rgb: np.ndarray) -> None:
        import cv2

        img = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
        if self._store is not None:
            img = cv2.rotate(img, self._store)
        if self._writer is None:
            h, w = img.shape[:2]
            self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (w, h))
            if not self._writer.isOpened():
                raise LangfieldError(f"{self.out}: OpenCV cannot write a {self.fourcc.strip()} video of {w}x{h} at {self.fps} fps")
            self._size = (w, h)
        elif (img.shape[1], img.shape[0]) != self._size:
            raise LangfieldError(f"video frame {self.count} is {img.shape[1]}x{img.shape[0]}, not {self._size[0]}x{self._size[1]}")
        self._writer.write(img)
        self.count += 1

    def finish(self) -> Path:
        import cv2

        if self._writer is None:
            raise LangfieldError(f"{self.out}: no frames to write")
        self._writer.release()
        data = self._tmp.read_bytes()
        if self.rotate:
            data = set_mp4_rotation(data, self.rotate)
            self._tmp.write_bytes(data)
        cap = cv2.VideoCapture(str(self._tmp))
        back = 0
        while cap.grab():
            back += 1
        cap.release()
        if back != self.count:
            raise LangfieldError(f"{self.out}: the written video decodes to {back} frames instead of {self.count}")
        atomic_write_bytes(self.out, data)
        return self.out

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> "Mp4Writer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_video(
    out_mp4: Path | str, frames: Iterable[np.ndarray], *, fps: float = 30.0, rotate: int = 0, codec: str = "mp4v"
) -> Path:
    """Write upright RGB uint8 frames as an MP4 (or MOV) with display rotation ``rotate`` (see ``Mp4Writer``)."""
    with Mp4Writer(out_mp4, fps=fps, rotate=rotate, codec=codec) as w:
        for rgb in frames:
            w.add(rgb)
        return w.finish()


def render_video(
    out_mp4: Path | str,
    *,
    seed: int,
    n_frames: int,
    width: int,
    height: int,
    fps: float = 30.0,
    rotate: int = 0,
    gt_dir: Path | str | None = None,
    kind: str = "orbit",
    turns: float | None = None,
    config: SceneConfig | None = None,
    codec: str = "mp4v",
) -> Path:
    """Render ``n_frames`` upright ``width`` x ``height`` frames along ``smooth_path(kind=kind)`` into ``out_mp4``.

    ``rotate`` (0/90/180/270) stores the video turned, with rotation metadata (``write_video``): a
    portrait capture is ``width < height, rotate=90``.  With ``gt_dir`` the same frames also become
    a nerfstudio dataset with the true poses, depth and labels (``images/frame_000000.png`` ... by
    video index; no split lists, so readers apply their own ``--eval-every``), rendered once for
    both.  ``codec="png"`` (a ``.mov`` name) stores the frames losslessly, to tell the front end's
    errors from the video compression's.  ``turns``: the fraction of a turn the orbit covers (default: seeded,
    0.7-0.9).  Deterministic in its arguments.  Rendering costs about 1-2 s per 640x480 frame.
    """
    cfg = config or SceneConfig()
    cfg.validate()
    if kind not in PATH_KINDS:
        raise LangfieldError(f"synthetic camera path kind {kind!r}: expected one of {', '.join(PATH_KINDS)}")
    if width < 16 or height < 16 or width % 2 or height % 2:
        raise LangfieldError(f"synthetic video size {width}x{height}: need even sizes of at least 16 (mp4v)")
    if n_frames < 1:
        raise LangfieldError(f"synthetic video needs at least 1 frame (got {n_frames})")
    scene = build_scene(seed, cfg)
    cams = smooth_path(scene, cfg, seed, n_frames, width, height, kind=kind, turns=turns)
    _check_cameras(scene, cams)
    if gt_dir is None:
        images: Iterable[np.ndarray] = (
            _to_uint8(render_view(scene, cam, cfg.ambient, cfg.shadows, cfg.supersample).rgb) for cam in cams
        )
        return write_video(out_mp4, images, fps=fps, rotate=rotate, codec=codec)
    with Mp4Writer(out_mp4, fps=fps, rotate=rotate, codec=codec) as video:
        # The dataset writer renders each view once and hands the image to the video as well.
        write_dataset(
            gt_dir, scene, cams, eval_ids=None, cfg=cfg, seed=seed, name_digits=6,
            on_view=lambda i, rgb: video.add(rgb),
            extra_meta={"camera_path": "smooth" if kind == "orbit" else kind, "video": Path(out_mp4).name, "fps": fps},
        )  # fmt: skip
        return video.finish()
