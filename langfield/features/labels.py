"""Label lifting: a pixel's feature is the CLIP text embedding of its label's text.

Fine level = ``Label.part``, coarse level = ``Label.whole`` (ARCHITECTURE.md).
Texts are embedded verbatim (no prompt template) so that a query for the exact
label name lands on the same vector; identical strings always share one
embedding, which is all lifting needs (even with the random test-tiny CLIP).
"""

from __future__ import annotations

from typing import Mapping

import torch

from langfield.features.clip_model import ClipModel
from langfield.features.types import LABEL_LEVELS, FeatureMap, normalize_f16
from langfield.types import DataError, Label


class TextEmbeddingTable:
    """Memoised text -> embedding for one CLIP model (labels repeat across frames)."""

    def __init__(self, clip: ClipModel) -> None:
        self.clip = clip
        self._rows: dict[str, torch.Tensor] = {}

    def __call__(self, texts: list[str]) -> torch.Tensor:
        missing = sorted({t for t in texts if t not in self._rows})
        if missing:
            for text, row in zip(missing, self.clip.encode_text(missing)):
                self._rows[text] = row
        if not texts:
            return torch.zeros(0, self.clip.embed_dim)
        return torch.stack([self._rows[t] for t in texts])


def extract_labels(
    semantics: torch.Tensor, labels: Mapping[int, Label], table: TextEmbeddingTable, frame: str = "?"
) -> FeatureMap:
    """[H, W] int label ids (0 = none) -> FeatureMap with levels (part, whole)."""
    if semantics.ndim != 2:
        raise DataError(f"{frame}: semantics must be [H, W], got {tuple(semantics.shape)}")
    sem = semantics.long().cpu()
    ids = [int(i) for i in torch.unique(sem) if int(i) != 0]
    unknown = [i for i in ids if i not in labels]
    if unknown:
        raise DataError(f"{frame}: semantic ids {unknown[:5]} have no entry in labels.json")
    texts: list[str] = []
    index: dict[str, int] = {}
    lut = torch.full((2, int(sem.max().clamp_min(0)) + 1), -1, dtype=torch.int32)
    for i in ids:
        for level, text in enumerate((labels[i].part, labels[i].whole)):
            if text not in index:
                index[text] = len(texts)
                texts.append(text)
            lut[level, i] = index[text]
    # negative ids (should not occur in uint16 PNGs) count as "none"
    safe = sem.clamp_min(0)
    segments = torch.stack([torch.where(sem > 0, lut[lv][safe], -1) for lv in range(2)]).to(torch.int32)
    return FeatureMap(level_names=LABEL_LEVELS, segments=segments, features=normalize_f16(table(texts)))
