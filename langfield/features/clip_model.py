"""open_clip models: loading without network, image/text embeddings and MaskCLIP dense features.

Loading never lets open_clip resolve a pretrained tag itself (that path
downloads); we build the architecture from its config with no weights and
load a checkpoint file that :mod:`langfield.features.weights` located, with
``weights_only=True``.  The Hugging Face hub is switched to offline mode for
the whole call so that no code path can reach the network.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
import hashlib
from typing import Callable, Iterator, Optional, Sequence

import torch
import torch.nn.functional as F

from langfield.features import weights as W
from langfield.types import LangfieldError

log = logging.getLogger(__name__)

TINY_BANNER = (
    "CLIP 'test-tiny': a tiny RANDOMLY initialised CLIP for tests and offline demos (hashed text "
    "embeddings: every distinct string gets its own fixed random vector); its embeddings carry "
    "no meaning, only exact label names (identical strings) are meaningful"
)

# Tiny CLIP: real open_clip classes and tokenizer, minimal widths, fixed seed so
# every process builds identical weights (cache entries stay valid).
TINY_CLIP_CFG = dict(
    embed_dim=1024,  # wide so hashed text vectors scatter little around their common cosine
    vision_cfg=dict(image_size=32, patch_size=8, width=64, layers=2, head_width=32),
    text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=2, layers=2),
)
TINY_SEED = 0


@contextlib.contextmanager
def offline_hub() -> Iterator[None]:
    """Force Hugging Face hub offline (env and the already-imported constant) for the duration."""
    old_env = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    consts = None
    old_const = None
    try:
        from huggingface_hub import constants as consts  # type: ignore[no-redef]

        old_const = getattr(consts, "HF_HUB_OFFLINE", None)
        consts.HF_HUB_OFFLINE = True
    except ImportError:
        consts = None
    try:
        yield
    finally:
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if consts is not None:
            consts.HF_HUB_OFFLINE = old_const


@contextlib.contextmanager
def _quiet_root_warnings() -> Iterator[None]:
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


@dataclass
class ClipModel:
    """A loaded open_clip model plus what is needed to feed it."""

    key: str
    """Stable identifier used in cache keys (model:tag, model@file-size, or test-tiny)."""
    model: torch.nn.Module
    """The open_clip CLIP module (eval mode)."""
    tokenizer: object
    """open_clip tokenizer (callable: list[str] -> LongTensor)."""
    image_size: tuple[int, int]
    """(h, w) input size of the image tower."""
    mean: tuple[float, float, float]
    """Per-channel normalisation mean."""
    std: tuple[float, float, float]
    """Per-channel normalisation std."""
    embed_dim: int
    """E, the joint embedding width."""
    is_test: bool = False
    """True for the random test-tiny model (embeddings only meaningful for identical strings)."""
    text_encoder: Optional[Callable[[list[str]], torch.Tensor]] = None
    """Replaces the text tower when set (test-tiny's hashed embeddings); maps T strings -> [T, E]."""

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _normalize(self, images: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=images.device).view(1, 3, 1, 1)
        return (images - mean) / std

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
        """[B, 3, h, w] in [0, 1] (any size: resized to the tower's input) -> [B, E] float32 unit vectors."""
        out = []
        for i in range(0, images.shape[0], batch_size):
            x = images[i : i + batch_size].to(self.device, torch.float32)
            if tuple(x.shape[-2:]) != self.image_size:
                x = F.interpolate(x, size=self.image_size, mode="bicubic", align_corners=False).clamp(0, 1)
            out.append(F.normalize(self.model.encode_image(self._normalize(x)).float(), dim=-1))
        if not out:
            return torch.zeros(0, self.embed_dim)
        return torch.cat(out).cpu()

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Texts -> [T, E] float32 unit vectors (identical strings give identical rows)."""
        if self.text_encoder is not None:
            if not len(texts):
                return torch.zeros(0, self.embed_dim)
            return F.normalize(self.text_encoder(list(texts)).float(), dim=-1).cpu()
        out = []
        for i in range(0, len(texts), batch_size):
            tokens = self.tokenizer(list(texts[i : i + batch_size])).to(self.device)  # type: ignore[operator]
            out.append(F.normalize(self.model.encode_text(tokens).float(), dim=-1))
        if not out:
            return torch.zeros(0, self.embed_dim)
        return torch.cat(out).cpu()

    @torch.no_grad()
    def dense_features(self, image: torch.Tensor, short_side: int) -> torch.Tensor:
        """MaskCLIP-style per-patch embeddings of one image: [3, H, W] in [0, 1] -> [gh, gw, E] unit vectors.

        The image is resized (aspect kept) so its short side is about
        ``short_side`` with both sides multiples of the patch size; positional
        embeddings are interpolated to that grid.  The last block's attention
        is replaced by its value path (value projection + output projection,
        no query/key mixing), and like ClearCLIP we drop that block's residual
        and MLP, which keeps patch tokens local; ``ln_post`` and ``proj`` then
        map them into the joint space the text tower shares.
        """
        from open_clip.transformer import ResidualAttentionBlock, VisionTransformer

        visual = self.model.visual
        if not isinstance(visual, VisionTransformer) or visual.attn_pool is not None:
            raise LangfieldError(f"dense CLIP features need a plain ViT open_clip model; {self.key} is not one")
        last = visual.transformer.resblocks[-1]
        if not isinstance(last, ResidualAttentionBlock) or not isinstance(last.attn, torch.nn.MultiheadAttention):
            raise LangfieldError(f"dense CLIP features: unsupported attention block in {self.key}")
        ph, pw = visual.patch_size
        h, w = image.shape[-2:]
        scale = min(1.0, short_side / min(h, w))  # never upsample: no detail to gain
        gh, gw = max(1, round(h * scale / ph)), max(1, round(w * scale / pw))
        x = image[None].to(self.device, torch.float32)
        x = F.interpolate(x, size=(gh * ph, gw * pw), mode="bicubic", align_corners=False).clamp(0, 1)
        x = self._normalize(x)

        tok = visual.conv1(x).flatten(2).transpose(1, 2)  # [1, gh*gw, width]
        cls = visual.class_embedding.to(tok.dtype).view(1, 1, -1)
        tok = torch.cat([cls, tok], dim=1) + _resize_pos_embed(visual.positional_embedding, visual.grid_size, (gh, gw))
        tok = visual.ln_pre(tok)
        batch_first = visual.transformer.batch_first
        if not batch_first:
            tok = tok.transpose(0, 1)
        for blk in visual.transformer.resblocks[:-1]:
            tok = blk(tok)
        y = last.ln_1(tok)
        width = y.shape[-1]
        attn = last.attn
        v = F.linear(y, attn.in_proj_weight[2 * width :], attn.in_proj_bias[2 * width :] if attn.in_proj_bias is not None else None)
        v = last.ls_1(attn.out_proj(v))
        if not batch_first:
            v = v.transpose(0, 1)
        patches = visual.ln_post(v[:, 1:])
        if visual.proj is not None:
            patches = patches @ visual.proj
        patches = F.normalize(patches.float(), dim=-1)
        return patches.reshape(gh, gw, -1).cpu()


def _resize_pos_embed(pos: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int]) -> torch.Tensor:
    """Bicubically resample the patch part of a [1 + gh*gw, width] positional embedding."""
    if tuple(old_grid) == tuple(new_grid):
        return pos.unsqueeze(0)
    cls, grid = pos[:1], pos[1:]
    grid = grid.reshape(1, old_grid[0], old_grid[1], -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=new_grid, mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(new_grid[0] * new_grid[1], -1)
    return torch.cat([cls, grid], dim=0).unsqueeze(0)


# --------------------------------------------------------------------------- loading

_LOADED: dict[tuple[str, str, bool], ClipModel] = {}


def clip_key(option: str) -> str:
    """Cache key of a --clip option without loading the model (a file is keyed by name and size)."""
    model, tag, path = W.parse_clip_option(option)
    if model == W.TINY:
        return W.TINY
    W.check_clip_model_name(model)
    if path is None and os.environ.get(W.CLIP_ENV):
        path = Path(os.environ[W.CLIP_ENV]).expanduser()
    if path is not None:
        # a local file is keyed by name and size: a different file gets a fresh cache
        size = path.stat().st_size if path.is_file() else 0
        return f"{model}@{path.name}-{size}"
    return f"{model}:{tag}"


def load_clip(option: str = W.DEFAULT_CLIP, device: str = "cpu", random_init: bool = False) -> ClipModel:
    """Load a CLIP option (see :mod:`weights`); memoised per process.

    ``random_init=True`` builds the named architecture with random weights and
    loads no file: for timing benchmarks only (the key says so).
    """
    model_name, tag, path = W.parse_clip_option(option)
    if model_name == W.TINY:
        log.warning(TINY_BANNER)  # every time it is requested, not just on first build
    memo = (option, str(device), random_init)
    if memo in _LOADED:
        return _LOADED[memo]
    if model_name == W.TINY:
        result = _build_tiny(device)
    else:
        W.check_clip_model_name(model_name)
        ckpt = None if random_init else W.find_clip_checkpoint(model_name, tag, path)
        result = _build_named(model_name, tag, ckpt, device)
        result.key = f"{model_name}:RANDOM" if random_init else clip_key(option)
    _LOADED[memo] = result
    return result


TINY_TEXT_COMMON_COSINE = 0.75
"""Cosine between the hashed embeddings of two distinct strings (see ``hashed_text_embeddings``)."""


def _unit_from_seed_text(text: str, dim: int) -> torch.Tensor:
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little") & ((1 << 63) - 1)
    v = torch.randn(dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return v / v.norm()


def hashed_text_embeddings(texts: Sequence[str], dim: int, common_cosine: float = TINY_TEXT_COMMON_COSINE) -> torch.Tensor:
    """test-tiny's text "tower": a fixed unit vector per distinct string, [T, dim].

    Each string gets ``sqrt(c) * u + sqrt(1 - c) * r(s)``, normalised, where
    ``r(s)`` is a Gaussian direction seeded by the string's SHA-256 and ``u`` a
    direction shared by all strings, so distinct strings have cosine ~``c``
    (+- ~(1 - c) / sqrt(dim)) and identical strings 1.

    Why not the random text transformer: an untrained transformer maps unrelated
    label names to cosines anywhere in 0.6-0.97 (the shared start/end tokens and
    positional embeddings dominate), so even exact label names cannot be told
    apart from the relevancy negatives. Why a shared component instead of
    orthogonal directions: trained CLIP text embeddings of unrelated phrases sit
    in a narrow cone (cosines ~0.7-0.85) and LERF's temperature of 10 is tuned
    for that; with orthogonal directions a pixel that is 40% "table leg" would
    already score a saturated relevancy, which no real CLIP model does.
    """
    if not 0.0 <= common_cosine < 1.0:
        raise ValueError(f"common_cosine must be in [0, 1), got {common_cosine}")
    if not len(texts):
        return torch.zeros(0, dim)
    common = _unit_from_seed_text("\x00langfield test-tiny common direction", dim)
    rows = torch.stack([_unit_from_seed_text(t, dim) for t in texts])
    out = common_cosine**0.5 * common + (1.0 - common_cosine) ** 0.5 * rows
    return F.normalize(out, dim=-1).float()


def _build_tiny(device: str) -> ClipModel:
    import open_clip
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        model = open_clip.CLIP(**TINY_CLIP_CFG)  # type: ignore[arg-type]
    model = model.to(device).eval()
    size = TINY_CLIP_CFG["vision_cfg"]["image_size"]  # type: ignore[index]
    return ClipModel(
        key=W.TINY,
        model=model,
        tokenizer=open_clip.SimpleTokenizer(),
        image_size=(size, size),
        mean=tuple(OPENAI_DATASET_MEAN),  # type: ignore[arg-type]
        std=tuple(OPENAI_DATASET_STD),  # type: ignore[arg-type]
        embed_dim=int(TINY_CLIP_CFG["embed_dim"]),  # type: ignore[arg-type]
        is_test=True,
        text_encoder=lambda texts: hashed_text_embeddings(texts, int(TINY_CLIP_CFG["embed_dim"])),  # type: ignore[arg-type]
    )


def _build_named(model_name: str, tag: Optional[str], ckpt: Optional[Path], device: str) -> ClipModel:
    import open_clip
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    pcfg = open_clip.get_pretrained_cfg(model_name, tag) if tag else {}
    # open_clip logs "initialized randomly" on the root logger before we load the
    # checkpoint ourselves; silence that misleading line while building
    with offline_hub(), _quiet_root_warnings():
        try:
            # pretrained=None + pretrained_{image,text}=False: open_clip resolves nothing itself
            model = open_clip.create_model(
                model_name,
                pretrained=None,
                load_weights=False,
                pretrained_image=False,
                pretrained_text=False,
                force_quick_gelu=bool(pcfg.get("quick_gelu", False)),
                device="cpu",
            )
            tokenizer = open_clip.get_tokenizer(model_name)
        except LangfieldError:
            raise
        except Exception as exc:
            raise LangfieldError(f"cannot build CLIP {model_name} offline: {exc}") from exc
        if ckpt is not None:
            try:
                open_clip.load_checkpoint(model, str(ckpt), strict=True, weights_only=True)
            except Exception as exc:
                raise LangfieldError(f"{ckpt}: not a loadable open_clip {model_name} checkpoint ({exc})") from exc
    model = model.to(device).eval()
    size = model.visual.image_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    pre = getattr(model.visual, "preprocess_cfg", {}) or {}
    mean = tuple(pcfg.get("mean", pre.get("mean", OPENAI_DATASET_MEAN)))
    std = tuple(pcfg.get("std", pre.get("std", OPENAI_DATASET_STD)))
    embed_dim = int(model.text_projection.shape[1]) if getattr(model, "text_projection", None) is not None else 0
    if not embed_dim:
        with torch.no_grad():
            embed_dim = int(model.encode_text(tokenizer(["x"])).shape[-1])
    return ClipModel(
        key=model_name,  # load_clip sets the final key
        model=model,
        tokenizer=tokenizer,
        image_size=(int(size[0]), int(size[1])),
        mean=mean,  # type: ignore[arg-type]
        std=std,  # type: ignore[arg-type]
        embed_dim=embed_dim,
    )
