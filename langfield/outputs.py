"""Inputs are read-only to langfield: the one check every writing command makes before it writes.

An output path may not be an input path, lie inside one or contain one
(``reconstruct room --out room --overwrite`` would otherwise replace the
dataset by a scene; ``--out room/images --overwrite`` would delete the
images).  Paths are compared after resolving symlinks and ``..``, so an alias
of an input is refused as well.  The check only reads the file system.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Optional, Union

from langfield.types import LangfieldError

PathLike = Union[str, "os.PathLike[str]"]


def resolve_path(path: PathLike) -> Path:
    """``path`` absolute, ``~`` expanded, symlinks and ``..`` resolved (it need not exist)."""
    # strict=False: an output usually does not exist yet; its existing prefix is still resolved.
    return Path(os.path.expanduser(os.fspath(path))).resolve(strict=False)


def input_dir(path: PathLike) -> Path:
    """The directory an input path stands for: a file's folder (transforms.json, cameras file), else itself."""
    p = resolve_path(path)
    return p.parent if p.is_file() else p


def overlap(a: Path, b: Path) -> Optional[str]:
    """How resolved path ``a`` relates to resolved path ``b``: "is", "is inside", "contains" or None."""
    if a == b:
        return "is"
    if a.is_relative_to(b):
        return "is inside"
    if b.is_relative_to(a):
        return "contains"
    return None


def check_output(out: PathLike, inputs: Iterable[Optional[PathLike]], *, flag: str = "--out") -> None:
    """Raise LangfieldError when ``out`` is, is inside or contains any of ``inputs`` (None entries skipped).

    Call it before creating or removing anything.  File inputs stand for
    themselves here (``--cameras cams.json`` forbids only that file, not its
    folder); pass ``input_dir(p)`` where a file's whole folder is the input
    (a dataset's transforms.json and the images beside it).
    """
    target = resolve_path(out)
    for inp in inputs:
        if inp is None or not str(inp):
            continue
        source = resolve_path(inp)
        how = overlap(target, source)
        if how is not None:
            raise LangfieldError(
                f"{flag} {out} {how} the input {inp}: langfield never writes into its inputs; "
                "choose an output path outside them"
            )
