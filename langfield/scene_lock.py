"""One writer per scene: an advisory lock per scene name, swap recovery and the cleanup a writer owes.

The lock is ``flock`` on ``PARENT/.NAME.lock``, a file *beside* the scene
directory, not inside it.  One lock on the name covers everything a writer of
``NAME`` touches: the scene, its ``--overwrite``/``--resume`` staging
directory ``.NAME.partial`` and the retired ``.NAME.old``; it holds across the
two renames that swap a staging directory into place (the directory inode
changes, the name does not), and it can be taken before the scene exists, so
two fresh runs into one ``--out`` exclude each other too.  The path is
resolved first: two spellings (or a symlink) of one scene share one lock.

The kernel drops an ``flock`` when its process dies, so a lock file left by a
``kill -9`` never blocks: only a live holder does.  The file holds the
holder's PID, start time and command, for the refusal message only.  A
releasing writer unlinks the file while still holding it; an acquirer
re-checks after locking that the file it locked is still the one at the path.

Writers (``reconstruct``, ``eval``, ``eval-queries``, the viewer's exports)
enter :func:`scene_writer`, which also finishes a swap a killed run left
half-done and removes that run's temp files and staging directories.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from langfield.io import remove_temp_files
from langfield.outputs import resolve_path
from langfield.types import DataError, LangfieldError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no advisory locks, writers are not excluded
    fcntl = None  # type: ignore[assignment]

PathLike = Union[str, "os.PathLike[str]"]
LOCK_SUFFIX = ".lock"
STAGING_SUFFIX = ".partial"
OLD_SUFFIX = ".old"
_CONFIG_FILE = "config.json"  # == langfield.scene.CONFIG_FILE (scene imports this module, not the reverse)


class SceneBusyError(LangfieldError):
    """Another live process holds the scene's writer lock."""


def lock_path(scene: PathLike) -> Path:
    """``PARENT/.NAME.lock`` of a scene."""
    root = resolve_path(scene)
    return root.parent / f".{root.name}{LOCK_SUFFIX}"


def staging_path(scene: PathLike) -> Path:
    """``PARENT/.NAME.partial``: where a run that must not touch the scene until it is done writes."""
    root = resolve_path(scene)
    return root.parent / f".{root.name}{STAGING_SUFFIX}"


FRONTEND_SUFFIX = ".poses"
FRONTEND_DATA = "data"
"""Where a scene made from a video or unposed photos keeps its posed dataset: ``SCENE/data``."""


def frontend_path(scene: PathLike) -> Path:
    """``PARENT/.NAME.poses``: the pose front end's frames, SfM work and dataset for a scene being made from a video
    or unposed photos (kept across a crash so that a rerun resumes it; removed once the scene is written)."""
    root = resolve_path(scene)
    return root.parent / f".{root.name}{FRONTEND_SUFFIX}"


def old_path(scene: PathLike) -> Path:
    """``PARENT/.NAME.old``: the replaced scene, between the two renames of a swap."""
    root = resolve_path(scene)
    return root.parent / f".{root.name}{OLD_SUFFIX}"


@dataclass
class SceneLock:
    """A held writer lock (release it, or use :func:`scene_lock` / :func:`scene_writer`)."""

    scene: Path
    """The resolved scene directory the lock is for."""
    path: Path
    """The lock file."""
    fd: Optional[int]
    """Open descriptor holding the flock (None once released)."""

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            # Unlink only our own file, while still holding it (see the module docstring).
            if os.stat(self.path).st_ino == os.fstat(self.fd).st_ino:
                os.unlink(self.path)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None


