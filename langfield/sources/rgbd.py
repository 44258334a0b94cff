"""RGB-D sequences that stream one frame at a time: the input of online mapping (``langfield slam``).

``open_sequence(path)`` detects the layout and returns an ``RGBDSequence``; iterating it
reads one ``RGBDFrame`` (uint8 RGB, float32 metres depth, optional ground-truth pose)
per step, so a sequence of any length needs the memory of one frame.  Opening reads
only the index files (and one image header for the size); a frame's pixels are read,
and checked, when that frame is reached.

Layouts (detected in this order):

* **TUM RGB-D** (``tum.py``): ``rgb.txt`` + ``depth.txt`` (+ ``groundtruth.txt``).
* **Replica** as NICE-SLAM / SplaTAM ship it (``replica.py``): ``results/frame*.jpg``,
  ``results/depth*.png``, ``traj.txt``, ``cam_params.json`` here or in the parent folder.
* **langfield synthetic / nerfstudio with depth**: a ``transforms.json`` whose frames have
  ``depth_file_path``; frames in file order, timestamps ``index / fps``.
* **Plain folder pair**: ``rgb/`` and ``depth/`` with the same number of images, matched by
  sorted file name, plus an intrinsics file (``intrinsics.json`` or ``intrinsics.txt``):

  - ``intrinsics.json``: ``{"fx": .., "fy": .., "cx": .., "cy": ..}``, optional ``"width"``,
    ``"height"`` (checked against the images) and ``"depth_factor"``;
  - ``intrinsics.txt``: 4 numbers ``fx fy cx cy``, or 9 (a row-major 3x3 K), or 16 (a 4x4
    whose top-left 3x3 is K, as ScanNet's ``intrinsic_color.txt``); ``#`` starts a comment.

Conventions.  Poses are OpenCV camera-to-world (the TUM, Replica and langfield
convention).  Calibrations of real RGB-D data (TUM, Replica, the plain layout's
intrinsics file and ``intrinsics=``) use OpenCV's pixel grid, pixel centres at integer
coordinates; langfield puts them at +0.5 (``types.Intrinsics``), so their principal
point is shifted by +0.5 px once, here (``opencv_intrinsics``).  Depth files hold
integers of ``1 / depth_factor`` metres (TUM 5000, Replica 6553.5, langfield 1000);
0 means no measurement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import cv2
import numpy as np

from langfield.sources.io import read_npy, undistort
from langfield.sources.jsonio import read_json
from langfield.sources.validate import check_intrinsics, image_size, list_images
from langfield.types import DataError, Intrinsics

PathLike = Union[str, Path]
DEFAULT_FPS = 30.0
"""Frame rate assumed for layouts without timestamps (synthetic, plain folders)."""
PLAIN_DEPTH_FACTOR = 1000.0
"""Depth units per metre of the plain layout unless given (millimetres, as most RGB-D cameras write)."""
LAYOUTS = ("tum", "replica", "synthetic", "plain")


@dataclass(frozen=True)
class RGBDFrame:
    """One frame of a sequence, pixels loaded."""

    index: int
    """Position in the sequence, 0-based."""
    timestamp: float
    """Capture time, seconds (the dataset's clock: TUM's Unix times, else index / fps)."""
    rgb: np.ndarray
    """[H, W, 3] uint8 colour, RGB order."""
    depth: np.ndarray
    """[H, W] float32 depth along the optical axis, metres; 0 = no measurement."""
    c2w_gt: Optional[np.ndarray]
    """[4, 4] float64 OpenCV camera-to-world ground-truth / given pose, or None."""
    name: str
    """The frame's identifier as the dataset spells it (RGB file path relative to the sequence)."""


@dataclass(frozen=True)
class FrameFiles:
    """Where one frame lives (no pixels): what an ``RGBDSequence`` keeps per frame."""

    name: str
    """The frame's identifier (RGB file path relative to the sequence folder)."""
    rgb_path: Path
    """Colour image file."""
    depth_path: Path
    """Depth image file (integer PNG/TIFF in 1/depth_factor metres, or .npy in metres)."""
    timestamp: float
    """Capture time, seconds."""
    c2w_gt: Optional[np.ndarray] = None
    """Ground-truth OpenCV camera-to-world pose, or None."""


