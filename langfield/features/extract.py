"""``extract_features``: one entry point for the three feature sources, with a resumable cache."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from tqdm.auto import tqdm

from langfield.features import weights as W
from langfield.features.cache import FeatureCache
from langfield.features.dense import DenseConfig
from langfield.features.sam_clip import SamClipConfig
from langfield.features.types import FeatureInput, FeatureMap
from langfield.types import DataError, Label, LangfieldError

log = logging.getLogger(__name__)

Method = Literal["labels", "sam-clip", "dense"]
METHODS = ("labels", "sam-clip", "dense")


@dataclass
class ExtractConfig:
    """Per-method settings (only the chosen method's part is used and keyed)."""

    sam_clip: SamClipConfig = field(default_factory=SamClipConfig)
    """Settings of the SAM + CLIP hierarchy."""
    dense: DenseConfig = field(default_factory=DenseConfig)
    """Settings of dense CLIP."""
    device: str = "cpu"
    """Torch device for the models."""
    test_thresholds_for_tiny_sam: bool = True
    """With --sam test-tiny, zero the IoU/stability thresholds (a random SAM never passes them)."""


def _fingerprint(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:8]


def model_key(
    method: str,
    clip: str,
    sam: Optional[str] = None,
    config: Optional[ExtractConfig] = None,
    labels: Optional[Mapping[int, Label]] = None,
) -> str:
    """Cache key: method, model keys and a hash of everything else that changes the output."""
    from langfield.features.clip_model import clip_key
    from langfield.features.sam_model import sam_key

    cfg = config or ExtractConfig()
    if method == "labels":
        extra: Any = {str(k): [v.part, v.whole] for k, v in sorted((labels or {}).items())}
        return f"labels__{clip_key(clip)}__{_fingerprint(extra)}"
    if method == "dense":
        return f"dense__{clip_key(clip)}__{_fingerprint(asdict(cfg.dense))}"
    if method == "sam-clip":
        s = sam or W.DEFAULT_SAM
        mcfg = asdict(cfg.sam_clip.masks)
        return f"sam-clip__{clip_key(clip)}__{sam_key(s)}__pps{mcfg['points_per_side']}__{_fingerprint(mcfg)}"
    raise LangfieldError(f"unknown feature method {method!r}; use one of {', '.join(METHODS)}")


def _as_inputs(
    frames_or_views: Union[Sequence[Any], Mapping[str, Any]], semantics: Optional[Mapping[str, Any]]
) -> list[FeatureInput]:
    """Accept FeatureInput / View-like objects (``name``, ``rgb``, ``semantics``) or {name: rgb}."""
    items: list[FeatureInput] = []
    if isinstance(frames_or_views, Mapping):
        for name, rgb in frames_or_views.items():
            items.append(FeatureInput(str(name), rgb, None))
    else:
        for obj in frames_or_views:
            if not hasattr(obj, "name"):
                raise LangfieldError(f"extract_features: expected views/FeatureInputs with a name, got {type(obj).__name__}")
            items.append(FeatureInput(obj.name, getattr(obj, "rgb", None), getattr(obj, "semantics", None)))
    if semantics is not None:
        for it in items:
            if it.name in semantics:
                it.semantics = semantics[it.name]
    names = [it.name for it in items]
    if len(set(names)) != len(names):
        raise LangfieldError("extract_features: frame names must be unique (they key the cache)")
    return items


def _to_tensor(x: Any, frame: str, what: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if what == "rgb":
        if t.ndim != 3 or t.shape[-1] != 3:
            raise DataError(f"{frame}: image must be [H, W, 3], got {tuple(t.shape)}")
        t = t.float()
        if t.max() > 1.5:  # uint8-range input: accept it rather than fail on a common mistake
            t = t / 255.0
    return t


def extract_features(
    frames_or_views: Union[Sequence[Any], Mapping[str, Any]],
    method: Method,
    *,
    clip: str = W.DEFAULT_CLIP,
    sam: Optional[str] = None,
    cache_dir: Optional[Union[str, Path]] = None,
    labels: Optional[Mapping[int, Label]] = None,
    semantics: Optional[Mapping[str, Any]] = None,
    progress: bool = True,
    config: Optional[ExtractConfig] = None,
) -> dict[str, FeatureMap]:
    """Features for every frame, from the cache where present.

    ``frames_or_views``: ``langfield.types.View`` / :class:`FeatureInput`
    objects (``rgb`` [H, W, 3] float32 in [0, 1]; ``semantics`` [H, W] int64
    for labels) or a ``{name: rgb}`` mapping (then ``semantics={name: ids}``).
    ``method``: "labels" (needs ``labels``: id -> Label), "sam-clip" (``sam``
    default vit_h) or "dense".  Models load only if some frame is not cached
    yet, so a finished cache needs no weights.
    """
    if method not in METHODS:
        raise LangfieldError(f"unknown feature method {method!r}; use one of {', '.join(METHODS)}")
    cfg = config or ExtractConfig()
    if method == "labels" and labels is None:
        raise LangfieldError("label lifting needs the labels.json map (labels=...)")
    sam_option = sam or W.DEFAULT_SAM
    key = model_key(method, clip, sam_option, cfg, labels)
    cache = FeatureCache(cache_dir, key) if cache_dir is not None else None
    inputs = _as_inputs(frames_or_views, semantics)
    out: dict[str, FeatureMap] = {}
    todo: list[FeatureInput] = []
    for it in inputs:
        hit = cache.get(it.name) if cache is not None else None
        if hit is not None:
            out[it.name] = hit
        else:
            todo.append(it)
    if todo:
        run = _Runner(method, clip, sam_option, cfg, labels)
        for it in tqdm(todo, desc=f"features ({method})", disable=not progress, unit="frame"):
            fmap = run(it)
            if cache is not None:
                cache.put(it.name, fmap)
            out[it.name] = fmap
    elif inputs:
        log.info("all %d frames found in the feature cache (%s)", len(inputs), key)
    return {it.name: out[it.name] for it in inputs}


class _Runner:
    """Loads the models of one method once and computes one frame at a time."""

    def __init__(self, method: str, clip: str, sam: str, cfg: ExtractConfig, labels: Optional[Mapping[int, Label]]):
        from langfield.features.clip_model import load_clip

        self.method = method
        self.cfg = cfg
        self.labels = labels
        self.clip = load_clip(clip, device=cfg.device)
        self.sam = None
        self.sam_cfg = cfg.sam_clip
        if method == "sam-clip":
            from langfield.features.sam_model import load_sam

            self.sam = load_sam(sam, device=cfg.device)
            if self.sam.is_test and cfg.test_thresholds_for_tiny_sam:
                m = cfg.sam_clip.masks
                self.sam_cfg = SamClipConfig(
                    masks=type(m)(**{**asdict(m), "pred_iou_thresh": -1e9, "stability_score_thresh": 0.0,
                                     "suppress_min_score": -1e9}),
                    crop_batch=cfg.sam_clip.crop_batch,
                )
        if method == "labels":
            from langfield.features.labels import TextEmbeddingTable

            self.table = TextEmbeddingTable(self.clip)

    def __call__(self, it: FeatureInput) -> FeatureMap:
        if self.method == "labels":
            from langfield.features.labels import extract_labels

            if it.semantics is None:
                raise DataError(f"{it.name}: label lifting needs a semantics map for every frame")
            return extract_labels(_to_tensor(it.semantics, it.name, "semantics"), self.labels or {}, self.table, it.name)
        if it.rgb is None:
            raise DataError(f"{it.name}: no image (rgb) given")
        rgb = _to_tensor(it.rgb, it.name, "rgb")
        if self.method == "dense":
            from langfield.features.dense import extract_dense

            return extract_dense(rgb, self.clip, self.cfg.dense)
        from langfield.features.sam_clip import extract_sam_clip

        assert self.sam is not None
        return extract_sam_clip(rgb, self.clip, self.sam, self.sam_cfg)


class StreamExtractor:
    """``extract_features`` for a stream of frames, one call per frame: the same cache and key, the models
    loaded once, on the first frame that is not cached (``langfield slam`` extracts each keyframe as it
    arrives and keeps only the cache on disk)."""

    def __init__(self, method: Method, *, clip: str = W.DEFAULT_CLIP, sam: Optional[str] = None,
                 cache_dir: Union[str, Path], labels: Optional[Mapping[int, Label]] = None,
                 config: Optional[ExtractConfig] = None) -> None:
        if method not in METHODS:
            raise LangfieldError(f"unknown feature method {method!r}; use one of {', '.join(METHODS)}")
        if method == "labels" and labels is None:
            raise LangfieldError("label lifting needs the labels.json map (labels=...)")
        self.method, self.clip, self.sam = method, clip, sam or W.DEFAULT_SAM
        self.config = config or ExtractConfig()
        self.labels = labels
        self.key = model_key(method, clip, self.sam, self.config, labels)
        self.cache = FeatureCache(cache_dir, self.key)
        self._run: Optional[_Runner] = None

    def __call__(self, frame: Any) -> FeatureMap:
        """The FeatureMap of one View / FeatureInput (computed and cached unless cached already)."""
        (item,) = _as_inputs([frame], None)
        hit = self.cache.get(item.name)
        if hit is not None:
            return hit
        if self._run is None:
            self._run = _Runner(self.method, self.clip, self.sam, self.config, self.labels)
        fmap = self._run(item)
        self.cache.put(item.name, fmap)
        return fmap


def iter_cached(cache_dir: Union[str, Path], key: str, names: Iterable[str]) -> Iterable[tuple[str, FeatureMap]]:
    """Stream cached maps (e.g. to train the codec without holding all frames at once)."""
    cache = FeatureCache(cache_dir, key)
    for name in names:
        fmap = cache.get(name)
        if fmap is None:
            raise DataError(f"{cache.path(name)}: frame {name!r} missing from feature cache {key}")
        yield name, fmap
