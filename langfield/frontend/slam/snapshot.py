"""Atomic snapshots of a SLAM map as a complete scene directory.

A snapshot is written whole into the staging directory ``.NAME.partial`` (``save_scene``, the
trajectory) and then swapped in with two renames, exactly like a finished ``reconstruct
--overwrite`` (``.NAME`` -> ``.NAME.old``, staging -> ``NAME``): a reader never sees a mix of two
snapshots, and a run killed between the renames is completed by the next writer or reader
(``scene_lock.recover_interrupted_swap``; the staging config says ``finished``).  The caller
holds the scene's writer lock for the whole run.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from langfield.scene import TRAJECTORY_FILE, SceneCamera, save_scene, write_manifest
from langfield.scene_lock import staging_path, swap_in
from langfield.trajectory import write_tum


def write_snapshot(root: Path, params: torch.nn.ParameterDict, cameras: list[SceneCamera], config: dict[str, Any],
                   timestamps: np.ndarray, c2w: np.ndarray) -> Path:
    """Replace scene ``root`` by the given map (hold ``root``'s writer lock); returns ``root``."""
    root = Path(root)
    staging = staging_path(root)
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    save_scene(staging, params, cameras, {**config, "finished": True})
    if len(timestamps):
        write_tum(staging / TRAJECTORY_FILE, timestamps, c2w, header="langfield slam: estimated c2w (OpenCV axes)")
    write_manifest(staging)  # as every finished scene: `langfield check` / readers verify its files
    swap_in(staging, root)
    return root
