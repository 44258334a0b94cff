"""Camera paths: keyframed camera moves for videos (the viewer's "Render video", ``langfield render --camera-path``).

A path is a few keyframes (camera-to-world pose, vertical field of view, time in seconds) plus the
video's resolution, frame rate, length and a loop flag.  Frames between keyframes are interpolated:

* position: a cubic Hermite curve with Catmull-Rom tangents (``(p[i+1] - p[i-1]) / (t[i+1] - t[i-1])``),
  so it passes exactly through every keyframe, its velocity is continuous across keyframes, and a
  keyframe only bends the two segments beside it (unlike a global cubic spline, where moving one
  keyframe moves the whole curve);
* rotation: squad (Shoemake's spherical quadrangle interpolation) on unit quaternions whose signs
  are made consistent first -- q and -q are one rotation, and interpolating towards the "wrong" one
  spins the camera the long way round (a flip);
* field of view: linear per segment.

With ``loop`` the path closes: after the last keyframe it returns to the first at ``seconds``
(keyframe times lie in ``[0, seconds)``) and the frames cover one period without repeating the
first.  Without it, frame 0 is at time 0 and the last frame at ``seconds``; outside the
keyframes' time span the camera rests on the first or last keyframe.

The file (``CAMERA_PATH_FORMAT``, written by ``write_camera_path``) is JSON::

    {"format": "langfield-camera-path", "version": 1,
     "camera_convention": "opencv",           # poses are camera-to-world, x right, y down, z forward
     "resolution": [width, height], "fps": 30, "seconds": 4.0, "loop": false,
     "keyframes": [{"camera_to_world": [[4 x 4]], "fov_y_degrees": 50.0, "time": 0.0}, ...]}

``read_camera_path`` also reads a nerfstudio ``camera_path.json`` (its already-sampled
``camera_path`` list, OpenGL axes) so paths made in nerfstudio's viewer can be rendered here.

numpy in, numpy out, float64; only the bottom layers (types, io, trajectory, sources.conventions) are used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from langfield.io import atomic_write_json
from langfield.sources.jsonio import read_json
from langfield.trajectory import quat_wxyz_to_rotmat, rotmat_to_quat
from langfield.types import DataError

PathLike = Union[str, Path]
CAMERA_PATH_FORMAT = "langfield-camera-path"
"""Value of the file's ``format`` key."""
CAMERA_PATH_VERSION = 1
"""Version of the file layout this module writes (and the newest it reads)."""
MAX_FRAMES = 100_000
"""Most frames a path may ask for (an hour at ~28 fps): a typo in fps or seconds must not queue a week of rendering."""
_ROTATION_TOL = 1e-3
"""How far a stored rotation may be from orthonormal (JSON rounding) before the file is refused."""


@dataclass(frozen=True)
class PathKeyframe:
    """One keyframe of a camera path."""

    c2w: np.ndarray
    """[4, 4] float64 camera-to-world, OpenCV axes (x right, y down, z forward)."""
    fov_y: float
    """Vertical field of view in radians, in (0, pi)."""
    time: float
    """When the camera is here, in seconds from the start of the video."""


