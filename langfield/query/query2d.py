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


# --------------------------------------------------------------------------- per-Gaussian scoring, composited

SPLAT_KINDS = ("splat-sims", "splat-relevancy")
"""How per-Gaussian scores become pixels: composite the cosines to every phrase and take LERF's
softmax per pixel (``splat-sims``), or composite each Gaussian's LERF relevancy (``splat-relevancy``)."""

MIN_ALPHA = 1e-3
"""Pixels whose accumulated opacity is below this show nothing: their relevancy is 0."""


def splat_channels(
    features: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor, kind: str, temperature: float = 10.0
) -> torch.Tensor:
    """Per-Gaussian channels [N, L*C] to composite for a query, from decoded unit features [L, N, E].

    ``splat-sims``: C = Q + M cosines (positives, then negatives) per level; ``splat-relevancy``:
    C = Q LERF relevancies per level. One [N, E] x [E, Q + M] matmul per level.
    """
    if kind not in SPLAT_KINDS:
        raise LangfieldError(f"unknown per-Gaussian relevancy kind {kind!r} (one of {', '.join(SPLAT_KINDS)})")
    if negatives.shape[0] == 0:
        raise LangfieldError("relevancy needs at least one negative phrase")
    n_levels, n, _ = features.shape
    q = positives.shape[0]
    phrases = torch.cat([positives, negatives], dim=0).to(device=features.device, dtype=torch.float32)
    per_level = []
    for lvl in range(n_levels):
        sims = torch.nn.functional.linear(features[lvl].float(), phrases)  # [N, Q + M]
        per_level.append(sims if kind == "splat-sims" else relevancy_from_similarities(sims, q, temperature).T)
    return torch.stack(per_level, dim=1).reshape(n, -1).contiguous()


def composited_relevancy(
    channels: torch.Tensor, alpha: torch.Tensor, num_levels: int, num_positives: int, kind: str,
    temperature: float = 10.0,
) -> torch.Tensor:
    """Relevancy [L, Q, H, W] from composited ``splat_channels`` [H, W, L*C] and the pass's alpha [H, W].

    The channels are divided by alpha, so a pixel holds the opacity-weighted MEAN of its
    Gaussians' scores (a background of 0 would otherwise pull every soft edge towards "no
    match"); blending scores, never latents, is what keeps borders free of features of neither side.
    """
    if kind not in SPLAT_KINDS:
        raise LangfieldError(f"unknown per-Gaussian relevancy kind {kind!r} (one of {', '.join(SPLAT_KINDS)})")
    h, w, width = channels.shape
    if width % num_levels:
        raise ValueError(f"{width} channels do not split into {num_levels} levels")
    a = alpha.reshape(h * w, 1, 1).float()
    x = channels.reshape(h * w, num_levels, width // num_levels).float()  # [HW, L, C], a view
    if kind == "splat-sims":
        # max_j (n_j / a) = (max_j n_j) / a for a > 0: the margin is taken before dividing (fewer ops)
        # the max over the few negatives as a chain of elementwise maxima: exact, and about twice as fast
        # on a CPU as a reduction over a short strided last dim (per viewer frame)
        top = x[..., num_positives]
        for j in range(num_positives + 1, x.shape[-1]):
            top = torch.maximum(top, x[..., j])
        margin = x[..., :num_positives] - top[..., None]
        out = torch.sigmoid((temperature * margin) / a.clamp_min(MIN_ALPHA))
    else:
        out = x[..., :num_positives] / a.clamp_min(MIN_ALPHA)
    out = out.masked_fill(a < MIN_ALPHA, 0.0)  # [HW, L, Q]
    return out.permute(1, 2, 0).reshape(num_levels, num_positives, h, w)
