"""On-disk cache of FeatureMaps, one file per (model key, frame name).

Layout: ``<dir>/<model_key>/<frame-slug>.pt``.  Each file is a ``torch.save``
of ``FeatureMap.to_state()`` plus the original frame name and model key, so a
slug collision or a file copied between caches is detected instead of silently
reused.  Writes go to a temp file in the same directory and are renamed into
place, so an interrupted extraction leaves only whole files: rerunning skips
exactly the frames that were finished (resumable).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Iterator, Optional, Union

import torch

from langfield.features.types import FeatureMap
from langfield.io import atomic_torch_save
from langfield.types import DataError

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
        """The cached map, or None when absent.  A corrupt or foreign file raises DataError."""
        path = self.path(frame_name)
        if not path.is_file():
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several types for truncated/corrupt files
            raise DataError(f"{path}: corrupt feature cache file ({exc.__class__.__name__}); delete it") from exc
        if state.get("frame") != frame_name or state.get("model_key") != self.model_key:
            raise DataError(
                f"{path}: cache file belongs to frame {state.get('frame')!r} / model {state.get('model_key')!r}"
            )
        return FeatureMap.from_state(state["map"])

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
            if p.name.startswith(".tmp-"):
                continue
            state = torch.load(p, map_location="cpu", weights_only=True)
            yield state["frame"]
