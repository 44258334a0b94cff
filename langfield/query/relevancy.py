"""Text embeddings (cached) and LERF's relevancy score.

Relevancy (Kerr et al., LERF, 2023), per feature vector ``phi`` and positive
text embedding ``t``, given canonical negative embeddings ``n_1 .. n_M`` and a
temperature ``tau`` (LERF uses 10)::

    p_j = exp(tau * <phi, t>) / (exp(tau * <phi, t>) + exp(tau * <phi, n_j>))
    relevancy = min_j p_j

i.e. the pairwise softmax of the scaled cosine similarities of {positive,
negative j}, keeping the positive's probability, and the worst case over the
negatives. A two-way softmax equals ``sigmoid(tau * (<phi,t> - <phi,n_j>))``,
which is what we evaluate: it is numerically stable and the minimum over j is
simply the sigmoid of the smallest margin. Values lie in (0, 1); ``> 0.5``
means the positive beats every negative.

All features and text embeddings are expected L2-normalised (cosine
similarity = dot product); ``relevancy`` does not renormalise features because
decoded latents are renormalised once by whoever decodes them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from langfield.io import atomic_torch_save
from langfield.types import DataError, LangfieldError

TextEncoder = Callable[[list[str]], torch.Tensor]
"""Maps Q strings to an L2-normalised [Q, E] tensor (any device / float dtype)."""

DEFAULT_NEGATIVES: tuple[str, ...] = ("object", "things", "stuff", "texture")


@dataclass
class QueryConfig:
    """How a text query turns into relevancy maps, a level and a mask."""

    negatives: tuple[str, ...] = DEFAULT_NEGATIVES
    """Canonical negative phrases of LERF's pairwise softmax (user-editable)."""
    temperature: float = 10.0
    """Multiplier of the cosine similarities inside the softmax (LERF: softmax(10 * sims))."""
    smoothing_kernel: int = 30
    """Side, in pixels, of the box (mean) filter applied before taking a map's maximum
    for level choice and localisation (LangSplat's evaluation uses 30)."""
    level: Optional[int] = None
    """Fixed feature level to use; None picks per query the level with the highest smoothed maximum."""
    mask_threshold: float = 0.4
    """Threshold on the normalised map (see ``masks.normalize_relevancy``) above which a pixel
    is in the mask (LangSplat's default 0.4)."""
    mask_majority: int = 7
    """Side of the majority-vote window that cleans the binary mask (LangSplat: 7); 0 or 1 disables."""
    chunk_size: int = 1 << 16
    """Feature vectors scored per step, bounding the [chunk, Q + M] similarity buffer."""

    def __post_init__(self) -> None:
        if not self.negatives:
            raise LangfieldError("query config: at least one negative phrase is required")
        if self.temperature <= 0:
            raise LangfieldError(f"query config: temperature must be > 0, got {self.temperature}")
        if self.smoothing_kernel < 1:
            raise LangfieldError(f"query config: smoothing_kernel must be >= 1, got {self.smoothing_kernel}")
        if self.chunk_size < 1:
            raise LangfieldError(f"query config: chunk_size must be >= 1, got {self.chunk_size}")


