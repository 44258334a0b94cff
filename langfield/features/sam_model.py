"""segment-anything models: official architectures with checkpoints loaded safely, plus test-tiny."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

import torch

from langfield.features import weights as W
from langfield.types import LangfieldError

log = logging.getLogger(__name__)

TINY_BANNER = (
    "SAM 'test-tiny': a tiny RANDOMLY initialised Segment Anything for tests and offline demos; "
    "its masks are arbitrary, only exact label names are meaningful"
)
TINY_IMG_SIZE = 64
TINY_SEED = 0


@dataclass
class SamModel:
    """A loaded SAM plus its cache key."""

    key: str
    """Stable identifier for cache keys (vit_h, vit_b@file-size, test-tiny, vit_b:RANDOM)."""
    sam: torch.nn.Module
    """``segment_anything.modeling.Sam`` in eval mode."""
    is_test: bool = False
    """True for test-tiny (random weights: quality thresholds are meaningless)."""


_LOADED: dict[tuple[str, str, bool], SamModel] = {}


def sam_key(option: str) -> str:
    kind, path = W.parse_sam_option(option)
    if kind == W.TINY:
        return W.TINY
    import os
    from pathlib import Path

    if path is None and os.environ.get(W.SAM_ENV):
        path = Path(os.environ[W.SAM_ENV]).expanduser()
    if path is not None:
        size = path.stat().st_size if path.is_file() else 0
        return f"{kind}@{path.name}-{size}"
    return kind


def load_sam(option: str = W.DEFAULT_SAM, device: str = "cpu", random_init: bool = False) -> SamModel:
    """Load a --sam option; memoised.  ``random_init`` = named architecture, no file (timing only)."""
    kind, path = W.parse_sam_option(option)
    if kind == W.TINY:
        log.warning(TINY_BANNER)  # every time it is requested, not just on first build
    memo = (option, str(device), random_init)
    if memo in _LOADED:
        return _LOADED[memo]
    if kind == W.TINY:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(TINY_SEED)
            sam = build_tiny_sam()
        result = SamModel(key=W.TINY, sam=sam.to(device).eval(), is_test=True)
    else:
        from segment_anything import sam_model_registry

        ckpt = None if random_init else W.find_sam_checkpoint(kind, path)
        sam = sam_model_registry[kind](checkpoint=None)
        if ckpt is not None:
            try:
                state = torch.load(ckpt, map_location="cpu", weights_only=True)
                sam.load_state_dict(state)
            except Exception as exc:
                raise LangfieldError(f"{ckpt}: not a loadable SAM {kind} checkpoint ({exc})") from exc
        key = f"{kind}:RANDOM" if random_init else sam_key(option)
        result = SamModel(key=key, sam=sam.to(device).eval())
    _LOADED[memo] = result
    return result


def build_tiny_sam() -> torch.nn.Module:
    """SAM from segment_anything's own classes with a 1-block, 32-wide encoder at 64 px."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    dim, patch = 32, 8
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=TINY_IMG_SIZE,
            patch_size=patch,
            embed_dim=dim,
            depth=1,
            num_heads=2,
            mlp_ratio=2.0,
            out_chans=dim,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=False,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=dim,
            image_embedding_size=(TINY_IMG_SIZE // patch, TINY_IMG_SIZE // patch),
            input_image_size=(TINY_IMG_SIZE, TINY_IMG_SIZE),
            mask_in_chans=4,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=1, embedding_dim=dim, mlp_dim=64, num_heads=2),
            transformer_dim=dim,
            iou_head_depth=2,
            iou_head_hidden_dim=32,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    ).eval()
