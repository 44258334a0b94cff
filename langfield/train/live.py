"""``reconstruct --view``: the training side of a live viewer (a ``LiveView``, e.g. ``langfield.viewer.live.LiveScene``).

Training never imports the viewer (it sits above ``train``): ``reconstruct`` gets any object with ``open`` and
``publish`` and drives it through :class:`LivePublisher`:

1. once the Gaussians exist (after initialisation, or the checkpoint of a resumed run), a snapshot scene is
   written to a temporary directory (PLY, cameras, config -- never into the output, which must come out the same
   with and without ``--view``) and the viewer opens it;
2. every ``every`` steps the trainer's Gaussians are copied (detached clones: the optimizer updates them in
   place) and published; the count changes with densification;
3. once the scene is written the viewer switches to it and the snapshot is removed.

The language field is live only with the joint schedule: its latents are trained with the geometry and its
codec exists before step 0, so the snapshot carries both. With the lift and sequential schedules the latents are
made after the geometry: the viewer shows rgb and depth while training and the language modes once the scene
is written.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping, Optional, Protocol

import torch

from langfield.scene import CODEC_DIR, LANGUAGE_KEY, SceneCamera, save_scene

DEFAULT_VIEW_EVERY = 100
"""Steps between published maps: about a second at GPU training speed, a few seconds on a CPU; one copy of the
parameters each time (``scripts/bench_live_view.py`` measures the cost)."""


class LiveView(Protocol):
    """A viewer following the training (``langfield.viewer.live.LiveScene``)."""

    def open(self, scene_dir: Path, note: Optional[str] = None) -> None: ...

    def publish(self, params: Mapping[str, torch.Tensor], codec: Optional[Any] = None) -> None: ...


def later_note(schedule: str) -> str:
    """What the viewer says instead of "no language field" while a lift/sequential run trains its geometry."""
    return (f"the language field appears when training ends (the {schedule} schedule makes the latents after "
            "the geometry): rgb and depth until then")


class LivePublisher:
    """Opens ``live`` on the run's first Gaussians, publishes copies every ``every`` steps, switches at the end."""

    def __init__(self, live: LiveView, every: int = DEFAULT_VIEW_EVERY) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.live, self.every = live, every
        self.published = 0
        """Maps published after the first snapshot."""
        self._tmp: Optional[tempfile.TemporaryDirectory] = None

    def start(self, params: torch.nn.ParameterDict, cameras: list[SceneCamera], config: dict[str, Any], *,
              language_meta: Optional[dict[str, Any]] = None, codec_dir: Optional[Path] = None,
              later: Optional[str] = None, name: str = "scene") -> Path:
        """Write the snapshot of ``params`` and open the viewer on it; returns the snapshot directory.

        ``language_meta`` + ``codec_dir`` (joint schedule, ``params`` with latents): the snapshot is a language
        scene. ``later``: the schedule whose language field comes at the end (the viewer's note says so).
        ``name``: of the snapshot directory (the viewer's title shows it: the output's name).
        """
        # TemporaryDirectory: removed at exit even when the run dies before ``finish``.
        self._tmp = tempfile.TemporaryDirectory(prefix="langfield-live-")
        root = Path(self._tmp.name) / name
        snapshot = dict(config)
        snapshot.pop(LANGUAGE_KEY, None)
        if language_meta is not None and codec_dir is not None and "latents" in params:
            shutil.copytree(codec_dir, root / str(language_meta.get("codec_dir", CODEC_DIR)))
            snapshot[LANGUAGE_KEY] = dict(language_meta)
        save_scene(root, _copy(params), cameras, snapshot)
        self.live.open(root, note=later_note(later) if later else None)
        return root

    def __call__(self, trainer: Any) -> None:
        """The trainer's per-step hook: publish every ``every`` completed steps."""
        if trainer.step % self.every == 0:
            self.publish(trainer.params)

    def publish(self, params: torch.nn.ParameterDict) -> None:
        self.live.publish(_copy(params))
        self.published += 1

    def finish(self, scene_dir: Path) -> None:
        """Show the written scene, then remove the snapshot."""
        self.live.open(Path(scene_dir))
        self.close()

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _copy(params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached clones (the trainer keeps optimising its tensors in place)."""
    with torch.no_grad():
        return {k: v.detach().clone() for k, v in params.items()}
