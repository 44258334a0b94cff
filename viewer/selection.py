"""3D selection for the viewer: text -> selected Gaussians (points + colours) -> PLY export.

Goes through the core's ``langfield.query.LanguageField`` (``select``: the Gaussians are
decoded once per scene, lazily, so the first "select 3D" pays for decoding every Gaussian)
and ``export_selection``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from langfield.types import LangfieldError
from langfield.viewer.core import RenderCore

# Points sent to the browser: a selection of millions would stall the websocket.
MAX_POINTS = 200_000


@dataclass
class Selection:
    """The outcome of one 3D text selection."""

    query: str
    """Query text."""
    level: int
    """Feature level used."""
    mask: torch.Tensor
    """[N] bool: selected Gaussians."""
    points: np.ndarray
    """[M, 3] float32 means of (at most ``MAX_POINTS``) selected Gaussians."""
    colors: np.ndarray
    """[M, 3] uint8 turbo colour of each point's relevancy (min..max of the selection)."""

    @property
    def count(self) -> int:
        return int(self.mask.sum())


class Selector:
    """Runs 3D queries on a ``RenderCore``'s language scene."""

    def __init__(self, core: RenderCore) -> None:
        if core.language is None:
            raise LangfieldError(core.language_note or "scene has no language field")
        self.core = core
        self.field = core.language

    def select(self, query: str, negatives: tuple[str, ...] = (), level: Optional[int] = None,
               threshold: float = 0.5) -> Selection:
        """Gaussians whose LERF relevancy to ``query`` exceeds ``threshold`` (as ``langfield select``)."""
        from langfield.query import turbo_colormap

        text = query.strip()
        if not text:
            raise LangfieldError("type a query before selecting")
        self.core.check_level(level)
        with self.core.lock:  # shares the text cache and codec with the render threads
            res = self.field.select(text, threshold, negatives=negatives, level=level)
            means = self.field.params["means"].detach().float().cpu()
        idx = torch.nonzero(res.mask.cpu()).squeeze(1)
        if len(idx) > MAX_POINTS:  # even stride: a deterministic, spatially unbiased subset
            idx = idx[torch.linspace(0, len(idx) - 1, MAX_POINTS).long()]
        rel = res.relevancy.detach().float().cpu()[idx]
        t = ((rel - rel.min()) / (rel.max() - rel.min()).clamp_min(1e-9)).numpy() if len(rel) else np.zeros(0)
        means = means[idx].numpy()
        colors = (turbo_colormap(t) * 255 + 0.5).astype(np.uint8).reshape(-1, 3)
        return Selection(text, int(res.level), res.mask, means.astype(np.float32).reshape(-1, 3), colors)

    def export(self, selection: Selection, out_dir: Optional[Path] = None) -> Path:
        """Write the selected Gaussians (all of them, latents included) to OUT_DIR/<query>.ply."""
        from langfield.query import export_selection

        if selection.count == 0:
            raise LangfieldError(f"nothing selected for {selection.query!r}: lower the threshold or change the query")
        out_dir = Path(out_dir) if out_dir is not None else self.core.root / "selections"
        slug = re.sub(r"[^A-Za-z0-9]+", "_", selection.query).strip("_").lower()[:40] or "selection"
        from contextlib import nullcontext

        from langfield.outputs import check_output
        from langfield.outputs import resolve_path
        from langfield.scene_lock import scene_writer

        # Into the scene (the default SCENE/selections): as its one writer; elsewhere: never into an input.
        inside = resolve_path(out_dir).is_relative_to(resolve_path(self.core.root))
        if not inside:
            check_output(out_dir, [self.core.root], flag="export dir")
        with self.core.lock, (scene_writer(self.core.root) if inside else nullcontext()):
            return export_selection(out_dir / f"{slug}.ply", self.field.params, selection.mask)
