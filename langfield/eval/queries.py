"""Open-vocabulary query evaluation: localisation accuracy and IoU (LERF / LangSplat protocol).

Per (frame, query) with relevancy maps of all levels [L, H, W]:

* **IoU**: level = highest maximum of ``0.5 * (r + boxfilter_30(r))``; mask by
  ``langfield.query.masks.relevancy_mask``; IoU against the GT mask.
* **Localisation**: level = highest maximum of ``boxfilter_30(r)``; the argmax
  pixel(s) of that filtered map. A hit "in box" when a maximum lies inside any
  GT box (LERF's rule; inclusive, x = column, y = row), "in mask" when it lies
  on the GT mask. Tied maxima: any of them counts (as LangSplat does).

* **Raw localisation** (LERF's rule as LERF states it): the argmax pixel of
  the unsmoothed map at the localisation level; reported beside the smoothed
  one as ``loc_box_raw`` / ``loc_mask_raw``. Smoothing favours regions over
  thin parts: a 3 px chair leg can lose its smoothed maximum to the
  neighbourhood even when every one of its pixels has the top relevancy.

These two level choices are LangSplat's (its IoU and localisation code differ
in exactly this way); with ``QueryConfig.level`` set both use that level.

``aggregate`` reports means over all (frame, query) pairs -- LangSplat's mIoU
and accuracy -- and per query text.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from langfield.io import atomic_write_json
from langfield.eval.annotations import Annotation, FrameAnnotations, mask_box
from langfield.query.levels import box_filter, choose_level
from langfield.query.masks import relevancy_mask
from langfield.query.relevancy import QueryConfig
from langfield.types import LangfieldError

ArrayLike = Union[np.ndarray, torch.Tensor]


def _np(x: ArrayLike) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def localization_hit(
    relevancy: ArrayLike, gt_mask: ArrayLike, boxes: Optional[ArrayLike] = None
) -> tuple[bool, bool]:
    """Whether the maximum of ``relevancy`` [H, W] falls on ``gt_mask`` [H, W] and inside a box.

    ``boxes`` [K, 4] (x1, y1, x2, y2, pixel units, either corner order); when
    None the mask's tight box is used. Pass an already smoothed map for the
    LERF/LangSplat protocol (``evaluate_frame`` does).
    """
    r = _np(relevancy).astype(np.float64)
    m = _np(gt_mask).astype(bool)
    if r.shape != m.shape:
        raise ValueError(f"relevancy {r.shape} and mask {m.shape} differ in size")
    ys, xs = np.nonzero(r == r.max())
    in_mask = bool(m[ys, xs].any())
    b = mask_box(m) if boxes is None else _np(boxes).astype(np.float64).reshape(-1, 4)
    x_lo, x_hi = np.minimum(b[:, 0], b[:, 2]), np.maximum(b[:, 0], b[:, 2])
    y_lo, y_hi = np.minimum(b[:, 1], b[:, 3]), np.maximum(b[:, 1], b[:, 3])
    inside = (
        (xs[:, None] >= x_lo) & (xs[:, None] <= x_hi) & (ys[:, None] >= y_lo) & (ys[:, None] <= y_hi)
    )
    return in_mask, bool(inside.any())


def iou(pred_mask: ArrayLike, gt_mask: ArrayLike) -> float:
    """Intersection over union of two boolean masks; 1.0 when both are empty (they agree)."""
    p, g = _np(pred_mask).astype(bool), _np(gt_mask).astype(bool)
    if p.shape != g.shape:
        raise ValueError(f"masks differ in size: {p.shape} vs {g.shape}")
    union = np.logical_or(p, g).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(p, g).sum() / union)


@dataclass
class QueryEval:
    """Scores of one query text in one frame."""

    frame: str
    """Frame (or view) name."""
    query: str
    """Query text."""
    iou: float
    """IoU of the predicted mask with the GT mask."""
    in_box: bool
    """Relevancy maximum inside a GT box (LERF localisation)."""
    in_mask: bool
    """Relevancy maximum on the GT mask."""
    in_box_raw: bool
    """Maximum of the unsmoothed map inside a GT box."""
    in_mask_raw: bool
    """Maximum of the unsmoothed map on the GT mask."""
    level_iou: int
    """Level used for the mask."""
    level_loc: int
    """Level used for localisation."""


def _resize(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(maps.shape[-2:]) == size:
        return maps.float()
    lead = maps.shape[:-2]
    x = maps.reshape(-1, 1, *maps.shape[-2:]).float()
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return x.reshape(*lead, *size)


def evaluate_frame(
    frame: str,
    relevancy_maps: torch.Tensor,
    texts: Sequence[str],
    annotations: FrameAnnotations,
    config: Optional[QueryConfig] = None,
) -> list[QueryEval]:
    """Score queries ``texts`` with relevancy ``relevancy_maps`` [L, Q, H, W] against one frame's GT.

    Maps are bilinearly resized to the GT size when they differ.
    """
    config = config or QueryConfig()
    if relevancy_maps.ndim != 4 or relevancy_maps.shape[1] != len(texts):
        raise ValueError(f"expected [L, {len(texts)}, H, W] relevancy, got {tuple(relevancy_maps.shape)}")
    missing = [t for t in texts if t not in annotations]
    if missing:
        raise LangfieldError(f"frame {frame}: no ground truth for queries {missing}")
    if not texts:
        return []
    size = annotations[texts[0]].mask.shape
    maps = _resize(relevancy_maps.detach(), size)
    k = config.smoothing_kernel
    lvl_iou = choose_level(maps, k, config.level, raw_weight=0.5)
    lvl_loc = choose_level(maps, k, config.level, raw_weight=0.0)
    results = []
    for qi, text in enumerate(texts):
        ann: Annotation = annotations[text]
        if ann.mask.shape != size:
            raise LangfieldError(f"frame {frame}: GT masks differ in size ({ann.mask.shape} vs {size})")
        li, ll = int(lvl_iou[qi]), int(lvl_loc[qi])
        pred = relevancy_mask(maps[li, qi], config)
        boxes = ann.boxes if len(ann.boxes) else None
        in_mask, in_box = localization_hit(box_filter(maps[ll, qi], k), ann.mask, boxes)
        in_mask_raw, in_box_raw = localization_hit(maps[ll, qi], ann.mask, boxes)
        results.append(QueryEval(frame, text, iou(pred, ann.mask), in_box, in_mask, in_box_raw, in_mask_raw, li, ll))
    return results


def _means(items: Sequence[QueryEval]) -> dict[str, float]:
    n = len(items)
    if n == 0:
        return {"count": 0, **{key: math.nan for key in _KEYS}}
    return {
        "count": n,
        "iou": sum(r.iou for r in items) / n,
        "loc_box": sum(r.in_box for r in items) / n,
        "loc_mask": sum(r.in_mask for r in items) / n,
        "loc_box_raw": sum(r.in_box_raw for r in items) / n,
        "loc_mask_raw": sum(r.in_mask_raw for r in items) / n,
    }


_KEYS = ("iou", "loc_box", "loc_mask", "loc_box_raw", "loc_mask_raw")


def aggregate(results: Sequence[QueryEval]) -> dict:
    """JSON-ready report: ``mean`` over all (frame, query) pairs, ``mean_of_queries``, ``per_query``, ``records``."""
    by_query: dict[str, list[QueryEval]] = {}
    for r in results:
        by_query.setdefault(r.query, []).append(r)
    per_query = {q: _means(items) for q, items in sorted(by_query.items())}
    if per_query:
        mean_of_queries = {
            key: sum(v[key] for v in per_query.values()) / len(per_query) for key in _KEYS
        }
    else:
        mean_of_queries = {key: math.nan for key in _KEYS}
    return {
        "mean": _means(results),
        "mean_of_queries": mean_of_queries,
        "per_query": per_query,
        "records": [asdict(r) for r in results],
    }


def save_report(path: Union[str, Path], report: dict) -> Path:
    """Write a report dict as JSON atomically (NaN written as null)."""
    return atomic_write_json(path, report)
