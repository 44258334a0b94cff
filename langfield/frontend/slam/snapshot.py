"""Atomic snapshots of a SLAM map as a complete scene directory.

A snapshot is written whole into the staging directory ``.NAME.partial`` (``save_scene``, the
trajectory) and then swapped in with two renames, exactly like a finished ``reconstruct
--overwrite`` (``.NAME`` -> ``.NAME.old``, staging -> ``NAME``): a reader never sees a mix of two
snapshots, and a run killed between the renames is completed by the next writer or reader
(``scene_lock.recover_interrupted_swap``; the staging config says ``finished``).  The caller
holds the scene's writer lock for the whole run.

With a language field (``language.LanguageSnapshot``) the snapshot is a scene like ``reconstruct
--language-schedule lift`` writes: latents as the PLY's language columns, ``codec/`` (codec.pt, codec.json,
contribution.pt), config.json's ``language`` and ``language_config`` sections -- so ``query``, ``select``,
``eval-queries`` and ``view`` open a mid-run snapshot like any scene.  The keyframe feature cache lives beside
the scene during the run (``features_path``: a swap replaces the whole directory) and moves into the final
snapshot as ``features_cache/``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import torch

from langfield.scene import TRAJECTORY_FILE, SceneCamera, save_scene, write_manifest
from langfield.scene_lock import staging_path, swap_in
from langfield.trajectory import write_tum

if TYPE_CHECKING:
    from langfield.frontend.slam.language import LanguageSnapshot

FEATURES_SUFFIX = ".slam-features"
FEATURES_CACHE_DIR = "features_cache"
"""Where the finished scene keeps the keyframe features (as ``reconstruct``'s language stage)."""


def features_path(root: Path) -> Path:
    """``PARENT/.NAME.slam-features``: the run's keyframe feature cache (outside the scene, which swaps whole)."""
    root = Path(root)
    return root.parent / f".{root.name}{FEATURES_SUFFIX}"


def write_snapshot(root: Path, params: torch.nn.ParameterDict, cameras: list[SceneCamera], config: dict[str, Any],
                   timestamps: np.ndarray, c2w: np.ndarray, language: Optional["LanguageSnapshot"] = None,
                   features_cache: Optional[Path] = None) -> Path:
    """Replace scene ``root`` by the given map (hold ``root``'s writer lock); returns ``root``.

    ``features_cache``: a directory moved into the snapshot as ``features_cache/`` (the final one).
    """
    from langfield.codec import save_codec
    from langfield.scene import CODEC_DIR, LANGUAGE_KEY
    from langfield.scene_config import LANGUAGE_CONFIG_KEY
    from langfield.train.lift import save_contribution

    root = Path(root)
    staging = staging_path(root)
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    config = {**config, "finished": True}
    if language is not None:
        n = int(params["means"].shape[0])
        if language.latents.shape[0] != n or language.contribution.shape[0] != n:
            raise RuntimeError(f"language rows ({language.latents.shape[0]}) out of step with the {n} Gaussians")
        params = {**params, "latents": language.latents.detach()}  # type: ignore[assignment]
        save_codec(language.codec, staging / CODEC_DIR, language.codec_report)
        save_contribution(staging, language.contribution, language.num_views)
        config[LANGUAGE_KEY] = language.meta
        config[LANGUAGE_CONFIG_KEY] = language.language_config
    if features_cache is not None and Path(features_cache).is_dir():
        Path(features_cache).rename(staging / FEATURES_CACHE_DIR)
    save_scene(staging, params, cameras, config)
    if len(timestamps):
        write_tum(staging / TRAJECTORY_FILE, timestamps, c2w, header="langfield slam: estimated c2w (OpenCV axes)")
    write_manifest(staging)  # as every finished scene: `langfield check` / readers verify its files
    swap_in(staging, root)
    return root
