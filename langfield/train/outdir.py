"""Where a ``reconstruct`` run writes, so that a scene is never lost: lock, staging, resume, swap, cleanup.

Rules (``OutputDir.prepare``):

* ``out`` absent (or empty): train directly into it; an interrupted run leaves
  its checkpoints there for ``resume``.
* ``resume`` of an unfinished scene: continue in place (that is what its
  checkpoints are for).
* ``resume`` of a finished scene: continue in a staging copy
  ``.NAME.partial`` (hard links: every langfield write replaces a file, none
  modifies one in place, so the copy never changes the scene's files) and swap
  it in at the end; a failed or killed resume leaves the scene as it was.
* ``overwrite`` of an existing ``out``: train into an empty staging directory
  and swap it in once the new scene has been written and evaluated.
* otherwise: refuse.

The whole run holds the writer lock of ``out`` (``langfield.scene_lock``): one
lock on the scene's name covers the scene, the staging directory and the swap.
Entering also finishes a swap a killed run left half-done and removes a killed
run's temp files and staging directories.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any, Optional

from langfield.io import atomic_write_json
from langfield.scene import CONFIG_FILE, is_scene, latest_checkpoint
from langfield.scene_lock import (
    SceneLock, acquire, clean_leftovers, is_finished, note_recovery, recover_interrupted_swap, staging_path, swap_in,
)
from langfield.types import LangfieldError


def read_config(root: Path) -> dict[str, Any]:
    """config.json of ``root`` as a dict ({} when absent or unreadable: callers only merge into it)."""
    try:
        data = json.loads((Path(root) / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def merged_config(existing: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
    """``existing`` updated by ``updates``: what a scene recorded is never dropped by a run that did not produce it."""
    return {**{k: v for k, v in existing.items() if k != "version"}, **updates}


def update_config(root: Path, updates: dict[str, Any]) -> dict[str, Any]:
    """Merge ``updates`` into ``root/config.json`` (atomically); returns what was written."""
    merged = merged_config(read_config(root), updates)
    atomic_write_json(Path(root) / CONFIG_FILE, merged)
    return merged


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError as e:  # no hard links on this file system: a real copy
        if e.errno not in (errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        shutil.copy2(src, dst)


class OutputDir:
    """The output side of one ``reconstruct`` run (use as a context manager; see module docstring)."""

    def __init__(self, out: Path, *, resume: bool, overwrite: bool, command: Optional[str] = None) -> None:
        self.out = Path(out)
        """``out`` as the caller spelt it."""
        self.resume = resume
        self.overwrite = overwrite
        self.command = command
        self.workdir: Optional[Path] = None
        """Where this run writes (``out`` itself or the staging directory); set by ``prepare``."""
        self.staging: Optional[Path] = None
        """The staging directory to swap in at the end, or None (training in place)."""
        self.existing_config: dict[str, Any] = {}
        """config.json of the scene being resumed ({} for a new scene): merged into what this run writes."""
        self._created = False
        self._lock: Optional[SceneLock] = None

    # ------------------------------------------------------------------ lock

    def __enter__(self) -> "OutputDir":
        self._lock = acquire(self.out, self.command, create_parent=True)
        try:
            note_recovery(self.out, recover_interrupted_swap(self.out))
            clean_leftovers(self.out)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    @property
    def root(self) -> Path:
        """The resolved scene directory (staging and swap happen beside it)."""
        return self._lock.scene if self._lock is not None else Path(self.out).resolve()

    # ------------------------------------------------------------------ workdir

    def checkpoint_source(self) -> Path:
        """Scene directory whose newest checkpoint a resumed run loads (raises when there is none)."""
        if latest_checkpoint(self.root) is None:
            raise LangfieldError(f"{self.out}: nothing to resume (no checkpoints/ckpt_*.pt)")
        return self.root

    def prepare(self) -> Path:
        """Create the directory this run writes into and return it."""
        root = self.root
        if self.resume:
            self.checkpoint_source()
            self.existing_config = read_config(root)
            if is_scene(root) and is_finished(root):
                staging = staging_path(root)
                shutil.copytree(root, staging, symlinks=True, copy_function=_link_or_copy)
                self.workdir = self.staging = staging
            else:
                self.workdir = root
            return self.workdir
        if root.exists() and not root.is_dir():
            raise LangfieldError(f"{self.out}: exists and is not a directory")
        if root.exists() and any(root.iterdir()):
            if not self.overwrite:
                raise LangfieldError(f"{self.out}: already exists; pass --overwrite to replace it or --resume to continue it")
            staging = staging_path(root)
            staging.mkdir(parents=True)
            self.workdir = self.staging = staging
            return staging
        self._created = not root.exists()
        root.mkdir(parents=True, exist_ok=True)
        self.workdir = root
        return root

    def discard(self) -> None:
        """Remove what a run that failed before training wrote (a resume in place keeps its scene)."""
        workdir = self.workdir
        if workdir is None or not workdir.exists():
            return
        if self.staging is not None or self._created:
            shutil.rmtree(workdir, ignore_errors=True)
        elif not self.resume:
            for child in workdir.iterdir():
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)

    def commit(self) -> None:
        """Put the finished run in place: swap the staging directory in (two renames; the old scene exists
        until the new one is in place, and a kill between the renames is finished by the next writer)."""
        if self.staging is None:
            return
        swap_in(self.staging, self.root)
        self.workdir, self.staging = self.root, None
