"""The language field of ``langfield slam``, built online: features per keyframe, a two-stage codec, lifting.

Per keyframe (right after it grew the map, before mapping):

1. **2D features** of the keyframe's pixels (``features.StreamExtractor``: labels | dense | sam-clip, models
   loaded once, every map written to an on-disk cache and none kept in memory).
2. **Online codec** in OLS's two stages.  *Generic*: a codec trained on an earlier scene (``--codec``), or one
   trained from scratch on the first keyframe's features.  *Scene-adaptive*: the distinct feature rows of the
   stream enter a bounded reservoir (reservoir sampling); every ``adapt_every`` keyframes, when the reservoir
   holds rows the codec was not fitted to, the codec is fine-tuned on it (``codec.train_codec(init=...)``).
3. **Online lift**: the keyframe's latent targets (``codec.encode_feature_map``) are accumulated onto the
   Gaussians it sees, weighted by their blending weights (``train.lift.gaussian_contributions``, the offline
   lift's own pass): per Gaussian ``sum w`` per level, ``sum w * latent`` and the total contribution.  The
   accumulators are rows of ``Mapper.rows``, so they grow with every added Gaussian and follow every prune.
   Mapping never sees them: the language never moves geometry or colour (disentangled).

**When the codec changes while latents accumulate.**  Accumulated sums are in the latent space of the codec
at the time.  After an update they are *transcoded*: each Gaussian's mean latent is decoded by the old codec
and encoded by the new one (``sum`` = new mean x weight) -- cheap (one MLP pass over N) but approximate.
The exact answer is a **re-lift**: ``train.lift.lift_latents`` over all keyframes from their cached features
with the current codec and the current geometry (which mapping has moved since a keyframe was fused).
``relift="snapshot"`` (default) re-lifts for every snapshot, so what ``query`` / ``eval-queries`` open is
exactly the offline lift of the map so far; the cost (one forward + backward per keyframe at the mapping
resolution) is recorded in config.json (``language.relift_seconds``) with the agreement of the online
accumulators with it (``online_vs_relift_cosine``).  ``relift="never"`` snapshots the accumulators as they
are (what a live viewer shows between snapshots).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
import torch.nn.functional as F

from langfield.codec import CodecConfig, CodecTrainConfig, LanguageCodec, collect_features, encode_feature_map, train_codec
from langfield.codec.train import CodecReport
from langfield.features import FeatureInput, FeatureMap, StreamExtractor
from langfield.frontend.slam.language_config import SlamLanguageConfig
from langfield.frontend.slam.mapper import Keyframe, Mapper
from langfield.scene import CODEC_DIR, is_scene
from langfield.sources.rgbd import RGBDSequence
from langfield.train.lift import contribution_stats, gaussian_contributions, lift_latents
from langfield.types import DataError, Label, LangfieldError

ROW_WEIGHT = "lang_weight"
"""``Mapper.rows`` key: [N, L] summed blending weight over the pixels carrying a feature at each level."""
ROW_SUM = "lang_sum"
"""``Mapper.rows`` key: [N, L*D] summed weight x latent target."""
ROW_CONTRIBUTION = "lang_contribution"
"""``Mapper.rows`` key: [N] summed blending weight over all pixels of the fused keyframes."""


# --------------------------------------------------------------------------- keyframe inputs


class KeyframeInputs:
    """What the feature extractor needs of a keyframe: its pixels, and for labels its label ids.

    Label masks come from the sequence's own dataset (a transforms.json with ``semantics_path`` and
    ``labels.json``: the synthetic generator's output), read at the keyframe's resolution the way the
    offline loader reads them (``sources.io.load_semantics``, nearest neighbour).
    """

    def __init__(self, seq: RGBDSequence, method: str, downscale: int) -> None:
        self.method, self.downscale = method, downscale
        self.labels: Optional[dict[int, Label]] = None
        self._frames: dict[str, Any] = {}
        if method != "labels":
            return
        from langfield.sources.nerfstudio import find_transforms, read_nerfstudio

        json_path = find_transforms(seq.root) if seq.layout == "synthetic" else None
        cap = read_nerfstudio(json_path, eval_every=0) if json_path is not None else None
        if cap is None or not cap.labels:
            raise DataError(f"{seq.root}: --features labels needs label masks: a transforms.json with semantics_path "
                            f"per frame and labels.json beside it (this {seq.layout} sequence has none)")
        self.labels = dict(cap.labels)
        self._frames = {f.name: f for f in cap.frames}

    def __call__(self, kf: Keyframe) -> FeatureInput:
        view = kf.view
        if self.method != "labels":
            return FeatureInput(kf.name, view.rgb, None)
        from langfield.sources.io import load_semantics

        frame = self._frames.get(kf.name)
        sem = load_semantics(frame, self.downscale) if frame is not None else None
        if sem is None:
            raise DataError(f"{kf.name}: --features labels needs a semantics_path for every frame")
        if tuple(sem.shape) != (view.height, view.width):
            raise DataError(f"{kf.name}: label mask is {sem.shape[1]}x{sem.shape[0]}, the keyframe "
                            f"{view.width}x{view.height}")
        return FeatureInput(kf.name, view.rgb, torch.from_numpy(sem))


# --------------------------------------------------------------------------- reservoir


class FeatureReservoir:
    """A bounded uniform sample of the distinct feature rows of a stream (Vitter's algorithm R).

    Rows already held (exactly equal after float16 rounding, as the feature cache stores them) are not
    added again, so label lifting's one embedding per label counts once however many frames show it.
    """

    def __init__(self, capacity: int, seed: int = 0) -> None:
        self.capacity = capacity
        self.rows: Optional[torch.Tensor] = None
        self._keys: list[bytes] = []
        self._held: set[bytes] = set()
        self.seen = 0
        """Distinct-at-arrival rows offered so far."""
        self._gen = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, rows: torch.Tensor) -> int:
        """Offer ``rows`` [M, E]; returns how many entered the reservoir."""
        rows = F.normalize(rows.float(), dim=-1)
        if self.rows is None:
            self.rows = rows.new_zeros((0, rows.shape[1]))
        if rows.shape[1] != self.rows.shape[1]:
            raise DataError(f"feature width changed mid-stream ({self.rows.shape[1]} -> {rows.shape[1]})")
        entered = 0
        for row in rows:
            key = hashlib.sha1(row.half().numpy().tobytes()).digest()
            if key in self._held:
                continue
            self.seen += 1
            if len(self._keys) < self.capacity:
                self.rows = torch.cat([self.rows, row[None]])
                self._keys.append(key)
            else:
                j = int(torch.randint(0, self.seen, (1,), generator=self._gen))
                if j >= self.capacity:
                    continue
                self._held.discard(self._keys[j])
                self.rows[j] = row
                self._keys[j] = key
            self._held.add(key)
            entered += 1
        return entered


# --------------------------------------------------------------------------- codec


def load_generic_codec(path: Path, num_levels: int) -> LanguageCodec:
    """The codec of ``--codec PATH`` (a scene directory or a codec directory), relabelled for ``num_levels``."""
    from langfield.codec import load_codec
    from langfield.scene import load_scene_codec

    path = Path(path)
    if not path.exists():
        raise DataError(f"--codec {path}: no such file or directory")
    if is_scene(path):
        if not (path / CODEC_DIR).is_dir():
            raise DataError(f"--codec {path}: the scene has no codec/ (it has no language field)")
        codec, _ = load_scene_codec(path)
    else:
        codec, _ = load_codec(path)
    if codec.config.num_levels == num_levels:
        return codec
    # num_levels is metadata (one codec serves every level): keep the weights, fix the label.
    out = LanguageCodec(dataclasses.replace(codec.config, num_levels=num_levels))
    out.load_state_dict(codec.state_dict())
    return out.eval()


@torch.no_grad()
def transcode(old: LanguageCodec, new: LanguageCodec, weight: torch.Tensor, sums: torch.Tensor,
              min_weight: float) -> torch.Tensor:
    """Accumulated ``sums`` [N, L*D] of ``old``'s latents re-expressed in ``new``'s latent space.

    Per Gaussian and level the mean latent ``sums / weight`` is decoded by ``old`` and encoded by ``new``,
    then multiplied by the weight again; rows with less than ``min_weight`` keep zeros (never seen).
    """
    n, n_levels = weight.shape
    d = new.config.latent_dim
    mean = (sums.reshape(n, n_levels, d) / weight.clamp_min(1e-12)[..., None])
    seen = weight >= max(min_weight, 1e-12)
    out = torch.zeros_like(mean)
    if bool(seen.any()):
        out[seen] = new.encode(old.decode(mean[seen]))
    return (out * weight[..., None]).reshape(n, n_levels * d)


class OnlineCodec:
    """The codec of a stream in OLS's two stages (see the module docstring)."""

    def __init__(self, cfg: SlamLanguageConfig, seed: int = 0) -> None:
        self.cfg, self.seed = cfg, seed
        self.codec: Optional[LanguageCodec] = None
        self.report: Optional[CodecReport] = None
        self.reservoir = FeatureReservoir(cfg.reservoir_size, seed)
        self.source = "scratch" if cfg.codec is None else str(cfg.codec)
        self.updates = 0
        """Scene-adaptive updates so far."""
        self.seconds = 0.0
        """Wall time spent training (both stages)."""
        self._fresh = 0
        """Reservoir rows entered since the codec was last fitted."""
        self._since = 0
        """Keyframes since the last fit."""

    def _fit(self, steps: int, init: Optional[LanguageCodec], config: Optional[CodecConfig]) -> LanguageCodec:
        assert self.reservoir.rows is not None
        t0 = time.perf_counter()
        tcfg = CodecTrainConfig(steps=steps, seed=self.seed + self.updates, device=self.cfg.language_device)
        codec, self.report = train_codec(self.reservoir.rows, config, tcfg, init=init)
        self.seconds += time.perf_counter() - t0
        self._fresh, self._since = 0, 0
        return codec

    def observe(self, fmap: FeatureMap) -> Optional[LanguageCodec]:
        """Take one keyframe's features; returns the codec that was replaced when the codec changed, else None."""
        rows = collect_features([fmap])
        if rows.shape[0] == 0 and self.codec is None:
            return None
        self._fresh += self.reservoir.add(rows) if rows.shape[0] else 0
        self._since += 1
        if self.codec is None:
            if self.cfg.codec is not None:
                codec = load_generic_codec(self.cfg.codec, fmap.num_levels)
                if codec.config.embed_dim != rows.shape[1]:
                    raise DataError(f"--codec {self.cfg.codec}: codec expects CLIP width {codec.config.embed_dim}, "
                                    f"but --clip {self.cfg.clip} gives {rows.shape[1]}")
                self.codec = codec
                self._since = 0
            else:
                config = CodecConfig(embed_dim=int(rows.shape[1]), latent_dim=self.cfg.latent_dim,
                                     num_levels=fmap.num_levels)
                self.codec = self._fit(self.cfg.codec_steps, None, config)
            return None
        if self._fresh and self._since >= self.cfg.adapt_every:
            return self.adapt(self.cfg.adapt_steps)
        return None

    def adapt(self, steps: int) -> Optional[LanguageCodec]:
        """One scene-adaptive update on the reservoir; returns the codec it replaced (None when no codec/data)."""
        if self.codec is None or not len(self.reservoir):
            return None
        old = self.codec
        self.codec = self._fit(steps, old, None)
        self.updates += 1
        return old

    @property
    def pending(self) -> bool:
        """Whether the reservoir holds rows the codec has not been fitted to."""
        return self._fresh > 0


# --------------------------------------------------------------------------- lazy targets for the re-lift


class _LazyTargets(Mapping):
    """``{keyframe name: tensor}`` computed on access from the feature cache (one keyframe in memory)."""

    def __init__(self, owner: "OnlineLanguage", views: dict[str, Keyframe], index: int) -> None:
        self.owner, self.views, self.index = owner, views, index

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.views:
            raise KeyError(name)
        return self.owner.targets_of(self.views[name])[self.index]

    def __contains__(self, name: object) -> bool:
        return name in self.views

    def __iter__(self) -> Iterator[str]:
        return iter(self.views)

    def __len__(self) -> int:
        return len(self.views)


@dataclass
class _LiftTargets:
    """Duck-typed ``train.language.LanguageTargets`` for ``lift_latents`` (num_levels, latent_dim, targets, valid)."""

    num_levels: int
    latent_dim: int
    targets: Mapping
    valid: Mapping


# --------------------------------------------------------------------------- the online field


@dataclass
class LanguageSnapshot:
    """What a snapshot writes of the language field."""

    latents: torch.Tensor
    """[N, L*D] per-Gaussian latents."""
    contribution: torch.Tensor
    """[N] total blending weight of each Gaussian over the keyframes."""
    codec: LanguageCodec
    """The current codec (saved as SCENE/codec/)."""
    codec_report: Optional[CodecReport]
    meta: dict[str, Any]
    """config.json's ``language`` section."""
    language_config: dict[str, Any]
    """config.json's ``language_config`` (``train.language.LanguageConfig`` fields, so ``langfield lift`` reruns it)."""
    num_views: int
    """Keyframes fused."""


class OnlineLanguage:
    """Features, codec and lifted latents of a growing map (see the module docstring)."""

    def __init__(self, cfg: SlamLanguageConfig, seq: RGBDSequence, cache_dir: Path, map_downscale: int,
                 seed: int = 0) -> None:
        assert cfg.features is not None
        self.cfg = cfg
        self.inputs = KeyframeInputs(seq, cfg.features, map_downscale)
        from langfield.features import ExtractConfig

        self.extractor = StreamExtractor(cfg.features, clip=cfg.clip, sam=cfg.sam, cache_dir=cache_dir,
                                         labels=self.inputs.labels, config=ExtractConfig(device=cfg.language_device))
        self.online = OnlineCodec(cfg, seed)
        self.level_names: tuple[str, ...] = ()
        self.embed_dim = 0
        self.fused = 0
        """Keyframes fused into the accumulators."""
        self.times = {"features": 0.0, "codec": 0.0, "fuse": 0.0, "transcode": 0.0, "relift": 0.0}
        self.relifts = 0
        self.last_relift_s = 0.0
        self.agreement: Optional[float] = None
        self._memo: Optional[tuple[tuple[str, int], tuple[torch.Tensor, torch.Tensor]]] = None
        """The last keyframe's targets (the re-lift asks for its targets and its valid mask in turn)."""

    @property
    def codec(self) -> Optional[LanguageCodec]:
        return self.online.codec

    # ------------------------------------------------------------------ per keyframe

    def features_of(self, kf: Keyframe) -> FeatureMap:
        """The keyframe's FeatureMap (from the cache after the first time)."""
        return self.extractor(self.inputs(kf))

    @torch.no_grad()
    def targets_of(self, kf: Keyframe) -> tuple[torch.Tensor, torch.Tensor]:
        """(latent targets [H, W, L*D], valid [H, W, L]) of a keyframe under the current codec."""
        assert self.codec is not None
        key = (kf.name, self.online.updates)  # a codec update changes every target
        if self._memo is not None and self._memo[0] == key:
            return self._memo[1]
        v = kf.view
        lat, ok = encode_feature_map(self.codec, self.features_of(kf), size=(v.height, v.width))
        out = (lat.permute(1, 2, 0, 3).reshape(v.height, v.width, -1).contiguous(), ok.permute(1, 2, 0).contiguous())
        self._memo = (key, out)
        return out

    def fuse(self, kf: Keyframe, mapper: Mapper) -> float:
        """Extract ``kf``'s features, update the codec, accumulate its weighted latents; returns seconds."""
        t0 = time.perf_counter()
        fmap = self.features_of(kf)
        t1 = time.perf_counter()
        if not self.level_names:
            self.level_names = tuple(fmap.level_names)
            self.embed_dim = int(fmap.embed_dim)
        replaced = self.online.observe(fmap)
        if replaced is not None:
            self._transcode(replaced, mapper)
        t_codec = time.perf_counter()
        self.times["codec"] += t_codec - t1
        if self.codec is None:  # nothing to encode with yet (no features in any keyframe so far)
            self.times["features"] += t1 - t0
            return time.perf_counter() - t0
        n_levels, d = len(self.level_names), self.codec.config.latent_dim
        n = mapper.num_gaussians
        rows = mapper.rows
        for key, shape in ((ROW_WEIGHT, (n, n_levels)), (ROW_SUM, (n, n_levels * d)), (ROW_CONTRIBUTION, (n,))):
            if key not in rows:
                rows[key] = torch.zeros(shape)
        if n:  # the codec trains with autograd above; the lift needs none (gaussian_contributions enables its own)
            targets, valid = self.targets_of(kf)
            masks = torch.cat([torch.ones_like(valid[..., :1]), valid], dim=-1).float()
            ws, fs = gaussian_contributions(mapper.params, kf.view, targets, masks, backend=self.cfg.language_backend)
            assert fs is not None
            rows[ROW_CONTRIBUTION] += ws[:, 0].cpu()
            rows[ROW_WEIGHT] += ws[:, 1:].cpu()
            rows[ROW_SUM] += fs.cpu()
        self.fused += 1
        t2 = time.perf_counter()
        self.times["features"] += t1 - t0
        self.times["fuse"] += t2 - t_codec
        return t2 - t0

    def _transcode(self, old: LanguageCodec, mapper: Mapper) -> None:
        if ROW_SUM not in mapper.rows or self.codec is None:
            return
        t0 = time.perf_counter()
        mapper.rows[ROW_SUM] = transcode(old, self.codec, mapper.rows[ROW_WEIGHT], mapper.rows[ROW_SUM],
                                         self.cfg.lift_min_weight)
        self.times["transcode"] += time.perf_counter() - t0

    # ------------------------------------------------------------------ latents

    def online_latents(self, mapper: Mapper) -> torch.Tensor:
        """[N, L*D] the accumulators' weighted means (zero below ``lift_min_weight``)."""
        rows = mapper.rows
        if ROW_SUM not in rows:
            return torch.zeros(mapper.num_gaussians, 0)
        w = rows[ROW_WEIGHT]
        n, n_levels = w.shape
        d = rows[ROW_SUM].shape[1] // max(n_levels, 1)
        seen = w >= self.cfg.lift_min_weight
        mean = rows[ROW_SUM].reshape(n, n_levels, d) / w.clamp_min(1e-12)[..., None] * seen[..., None]
        return mean.reshape(n, n_levels * d)

    @torch.no_grad()
    def relift(self, mapper: Mapper) -> tuple[torch.Tensor, torch.Tensor]:
        """(latents [N, L*D], contribution [N]): ``train.lift.lift_latents`` over every keyframe from the cache."""
        assert self.codec is not None
        t0 = time.perf_counter()
        views = {kf.name: kf for kf in mapper.keyframes}
        targets = _LiftTargets(len(self.level_names), self.codec.config.latent_dim,
                               _LazyTargets(self, views, 0), _LazyTargets(self, views, 1))
        res = lift_latents(mapper.params, [kf.view for kf in mapper.keyframes], targets,  # type: ignore[arg-type]
                           min_weight=self.cfg.lift_min_weight, backend=self.cfg.language_backend)
        self.last_relift_s = time.perf_counter() - t0
        self.times["relift"] += self.last_relift_s
        self.relifts += 1
        return res.latents.cpu(), res.contribution.cpu()

    @torch.no_grad()
    def _agreement(self, online: torch.Tensor, exact: torch.Tensor, weight: torch.Tensor) -> Optional[float]:
        """Mean cosine, in CLIP space, of the online and re-lifted features over (Gaussian, level) pairs both saw."""
        assert self.codec is not None
        n_levels, d = weight.shape[1], self.codec.config.latent_dim
        a, b = online.reshape(-1, n_levels, d), exact.reshape(-1, n_levels, d)
        both = (weight >= max(self.cfg.lift_min_weight, 1e-12)) & (b.abs().sum(-1) > 0)
        if not bool(both.any()):
            return None
        idx = torch.nonzero(both)
        idx = idx[torch.randperm(idx.shape[0], generator=torch.Generator().manual_seed(0))[:4096]]
        fa = self.codec.decode(a[idx[:, 0], idx[:, 1]])
        fb = self.codec.decode(b[idx[:, 0], idx[:, 1]])
        return round(float((fa * fb).sum(-1).mean()), 4)

    def snapshot(self, mapper: Mapper, final: bool) -> Optional[LanguageSnapshot]:
        """The language part of a snapshot (None while no keyframe had features); ``final`` adapts the codec to
        the whole reservoir first (the end of the stream: no later keyframe will fix a stale codec)."""
        if self.codec is None:
            return None
        if final and self.online.pending:
            replaced = self.online.adapt(self.cfg.codec_steps)
            if replaced is not None:
                self._transcode(replaced, mapper)
        online = self.online_latents(mapper)
        contribution = mapper.rows.get(ROW_CONTRIBUTION, torch.zeros(mapper.num_gaussians))
        relift = self.cfg.relift == "snapshot" or (self.cfg.relift == "end" and final)
        latents = online
        if relift and mapper.keyframes and mapper.num_gaussians:
            latents, contribution = self.relift(mapper)
            self.agreement = self._agreement(online, latents, mapper.rows[ROW_WEIGHT])
        report = self.online.report
        meta = {
            "method": self.cfg.features, "clip": self.cfg.clip, "sam": self.cfg.sam,
            "levels": list(self.level_names), "num_levels": len(self.level_names),
            "latent_dim": self.codec.config.latent_dim, "embed_dim": self.embed_dim, "codec_dir": CODEC_DIR,
            "codec_report": report.to_json() if report is not None else None, "schedule": "lift",
            "lift_min_weight": self.cfg.lift_min_weight,
            "online": {
                "keyframes_fused": self.fused, "codec_source": self.online.source,
                "codec_updates": self.online.updates, "reservoir_rows": len(self.online.reservoir),
                "reservoir_seen": self.online.reservoir.seen, "latents": "relift" if relift else "accumulated",
                "relift": self.cfg.relift, "relift_seconds": round(self.last_relift_s, 3) if relift else None,
                "online_vs_relift_cosine": self.agreement if relift else None,
                "seconds": {k: round(v, 3) for k, v in self.times.items()},
                "codec_seconds": round(self.online.seconds, 3),
            },
            **contribution_stats(contribution, self.cfg.lift_min_weight),
        }
        language_config = {"features": self.cfg.features, "clip": self.cfg.clip, "sam": self.cfg.sam,
                           "latent_dim": self.codec.config.latent_dim, "schedule": "lift",
                           "lift_min_weight": self.cfg.lift_min_weight, "device": self.cfg.language_device}
        return LanguageSnapshot(latents, contribution, self.codec, report, meta, language_config, self.fused)


def check_language_input(cfg: SlamLanguageConfig, seq: RGBDSequence) -> None:
    """Fail before tracking starts on what would fail at the first keyframe (labels without label masks)."""
    if cfg.features == "labels":
        KeyframeInputs(seq, "labels", 1)
    if cfg.codec is not None and not Path(cfg.codec).exists():
        raise LangfieldError(f"--codec {cfg.codec}: no such file or directory")