@dataclass
class CameraPath:
    """Keyframes plus how the video samples them."""

    keyframes: list[PathKeyframe]
    """At least one keyframe, with strictly increasing times."""
    width: int = 640
    """Video width in pixels (even: the mp4 encoder needs it)."""
    height: int = 480
    """Video height in pixels (even)."""
    fps: float = 30.0
    """Frames per second of the video."""
    seconds: float = 4.0
    """Length of the video; with ``loop`` also the period after which the camera is back at keyframe 0."""
    loop: bool = False
    """Close the path: interpolate from the last keyframe back to the first."""
    source: Optional[str] = field(default=None, compare=False)
    """Where the path was read from (for messages only)."""

    def __post_init__(self) -> None:
        validate_path(self)

    @staticmethod
    def uniform(poses: Sequence[np.ndarray], fovs: Sequence[float], *, width: int, height: int, fps: float,
                seconds: float, loop: bool = False) -> "CameraPath":
        """Keyframes spread evenly over ``seconds`` (what the viewer's "Add keyframe" builds).

        Without ``loop`` the first keyframe is at 0 and the last at ``seconds``; with it the
        ``n`` keyframes sit at ``k * seconds / n``, the closing segment getting the same share.
        """
        n = len(poses)
        if n == 0:
            raise DataError("a camera path needs at least one keyframe")
        if len(fovs) != n:
            raise DataError(f"{n} keyframe poses but {len(fovs)} fields of view")
        if loop:
            times = [seconds * i / n for i in range(n)]
        else:
            times = [seconds * i / (n - 1) for i in range(n)] if n > 1 else [0.0]
        keys = [PathKeyframe(np.asarray(p, dtype=np.float64), float(f), float(t)) for p, f, t in zip(poses, fovs, times)]
        return CameraPath(keys, width=int(width), height=int(height), fps=float(fps), seconds=float(seconds), loop=loop)

    @property
    def num_frames(self) -> int:
        """Frames of the video: ``round(fps * seconds)``, at least 1."""
        return max(1, int(round(self.fps * self.seconds)))

    def frame_times(self) -> np.ndarray:
        """[F] time in seconds of each video frame (see the module docstring for the ends)."""
        n = self.num_frames
        if self.loop:
            return np.arange(n) * (self.seconds / n)
        return np.linspace(0.0, self.seconds, n) if n > 1 else np.zeros(1)

    def sample(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Interpolated (c2w [T, 4, 4], fov_y [T] radians) at ``times`` (seconds)."""
        keys = self.keyframes
        return interpolate_poses(np.stack([k.c2w for k in keys]), np.array([k.fov_y for k in keys]),
                                 np.array([k.time for k in keys]), np.asarray(times, dtype=np.float64),
                                 period=self.seconds if self.loop else None)

    def frames(self) -> tuple[np.ndarray, np.ndarray]:
        """(c2w [F, 4, 4], K [F, 3, 3]) of every video frame, K at (width, height)."""
        c2w, fov = self.sample(self.frame_times())
        return c2w, np.stack([intrinsics_from_fov(f, self.width, self.height) for f in fov])


def intrinsics_from_fov(fov_y: float, width: int, height: int) -> np.ndarray:
    """[3, 3] centred pinhole K with square pixels and vertical field of view ``fov_y`` (radians)."""
    fy = 0.5 * height / math.tan(0.5 * fov_y)
    return np.array([[fy, 0.0, width / 2.0], [0.0, fy, height / 2.0], [0.0, 0.0, 1.0]])


# ----------------------------------------------------------------------------- quaternions (w, x, y, z)


def _qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of [..., 4] quaternions."""
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], axis=-1)


def _qconj(q: np.ndarray) -> np.ndarray:
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def _qlog(q: np.ndarray) -> np.ndarray:
    """[..., 4] unit quaternions -> [..., 3] half-angle rotation vectors (log map)."""
    v = q[..., 1:]
    s = np.linalg.norm(v, axis=-1, keepdims=True)
    ang = np.arctan2(s, q[..., :1])
    # v / s * ang, written so s -> 0 gives v (the limit) instead of 0 / 0
    return v * np.where(s > 1e-12, ang / np.maximum(s, 1e-300), 1.0)


def _qexp(w: np.ndarray) -> np.ndarray:
    """[..., 3] half-angle rotation vectors -> [..., 4] unit quaternions (exp map)."""
    a = np.linalg.norm(w, axis=-1, keepdims=True)
    return np.concatenate([np.cos(a), w * np.where(a > 1e-12, np.sin(a) / np.maximum(a, 1e-300), 1.0)], axis=-1)


