"""One call from rendered per-level feature maps + texts to relevancy, level, mask.

Rendered maps usually hold codec latents [L, H, W, D]; pass the codec's
decoder as ``decode`` and pixels are decoded chunk by chunk straight into
relevancy, so the full [L, H, W, E] CLIP tensor (hundreds of MB) never exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from langfield.query.levels import choose_level, gather_levels
from langfield.query.masks import relevancy_mask
from langfield.query.relevancy import QueryConfig, relevancy, relevancy_from_similarities
from langfield.types import LangfieldError


@dataclass
class Query2DResult:
    """Relevancy of Q texts in one view."""

    maps: torch.Tensor
    """[L, Q, H, W] raw LERF relevancy of every level."""
    levels: torch.Tensor
    """[Q] int64 level chosen per query (highest box-filtered maximum, or the fixed level)."""
    relevancy: torch.Tensor
    """[Q, H, W] raw relevancy at the chosen level."""
    masks: torch.Tensor
    """[Q, H, W] bool masks (``masks.relevancy_mask`` rule)."""


def level_relevancy(
    features: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    config: Optional[QueryConfig] = None,
    decode: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    similarity: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
) -> torch.Tensor:
    """Relevancy [L, Q, H, W] of per-level maps ``features`` [L, H, W, C].

    Without ``decode`` C = E and features must be L2-normalised CLIP vectors;
    with it, C = D latents and ``decode`` maps [n, D] -> [n, E] (normalised here).
    ``similarity`` (e.g. ``LanguageCodec.similarity``) replaces ``decode``: it maps
    latents [n, D] and unit phrases [T, E] straight to cosines [n, T], which a codec
    does without building the E-wide features.
    """
    config = config or QueryConfig()
    if features.ndim != 4:
        raise ValueError(f"expected per-level maps [L, H, W, C], got {tuple(features.shape)}")
    n_levels, h, w, c = features.shape
    q = positives.shape[0]
    if negatives.shape[0] == 0:
        raise LangfieldError("relevancy needs at least one negative phrase")
    phrases = torch.cat([positives, negatives], dim=0).float()
    out = torch.empty(n_levels, q, h * w, dtype=torch.float32, device=features.device)
    with torch.no_grad():
        for lvl in range(n_levels):
            flat = features[lvl].reshape(-1, c)
            for s in range(0, flat.shape[0], config.chunk_size):
                chunk = flat[s : s + config.chunk_size]
                if similarity is not None:
                    sims = similarity(chunk, phrases)
                    out[lvl, :, s : s + chunk.shape[0]] = relevancy_from_similarities(sims, q, config.temperature)
                    continue
                if decode is not None:
                    chunk = torch.nn.functional.normalize(decode(chunk).float(), dim=-1)
                out[lvl, :, s : s + chunk.shape[0]] = relevancy(
                    chunk, positives, negatives, config.temperature, config.chunk_size
                )
    return out.reshape(n_levels, q, h, w)


def query_views(
    features: torch.Tensor,
    texts: Sequence[str],
    embed: Callable[[Sequence[str]], torch.Tensor],
    config: Optional[QueryConfig] = None,
    decode: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
) -> Query2DResult:
    """Texts -> relevancy maps of all levels, level choice, chosen maps and masks for one view.

    ``embed`` is typically a ``TextEmbeddingCache``; negatives come from ``config``.
    """
    config = config or QueryConfig()
    pos = embed(list(texts))
    neg = embed(list(config.negatives))
    maps = level_relevancy(features, pos, neg, config, decode)
    levels, chosen = pick_levels(maps, config)
    return Query2DResult(maps=maps, levels=levels, relevancy=chosen, masks=relevancy_mask(chosen, config))


def pick_levels(maps: torch.Tensor, config: QueryConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-level relevancy [L, Q, H, W] -> (level per query [Q], relevancy at that level [Q, H, W]).

    The level is ``config.level`` when fixed, else the one with the highest
    box-filtered maximum (``levels.choose_level``); the one chain every 2D query follows.
    """
    levels = choose_level(maps, config.smoothing_kernel, config.level)
    return levels, gather_levels(maps, levels)