def _safe_name(model_name: str) -> str:
    """A file name for a model name: readable part plus a hash so distinct names never collide."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", model_name)[:64]
    digest = hashlib.sha1(model_name.encode("utf-8")).hexdigest()[:10]
    return f"{readable}-{digest}"


@dataclass
class TextEmbeddingCache:
    """Memoises an encoder per string; optionally persists embeddings per model on disk.

    Returned embeddings are float32, on CPU, L2-normalised, one row per input
    string in order. The disk cache is one ``torch.save``d ``{text: [E]}`` dict
    per ``model_name`` in ``cache_dir``; it is rewritten atomically whenever new
    strings were encoded.
    """

    encoder: TextEncoder
    """Callable mapping a list of strings to an [Q, E] tensor."""
    model_name: str = "default"
    """Identifies the encoder; embeddings of different models never mix."""
    cache_dir: Optional[Path] = None
    """Directory of the on-disk cache; None keeps embeddings in memory only."""
    _memo: dict[str, torch.Tensor] = field(default_factory=dict, init=False, repr=False)
    _loaded: bool = field(default=False, init=False, repr=False)

    @property
    def cache_file(self) -> Optional[Path]:
        if self.cache_dir is None:
            return None
        return Path(self.cache_dir) / f"text_embeddings-{_safe_name(self.model_name)}.pt"

    def _load_disk(self) -> None:
        self._loaded = True
        path = self.cache_file
        if path is None or not path.exists():
            return
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # corrupt / truncated file
            raise DataError(f"{path}: cannot read text-embedding cache ({exc})") from exc
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) and v.ndim == 1 for k, v in data.items()
        ):
            raise DataError(f"{path}: text-embedding cache is not a {{text: [E] tensor}} dict")
        for k, v in data.items():
            self._memo.setdefault(k, v.float())

    def _save_disk(self) -> None:
        path = self.cache_file
        if path is None:
            return
        atomic_torch_save(path, dict(self._memo))

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        """[Q, E] float32 L2-normalised embeddings of ``texts`` (encodes only unseen strings)."""
        if isinstance(texts, str):
            raise TypeError("TextEmbeddingCache expects a list of strings, not one string")
        if not self._loaded:
            self._load_disk()
        missing = list(dict.fromkeys(t for t in texts if t not in self._memo))
        if missing:
            with torch.no_grad():
                out = self.encoder(missing)
            if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != len(missing):
                shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise LangfieldError(
                    f"text encoder {self.model_name!r} returned {shape} for {len(missing)} strings, expected [Q, E]"
                )
            out = torch.nn.functional.normalize(out.detach().float().cpu(), dim=-1)
            width = next(iter(self._memo.values())).shape[0] if self._memo else out.shape[1]
            if out.shape[1] != width:
                raise LangfieldError(
                    f"text encoder {self.model_name!r} returned width {out.shape[1]}, cache holds width {width}"
                )
            for text, emb in zip(missing, out):
                self._memo[text] = emb.clone()
            self._save_disk()
        if not texts:
            width = next(iter(self._memo.values())).shape[0] if self._memo else 0
            return torch.zeros(0, width)
        return torch.stack([self._memo[t] for t in texts])


def relevancy(
    features: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    temperature: float = 10.0,
    chunk_size: int = 1 << 16,
) -> torch.Tensor:
    """LERF relevancy of every feature vector to every positive.

    Args:
        features: [..., E] L2-normalised features (pixels, Gaussians ...).
        positives: [Q, E] L2-normalised positive text embeddings.
        negatives: [M, E] L2-normalised negative text embeddings, M >= 1.
        temperature: multiplier of the cosine similarities (LERF: 10).
        chunk_size: feature vectors processed at once (bounds memory to
            ``chunk_size * (Q + M)`` floats).

    Returns:
        [Q, ...] float32 relevancy in (0, 1), on ``features``' device.
    """
    if positives.ndim != 2 or negatives.ndim != 2:
        raise ValueError(f"positives/negatives must be [Q,E]/[M,E], got {tuple(positives.shape)}/{tuple(negatives.shape)}")
    if negatives.shape[0] == 0:
        raise LangfieldError("relevancy needs at least one negative phrase")
    e = features.shape[-1]
    if positives.shape[1] != e or negatives.shape[1] != e:
        raise ValueError(
            f"width mismatch: features E={e}, positives E={positives.shape[1]}, negatives E={negatives.shape[1]}"
        )
    lead = features.shape[:-1]
    flat = features.reshape(-1, e)
    device = features.device
    q = positives.shape[0]
    # One matmul against [pos | neg] per chunk; float32 so half-precision features stay accurate.
    # F.linear (x @ W^T with W row-major) hits MKL's fast skinny-GEMM path; `x @ W.T` is ~3x slower on CPU.
    phrases = torch.cat([positives, negatives], dim=0).to(device=device, dtype=torch.float32).contiguous()
    out = torch.empty(q, flat.shape[0], dtype=torch.float32, device=device)
    for start in range(0, flat.shape[0], chunk_size):
        sims = torch.nn.functional.linear(flat[start : start + chunk_size].float(), phrases)  # [p, Q+M]
        out[:, start : start + chunk_size] = relevancy_from_similarities(sims, q, temperature)
    return out.reshape(q, *lead)


def relevancy_from_similarities(sims: torch.Tensor, num_positives: int, temperature: float = 10.0) -> torch.Tensor:
    """LERF relevancy [Q, n] from cosine similarities [n, Q + M] (positives first, then negatives)."""
    pos, neg = sims[:, :num_positives], sims[:, num_positives:]
    # min_j sigmoid(tau (pos - neg_j)) = sigmoid(tau (pos - max_j neg_j)): sigmoid is monotone.
    margin = pos - neg.max(dim=1, keepdim=True).values
    return torch.sigmoid(temperature * margin).T


def text_relevancy(
    features: torch.Tensor,
    texts: Sequence[str],
    embed: Callable[[Sequence[str]], torch.Tensor],
    config: Optional[QueryConfig] = None,
) -> torch.Tensor:
    """Relevancy [Q, ...] of ``features`` [..., E] to each text, with the config's negatives.

    ``embed`` is usually a ``TextEmbeddingCache``; negatives are embedded by it too,
    so they are encoded once per model.
    """
    config = config or QueryConfig()
    pos = embed(list(texts))
    neg = embed(list(config.negatives))
    return relevancy(features, pos, neg, config.temperature, config.chunk_size)