def _slerp(a: np.ndarray, b: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Slerp from ``a`` to ``b`` [T, 4] at fractions ``s`` [T], along the arc as given (no sign flip here)."""
    cos = np.clip((a * b).sum(-1), -1.0, 1.0)
    ang = np.arccos(cos)
    sin = np.sin(ang)
    near = sin < 1e-9  # (almost) the same quaternion: the linear blend is exact to rounding
    safe = np.where(near, 1.0, sin)
    wa = np.where(near, 1.0 - s, np.sin((1.0 - s) * ang) / safe)
    wb = np.where(near, s, np.sin(s * ang) / safe)
    out = wa[:, None] * a + wb[:, None] * b
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def consistent_signs(quats: np.ndarray) -> np.ndarray:
    """[N, 4] quaternions with signs chosen so each has a non-negative dot product with the one before.

    The same rotations; interpolating between neighbours then takes the short way round.
    """
    q = np.array(quats, dtype=np.float64)
    for i in range(1, len(q)):
        if float(q[i] @ q[i - 1]) < 0.0:
            q[i] = -q[i]
    return q


# ----------------------------------------------------------------------------- interpolation


def interpolate_poses(c2w: np.ndarray, fovs: np.ndarray, key_times: np.ndarray, times: np.ndarray,
                      period: Optional[float] = None) -> tuple[np.ndarray, np.ndarray]:
    """Poses and fields of view through keyframes ``c2w`` [N, 4, 4] / ``fovs`` [N] at ``key_times`` [N].

    Returns (c2w [T, 4, 4], fov [T]) at ``times`` [T].  ``period`` closes the path (keyframe 0
    again at ``key_times[0] + period``); None clamps ``times`` to the keyframes' span.
    """
    c2w = np.asarray(c2w, dtype=np.float64)
    kt = np.asarray(key_times, dtype=np.float64)
    times = np.atleast_1d(np.asarray(times, dtype=np.float64))
    fovs = np.asarray(fovs, dtype=np.float64)
    n = len(kt)
    if n == 1:
        return np.repeat(c2w[:1], len(times), axis=0), np.full(len(times), fovs[0])
    pos = c2w[:, :3, 3]
    quats = consistent_signs(rotmat_to_quat(c2w[:, :3, :3]))
    if period is not None:
        # close the path: keyframe 0 again after the last one, its sign matched to the last (no flip there)
        q_close = quats[0] if float(quats[0] @ quats[-1]) >= 0 else -quats[0]
        kt = np.append(kt, kt[0] + period)
        pos = np.vstack([pos, pos[:1]])
        quats = np.vstack([quats, q_close])
        fovs = np.append(fovs, fovs[0])
        times = kt[0] + np.mod(times - kt[0], period)
    else:
        times = np.clip(times, kt[0], kt[-1])
    m = len(kt)  # knots, the closing one included
    # neighbours of every knot for the tangents: wrapped around a loop, mirrored at open ends
    if period is not None:
        prev_p, prev_t = np.vstack([pos[-2], pos[:-1]]), np.append(kt[-2] - period, kt[:-1])
        next_p, next_t = np.vstack([pos[1:], pos[1]]), np.append(kt[1:], kt[1] + period)
    else:
        prev_p = np.vstack([2 * pos[0] - pos[1], pos[:-1]])
        prev_t = np.append(2 * kt[0] - kt[1], kt[:-1])
        next_p = np.vstack([pos[1:], 2 * pos[-1] - pos[-2]])
        next_t = np.append(kt[1:], 2 * kt[-1] - kt[-2])
    tangents = (next_p - prev_p) / (next_t - prev_t)[:, None]  # Catmull-Rom, in world units per second
    controls = _squad_controls(quats, closed=period is not None)

    seg = np.clip(np.searchsorted(kt, times, side="right") - 1, 0, m - 2)
    h = kt[seg + 1] - kt[seg]
    s = (times - kt[seg]) / h
    s2, s3 = s * s, s * s * s
    h00, h10, h01, h11 = 2 * s3 - 3 * s2 + 1, s3 - 2 * s2 + s, -2 * s3 + 3 * s2, s3 - s2
    p = (h00[:, None] * pos[seg] + (h10 * h)[:, None] * tangents[seg]
         + h01[:, None] * pos[seg + 1] + (h11 * h)[:, None] * tangents[seg + 1])
    q = _slerp(_slerp(quats[seg], quats[seg + 1], s), _slerp(controls[seg], controls[seg + 1], s), 2 * s * (1 - s))
    out = np.tile(np.eye(4), (len(times), 1, 1))
    out[:, :3, :3] = quat_wxyz_to_rotmat(q)
    out[:, :3, 3] = p
    # exactly the keyframe at a keyframe time (the formulas above agree only to rounding)
    at_key = np.isin(times, kt)
    if at_key.any():
        idx = np.searchsorted(kt, times[at_key]) % n
        out[at_key] = c2w[idx]
    fov = (1 - s) * fovs[seg] + s * fovs[seg + 1]
    return out, fov


def _squad_controls(quats: np.ndarray, closed: bool) -> np.ndarray:
    """Shoemake's inner control quaternions ``a_i = q_i exp(-(log(q_i* q_{i+1}) + log(q_i* q_{i-1})) / 4)``.

    ``quats`` are sign-consistent knots (for a closed path the last repeats the first).  Open
    ends use ``a = q`` (the curve starts and ends without extra twist).
    """
    m = len(quats)
    out = quats.copy()
    for i in range(m):
        if closed:
            # the closing knot m-1 is knot 0 again: its neighbours are m-2 and 1
            j = i % (m - 1)
            prev_q, next_q = quats[j - 1 if j > 0 else m - 2], quats[j + 1]
            qi = quats[i]
            # match the neighbours' signs to this knot (the closing knot may carry the other sign)
            prev_q = prev_q if float(prev_q @ qi) >= 0 else -prev_q
            next_q = next_q if float(next_q @ qi) >= 0 else -next_q
        elif 0 < i < m - 1:
            qi, prev_q, next_q = quats[i], quats[i - 1], quats[i + 1]
        else:
            continue
        inv = _qconj(qi)
        tangent = _qlog(_qmul(inv, next_q)) + _qlog(_qmul(inv, prev_q))
        out[i] = _qmul(qi, _qexp(-tangent / 4.0))
    return out


# ----------------------------------------------------------------------------- validation and files


def _fail(path: CameraPath, message: str) -> DataError:
    where = f"{path.source}: " if path.source else ""
    return DataError(f"{where}camera path: {message}")


def validate_path(path: CameraPath) -> None:
    """DataError unless the path can be rendered (keyframes, times, size, fps, length)."""
    keys = path.keyframes
    if not keys:
        raise _fail(path, "no keyframes (add at least one)")
    for w, name in ((path.width, "width"), (path.height, "height")):
        if not isinstance(w, (int, np.integer)) or w < 2 or w % 2:
            raise _fail(path, f"resolution {name} must be an even number of pixels >= 2 (the mp4 encoder needs it), "
                              f"got {w}")
    if not (math.isfinite(path.fps) and path.fps > 0):
        raise _fail(path, f"fps must be > 0, got {path.fps}")
    if not (math.isfinite(path.seconds) and path.seconds > 0):
        raise _fail(path, f"seconds must be > 0, got {path.seconds}")
    if path.fps * path.seconds > MAX_FRAMES:
        raise _fail(path, f"{path.fps} fps x {path.seconds} s is more than {MAX_FRAMES} frames")
    times = np.array([k.time for k in keys], dtype=np.float64)
    if not np.isfinite(times).all() or (np.diff(times) <= 0).any():
        raise _fail(path, f"keyframe times must be finite and strictly increasing, got {times.tolist()[:8]}")
    if path.loop and not (times[0] >= 0 and times[-1] < times[0] + path.seconds):
        raise _fail(path, f"a looping path's keyframe times must lie in [0, seconds={path.seconds}), "
                          f"got {times[0]} .. {times[-1]}")
    for i, k in enumerate(keys):
        c2w = np.asarray(k.c2w)
        if c2w.shape != (4, 4) or not np.isfinite(c2w).all():
            raise _fail(path, f"keyframe {i}: camera_to_world must be a finite 4x4 matrix")
        rot = c2w[:3, :3]
        if (np.abs(rot.T @ rot - np.eye(3)).max() > _ROTATION_TOL or np.linalg.det(rot) <= 0
                or np.abs(c2w[3] - [0, 0, 0, 1]).max() > 1e-9):
            raise _fail(path, f"keyframe {i}: camera_to_world is not a rigid pose (rotation + translation, "
                              "last row 0 0 0 1)")
        if not (math.isfinite(k.fov_y) and 0 < k.fov_y < math.pi):
            raise _fail(path, f"keyframe {i}: field of view must be in (0, 180) degrees, got {math.degrees(k.fov_y)}")


def _orthonormalize(c2w: np.ndarray) -> np.ndarray:
    """The nearest proper rotation (SVD) in place of a rotation that JSON rounding moved slightly."""
    out = np.array(c2w, dtype=np.float64)
    rot = out[:3, :3]
    if np.abs(rot.T @ rot - np.eye(3)).max() > _ROTATION_TOL:  # not a rounded rotation: leave it to be refused
        return out
    u, _, vt = np.linalg.svd(rot)
    if np.linalg.det(u @ vt) > 0:
        out[:3, :3] = u @ vt
    return out


def camera_path_to_json(path: CameraPath) -> dict[str, Any]:
    """The file's JSON object (see the module docstring)."""
    return {
        "format": CAMERA_PATH_FORMAT, "version": CAMERA_PATH_VERSION, "camera_convention": "opencv",
        "resolution": [int(path.width), int(path.height)], "fps": float(path.fps), "seconds": float(path.seconds),
        "loop": bool(path.loop),
        "keyframes": [{"camera_to_world": np.asarray(k.c2w, dtype=np.float64).tolist(),
                       "fov_y_degrees": math.degrees(k.fov_y), "time": float(k.time)} for k in path.keyframes],
    }


def write_camera_path(file: PathLike, path: CameraPath) -> Path:
    """Write ``path`` as a camera-path JSON file, atomically; returns the file."""
    return atomic_write_json(file, camera_path_to_json(path))


def _number(obj: dict, key: str, where: str, default: Any = None) -> float:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"{where}: {key!r} must be a number, got {value!r}")
    return float(value)