def _holder(fd: int) -> dict[str, Any]:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace") or "{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def busy_message(scene: PathLike, info: dict[str, Any]) -> str:
    pid = info.get("pid", "?")
    started = info.get("started", "an unknown time")
    command = info.get("command")
    return (f"{scene} is being written by process {pid} (started {started}"
            + (f": {command}" if command else "") + "); wait for it to finish or stop it")


def _default_command() -> str:
    argv = list(sys.argv)
    if argv and argv[0].endswith(("__main__.py", "langfield")):
        argv[0] = "langfield"
    return " ".join(argv)[:300]


def acquire(scene: PathLike, command: Optional[str] = None, *, create_parent: bool = False) -> SceneLock:
    """Take the writer lock of ``scene`` or raise SceneBusyError naming its live holder.

    ``create_parent``: create the scene's parent folder (a new scene); else a
    missing parent means the scene does not exist (DataError).
    """
    root = resolve_path(scene)
    path = lock_path(root)
    if fcntl is None:  # pragma: no cover
        return SceneLock(root, path, None)
    if not path.parent.is_dir():
        if not create_parent:
            raise DataError(f"{scene}: scene directory does not exist")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise LangfieldError(f"{root}: cannot create {path.parent} ({e.strerror})") from None
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as e:
            raise LangfieldError(f"{root}: cannot create the lock file {path} ({e.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            info = _holder(fd)
            os.close(fd)
            raise SceneBusyError(busy_message(scene, info)) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # we locked a file its holder had just unlinked: take the new one
    info = {"pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": command if command is not None else _default_command()}
    # Written in place, not through langfield.io: replacing the file would replace the locked inode.
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode("utf-8"), 0)
    return SceneLock(root, path, fd)


@contextmanager
def scene_lock(scene: PathLike, command: Optional[str] = None, *, create_parent: bool = False) -> Iterator[SceneLock]:
    """Hold the writer lock of ``scene`` for the ``with`` block."""
    lock = acquire(scene, command, create_parent=create_parent)
    try:
        yield lock
    finally:
        lock.release()


def is_finished(scene: Path) -> bool:
    """True when ``scene/config.json`` is readable and does not say ``"finished": false`` (a run completed it)."""
    try:
        meta = json.loads((scene / _CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("finished", True) is not False


def recover_interrupted_swap(scene: PathLike) -> Optional[str]:
    """Finish a swap a killed writer left between its two renames; hold the lock when calling.

    ``NAME`` missing with ``.NAME.old`` present means the run was killed after
    renaming the old scene away: a finished ``.NAME.partial`` (it is swapped in
    only once complete) becomes ``NAME``, else the old scene goes back.
    Returns "new", "old" or None (nothing to do).
    """
    root = resolve_path(scene)
    old, partial = old_path(root), staging_path(root)
    if os.path.lexists(root) or not old.is_dir():
        return None
    if partial.is_dir() and is_finished(partial):
        partial.rename(root)
        shutil.rmtree(old, ignore_errors=True)
        return "new"
    old.rename(root)
    return "old"


def swap_in(staging: PathLike, scene: PathLike) -> None:
    """Put the finished directory ``staging`` in place of ``scene`` (hold its lock): two renames, the old
    ``scene`` moved to ``.NAME.old`` first, so it exists until the new one is in place; a kill between the
    renames is finished by the next writer (``recover_interrupted_swap``)."""
    root = resolve_path(scene)
    old = old_path(root)
    if old.exists():
        shutil.rmtree(old)
    if os.path.lexists(root):
        root.rename(old)
    else:
        root.parent.mkdir(parents=True, exist_ok=True)
    Path(staging).rename(root)
    shutil.rmtree(old, ignore_errors=True)


def clean_leftovers(scene: PathLike, *, keep_staging: bool = False) -> list[Path]:
    """Remove what killed writers of ``scene`` left (hold the lock): temp files, ``.NAME.old``, ``.NAME.partial``."""
    root = resolve_path(scene)
    removed = list(remove_temp_files(root)) if root.is_dir() else []
    leftovers = [old_path(root)] if root.is_dir() else []  # without NAME, .old may be the only copy
    if not keep_staging:
        leftovers.append(staging_path(root))
    for d in leftovers:
        if d.is_dir() and not d.is_symlink():
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


def note_recovery(scene: PathLike, which: Optional[str]) -> None:
    if which == "new":
        print(f"note: {scene}: finished the swap an interrupted run left half-done (the new scene is in place)",
              file=sys.stderr)
    elif which == "old":
        print(f"note: {scene}: restored the previous scene an interrupted run had moved aside", file=sys.stderr)


@contextmanager
def scene_writer(scene: PathLike, command: Optional[str] = None) -> Iterator[SceneLock]:
    """Write into the existing scene ``scene`` as its one writer (``eval``, ``eval-queries``, viewer exports):
    lock, finish an interrupted swap, clean a killed run's leftovers; DataError when there is no scene."""
    with scene_lock(scene, command) as lock:
        note_recovery(scene, recover_interrupted_swap(lock.scene))
        if not lock.scene.is_dir():
            raise DataError(f"{scene}: scene directory does not exist")
        clean_leftovers(lock.scene)
        yield lock


def recover_for_reading(scene: PathLike) -> None:
    """For readers of a missing scene: finish an interrupted swap if one is pending (briefly taking the lock).

    A live writer in the middle of its swap makes this raise SceneBusyError,
    which says who is writing instead of "does not exist".
    """
    root = resolve_path(scene)
    if os.path.lexists(root) or not old_path(root).is_dir():
        return
    with scene_lock(root, command="recover interrupted swap") as lock:
        note_recovery(scene, recover_interrupted_swap(lock.scene))