class RGBDSequence:
    """An RGB-D sequence read lazily: ``len``, iteration and ``seq[i]`` read one frame each."""

    def __init__(
        self,
        *,
        name: str,
        root: Path,
        layout: str,
        intrinsics: Intrinsics,
        frames: Sequence[FrameFiles],
        depth_factor: float,
        intrinsics_source: str,
        notes: Sequence[str] = (),
    ):
        if not frames:
            raise DataError(f"{root}: the sequence has no frames")
        if not (math.isfinite(depth_factor) and depth_factor > 0):
            raise DataError(f"{root}: depth factor {depth_factor!r} must be a positive number of units per metre")
        check_intrinsics(intrinsics, f"{root} ({intrinsics_source})")
        self.name = name
        """Sequence name (its folder's name)."""
        self.root = root
        """Folder the sequence was read from."""
        self.layout = layout
        """One of LAYOUTS."""
        self.intrinsics = intrinsics
        """Camera of every frame (langfield pixel grid; distortion, if any, is removed when frames are read)."""
        self.frames: tuple[FrameFiles, ...] = tuple(frames)
        """Per-frame files, timestamps and poses (no pixels)."""
        self.depth_factor = float(depth_factor)
        """Depth units per metre of the integer depth files."""
        self.intrinsics_source = intrinsics_source
        """Where the intrinsics came from (for messages and reports)."""
        self.notes = tuple(notes)
        """Human-readable remarks from opening (e.g. frames dropped by association)."""

    # -- sizes and metadata
    def __len__(self) -> int:
        return len(self.frames)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of every frame, pixels."""
        return self.intrinsics.width, self.intrinsics.height

    @property
    def has_gt(self) -> bool:
        """True when at least one frame has a ground-truth pose (TUM frames outside its range have none)."""
        return any(f.c2w_gt is not None for f in self.frames)

    @property
    def timestamps(self) -> np.ndarray:
        """[N] float64 capture times, seconds."""
        return np.array([f.timestamp for f in self.frames], dtype=np.float64)

    def gt_poses(self) -> Optional[np.ndarray]:
        """[N, 4, 4] ground-truth c2w (NaN rows for frames without one), or None without any ground truth."""
        if not self.has_gt:
            return None
        out = np.full((len(self), 4, 4), np.nan)
        for i, f in enumerate(self.frames):
            if f.c2w_gt is not None:
                out[i] = f.c2w_gt
        return out

    def subset(self, start: int = 0, stop: Optional[int] = None, step: int = 1) -> "RGBDSequence":
        """Frames ``start:stop:step`` as a new sequence (indices restart at 0; timestamps kept)."""
        if step < 1:
            raise DataError(f"{self.root}: frame step must be >= 1, got {step}")
        picked = self.frames[start:stop:step]
        if not picked:
            raise DataError(f"{self.root}: frames {start}:{stop}:{step} select none of the {len(self)} frames")
        return RGBDSequence(
            name=self.name, root=self.root, layout=self.layout, intrinsics=self.intrinsics, frames=picked,
            depth_factor=self.depth_factor, intrinsics_source=self.intrinsics_source, notes=self.notes,
        )

    # -- pixels
    def __getitem__(self, index: int) -> RGBDFrame:
        n = len(self.frames)
        if not -n <= index < n:
            raise IndexError(f"frame {index} of a {n}-frame sequence")
        index = index % n
        f = self.frames[index]
        where = f"frame {index} of {n}"
        rgb = read_rgb_uint8(f.rgb_path, where)
        depth = read_depth_metres(f.depth_path, self.depth_factor, where)
        k = self.intrinsics
        if depth.shape != rgb.shape[:2]:
            raise DataError(
                f"{f.depth_path}: depth is {depth.shape[1]}x{depth.shape[0]} but its RGB image {f.rgb_path.name} is "
                f"{rgb.shape[1]}x{rgb.shape[0]} ({where})"
            )
        if (rgb.shape[1], rgb.shape[0]) != (k.width, k.height):
            raise DataError(
                f"{f.rgb_path}: image is {rgb.shape[1]}x{rgb.shape[0]} but the sequence's camera is "
                f"{k.width}x{k.height} ({where})"
            )
        if any(k.distortion):
            rgb = undistort(rgb, k)
            depth = undistort(depth, k, cv2.INTER_NEAREST)  # never blend depths across an edge
        return RGBDFrame(index=index, timestamp=f.timestamp, rgb=np.ascontiguousarray(rgb),
                         depth=np.ascontiguousarray(depth), c2w_gt=f.c2w_gt, name=f.name)

    def __iter__(self) -> Iterator[RGBDFrame]:
        for i in range(len(self.frames)):
            yield self[i]

    def __repr__(self) -> str:
        w, h = self.size
        return (f"RGBDSequence({self.name!r}, layout={self.layout}, {len(self)} frames, {w}x{h}, "
                f"gt={'yes' if self.has_gt else 'no'})")


# ----------------------------------------------------------------------------- pixel readers


def _imread(path: Path, what: str, where: str) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: {what} file not found ({where})")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise DataError(f"{path}: corrupt or unreadable {what} image ({where})")
    return img


def read_rgb_uint8(path: Path, where: str = "") -> np.ndarray:
    """[H, W, 3] uint8 RGB of a colour image (grey is repeated, alpha dropped, 16 bit reduced to 8)."""
    img = _imread(path, "RGB", where)
    if img.dtype == np.uint16:
        img = ((img.astype(np.uint32) + 128) // 257).astype(np.uint8)  # round to the nearest 8-bit level
    elif img.dtype != np.uint8:
        raise DataError(f"{path}: RGB image must be 8 or 16 bit, got {img.dtype} ({where})")
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    if img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    raise DataError(f"{path}: RGB image has {img.shape[2]} channels ({where})")


def read_depth_metres(path: Path, depth_factor: float, where: str = "") -> np.ndarray:
    """[H, W] float32 metres of a depth image: integers / ``depth_factor``; ``.npy`` and float images are metres.

    Negative, NaN and infinite values become 0 (no measurement).
    """
    if path.suffix.lower() == ".npy":
        if not path.is_file():
            raise DataError(f"{path}: depth file not found ({where})")
        raw = read_npy(path, "depth")
    else:
        raw = _imread(path, "depth", where)
    if raw.ndim == 3 and raw.shape[2] == 1:
        raw = raw[:, :, 0]
    if raw.ndim != 2:
        raise DataError(f"{path}: depth must be single-channel, got shape {list(raw.shape)} ({where})")
    if np.issubdtype(raw.dtype, np.integer):
        depth = (raw.astype(np.float64) / depth_factor).astype(np.float32)
    elif np.issubdtype(raw.dtype, np.floating):
        depth = raw.astype(np.float32)
    else:
        raise DataError(f"{path}: depth must hold numbers, got {raw.dtype} ({where})")
    depth[~np.isfinite(depth) | (depth < 0)] = 0.0
    return depth


# ----------------------------------------------------------------------------- intrinsics


def opencv_intrinsics(
    fx: float, fy: float, cx: float, cy: float, width: int, height: int, where: str,
    distortion: Sequence[float] = (),
) -> Intrinsics:
    """Intrinsics from an OpenCV-grid calibration (pixel centres at integers): cx, cy move by +0.5 px."""
    vals = {"fx": fx, "fy": fy, "cx": cx, "cy": cy}
    for key, val in vals.items():
        if isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(val):
            raise DataError(f"{where}: {key} must be a finite number, got {val!r:.40}")
    if fx <= 0 or fy <= 0:
        raise DataError(f"{where}: focal lengths must be positive, got fx = {fx:g}, fy = {fy:g}")
    k = Intrinsics(fx=float(fx), fy=float(fy), cx=float(cx) + 0.5, cy=float(cy) + 0.5, width=int(width),
                   height=int(height), distortion=tuple(float(d) for d in distortion))
    check_intrinsics(k, where)
    return k


def parse_intrinsics_arg(value: Union[str, Sequence[float]]) -> tuple[float, float, float, float]:
    """``"FX,FY,CX,CY"`` (the CLI's ``--intrinsics``) or a 4-sequence -> four floats (DataError otherwise)."""
    parts = value.replace(" ", "").split(",") if isinstance(value, str) else list(value)
    try:
        vals = tuple(float(v) for v in parts)
    except (TypeError, ValueError):
        raise DataError(f"--intrinsics {value!r}: expected four numbers FX,FY,CX,CY") from None
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals):
        raise DataError(f"--intrinsics {value!r}: expected four finite numbers FX,FY,CX,CY")
    return vals  # type: ignore[return-value]


