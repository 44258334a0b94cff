"""3D selection for the viewer: text -> selected Gaussians (drawn as splats, ``highlight.py``) -> PLY export.

Goes through the core's ``langfield.query.LanguageField.select`` -- the rule of ``langfield select``,
with its default threshold (``DEFAULT_THRESHOLD``) -- and ``export_selection``. The Gaussians are
decoded once per scene, lazily, so the first "Select 3D" pays for decoding every Gaussian.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from langfield.query.select3d import SELECT_THRESHOLD
from langfield.types import LangfieldError
from langfield.viewer.core import RenderCore
from langfield.viewer.highlight import Highlight, tint_colors

DEFAULT_THRESHOLD: float = SELECT_THRESHOLD
"""``langfield select``'s default threshold (the one constant both use)."""


@dataclass
class Selection:
    """The outcome of one 3D text selection."""

    query: str
    """Query text."""
    level: int
    """Feature level used."""
    mask: torch.Tensor
    """[N] bool: selected Gaussians (exactly ``LanguageField.select``'s)."""
    relevancy: torch.Tensor
    """[N] each Gaussian's LERF relevancy at ``level``."""
    threshold: float
    """Relevancy threshold the selection used."""
    highlight: Highlight
    """The selected Gaussians with their tint (turbo of relevancy, min..max of the selection) for rendering."""

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
               threshold: float = DEFAULT_THRESHOLD) -> Selection:
        """Gaussians whose LERF relevancy to ``query`` exceeds ``threshold`` (as ``langfield select``)."""
        text = query.strip()
        if not text:
            raise LangfieldError("type a query before selecting")
        self.core.check_level(level)
        with self.core.lock:  # shares the text cache and codec with the render threads
            res = self.field.select(text, threshold, negatives=negatives or None, level=level)
            version = self.field.version
        mask = res.mask.to(torch.bool)
        highlight = Highlight(mask, tint_colors(res.relevancy, mask), version)
        return Selection(text, int(res.level), mask, res.relevancy.detach(), float(threshold), highlight)

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
