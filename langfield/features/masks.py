"""SAM automatic masks split into three granularity levels, redundant-mask suppression, segment maps.

SAM answers a single point prompt with three masks ordered by granularity
(subpart, part, whole); LangSplat's insight is to keep those three outputs as
separate hierarchy levels instead of merging them (we sort each prompt's three
outputs by area so the assignment always holds).  Per level we filter by
predicted IoU and stability, remove small masks, run box NMS, then suppress
redundant masks with one pairwise computation (an intersection matrix from a
single matmul) instead of a Python double loop over mask pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from langfield.features.types import SAM_LEVELS


@dataclass
class MaskConfig:
    """Automatic multi-level mask generation settings."""

    points_per_side: int = 32
    """Point prompts per image side (grid of n x n); cost grows with n^2."""
    points_per_batch: int = 64
    """Prompts decoded together (memory ~ batch * 3 * H * W floats)."""
    pred_iou_thresh: float = 0.7
    """Drop masks whose SAM-predicted IoU is below this."""
    stability_score_thresh: float = 0.85
    """Drop masks whose stability (IoU of the mask at logit +-offset) is below this."""
    stability_score_offset: float = 1.0
    """Logit offset used for the stability score."""
    box_nms_thresh: float = 0.7
    """Box IoU above which the lower-scored of two masks is dropped (per level)."""
    min_area_fraction: float = 1e-4
    """Drop masks smaller than this fraction of the image."""
    max_masks_per_level: int = 256
    """Keep at most this many masks per level (highest scores) before suppression."""
    suppress_iou: float = 0.7
    """Mask IoU above which a lower-scored mask is redundant."""
    suppress_min_score: float = 0.1
    """Masks scoring at or below this are dropped in suppression."""
    nested_inside: float = 0.85
    """Containment fraction at which a mask counts as lying inside another ..."""
    nested_outside: float = 0.5
    """... while the other is covered by less than this fraction (a nested pair of different granularity)."""


def suppress_redundant_masks(
    masks: torch.Tensor,
    scores: torch.Tensor,
    iou_thresh: float = 0.7,
    min_score: float = 0.1,
    inside: float = 0.85,
    outside: float = 0.5,
) -> torch.Tensor:
    """Indices (into ``masks``, best score first) of the masks to keep within one level.

    Masks are ranked by score.  Mask j is dropped when its score is
    ``<= min_score``, when it is empty, or when some higher-ranked mask i
    (kept or not: the rule is order-free so it vectorises) either overlaps it
    with IoU ``> iou_thresh`` or forms a *nested pair* with it: one covers
    ``>= inside`` of its own area with the other while the other is covered
    ``< outside``.  A nested pair inside one level means one of them belongs to
    another granularity, so the lower-ranked one goes.

    All pair statistics come from one ``[M, P] @ [P, M]`` product: exact
    integer counts in float32 up to 2^24 pixels per mask.
    """
    m = masks.shape[0]
    if m == 0:
        return torch.zeros(0, dtype=torch.long)
    order = torch.argsort(scores, descending=True, stable=True)
    flat = masks[order].reshape(m, -1).float()
    area = flat.sum(1)
    inter = flat @ flat.T
    union = area[:, None] + area[None, :] - inter
    iou = inter / union.clamp_min(1.0)
    frac = inter / area[:, None].clamp_min(1.0)  # frac[i, j] = |i & j| / |i|
    nested = ((frac >= inside) & (frac.T < outside)) | ((frac < outside) & (frac.T >= inside))
    bad_pair = (iou > iou_thresh) | nested
    higher = torch.ones(m, m, dtype=torch.bool).triu(diagonal=1)  # higher[i, j]: i ranks above j
    dominated = (bad_pair & higher).any(dim=0)
    keep = ~dominated & (scores[order] > min_score) & (area > 0)
    return order[keep]


def paint_segments(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Overlapping masks -> one id map where smaller masks win; returns (``[H, W]`` int32 map, used ids).

    A pixel gets the smallest mask covering it (finest detail visible), -1
    where none.  Masks hidden everywhere are left out of the returned ids and
    the map is renumbered 0..K-1 in the order of ``used``.
    """
    m, h, w = masks.shape
    if m == 0:
        return torch.full((h, w), -1, dtype=torch.int32), torch.zeros(0, dtype=torch.long)
    area = torch.count_nonzero(masks.reshape(m, -1), dim=1)
    small_first = torch.argsort(area, stable=True)
    stacked = masks[small_first].to(torch.uint8)
    first = stacked.argmax(dim=0)  # first (smallest) covering mask in small_first order
    covered = stacked.any(dim=0).bool()
    raw = torch.where(covered, small_first[first], torch.full_like(first, -1))
    # bincount instead of unique: no sort over H*W pixels
    used = torch.nonzero(torch.bincount(raw[covered], minlength=m)).flatten()
    remap = torch.full((m + 1,), -1, dtype=torch.long)
    remap[used] = torch.arange(used.numel())
    seg = remap[raw.clamp_min(-1)]  # index -1 hits the last slot, which stays -1
    return seg.to(torch.int32), used


