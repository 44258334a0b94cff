"""On-disk cache of FeatureMaps, one file per (model key, frame name).

Layout: ``<dir>/<model_key>/<frame-slug>.pt``.  Each file is a ``torch.save``
of ``FeatureMap.to_state()`` plus the original frame name and model key, so a
slug collision or a file copied between caches is detected instead of silently
reused.  Writes go to a temp file in the same directory and are renamed into
place, so an interrupted extraction leaves only whole files: rerunning skips
exactly the frames that were finished (resumable).

The cache is not user data: anything derived from it can be recomputed.  An
entry that is damaged (truncated, changed bytes: the archive's CRC-32s are
checked), malformed (wrong keys, inconsistent shapes, segment ids outside the
feature table, NaN/inf features) or foreign (another frame's or model's) is
therefore reported with a warning, deleted, and treated as absent, so the
frame is extracted again.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import torch

from langfield.features.types import FeatureMap
from langfield.integrity import load_torch_file
from langfield.io import atomic_torch_save
from langfield.types import DataError

log = logging.getLogger(__name__)

_FORMAT_VERSION = 1


def _slug(text: str, max_len: int = 80) -> str:
    """File-system-safe, collision-resistant name: readable prefix + short hash of the full text."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "x"
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]
    return f"{clean[:max_len]}-{digest}"


class FeatureCache:
    """FeatureMaps keyed by frame name inside one model-key directory."""

    def __init__(self, directory: Union[str, Path], model_key: str) -> None:
        self.root = Path(directory)
        self.model_key = model_key
        self.dir = self.root / _slug(model_key)

    def path(self, frame_name: str) -> Path:
        return self.dir / f"{_slug(frame_name)}.pt"

    def has(self, frame_name: str) -> bool:
        return self.path(frame_name).is_file()

    __contains__ = has

    def get(self, frame_name: str) -> Optional[FeatureMap]:
        """The cached map, or None when absent or unusable (then a warning, and the entry is deleted)."""
        path = self.path(frame_name)
        if not path.is_file():
            return None
        try:
            state = load_torch_file(path, "feature cache entry")
            fmap = _map_of(state, frame_name, self.model_key, path)
        except DataError as exc:
            _drop(path, str(exc))
            return None
        return fmap

    def put(self, frame_name: str, fmap: FeatureMap) -> Path:
        """Store atomically (``langfield.io``); returns the path."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.path(frame_name)
        state = {
            "version": _FORMAT_VERSION,
            "frame": frame_name,
            "model_key": self.model_key,
            "map": fmap.to_state(),
        }
        return atomic_torch_save(path, state)

    def frames(self) -> Iterator[str]:
        """Names of all frames cached under this model key."""
        if not self.dir.is_dir():
            return
        for p in sorted(self.dir.glob("*.pt")):
            if p.name.startswith("."):  # temp files of langfield.io
                continue
            try:
                state = load_torch_file(p, "feature cache entry")
                frame = state["frame"] if isinstance(state, dict) else None
                if not isinstance(frame, str) or p != self.path(frame):
                    raise DataError(f"{p}: not a feature cache entry of {self.model_key!r}")
                _map_of(state, frame, self.model_key, p)
            except (DataError, KeyError) as exc:
                _drop(p, str(exc))
                continue
            yield frame


def _drop(path: Path, reason: str) -> None:
    log.warning("%s; deleting it, the frame's features will be computed again", reason)
    path.unlink(missing_ok=True)


def _map_of(state: Any, frame_name: str, model_key: str, path: Path) -> FeatureMap:
    """The FeatureMap of the loaded cache entry ``path``; DataError if it is unusable."""
    if not isinstance(state, dict) or state.get("version") != _FORMAT_VERSION or not isinstance(state.get("map"), dict):
        raise DataError(f"{path}: malformed feature cache entry (not a langfield cache entry of this version)")
    if state.get("frame") != frame_name or state.get("model_key") != model_key:
        raise DataError(f"{path}: feature cache entry belongs to frame {state.get('frame')!r} / model "
                        f"{state.get('model_key')!r}, not {frame_name!r} / {model_key!r}")
    m = state["map"]
    try:
        fmap = FeatureMap.from_state(m)
        seg, feats = fmap.segments, fmap.features
        if seg.is_floating_point() or seg.is_complex() or not feats.is_floating_point():
            raise ValueError("segments must be integer ids and features floats")
        if seg.numel() and (int(seg.min()) < -1 or int(seg.max()) >= feats.shape[0]):
            raise ValueError(f"segment ids outside -1..{feats.shape[0] - 1}")
        if not torch.isfinite(feats).all():
            raise ValueError("features contain NaN/inf")
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as exc:
        raise DataError(f"{path}: malformed feature cache entry ({type(exc).__name__}: {exc})") from None
    return fmap
