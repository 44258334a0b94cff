"""The SAM + CLIP hierarchy (LangSplat-style): three mask levels, one CLIP embedding per mask."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from langfield.features.clip_model import ClipModel
from langfield.features.masks import MaskConfig, generate_level_masks, paint_segments
from langfield.features.sam_model import SamModel
from langfield.features.types import SAM_LEVELS, FeatureMap, normalize_f16


@dataclass
class SamClipConfig:
    """Settings of the sam-clip extractor."""

    masks: MaskConfig = field(default_factory=MaskConfig)
    """Mask generation and suppression settings."""
    crop_batch: int = 32
    """Crops per CLIP forward pass."""


def masked_square_crops(image: torch.Tensor, masks: torch.Tensor, size: int) -> torch.Tensor:
    """Per mask: the image with everything outside the mask zeroed, cropped to the mask's box,
    zero-padded to a centred square (so CLIP sees the object undistorted) and resized to ``size``.

    image [3, H, W] in [0, 1], masks [M, H, W] bool -> [M, 3, size, size].
    """
    crops = []
    for mask in masks:
        ys, xs = torch.nonzero(mask, as_tuple=True)
        y0, y1 = int(ys.min()), int(ys.max()) + 1
        x0, x1 = int(xs.min()), int(xs.max()) + 1
        crop = (image[:, y0:y1, x0:x1] * mask[y0:y1, x0:x1]).float()
        ch, cw = crop.shape[-2:]
        side = max(ch, cw)
        top, left = (side - ch) // 2, (side - cw) // 2
        crop = F.pad(crop, (left, side - cw - left, top, side - ch - top))
        crops.append(F.interpolate(crop[None], size=(size, size), mode="bilinear", align_corners=False)[0])
    if not crops:
        return torch.zeros(0, 3, size, size)
    return torch.stack(crops).clamp(0, 1)


def extract_sam_clip(image: torch.Tensor, clip: ClipModel, sam: SamModel, cfg: SamClipConfig) -> FeatureMap:
    """[H, W, 3] float in [0, 1] -> FeatureMap with levels (subpart, part, whole)."""
    h, w = image.shape[:2]
    image_u8 = (image.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    levels = generate_level_masks(sam.sam, image_u8, cfg.masks)
    chw = image.permute(2, 0, 1).float().cpu()
    segments = torch.full((len(SAM_LEVELS), h, w), -1, dtype=torch.int32)
    feats = []
    offset = 0
    for li, (masks, _scores) in enumerate(levels):
        seg, used = paint_segments(masks)
        if used.numel() == 0:
            continue
        crops = masked_square_crops(chw, masks[used], clip.image_size[0])
        emb = clip.encode_images(crops, batch_size=cfg.crop_batch)
        segments[li] = torch.where(seg >= 0, seg + offset, seg)
        feats.append(emb)
        offset += emb.shape[0]
    features = torch.cat(feats) if feats else torch.zeros(0, clip.embed_dim)
    return FeatureMap(level_names=SAM_LEVELS, segments=segments, features=normalize_f16(features))