def _matrix(value: Any, where: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{where}: camera_to_world must be a 4x4 matrix of numbers") from None
    if arr.shape == (16,):  # nerfstudio writes the matrix flattened, row by row
        arr = arr.reshape(4, 4)
    if arr.shape == (3, 4):
        arr = np.vstack([arr, [0.0, 0.0, 0.0, 1.0]])
    if arr.shape != (4, 4):
        raise DataError(f"{where}: camera_to_world must be 4x4 (or 16 numbers), got shape {list(arr.shape)}")
    return arr


def camera_path_from_json(obj: Any, source: Optional[str] = None) -> CameraPath:
    """A CameraPath from the parsed JSON of a langfield or nerfstudio camera-path file (DataError if bad)."""
    where = source or "camera path"
    if not isinstance(obj, dict):
        raise DataError(f"{where}: a camera path file holds a JSON object, got {type(obj).__name__}")
    if "keyframes" not in obj and "camera_path" in obj:
        return _from_nerfstudio(obj, source)
    if obj.get("format") != CAMERA_PATH_FORMAT:
        raise DataError(f"{where}: not a camera path (format {obj.get('format')!r}, expected "
                        f"{CAMERA_PATH_FORMAT!r}; a nerfstudio file needs its 'camera_path' list)")
    version = obj.get("version")
    if not isinstance(version, int) or not 1 <= version <= CAMERA_PATH_VERSION:
        raise DataError(f"{where}: unsupported camera path version {version!r} (this langfield reads "
                        f"1..{CAMERA_PATH_VERSION})")
    if obj.get("camera_convention", "opencv") != "opencv":
        raise DataError(f"{where}: camera_convention must be 'opencv', got {obj.get('camera_convention')!r}")
    res = obj.get("resolution")
    if (not isinstance(res, list) or len(res) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in res)):
        raise DataError(f"{where}: 'resolution' must be [width, height] in whole pixels, got {res!r}")
    keys_in = obj.get("keyframes")
    if not isinstance(keys_in, list):
        raise DataError(f"{where}: 'keyframes' must be a list")
    keys = []
    for i, k in enumerate(keys_in):
        kw = f"{where}: keyframe {i}"
        if not isinstance(k, dict):
            raise DataError(f"{kw}: must be an object")
        c2w = _matrix(k.get("camera_to_world"), kw)
        keys.append(PathKeyframe(_orthonormalize(c2w) if np.isfinite(c2w).all() else c2w,
                                 math.radians(_number(k, "fov_y_degrees", kw)), _number(k, "time", kw)))
    loop = obj.get("loop", False)
    if not isinstance(loop, bool):
        raise DataError(f"{where}: 'loop' must be true or false, got {loop!r}")
    return CameraPath(keys, width=res[0], height=res[1], fps=_number(obj, "fps", where),
                      seconds=_number(obj, "seconds", where), loop=loop, source=source)


