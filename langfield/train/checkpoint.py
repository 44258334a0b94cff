"""Resumable checkpoints: parameters, optimizer and strategy state, every RNG state, step, config.

Files are ``checkpoints/ckpt_<step:06d>.pt`` written atomically; only the
newest ``keep`` are kept.  Everything stored is a tensor, number, string,
list or dict so it loads with ``torch.load(..., weights_only=True)``.

Loading checks the archive's CRC-32s first (``langfield.integrity``): a
damaged checkpoint is a DataError, never a silently different state, and
``langfield.scene.latest_checkpoint`` falls back to the newest intact one.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from langfield.integrity import load_torch_file
from langfield.io import atomic_torch_save
from langfield.scene import CHECKPOINT_DIR, checkpoint_step, list_checkpoints
from langfield.types import DataError

CHECKPOINT_VERSION = 1


def capture_rng_states(generator: torch.Generator) -> dict[str, Any]:
    """Every RNG state a training step may touch (torch CPU/CUDA, numpy, python, our generator)."""
    np_state = np.random.get_state()
    states: dict[str, Any] = {
        "generator": generator.get_state(),
        "torch": torch.get_rng_state(),
        # numpy's state holds an ndarray, which weights_only loading rejects: store a tensor.
        "numpy": [np_state[0], torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)), *map(_py, np_state[2:])],
        "python": _listify(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any], generator: torch.Generator) -> None:
    generator.set_state(states["generator"])
    torch.set_rng_state(states["torch"])
    np_state = states["numpy"]
    np.random.set_state((np_state[0], np_state[1].numpy().astype(np.uint32), *np_state[2:]))
    random.setstate(_tuplify(states["python"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _py(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _listify(v: Any) -> Any:
    return [_listify(x) for x in v] if isinstance(v, (tuple, list)) else v


def _tuplify(v: Any) -> Any:
    return tuple(_tuplify(x) for x in v) if isinstance(v, list) else v


def checkpoint_path(scene_dir: Path, step: int) -> Path:
    return Path(scene_dir) / CHECKPOINT_DIR / f"ckpt_{step:06d}.pt"


def save_checkpoint(scene_dir: Path, payload: dict[str, Any], step: int, keep: int = 2) -> Path:
    """Atomically write ``payload`` as the checkpoint of ``step`` and delete all but the newest ``keep``.

    Checkpoints of later steps are deleted too: they exist only when this run
    resumed from an older one because they were damaged, and this run replaces them.
    """
    path = checkpoint_path(scene_dir, step)
    atomic_torch_save(path, {"version": CHECKPOINT_VERSION, **payload})
    ckpts = list_checkpoints(scene_dir)
    for later in [p for p in ckpts if checkpoint_step(p) > step]:
        later.unlink(missing_ok=True)
    ckpts = [p for p in ckpts if checkpoint_step(p) <= step]
    for old in ckpts[: max(0, len(ckpts) - keep)]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    data = load_torch_file(path, "checkpoint", map_location=map_location)
    if not isinstance(data, dict) or data.get("version") != CHECKPOINT_VERSION:
        raise DataError(f"{path}: not a langfield checkpoint (or an incompatible version)")
    return data
