"""Train / eval split of a capture's frames."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional, Sequence

from langfield.types import DataError, Frame


def every_nth_split(n: int, eval_every: int) -> tuple[list[int], list[int]]:
    """Hold out indices 0, k, 2k, ... (the LLFF / mip-NeRF protocol); ``eval_every=0`` holds out none.

    A single frame is never held out: a capture must keep something to train on.
    """
    if eval_every < 0:
        raise DataError(f"eval_every must be >= 0, got {eval_every}")
    if eval_every == 0 or n < 2:
        return list(range(n)), []
    eval_ids = list(range(0, n, eval_every))
    train_ids = [i for i in range(n) if i % eval_every != 0]
    return train_ids, eval_ids


def _strip_dot(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name


def _keys(frame: Frame) -> set[str]:
    """Names a split list may use for a frame: its dataset name, file name, and stem."""
    name = frame.name.replace("\\", "/")
    keys = {name, _strip_dot(name), Path(name).name, frame.image_path.name, frame.image_path.stem}
    return keys


def name_list(value: object, key: str, source: Path) -> list[str]:
    """A split list from a dataset file (e.g. ``train_filenames``): a JSON list of strings, else DataError."""
    if not isinstance(value, list):
        raise DataError(f"{source}: {key} must be a list of file names, got {type(value).__name__} {value!r:.40}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise DataError(f"{source}: {key}[{i}] must be a file name (string), got {item!r:.40}")
    return value


def resolve_names(frames: Sequence[Frame], names: Iterable[str], source: Path) -> list[int]:
    """Indices of the frames matching ``names`` (dataset name, file name or stem); unknown names fail."""
    lookup: dict[str, int] = {}
    for i, f in enumerate(frames):
        for k in _keys(f):
            lookup.setdefault(k, i)
    out: list[int] = []
    for raw in names:
        if not isinstance(raw, str):
            raise DataError(f"{source}: split lists frame {raw!r:.40}, which is not a file name")
        name = raw.strip().replace("\\", "/")
        if not name:
            continue
        for cand in (name, _strip_dot(name), Path(name).name, Path(name).stem):
            if cand in lookup:
                out.append(lookup[cand])
                break
        else:
            raise DataError(f"{source}: split names frame {raw!r}, which is not in the capture")
    return sorted(set(out))


def read_eval_file(frames: Sequence[Frame], eval_file: Path) -> tuple[list[int], list[int]]:
    """Split from a text file naming the held-out frames, one per line (``#`` starts a comment)."""
    eval_file = Path(eval_file)
    try:
        lines = eval_file.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataError(f"{eval_file}: cannot read eval file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise DataError(f"{eval_file}: eval file is not UTF-8 text") from None
    names = [ln.split("#", 1)[0] for ln in lines]
    eval_ids = resolve_names(frames, names, eval_file)
    held = set(eval_ids)
    return [i for i in range(len(frames)) if i not in held], eval_ids


def make_split(
    frames: Sequence[Frame],
    eval_every: int,
    eval_file: Optional[Path],
    listed: Optional[tuple[list[int], list[int]]] = None,
) -> tuple[list[int], list[int]]:
    """Precedence: ``eval_file`` > the dataset's own lists (``listed``) > every ``eval_every``-th frame."""
    if eval_file is not None:
        return read_eval_file(frames, eval_file)
    if listed is not None:
        return listed
    return every_nth_split(len(frames), eval_every)
