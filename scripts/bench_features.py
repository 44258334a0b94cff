#!/usr/bin/env python
"""Seconds per image of the feature extractors; prints JSON.

Measures (all on the chosen device, models built from configs, nothing downloaded):

* ``tiny``: the test-tiny CLIP + SAM (sam-clip and dense paths);
* ``vit``: ViT-B-16 CLIP + SAM vit_b with RANDOM weights (timing only: a random
  SAM's masks are arbitrary, so its IoU/stability thresholds are disabled and
  the mask count is capped by ``--max-masks`` per level).

The input is an LLFF fern image resized to ``--size`` when available, else a
synthetic pattern.  ``--points-per-side`` keeps the SAM prompt grid small
enough to finish in minutes on 2 CPU cores (LangSplat uses 32).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

FERN = Path(__file__).resolve().parents[2] / "shared" / "data" / "llff_fern" / "images_8"


def load_image(width: int, height: int) -> tuple[torch.Tensor, str]:
    from PIL import Image

    files = sorted(FERN.glob("*.png")) if FERN.is_dir() else []
    if files:
        img = Image.open(files[0]).convert("RGB").resize((width, height), Image.BICUBIC)
        return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0), str(files[0])
    y, x = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    return torch.stack([x, y, (x * 7).sin().abs()], dim=-1), "synthetic"


def timed(fn, repeats: int) -> tuple[float, object]:
    fn()  # warm-up (allocations, lazy init)
    t0 = time.perf_counter()
    out = None
    for _ in range(repeats):
        out = fn()
    return (time.perf_counter() - t0) / repeats, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="640x480", help="WxH of the benchmark image")
    ap.add_argument("--points-per-side", type=int, default=8, help="SAM prompt grid (n x n points)")
    ap.add_argument("--points-per-batch", type=int, default=64)
    ap.add_argument("--max-masks", type=int, default=64, help="cap per level for the random-weight SAM")
    ap.add_argument("--dense-short-side", type=int, default=448)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--skip-vit", action="store_true", help="only the tiny models")
    args = ap.parse_args()

    from langfield.features.clip_model import load_clip
    from langfield.features.dense import DenseConfig, extract_dense
    from langfield.features.masks import MaskConfig
    from langfield.features.sam_clip import SamClipConfig, extract_sam_clip
    from langfield.features.sam_model import load_sam

    w, h = (int(v) for v in args.size.lower().split("x"))
    image, source = load_image(w, h)
    image = image.to(args.device)
    masks = MaskConfig(
        points_per_side=args.points_per_side,
        points_per_batch=args.points_per_batch,
        max_masks_per_level=args.max_masks,
    )
    random_masks = replace(masks, pred_iou_thresh=-1e9, stability_score_thresh=0.0, suppress_min_score=-1e9)
    dense_cfg = DenseConfig(short_side=args.dense_short_side)
    result: dict = {
        "image": source,
        "size": [w, h],
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(0),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "points_per_side": args.points_per_side,
        "max_masks_per_level": args.max_masks,
        "dense_short_side": args.dense_short_side,
        "repeats": args.repeats,
    }

    runs = [("tiny", "test-tiny", "test-tiny", False)]
    if not args.skip_vit:
        runs.append(("vit_b16_random+sam_vit_b_random", "ViT-B-16", "vit_b", True))
    for label, clip_opt, sam_opt, random_init in runs:
        clip = load_clip(clip_opt, device=args.device, random_init=random_init)
        sam = load_sam(sam_opt, device=args.device, random_init=random_init)
        cfg = SamClipConfig(masks=random_masks)
        sec_sam, fmap = timed(lambda: extract_sam_clip(image, clip, sam, cfg), args.repeats)
        segs = [int(torch.unique(fmap.segments[i][fmap.segments[i] >= 0]).numel()) for i in range(3)]  # type: ignore[attr-defined]
        # the SAM image encoder alone (its cost does not depend on the prompt grid)
        from segment_anything import SamPredictor

        pred = SamPredictor(sam.sam)
        u8 = (image.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        sec_enc, _ = timed(lambda: pred.set_image(u8), args.repeats)
        sec_dense, dmap = timed(lambda: extract_dense(image, clip, dense_cfg), args.repeats)
        result[label] = {
            "sam_clip_s_per_image": round(sec_sam, 3),
            "sam_image_encoder_s": round(sec_enc, 3),
            "sam_clip_segments_per_level": segs,
            "dense_s_per_image": round(sec_dense, 3),
            "dense_grid": list(dmap.grid_shape),  # type: ignore[attr-defined]
            "embed_dim": clip.embed_dim,
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
