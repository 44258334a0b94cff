"""``langfield render``: a scene rendered from given or orbit cameras into PNG / depth files.

Not evaluation (it was ``eval/render_files.py``): it writes what a user asked to see, so it sits
beside the CLI, on top of the scene, render and geometry layers.
"""

from __future__ import annotations

import math
from pathlib import Path, PurePosixPath
from typing import Optional

import numpy as np
import torch

from langfield.geometry import look_at
from langfield.io import atomic_write_npy, atomic_write_png
from langfield.render.colorize import colorize_depth
from langfield.scene import Scene, SceneCamera
from langfield.types import DataError


def output_name(frame_name: str) -> str:
    """PNG file name for a frame: its basename, with the suffix made ``.png`` when it is not already.

    (Written pixels are always PNG; keeping e.g. ``.jpg`` would mislabel them.)
    """
    base = PurePosixPath(frame_name.replace("\\", "/")).name or "frame"
    p = PurePosixPath(base)
    return base if p.suffix.lower() == ".png" else f"{p.stem if p.suffix else base}.png"


@torch.no_grad()
def render_cameras(
    scene: Scene,
    cameras: list[SceneCamera],
    out_dir: Path,
    *,
    backend: str = "auto",
    background: str = "black",
    subdir_rgb: str = "rgb",
) -> list[Path]:
    """Render each camera: ``rgb/<name>.png``, ``depth/<stem>.npy`` (float32 m) and ``depth/<stem>.png``."""
    from langfield.gaussians.params import sh_degree_of
    from langfield.render.views import background_color, render_params

    out_dir = Path(out_dir)
    names = [output_name(c.name) for c in cameras]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise DataError(f"camera file names collide after taking basenames: {sorted(dupes)[:3]}")
    device = scene.params["means"].device
    degree = sh_degree_of(scene.params)
    written = []
    for cam, name in zip(cameras, names):
        out = render_params(scene.params, cam.to_view(device), sh_degree=degree,
                            background=background_color(background, device), backend=backend, render_depth=True)
        rgb = (out.rgb[0].clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
        atomic_write_png(out_dir / subdir_rgb / name, rgb)
        written.append(out_dir / subdir_rgb / name)
        if out.depth is not None:
            depth = out.depth[0, ..., 0].cpu().numpy().astype(np.float32)
            stem = PurePosixPath(name).stem
            atomic_write_npy(out_dir / "depth" / f"{stem}.npy", depth)
            atomic_write_png(out_dir / "depth" / f"{stem}.png", colorize_depth(depth))
    return written


def orbit_cameras(scene: Scene, n: int) -> list[SceneCamera]:
    """``n`` cameras on a circle around the scene centre, looking at it (turntable).

    Centre: median of the Gaussian means (robust to floaters).  Up: the mean
    of the scene cameras' up vectors (-y in OpenCV).  Radius and height: the
    scene cameras' mean horizontal distance and height relative to the centre.
    Intrinsics: those of the first scene camera.
    """
    if n < 1:
        raise DataError("--orbit needs at least 1 frame")
    if not scene.cameras:
        raise DataError(f"{scene.root}: the scene has no cameras.json to take intrinsics and an orbit from")
    centre = scene.params["means"].detach().median(dim=0).values.cpu().double().numpy()
    c2ws = np.stack([c.c2w for c in scene.cameras])
    up = -c2ws[:, :3, 1].mean(axis=0)
    up /= max(np.linalg.norm(up), 1e-12)
    offsets = c2ws[:, :3, 3] - centre
    height = float((offsets @ up).mean())
    horiz = offsets - np.outer(offsets @ up, up)
    radius = float(np.linalg.norm(horiz, axis=1).mean())
    if radius < 1e-6:
        radius = float(np.linalg.norm(offsets, axis=1).mean()) or 1.0
    # Start at the first camera's azimuth so frame 0 resembles a familiar view.
    a = horiz[0] / max(np.linalg.norm(horiz[0]), 1e-12)
    if np.linalg.norm(horiz[0]) < 1e-9:
        a = np.cross(up, [1.0, 0.0, 0.0]) if abs(up[0]) < 0.9 else np.cross(up, [0.0, 1.0, 0.0])
        a /= np.linalg.norm(a)
    b = np.cross(up, a)
    ref = scene.cameras[0]
    cams = []
    for i in range(n):
        th = 2 * math.pi * i / n
        pos = centre + radius * (math.cos(th) * a + math.sin(th) * b) + height * up
        cams.append(SceneCamera(f"orbit_{i:05d}.png", "orbit", ref.width, ref.height, ref.K.copy(), look_at(pos, centre, up)))
    return cams


def write_animation(frames: list[Path], out_base: Path, fps: int = 15) -> Optional[Path]:
    """Write ``out_base.mp4`` (OpenCV) or, failing that, ``out_base.gif`` (Pillow); None if neither works."""
    from PIL import Image

    if not frames:
        return None
    imgs = [np.asarray(Image.open(p).convert("RGB")) for p in frames]
    h, w = imgs[0].shape[:2]
    try:
        import cv2

        mp4 = out_base.with_suffix(".mp4")
        writer = cv2.VideoWriter(str(mp4), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if writer.isOpened():
            for im in imgs:
                writer.write(im[..., ::-1].copy())
            writer.release()
            if mp4.is_file() and mp4.stat().st_size > 0:
                return mp4
    except Exception:  # any codec trouble: fall back to GIF
        pass
    gif = out_base.with_suffix(".gif")
    pil = [Image.fromarray(im) for im in imgs]
    pil[0].save(gif, save_all=True, append_images=pil[1:], duration=int(1000 / fps), loop=0)
    return gif


def render_camera_path(scene_dir: Path, path_file: Path, out: Path, *, backend: str = "auto", mode: str = "rgb",
                       query: str = "", level: Optional[int] = None, progress: bool = True) -> Path:
    """``langfield render SCENE --camera-path PATH.json --out VIDEO.mp4``: the viewer's "Render video", offline.

    The frames come from the viewer's render core (``langfield.viewer.campath.render_video``), so a
    path saved in the browser renders to the same video here.  Errors in the path file, the mode or
    the query are raised before the scene is loaded or anything is written.
    """
    from tqdm.auto import tqdm

    from langfield.render.camera_path import read_camera_path
    from langfield.render.video import check_video_path
    from langfield.viewer.campath import render_video
    from langfield.viewer.core import LANGUAGE_MODES, MODES, RenderCore, RenderRequest

    check_video_path(out)
    path = read_camera_path(path_file)
    if mode not in MODES:
        raise DataError(f"--mode {mode!r}: one of {', '.join(MODES)}")
    query = " ".join(query.split())
    if mode == "relevancy" and not query:
        raise DataError('--mode relevancy needs --query "TEXT"')
    if query and mode != "relevancy":
        raise DataError(f"--query is only used with --mode relevancy (got --mode {mode})")
    core = RenderCore(scene_dir, backend=backend)
    if mode in LANGUAGE_MODES and not core.has_language:
        raise DataError(f"--mode {mode}: {core.language_note}")
    core.check_level(level)
    request = RenderRequest(mode=mode, query=query, level=level)  # type: ignore[arg-type]
    with tqdm(total=path.num_frames, desc="render video", unit="frame", disable=not progress,
              dynamic_ncols=True) as bar:
        written = render_video(core, path, request, out, progress=lambda done, total: bar.update(1))
    return written