def read_intrinsics_file(path: Path) -> tuple[tuple[float, float, float, float], dict]:
    """The plain layout's intrinsics file -> ((fx, fy, cx, cy), extras) with optional width/height/depth_factor.

    See the module docstring for the two formats.
    """
    if path.suffix.lower() == ".json":
        meta = read_json(path)
        if not isinstance(meta, dict):
            raise DataError(f"{path}: expected an object with fx, fy, cx, cy")
        missing = [k for k in ("fx", "fy", "cx", "cy") if k not in meta]
        if missing:
            raise DataError(f"{path}: missing {', '.join(missing)} (needs fx, fy, cx, cy in pixels)")
        vals = []
        for key in ("fx", "fy", "cx", "cy"):
            v = meta[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise DataError(f"{path}: {key} must be a finite number, got {v!r:.40}")
            vals.append(float(v))
        extras = {k: meta[k] for k in ("width", "height", "depth_factor") if k in meta}
        return (vals[0], vals[1], vals[2], vals[3]), extras
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read intrinsics ({exc})") from None
    tokens = " ".join(line.split("#", 1)[0] for line in text.splitlines()).replace(",", " ").split()
    try:
        nums = [float(t) for t in tokens]
    except ValueError:
        raise DataError(f"{path}: intrinsics must be numbers (fx fy cx cy, a 3x3 K or a 4x4 matrix)") from None
    if len(nums) == 4:
        return (nums[0], nums[1], nums[2], nums[3]), {}
    if len(nums) in (9, 16):
        n = 3 if len(nums) == 9 else 4
        m = np.array(nums).reshape(n, n)
        return (float(m[0, 0]), float(m[1, 1]), float(m[0, 2]), float(m[1, 2])), {}
    raise DataError(f"{path}: expected 4 numbers (fx fy cx cy), 9 (3x3 K) or 16 (4x4), got {len(nums)}")


# ----------------------------------------------------------------------------- layouts


def detect_layout(path: Path) -> str:
    """Which reader handles the folder ``path``: one of LAYOUTS (DataError naming what was looked for)."""
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    if path.is_file() and path.name == "transforms.json":
        return "synthetic"
    if not path.is_dir():
        raise DataError(f"{path}: not an RGB-D sequence folder")
    if (path / "rgb.txt").is_file() or (path / "depth.txt").is_file():
        return "tum"
    if (path / "results").is_dir() and ((path / "traj.txt").is_file() or any((path / "results").glob("frame*"))):
        return "replica"  # without traj.txt too, so the reader can say that it is missing
    if (path / "transforms.json").is_file():
        return "synthetic"
    if (path / "rgb").is_dir() and (path / "depth").is_dir():
        return "plain"
    raise DataError(
        f"{path}: not an RGB-D sequence (expected TUM rgb.txt + depth.txt, Replica results/ + traj.txt, "
        "a transforms.json with depth, or rgb/ + depth/ folders)"
    )


def open_sequence(
    path: PathLike,
    *,
    intrinsics: Optional[Union[str, Sequence[float]]] = None,
    layout: Optional[str] = None,
    depth_factor: Optional[float] = None,
    max_time_difference: float = 0.02,
    fps: float = DEFAULT_FPS,
    train_only: bool = False,
) -> RGBDSequence:
    """Open an RGB-D sequence of any supported layout (see the module docstring).

    Args:
        path: the sequence folder (or a synthetic sequence's transforms.json).
        intrinsics: ``(fx, fy, cx, cy)`` or ``"FX,FY,CX,CY"`` on OpenCV's pixel grid; overrides the
            dataset's calibration (required for TUM sequences not named ``freiburg1/2/3``).
        layout: force one of LAYOUTS instead of detecting it.
        depth_factor: depth units per metre, overriding the layout's (TUM 5000, Replica 6553.5 or
            cam_params.json's ``scale``, synthetic ``1 / depth_unit_scale_factor``, plain 1000 or the
            intrinsics file's ``depth_factor``).
        max_time_difference: TUM association tolerance, seconds (as TUM's ``associate.py``).
        fps: frame rate giving timestamps where the layout has none.
        train_only: synthetic / nerfstudio layout: drop the frames its split holds out (``test_filenames``),
            so held-out views can evaluate the map; timestamps keep their file-order spacing.
    """
    path = Path(path)
    kind = layout if layout is not None else detect_layout(path)
    if kind not in LAYOUTS:
        raise DataError(f"{path}: unknown RGB-D layout {kind!r} (one of {', '.join(LAYOUTS)})")
    if depth_factor is not None and not (math.isfinite(depth_factor) and depth_factor > 0):
        raise DataError(f"--depth-factor {depth_factor!r} must be a positive number of depth units per metre")
    if not (math.isfinite(fps) and fps > 0):
        raise DataError(f"fps {fps!r} must be positive")
    k = parse_intrinsics_arg(intrinsics) if intrinsics is not None else None
    if kind == "tum":
        from langfield.sources.tum import read_tum_sequence

        seq = read_tum_sequence(path, intrinsics=k, depth_factor=depth_factor, max_time_difference=max_time_difference)
    elif kind == "replica":
        from langfield.sources.replica import read_replica_sequence

        seq = read_replica_sequence(path, intrinsics=k, depth_factor=depth_factor, fps=fps)
    elif kind == "synthetic":
        seq = read_synthetic_sequence(path, intrinsics=k, depth_factor=depth_factor, fps=fps, train_only=train_only)
    else:
        seq = read_plain_sequence(path, intrinsics=k, depth_factor=depth_factor, fps=fps)
    check_first_frame(seq)
    return seq


def check_first_frame(seq: RGBDSequence) -> None:
    """DataError unless frame 0's depth image has its RGB image's size (headers only).

    A mismatch there usually means every frame (a depth camera at another resolution): say so
    when the sequence is opened, not after an output exists.  Later frames are checked when read.
    """
    f = seq.frames[0]
    w, h = seq.size
    dw, dh = image_size(f.depth_path)
    if (dw, dh) != (w, h):
        raise DataError(
            f"{f.depth_path}: depth is {dw}x{dh} but its RGB image {f.rgb_path.name} is {w}x{h} (frame 0 of "
            f"{len(seq)}); every depth image must have its RGB image's size (register depth to colour first)"
        )


def read_synthetic_sequence(
    path: Path, *, intrinsics: Optional[tuple[float, float, float, float]] = None,
    depth_factor: Optional[float] = None, fps: float = DEFAULT_FPS, train_only: bool = False,
) -> RGBDSequence:
    """Our generator's output (nerfstudio transforms.json with ``depth_file_path``), frames in file order.

    Parsed by the nerfstudio reader (poses to OpenCV there); all frames must share one
    camera and have depth.
    """
    from langfield.sources.nerfstudio import find_transforms, read_nerfstudio

    json_path = find_transforms(path)
    if json_path is None:
        raise DataError(f"{path}: no transforms.json")
    cap = read_nerfstudio(json_path, eval_every=0)
    first = cap.frames[0]
    cams = {(f.intrinsics.fx, f.intrinsics.fy, f.intrinsics.cx, f.intrinsics.cy, f.intrinsics.width,
             f.intrinsics.height, f.intrinsics.distortion) for f in cap.frames}
    if len(cams) > 1:
        raise DataError(f"{json_path}: frames use {len(cams)} different cameras; an RGB-D sequence needs one")
    no_depth = [i for i, f in enumerate(cap.frames) if f.depth_path is None]
    if no_depth:
        raise DataError(f"{json_path}: {len(no_depth)} of {len(cap.frames)} frames have no depth_file_path "
                        f"(first: frame {no_depth[0]})")
    k, source = first.intrinsics, f"{json_path.name}"
    if intrinsics is not None:
        k = opencv_intrinsics(*intrinsics, k.width, k.height, "--intrinsics")
        source = "--intrinsics"
    factor = depth_factor if depth_factor is not None else 1.0 / first.depth_scale
    root = json_path.parent
    held = set(cap.eval_ids) if train_only else set()
    frames = [
        FrameFiles(name=f.name, rgb_path=f.image_path, depth_path=f.depth_path, timestamp=i / fps, c2w_gt=f.c2w)
        for i, f in enumerate(cap.frames) if i not in held
    ]
    return RGBDSequence(name=root.name, root=root, layout="synthetic", intrinsics=k, frames=frames,
                        depth_factor=factor, intrinsics_source=source)


def _plain_intrinsics_file(path: Path) -> Optional[Path]:
    for name in ("intrinsics.json", "intrinsics.txt"):
        if (path / name).is_file():
            return path / name
    return None


def read_plain_sequence(
    path: Path, *, intrinsics: Optional[tuple[float, float, float, float]] = None,
    depth_factor: Optional[float] = None, fps: float = DEFAULT_FPS,
) -> RGBDSequence:
    """``rgb/`` + ``depth/`` folders matched by sorted name, with ``intrinsics.json|txt`` or ``intrinsics=``."""
    rgbs = list_images(path / "rgb")
    depths = sorted(
        p for p in (path / "depth").iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in (".png", ".tif", ".tiff", ".npy")
    )
    if len(rgbs) != len(depths):
        raise DataError(
            f"{path}: {len(rgbs)} RGB images in rgb/ but {len(depths)} depth images in depth/ "
            "(the plain layout pairs them by sorted name, so the counts must match)"
        )
    if not rgbs:
        raise DataError(f"{path}: rgb/ and depth/ hold no images")
    w, h = image_size(rgbs[0])
    extras: dict = {}
    kfile = _plain_intrinsics_file(path)
    if intrinsics is not None:
        vals, source = intrinsics, "--intrinsics"
    elif kfile is not None:
        vals, extras = read_intrinsics_file(kfile)
        source = kfile.name
    else:
        raise DataError(f"{path}: no intrinsics: add intrinsics.json / intrinsics.txt (fx fy cx cy) or pass "
                        "--intrinsics FX,FY,CX,CY")
    for key, actual in (("width", w), ("height", h)):
        if key in extras and extras[key] != actual:
            raise DataError(f"{kfile}: {key} = {extras[key]!r} but {rgbs[0].name} is {w}x{h}")
    factor = depth_factor
    if factor is None:
        factor = extras.get("depth_factor", PLAIN_DEPTH_FACTOR)
        if isinstance(factor, bool) or not isinstance(factor, (int, float)):
            raise DataError(f"{kfile}: depth_factor must be a number of depth units per metre, got {factor!r:.40}")
    k = opencv_intrinsics(*vals, w, h, str(kfile) if source != "--intrinsics" else "--intrinsics")
    frames = [
        FrameFiles(name=f"rgb/{r.name}", rgb_path=r, depth_path=d, timestamp=i / fps)
        for i, (r, d) in enumerate(zip(rgbs, depths))
    ]
    return RGBDSequence(name=path.resolve().name, root=path, layout="plain", intrinsics=k, frames=frames,
                        depth_factor=float(factor), intrinsics_source=source)

