"""Atomic file writes: the one place langfield writes a file that someone may read back.

Every writer goes through ``atomic_write_with``: the content is written to a
temp file in the target's directory (``.NAME.<random>.tmp``), flushed, given
the permissions an ordinary ``open()`` would have (the user's umask, not
``mkstemp``'s 0600) and renamed onto the target with ``os.replace``.  A crash
or kill at any moment leaves either the old file or the new one, never half
of one; the leftover temp file is recognisable by ``is_temp_file`` so the next
run on the same directory can remove it (``remove_temp_files``).

JSON is written strictly: NaN and infinities become ``null`` (``json_safe``),
so every JSON file and every JSON line langfield prints is valid JSON.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]
TEMP_SUFFIX = ".tmp"
"""Suffix of every temp file ``atomic_write_with`` creates (its prefix is ``.`` + the target's name + ``.``)."""


_UMASK: list[int] = []


def _umask() -> int:
    # os.umask can only be read by setting it: read it once (the first write) and keep it, so that
    # threads writing later never see the brief umask(0) of another thread's read.
    if not _UMASK:
        mask = os.umask(0o022)
        os.umask(mask)
        _UMASK.append(mask)
    return _UMASK[0]


def atomic_write_with(path: PathLike, write: Callable[[BinaryIO], None], *, fsync: bool = False) -> Path:
    """Call ``write(fileobj)`` on a temp file beside ``path``, then rename it onto ``path``.

    The parent directory is created.  ``fsync=True`` forces the bytes to disk before the
    rename (for files a crash must never truncate, such as the Gaussians' PLY).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.filename is None:
            # A failed write() (disk full, I/O error) names no file: name the one being written.
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
    return path


def atomic_write_bytes(path: PathLike, data: bytes, *, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write_with(path, lambda fh: fh.write(data), fsync=fsync)


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def json_safe(obj: Any) -> Any:
    """``obj`` with NaN/inf floats replaced by None and numpy/Path values made JSON-native."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k) if isinstance(k, Path) else k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    return obj


def dumps_json(obj: Any, *, indent: int | None = 2) -> str:
    """Strict JSON text of ``obj`` (no NaN; numpy values and paths converted)."""
    return json.dumps(json_safe(obj), indent=indent, allow_nan=False)


def atomic_write_json(path: PathLike, obj: Any) -> Path:
    """Write ``obj`` as strict, indented JSON (NaN -> null) atomically."""
    return atomic_write_text(path, dumps_json(obj) + "\n")


def atomic_torch_save(path: PathLike, obj: Any, *, fsync: bool = False) -> Path:
    """``torch.save(obj)`` to ``path`` atomically."""
    import torch

    return atomic_write_with(path, lambda fh: torch.save(obj, fh), fsync=fsync)


def atomic_write_npy(path: PathLike, array: np.ndarray) -> Path:
    """``np.save`` to ``path`` atomically."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(array))
    return atomic_write_bytes(path, buf.getvalue())


def atomic_write_png(path: PathLike, image: np.ndarray) -> Path:
    """Write an [H, W] or [H, W, 3|4] uint8/uint16 array as PNG atomically."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(image))
    return atomic_write_with(path, lambda fh: img.save(fh, format="PNG"))


def is_temp_file(path: PathLike) -> bool:
    """True for a temp file that ``atomic_write_with`` leaves behind when its process is killed."""
    name = Path(path).name
    return name.startswith(".") and name.endswith(TEMP_SUFFIX) and name.count(".") >= 3


def remove_temp_files(directory: PathLike, *, recursive: bool = True) -> list[Path]:
    """Delete the temp files a killed writer left in ``directory``; returns what was removed.

    Only call this while holding the directory's writer lock (``langfield.scene_lock``):
    another live writer's temp file would otherwise be taken from under it.
    """
    d = Path(directory)
    if not d.is_dir():
        return []
    found = d.rglob(f".*{TEMP_SUFFIX}") if recursive else d.glob(f".*{TEMP_SUFFIX}")
    removed = []
    for p in found:
        if p.is_file() and is_temp_file(p):
            try:
                p.unlink()
                removed.append(p)
            except FileNotFoundError:
                pass
    return removed
