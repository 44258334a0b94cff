"""``generate_scene``: render the seeded room and write a nerfstudio-layout dataset.

Output directory layout::

    transforms.json        intrinsics, OpenGL c2w per frame, split, ply path
    images/frame_XXXXX.png RGB, 8 bit
    depth/frame_XXXXX.png  z-depth, uint16 millimetres (0 = no hit)
    semantics/frame_XXXXX.png  uint16 ids (see labels.json)
    labels.json            str(id) -> {"part", "whole"}
    points3d.ply           coloured surface points (x y z red green blue)
    scene.json             primitives, materials, lights (ground truth, debugging)

The directory is assembled in a sibling temporary directory and renamed into
place, so readers never see a half-written scene.  ``write_dataset`` renders any
camera list this way (``generate_scene(path="smooth")`` and ``video.render_video``
use it for smooth, video-like camera paths).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from PIL import Image
from plyfile import PlyData, PlyElement

from langfield.types import LangfieldError

from ..sources.conventions import opengl_to_opencv_c2w
from .cameras import eval_indices, ring_cameras
from .config import SceneConfig
from .layout import Scene, build_scene
from .paths import smooth_path
from .raycast import render_view

DEPTH_SCALE = 0.001
"""Metres per unit of the depth PNGs."""

_MARKER = "scene.json"  # an existing out_dir holding this file is ours to replace


def _check_cameras(scene: Scene, cams: list, margin: float = 0.25) -> None:
    """Every camera must be inside the room and at least ``margin`` away from every primitive."""
    for i, cam in enumerate(cams):
        o = cam.origin
        if not scene.room.contains(o, margin):
            raise LangfieldError(f"synthetic camera {i} at {o.round(2).tolist()} is outside the room")
        for s in scene.objects:
            if s.shape.contains(o, margin):
                raise LangfieldError(f"synthetic camera {i} is inside or too close to {s.part!r}; change SceneConfig")


def _write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")


def _write_ply(path: Path, xyz: np.ndarray, rgb: np.ndarray) -> None:
    verts = np.empty(xyz.shape[0], dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    verts["x"], verts["y"], verts["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    verts["red"], verts["green"], verts["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    PlyData([PlyElement.describe(verts, "vertex")], text=False, byte_order="<").write(str(path))


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


def _write_scene(
    tmp: Path,
    scene: Scene,
    cams: list,
    eval_ids: Optional[list[int]],
    cfg: SceneConfig,
    seed: int,
    *,
    name_digits: int = 5,
    on_view: Optional[Callable[[int, np.ndarray], None]] = None,
    extra_meta: Optional[dict] = None,
) -> None:
    for sub in ("images", "depth", "semantics"):
        (tmp / sub).mkdir()
    n_total = len(cams)
    eval_set = set(eval_ids or [])
    train_ids = [i for i in range(n_total) if i not in eval_set]
    per_view = -(-cfg.n_points // max(len(train_ids), 1))
    pts_rng = np.random.default_rng([seed, 2])
    pts, cols, frames = [], [], []
    for i, cam in enumerate(cams):
        view = render_view(scene, cam, cfg.ambient, cfg.shadows, cfg.supersample)
        name = f"frame_{i:0{name_digits}d}.png"
        rgb8 = _to_uint8(view.rgb)
        if on_view is not None:
            on_view(i, rgb8)
        # Fast zlib level: PNG encoding otherwise rivals the ray casting time.
        Image.fromarray(rgb8).save(tmp / "images" / name, compress_level=1)
        depth_mm = np.clip(np.round(view.depth / DEPTH_SCALE), 0, 65535).astype(np.uint16)
        Image.fromarray(depth_mm).save(tmp / "depth" / name, compress_level=1)
        Image.fromarray(view.semantics).save(tmp / "semantics" / name, compress_level=1)
        if i not in eval_set and per_view > 0:
            # SfM-like cloud: points on surfaces seen by training views, with their observed colour.
            flat = cam.width * cam.height
            pick = pts_rng.choice(flat, size=min(per_view, flat), replace=False)
            pts.append(view.points.reshape(-1, 3)[pick])
            cols.append(rgb8.reshape(-1, 3)[pick])
        frames.append(
            {
                "file_path": f"images/{name}",
                "transform_matrix": opengl_to_opencv_c2w(cam.c2w).tolist(),  # self-inverse: CV -> GL
                "depth_file_path": f"depth/{name}",
                "semantics_path": f"semantics/{name}",
            }
        )
    xyz = np.concatenate(pts)[: cfg.n_points] if pts else np.zeros((0, 3))
    rgb = np.concatenate(cols)[: cfg.n_points] if cols else np.zeros((0, 3), np.uint8)
    _write_ply(tmp / "points3d.ply", xyz, rgb)
    cam0 = cams[0]
    transforms = {
        "camera_model": "PINHOLE",
        "fl_x": cam0.fx,
        "fl_y": cam0.fy,
        "cx": cam0.cx,
        "cy": cam0.cy,
        "w": cam0.width,
        "h": cam0.height,
        "depth_unit_scale_factor": DEPTH_SCALE,
        "ply_file_path": "points3d.ply",
        "train_filenames": [frames[i]["file_path"] for i in train_ids],
        "test_filenames": [frames[i]["file_path"] for i in eval_ids or []],
        "frames": frames,
    }
    if eval_ids is None:  # no split lists: readers hold out views by their own --eval-every rule
        del transforms["train_filenames"], transforms["test_filenames"]
    _write_json(tmp / "labels.json", scene.labels())
    _write_json(tmp / "scene.json", {**scene.to_json(), "n_frames": n_total, "eval_indices": eval_ids, **(extra_meta or {})})
    _write_json(tmp / "transforms.json", transforms)


def _install(tmp: Path, out_dir: Path) -> None:
    """Move the finished ``tmp`` to ``out_dir``, replacing an empty dir or a scene we wrote before."""
    old: Optional[Path] = None
    if out_dir.exists():
        if not out_dir.is_dir():
            raise LangfieldError(f"{out_dir}: exists and is not a directory")
        if any(out_dir.iterdir()):
            if not (out_dir / _MARKER).is_file():
                raise LangfieldError(f"{out_dir}: directory is not empty and holds no synthetic scene; refusing to overwrite")
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.replace(out_dir, old / "scene")
        else:
            out_dir.rmdir()
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def scene_cameras(scene: Scene, cfg: SceneConfig, seed: int, n: int, width: int, height: int, path: str = "ring") -> list:
    """The ``n`` cameras of a camera path: ``"ring"`` (independent views in angular order, the default
    dataset), ``"smooth"`` (a continuous walk, as a video sees it) or ``"static"`` (fixed position, tiny
    rotation: no parallax)."""
    if path == "ring":
        return ring_cameras(scene, cfg, seed, n, width, height)
    if path == "smooth":
        return smooth_path(scene, cfg, seed, n, width, height, kind="orbit")
    if path == "static":
        return smooth_path(scene, cfg, seed, n, width, height, kind="static")
    raise LangfieldError(f"synthetic camera path {path!r}: expected ring, smooth or static")


def write_dataset(
    out_dir: Path | str,
    scene: Scene,
    cams: list,
    *,
    eval_ids: Optional[list[int]],
    cfg: SceneConfig,
    seed: int,
    name_digits: int = 5,
    on_view: Optional[Callable[[int, np.ndarray], None]] = None,
    extra_meta: Optional[dict] = None,
) -> Path:
    """Render ``cams`` (in order) into a nerfstudio dataset at ``out_dir``; return its transforms.json path.

    ``eval_ids`` lists the held-out frames; ``None`` writes no split lists (readers then apply
    their own ``--eval-every``).  Frame ``i`` is ``images/frame_<i, name_digits digits>.png`` (with depth and semantics of the same
    name); ``on_view(i, rgb_uint8)`` sees every rendered image (e.g. to write a video of the same
    frames); ``extra_meta`` is merged into scene.json.  Built in a sibling temp dir and renamed into
    place, like ``generate_scene``.
    """
    if not cams:
        raise LangfieldError("synthetic dataset needs at least one camera")
    out_dir = Path(out_dir).absolute()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _check_cameras(scene, cams)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the dataset should be readable like any output
        _write_scene(
            tmp, scene, cams, eval_ids, cfg, seed, name_digits=name_digits, on_view=on_view, extra_meta=extra_meta
        )
        _install(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir / "transforms.json"


def generate_scene(
    out_dir: Path | str,
    *,
    seed: int = 0,
    width: int = 320,
    height: int = 240,
    n_train: int = 48,
    n_eval: int = 8,
    config: SceneConfig | None = None,
    path: str = "ring",
) -> Path:
    """Render the procedural room for ``seed`` into ``out_dir``; return the transforms.json path.

    Deterministic: the same arguments give byte-identical files. With ``path="ring"`` views lie in
    angular order on a ring; ``"smooth"`` / ``"static"`` follow ``smooth_path`` (frames in time
    order, for video-like and RGB-D sequence tests). Either way the ``n_eval`` held-out views are
    spread evenly between training views (``eval_indices``).
    """
    cfg = config or SceneConfig()
    cfg.validate()
    if width < 8 or height < 8:
        raise LangfieldError(f"synthetic image size {width}x{height} is too small (need at least 8x8)")
    if n_train < 1 or n_eval < 0 or n_eval > n_train:
        raise LangfieldError(f"synthetic views: need n_train >= 1 and 0 <= n_eval <= n_train (got {n_train}, {n_eval})")
    scene = build_scene(seed, cfg)
    n_total = n_train + n_eval
    cams = scene_cameras(scene, cfg, seed, n_total, width, height, path)
    # The default ring dataset's scene.json stays as it always was (its bytes are fingerprinted).
    extra = None if path == "ring" else {"camera_path": path}
    return write_dataset(out_dir, scene, cams, eval_ids=eval_indices(n_total, n_eval), cfg=cfg, seed=seed, extra_meta=extra)