def _box_of_masks(masks: torch.Tensor) -> torch.Tensor:
    """[M, H, W] bool -> [M, 4] float xyxy (inclusive max + 1); empty masks give zeros."""
    m, h, w = masks.shape
    if m == 0:
        return torch.zeros(0, 4)
    rows = masks.any(dim=2)
    cols = masks.any(dim=1)
    ar_h = torch.arange(h)
    ar_w = torch.arange(w)
    y0 = torch.where(rows, ar_h, h).min(1).values
    y1 = torch.where(rows, ar_h, -1).max(1).values + 1
    x0 = torch.where(cols, ar_w, w).min(1).values
    x1 = torch.where(cols, ar_w, -1).max(1).values + 1
    box = torch.stack([x0, y0, x1, y1], dim=1).float()
    return torch.where(masks.reshape(m, -1).any(1, keepdim=True), box, torch.zeros_like(box))


@torch.no_grad()
def generate_level_masks(sam: torch.nn.Module, image_u8: np.ndarray, cfg: MaskConfig) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Run SAM on a point grid; return per level (subpart, part, whole) ``(masks [M,H,W] bool, scores [M])``."""
    from segment_anything import SamPredictor
    from segment_anything.utils.amg import build_point_grid, calculate_stability_score
    from torchvision.ops import nms

    h, w = image_u8.shape[:2]
    predictor = SamPredictor(sam)
    predictor.set_image(image_u8)
    points = build_point_grid(cfg.points_per_side) * np.array([[w, h]], dtype=np.float64)
    min_area = cfg.min_area_fraction * h * w
    per_level: list[tuple[list[torch.Tensor], list[torch.Tensor]]] = [([], []) for _ in SAM_LEVELS]
    for start in range(0, len(points), cfg.points_per_batch):
        batch = points[start : start + cfg.points_per_batch]
        coords = torch.as_tensor(predictor.transform.apply_coords(batch, (h, w)), dtype=torch.float32)
        coords = coords.to(predictor.device)[:, None, :]
        labels = torch.ones(coords.shape[0], 1, dtype=torch.int, device=predictor.device)
        # decoder called directly (not predict_torch) so that only masks passing the cheap
        # predicted-IoU test are upsampled to full resolution
        sparse, dense = sam.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        low_res, iou_pred = sam.mask_decoder(
            image_embeddings=predictor.features,
            image_pe=sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
        )
        # SAM's three outputs are usually subpart/part/whole already; sorting each prompt's
        # three by (low-res) area makes the level assignment guaranteed
        order = (low_res > sam.mask_threshold).flatten(2).sum(-1).argsort(dim=1, stable=True)
        low_res = torch.take_along_dim(low_res, order[:, :, None, None], dim=1)
        iou_pred = torch.take_along_dim(iou_pred, order, dim=1)
        for level in range(len(SAM_LEVELS)):
            score = iou_pred[:, level]
            first = score >= cfg.pred_iou_thresh
            if not bool(first.any()):
                continue
            lg = sam.postprocess_masks(low_res[first, level : level + 1], predictor.input_size, (h, w))[:, 0]
            score = score[first]
            stab = calculate_stability_score(lg, sam.mask_threshold, cfg.stability_score_offset)
            binary = lg > sam.mask_threshold
            area = torch.count_nonzero(binary.flatten(1), dim=1)
            keep = (stab >= cfg.stability_score_thresh) & (area >= max(min_area, 1))
            per_level[level][0].append(binary[keep].cpu())
            per_level[level][1].append(score[keep].float().cpu())
    out = []
    for masks_list, scores_list in per_level:
        masks = torch.cat(masks_list) if masks_list else torch.zeros(0, h, w, dtype=torch.bool)
        scores = torch.cat(scores_list) if scores_list else torch.zeros(0)
        if masks.shape[0]:
            keep = nms(_box_of_masks(masks), scores, cfg.box_nms_thresh)[: cfg.max_masks_per_level]
            masks, scores = masks[keep], scores[keep]
            keep = suppress_redundant_masks(
                masks, scores, cfg.suppress_iou, cfg.suppress_min_score, cfg.nested_inside, cfg.nested_outside
            )
            masks, scores = masks[keep], scores[keep]
        out.append((masks, scores))
    return out