def _from_nerfstudio(obj: dict, source: Optional[str]) -> CameraPath:
    """nerfstudio's sampled ``camera_path`` list (OpenGL camera-to-world, vertical fov in degrees) as keyframes."""
    from langfield.sources.conventions import opengl_to_opencv_c2w

    where = source or "camera path"
    frames = obj["camera_path"]
    if not isinstance(frames, list) or not frames:
        raise DataError(f"{where}: nerfstudio 'camera_path' must be a non-empty list")
    fps = _number(obj, "fps", where, 30.0)
    seconds = _number(obj, "seconds", where, len(frames) / fps if fps > 0 else 0.0)
    width, height = obj.get("render_width"), obj.get("render_height")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (width, height)):
        raise DataError(f"{where}: nerfstudio 'render_width' / 'render_height' must be whole pixels")
    times = np.linspace(0.0, seconds, len(frames)) if len(frames) > 1 else np.zeros(1)
    keys = []
    for i, (f, t) in enumerate(zip(frames, times)):
        kw = f"{where}: camera_path[{i}]"
        if not isinstance(f, dict):
            raise DataError(f"{kw}: must be an object")
        c2w = _matrix(f.get("camera_to_world"), kw)
        c2w = opengl_to_opencv_c2w(_orthonormalize(c2w) if np.isfinite(c2w).all() else c2w)
        keys.append(PathKeyframe(c2w, math.radians(_number(f, "fov", kw)), float(t)))
    return CameraPath(keys, width=width, height=height, fps=fps, seconds=seconds, loop=False, source=source)


def read_camera_path(file: PathLike) -> CameraPath:
    """Read a camera-path JSON file (langfield's, or nerfstudio's ``camera_path.json``); DataError if bad."""
    file = Path(file)
    if not file.is_file():
        raise DataError(f"{file}: camera path file not found")
    obj = read_json(file)  # one-line errors for unreadable / malformed JSON, as every reader gives
    return camera_path_from_json(obj, source=str(file))
