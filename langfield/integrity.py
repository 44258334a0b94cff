"""Checks that a file langfield wrote is still the file it wrote: content hashes and torch archives.

Two tools, used by the readers of our own files:

* ``sha256_file`` hashes a file in 1 MiB chunks (the scene manifest,
  ``langfield.scene.write_manifest`` / ``verify_scene``, records and checks it);
* ``load_torch_file`` loads a ``torch.save`` archive with ``weights_only=True``
  after checking every member's CRC-32.  ``torch.load`` itself does not check
  them: a flipped byte inside a tensor's data loads silently as a different
  number, so without this check a damaged checkpoint, codec or feature-cache
  entry would be used as if it were intact.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path
from typing import Any, Optional, Union

from langfield.types import DataError

PathLike = Union[str, "os.PathLike[str]"]
_CHUNK = 1 << 20


def sha256_file(path: PathLike) -> str:
    """Hex SHA-256 of the file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        # readinto a reused buffer: no per-chunk allocation, hashlib releases the GIL on large updates
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        while True:
            n = fh.readinto(buf)
            if not n:
                break
            h.update(view[:n])
    return h.hexdigest()


def torch_file_problem(path: PathLike) -> Optional[str]:
    """Why ``path`` is not an intact ``torch.save`` archive, or None when it is.

    Reads the whole file once (CRC-32 of every member), which costs about as
    much as loading it.  Files from ``torch.save``'s legacy (non-zip) format are
    reported as not intact: langfield never writes them.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            bad = archive.testzip()
    except FileNotFoundError:
        return "file not found"
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        # A truncated file loses the zip's central directory (at its end): BadZipFile.
        return f"truncated or not a torch file ({type(exc).__name__}: {exc})"
    if bad is not None:
        return f"damaged: checksum of member {bad!r} does not match"
    if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        return "not a torch file (no data.pkl)"
    return None


def load_torch_file(path: PathLike, what: str, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` of an intact archive; DataError naming ``path`` otherwise.

    ``what`` names the file's role in the message ("checkpoint", "codec weights" ...).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    problem = torch_file_problem(path)
    if problem is not None:
        raise DataError(f"{path}: unreadable {what} ({problem})")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types; weights_only refusals are UnpicklingError
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise DataError(f"{path}: unreadable {what} ({type(exc).__name__}: {reason})") from None
