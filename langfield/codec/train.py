"""Training the per-scene codec on cached features (L2 + cosine), with a held-out report."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Iterable, Optional

import torch
import torch.nn.functional as F

from langfield.codec.model import CodecConfig, LanguageCodec
from langfield.features.types import FeatureMap


@dataclass
class CodecTrainConfig:
    """Optimisation settings of :func:`train_codec`."""

    steps: int = 3000
    """Adam steps."""
    batch_size: int = 1024
    """Features per step (sampled with replacement)."""
    lr: float = 1e-3
    """Peak learning rate (cosine-decayed to 5% over ``steps``)."""
    l2_weight: float = 1.0
    """Weight of the mean squared error between decoded and target features."""
    cosine_weight: float = 1.0
    """Weight of ``1 - cos(decoded, target)``."""
    holdout_fraction: float = 0.1
    """Fraction of features kept out of training for the report."""
    min_holdout_features: int = 200
    """Hold features out only when there are at least this many distinct ones: a small set (label
    lifting has one per label) must be fitted whole, since a held-out label would be a label the
    codec never learned; the report then says ``num_heldout = 0`` and repeats the train figure."""
    seed: int = 0
    """Seed of the split, the init and the sampling (reproducible codecs)."""
    device: str = "cpu"
    """Torch device."""


@dataclass
class CodecReport:
    """How well the codec reconstructs features (cosine similarity, 1 = perfect)."""

    train_cosine: float
    """Mean cosine on the training features."""
    heldout_cosine: float
    """Mean cosine on held-out features (equals train when too few features to hold any out)."""
    heldout_p05_cosine: float
    """5th-percentile cosine on held-out features (the worst-reconstructed tail)."""
    num_train: int
    """Training features."""
    num_heldout: int
    """Held-out features (0 = report computed on training features)."""
    steps: int
    """Optimisation steps run."""
    seconds: float
    """Wall time of training."""

    def to_json(self) -> dict:
        return asdict(self)


def collect_features(maps: Iterable[FeatureMap], levels: Optional[list[str]] = None) -> torch.Tensor:
    """Distinct feature rows referenced by the maps' segment maps, as ``[N, E]`` float32.

    Each segment counts once (like LangSplat), so large regions do not drown
    small objects the codec must also keep apart; identical rows across frames
    (label lifting repeats one text embedding per label in every frame) are
    kept once, which also makes the codec's steps cheap.
    """
    rows = []
    for fmap in maps:
        idx = list(range(fmap.num_levels)) if levels is None else [fmap.level_index(n) for n in levels]
        seg = fmap.segments[idx]
        used = torch.unique(seg[seg >= 0]).long()
        rows.append(fmap.features[used].float())
    if not rows:
        return torch.zeros(0, 0)
    return torch.unique(torch.cat(rows), dim=0)


def _loss(pred: torch.Tensor, target: torch.Tensor, cfg: CodecTrainConfig) -> torch.Tensor:
    l2 = F.mse_loss(pred, target)
    cos = 1.0 - F.cosine_similarity(pred, target, dim=-1).mean()
    return cfg.l2_weight * l2 + cfg.cosine_weight * cos


@torch.no_grad()
def reconstruction_cosine(codec: LanguageCodec, features: torch.Tensor, batch: int = 65536) -> torch.Tensor:
    """Per-feature cosine between features and their reconstruction, ``[N]``."""
    dev = next(codec.parameters()).device
    out = []
    for i in range(0, features.shape[0], batch):
        x = F.normalize(features[i : i + batch].to(dev).float(), dim=-1)
        out.append(F.cosine_similarity(codec(x), x, dim=-1).cpu())
    return torch.cat(out) if out else torch.zeros(0)


def train_codec(
    features: torch.Tensor,
    config: Optional[CodecConfig] = None,
    train: Optional[CodecTrainConfig] = None,
    *,
    init: Optional[LanguageCodec] = None,
) -> tuple[LanguageCodec, CodecReport]:
    """Fit a codec to ``features [N, E]`` (normalised here); returns it (eval mode) and its report.

    ``init``: start from a copy of this codec instead of a random one (fine-tuning; ``init`` itself is
    not changed) -- the scene-adaptive stage of the online codec (``frontend/slam/language.py``).
    """
    tcfg = train or CodecTrainConfig()
    if features.ndim != 2 or features.shape[0] == 0:
        raise ValueError(f"train_codec needs [N, E] features with N > 0, got {tuple(features.shape)}")
    ccfg = config or (init.config if init is not None else CodecConfig(embed_dim=int(features.shape[1])))
    if ccfg.embed_dim != features.shape[1]:
        raise ValueError(f"codec expects E={ccfg.embed_dim} but features have width {features.shape[1]}")
    gen = torch.Generator().manual_seed(tcfg.seed)
    feats = F.normalize(features.float(), dim=-1)
    perm = torch.randperm(feats.shape[0], generator=gen)
    n_hold = int(feats.shape[0] * tcfg.holdout_fraction) if feats.shape[0] >= tcfg.min_holdout_features else 0
    held, fit = feats[perm[:n_hold]], feats[perm[n_hold:]]

    if init is not None:
        if init.config != ccfg:
            raise ValueError(f"init codec has config {init.config}, expected {ccfg}")
        import copy

        codec = copy.deepcopy(init).to(tcfg.device)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(tcfg.seed)
            codec = LanguageCodec(ccfg).to(tcfg.device)
    opt = torch.optim.Adam(codec.parameters(), lr=tcfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s, tcfg.steps) / max(tcfg.steps, 1)))
    )
    fit_dev = fit.to(tcfg.device)
    t0 = time.perf_counter()
    codec.train()
    for _ in range(tcfg.steps):
        idx = torch.randint(0, fit_dev.shape[0], (min(tcfg.batch_size, max(fit_dev.shape[0], 1)),), generator=gen)
        batch = fit_dev[idx.to(fit_dev.device)]
        loss = _loss(codec(batch), batch, tcfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    codec.eval()
    seconds = time.perf_counter() - t0
    train_cos = reconstruction_cosine(codec, fit)
    held_cos = reconstruction_cosine(codec, held) if n_hold else train_cos
    report = CodecReport(
        train_cosine=float(train_cos.mean()),
        heldout_cosine=float(held_cos.mean()),
        heldout_p05_cosine=float(torch.quantile(held_cos, 0.05)) if held_cos.numel() else float("nan"),
        num_train=int(fit.shape[0]),
        num_heldout=n_hold,
        steps=tcfg.steps,
        seconds=seconds,
    )
    return codec, report
