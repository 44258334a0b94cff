"""Which inputs need the pose front end, and the front end as ``reconstruct`` runs it for a scene.

``reconstruct VIDEO|PHOTOS --out SCENE`` makes the posed dataset first
(``poses.estimate_poses``) in ``scene_lock.frontend_path(SCENE)``
(``PARENT/.SCENE.poses/``: the dataset, and while it is being made the frames,
the COLMAP database and the stage markers), under the scene's writer lock.
A rerun after a crash or Ctrl-C resumes there; the finished dataset is reused
as long as the input and the front-end settings are the same.  Once the scene
is written the dataset moves into ``SCENE/data`` and the folder is removed.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any, Callable, Optional

from langfield.frontend.frames import FrameConfig, is_video
from langfield.frontend.sfm import SfmConfig
from langfield.io import atomic_write_json
from langfield.outputs import resolve_path
from langfield.scene_lock import FRONTEND_DATA, frontend_path
from langfield.types import DataError

DONE_FILE = "done.json"


def unposed_kind(path: Path, images: Optional[str] = None) -> Optional[str]:
    """"video" for a video file, "photos" for a folder of images without poses, None for a posed dataset."""
    from langfield.sources import detect_format

    path = Path(path)
    if path.is_file() and is_video(path):
        return "video"
    if path.is_dir():
        try:
            return "photos" if detect_format(path, images) == "images" else None
        except Exception:  # an unreadable folder: the dataset loader says what is wrong with it
            return None
    return None


def _identity(input: Path, frames: FrameConfig, sfm: SfmConfig) -> dict[str, Any]:
    """What a finished front-end dataset was made from: reused only when all of it is unchanged."""
    p = resolve_path(input)
    st = p.stat()
    return {
        "input": str(p), "size": st.st_size if p.is_file() else None, "mtime_ns": st.st_mtime_ns,
        "frames": dataclasses.asdict(frames),
        "sfm": {k: v for k, v in dataclasses.asdict(sfm).items() if k not in ("verbose", "threads")},
    }


def scene_frontend(input: Path, frames: FrameConfig, sfm: SfmConfig, *, progress: bool = True
                   ) -> Callable[[Path], Path]:
    """The ``reconstruct(frontend=...)`` callback: posed dataset of ``input`` for the scene given to it."""

    def run(scene_root: Path) -> Path:
        from langfield.frontend.poses import estimate_poses

        base = frontend_path(scene_root)
        data, done = base / FRONTEND_DATA, base / DONE_FILE
        want = _identity(input, frames, sfm)
        try:
            if data.is_dir() and json.loads(done.read_text()) == json.loads(json.dumps(want)):
                if progress:
                    print(f"poses: reusing the dataset a previous run made in {data}", flush=True)
                return data
        except (OSError, ValueError):
            pass
        done.unlink(missing_ok=True)
        try:
            estimate_poses(input, data, frames=frames, sfm=sfm, work_dir=base / "work", overwrite=True,
                           progress=progress)
        except DataError:
            # The input itself is unusable (no model, too few registered, bad video): nothing worth resuming.
            # A crash or Ctrl-C is not a DataError and keeps the finished stages.
            shutil.rmtree(base, ignore_errors=True)
            raise
        atomic_write_json(done, want)
        return data

    return run
