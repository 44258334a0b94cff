"""Text queries on the Gaussians themselves: per-Gaussian relevancy, selection, 3D point, export.

The expensive step -- decoding every Gaussian's latents to CLIP space -- runs
once (``GaussianRelevancy.from_latents``) and can be saved/loaded; each query
afterwards is one [N, E] x [E, Q + M] matmul per level.

Level choice in 3D: a level's score is the mean relevancy of its ``top_k``
most relevant Gaussians (the 3D counterpart of LangSplat's "smoothed maximum":
a lone outlier Gaussian cannot win), unless a level is fixed.

Visibility (docs/language3d.md): when the scene records every Gaussian's total
blending weight over the training views (``codec/contribution.pt``, written by
``reconstruct`` and ``langfield lift``), selection keeps only Gaussians whose
contribution reaches ``SelectionConfig.min_contribution`` pixels: a Gaussian
that was never (or hardly) visible was never constrained by any view, so its
latent says nothing about what it is, and level choice ignores it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import torch

from langfield.codec.model import split_levels
from langfield.io import atomic_torch_save
from langfield.query.masks import normalize_relevancy
from langfield.query.relevancy import QueryConfig, relevancy
from langfield.types import DataError

SELECT_THRESHOLD = 0.7
"""Default LERF-relevancy threshold of a 3D text selection (``langfield select``, the viewer's Select 3D);
why 0.7: the ``--threshold`` help of ``langfield select`` (docs/language3d.md)."""


@dataclass
class SelectionConfig:
    """How per-Gaussian relevancy becomes a selection."""

    threshold: float = 0.5
    """Keep Gaussians whose relevancy exceeds this (raw LERF relevancy: 0.5 = beats every negative)."""
    normalized: bool = False
    """Apply ``threshold`` to the min-max normalised relevancy (``(r - min) / (max - min)``) instead of the raw value."""
    top_k: Optional[int] = None
    """If set, additionally keep only the ``top_k`` most relevant of the thresholded Gaussians."""
    min_opacity: Optional[float] = None
    """If set, drop Gaussians whose activated opacity is below this (floaters)."""
    level_top_k: int = 32
    """Gaussians averaged to score a level for automatic level choice."""
    min_contribution: Optional[float] = 1.0
    """Drop Gaussians whose summed blending weight over the training views is below this many pixels (applied
    only when the scene records contributions; None = keep all).  1.0: on the demo room (joint, 48 views, 160x120)
    it raised 3D precision and alone-IoU slightly over no gate without lowering the occlusion-aware IoU, which
    3.0 did (docs/language3d.md)."""
    min_cluster: Optional[float] = None
    """Spatial clustering of the selection: split the selected Gaussians into clusters (connected components of
    the graph that links two selected centres closer than ``link_radius`` x the larger of their local spacings)
    and drop every cluster holding fewer than this share of the largest cluster's Gaussians.  None = off."""
    grow_threshold: Optional[float] = None
    """Region growing (hysteresis thresholding on the same graph): also keep every Gaussian whose relevancy
    exceeds this lower value and that is linked to a kept one by a chain of such Gaussians (the visibility and
    opacity filters apply to them too).  None = off."""
    link_radius: float = 2.0
    """Link distance of clustering and region growing, in multiples of a Gaussian's local spacing (the distance
    from its centre to its ``link_neighbors``-th nearest visible neighbour): scale-free, and a sparse wall links
    over longer distances than a densely sampled mug."""
    link_neighbors: int = 4
    """Which nearest visible neighbour sets a Gaussian's local spacing."""


@dataclass
class Query3DResult:
    """Outcome of one text query on the Gaussians."""

    relevancy: torch.Tensor
    """[N] relevancy of each Gaussian at the chosen level."""
    level: int
    """Feature level used."""
    mask: torch.Tensor
    """[N] bool selection."""
    point: Optional[torch.Tensor]
    """[3] location of maximum relevancy (None when means are unknown)."""


class GaussianRelevancy:
    """Decoded per-Gaussian CLIP features [L, N, E], queried cheaply many times."""

    def __init__(
        self,
        features: torch.Tensor,
        means: Optional[torch.Tensor] = None,
        opacities: Optional[torch.Tensor] = None,
        normalize: bool = True,
        contribution: Optional[torch.Tensor] = None,
    ) -> None:
        """``features`` [L, N, E] (or [N, E] for one level); ``means`` [N, 3]; ``opacities`` [N] activated;
        ``contribution`` [N] total blending weight over the training views (None = unknown)."""
        if features.ndim == 2:
            features = features[None]
        if features.ndim != 3:
            raise ValueError(f"features must be [L, N, E], got {tuple(features.shape)}")
        n = features.shape[1]
        for name, t, shape in (("means", means, (n, 3)), ("opacities", opacities, (n,)),
                               ("contribution", contribution, (n,))):
            if t is not None and tuple(t.shape) != shape:
                raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {shape}")
        feats = features.detach()
        self.features = torch.nn.functional.normalize(feats.float(), dim=-1).to(feats.dtype) if normalize else feats
        self.means = None if means is None else means.detach()
        self.opacities = None if opacities is None else opacities.detach()
        self.contribution = None if contribution is None else contribution.detach().float()

    @property
    def num_levels(self) -> int:
        return self.features.shape[0]

    @property
    def num_gaussians(self) -> int:
        return self.features.shape[1]

    @classmethod
    def from_latents(
        cls,
        latents: torch.Tensor,
        decode: Callable[[torch.Tensor], torch.Tensor],
        num_levels: int,
        means: Optional[torch.Tensor] = None,
        opacities: Optional[torch.Tensor] = None,
        chunk_size: int = 1 << 16,
        dtype: torch.dtype = torch.float32,
        contribution: Optional[torch.Tensor] = None,
    ) -> "GaussianRelevancy":
        """Decode ``latents`` [N, L*D] (levels concatenated, as in ``params['latents']``) once.

        ``decode`` maps [n, D] latents to [n, E] CLIP features (the codec's decoder);
        results are L2-normalised and stored as ``dtype`` (float16 halves memory).
        """
        n, total = latents.shape
        if num_levels < 1 or total % num_levels:
            raise ValueError(f"latent width {total} is not divisible into {num_levels} levels")
        levels = split_levels(latents, total // num_levels)  # [N, L, D], a view
        per_level = []
        with torch.no_grad():
            for lvl in range(num_levels):
                chunks = [
                    torch.nn.functional.normalize(decode(levels[s : s + chunk_size, lvl]).float(), dim=-1).to(dtype)
                    for s in range(0, n, chunk_size)
                ]
                per_level.append(torch.cat(chunks) if chunks else latents.new_zeros(0, 0, dtype=dtype))
        return cls(torch.stack(per_level), means, opacities, normalize=False, contribution=contribution)

    def save(self, path: Union[str, Path]) -> Path:
        """Save the decoded features (and means/opacities) atomically, so a later session skips decoding."""
        data = {"features": self.features.cpu()}
        if self.means is not None:
            data["means"] = self.means.cpu()
        if self.opacities is not None:
            data["opacities"] = self.opacities.cpu()
        if self.contribution is not None:
            data["contribution"] = self.contribution.cpu()
        return atomic_torch_save(path, data)

    @classmethod
    def load(cls, path: Union[str, Path], device: Union[str, torch.device] = "cpu") -> "GaussianRelevancy":
        path = Path(path)
        try:
            data = torch.load(path, map_location=device, weights_only=True)
        except Exception as exc:
            raise DataError(f"{path}: cannot read decoded Gaussian features ({exc})") from exc
        if not isinstance(data, dict) or not isinstance(data.get("features"), torch.Tensor) or data["features"].ndim != 3:
            raise DataError(f"{path}: not a decoded-feature file (needs a [L, N, E] 'features' tensor)")
        try:
            return cls(data["features"], data.get("means"), data.get("opacities"), normalize=False,
                       contribution=data.get("contribution"))
        except ValueError as exc:
            raise DataError(f"{path}: {exc}") from exc

    def scores(
        self, positives: torch.Tensor, negatives: torch.Tensor, config: Optional[QueryConfig] = None
    ) -> torch.Tensor:
        """LERF relevancy of every Gaussian at every level: [L, Q, N]."""
        config = config or QueryConfig()
        return torch.stack(
            [relevancy(f, positives, negatives, config.temperature, config.chunk_size) for f in self.features]
        )

    def choose_level(self, scores: torch.Tensor, top_k: int = 32, fixed: Optional[int] = None) -> torch.Tensor:
        """Level per query from scores [L, Q, N]: mean of each level's ``top_k`` best Gaussians, highest wins."""
        n_levels, q, n = scores.shape
        if fixed is not None:
            if not -n_levels <= fixed < n_levels:
                raise IndexError(f"level {fixed} out of range for {n_levels} levels")
            return torch.full((q,), fixed % n_levels, dtype=torch.long)
        k = max(1, min(top_k, n))
        return scores.topk(k, dim=-1).values.mean(dim=-1).argmax(dim=0)

    def visible(self, config: Optional[SelectionConfig] = None) -> Optional[torch.Tensor]:
        """[N] bool: contribution >= ``config.min_contribution``; None when unknown or not asked for."""
        config = config or SelectionConfig()
        if self.contribution is None or config.min_contribution is None:
            return None
        return self.contribution >= config.min_contribution

    def select(self, rel: torch.Tensor, config: Optional[SelectionConfig] = None) -> torch.Tensor:
        """[N] bool selection from per-Gaussian relevancy ``rel`` [N] (see ``SelectionConfig``)."""
        config = config or SelectionConfig()
        value = normalize_relevancy(rel[None, :], "minmax")[0] if config.normalized else rel
        mask = value > config.threshold
        visible = self.visible(config)
        if visible is not None:
            mask &= visible.to(mask.device)
        allowed = torch.ones_like(mask) if visible is None else visible.to(mask.device)
        if config.min_opacity is not None:
            if self.opacities is None:
                raise ValueError("min_opacity needs opacities")
            allowed = allowed & (self.opacities.to(mask.device) >= config.min_opacity)
            mask &= allowed
        if config.grow_threshold is not None or config.min_cluster is not None:
            reach = config.link_radius * self.local_spacing(visible, config.link_neighbors)
            if config.grow_threshold is not None:
                mask = grow_selection(self.means, mask, (value > config.grow_threshold) & allowed, reach)
            if config.min_cluster is not None:
                mask = drop_small_clusters(self.means, mask, reach, config.min_cluster)
        if config.top_k is not None and int(mask.sum()) > config.top_k:
            masked = torch.where(mask, rel, torch.full_like(rel, -torch.inf))
            keep = masked.topk(config.top_k).indices
            mask = torch.zeros_like(mask)
            mask[keep] = True
        return mask

    def local_spacing(self, visible: Optional[torch.Tensor] = None, k: int = 4) -> torch.Tensor:
        """[N] distance from each Gaussian's centre to its ``k``-th nearest visible neighbour (the unit of
        ``SelectionConfig.link_radius``); computed once per (visibility, k) with a k-d tree and cached."""
        if self.means is None:
            raise ValueError("clustering the selection needs Gaussian means")
        key = (None if visible is None else int(visible.sum()), k)
        cached = getattr(self, "_spacing", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        from scipy.spatial import cKDTree

        pts = self.means.detach().double().cpu()
        ref = pts if visible is None else pts[visible.cpu()]
        k_eff = max(1, min(k, ref.shape[0] - 1))
        if ref.shape[0] < 2:
            value = torch.zeros(pts.shape[0])
        else:
            # k + 1: a visible Gaussian finds itself first at distance 0
            dist, _ = cKDTree(ref.numpy()).query(pts.numpy(), k=k_eff + 1)
            value = torch.from_numpy(dist[:, -1]).float()
        self._spacing = (key, value)
        return value

    def max_point(self, rel: torch.Tensor, top_k: int = 1) -> torch.Tensor:
        """[3] position of maximum relevancy.

        ``top_k == 1``: the mean of the most relevant Gaussian. Otherwise the
        mean of the ``top_k`` most relevant Gaussians' means weighted by
        opacity (uniform weights when opacities are unknown), which is steadier
        than one Gaussian.
        """
        if self.means is None:
            raise ValueError("max_point needs Gaussian means")
        k = max(1, min(top_k, rel.shape[0]))
        idx = rel.topk(k).indices
        pts = self.means[idx.to(self.means.device)].float()
        if k == 1:
            return pts[0]
        w = torch.ones(k) if self.opacities is None else self.opacities[idx.to(self.opacities.device)].float().cpu()
        w = w.to(pts.device)
        return (pts * w[:, None]).sum(0) / w.sum().clamp_min(1e-12)

    def query(
        self,
        positive: torch.Tensor,
        negatives: torch.Tensor,
        config: Optional[QueryConfig] = None,
        selection: Optional[SelectionConfig] = None,
        point_top_k: int = 1,
    ) -> Query3DResult:
        """One text query (``positive`` [E] or [1, E]): relevancy at the chosen level, selection, 3D point."""
        config = config or QueryConfig()
        selection = selection or SelectionConfig()
        pos = positive.reshape(1, -1)
        visible = self.visible(selection)
        if config.level is not None:
            # a fixed level: score only that level (the cost is one pass over its features)
            level = int(self.choose_level(self.features.new_zeros(self.num_levels, 1, 1), fixed=config.level)[0])
            rel = relevancy(self.features[level], pos, negatives, config.temperature, config.chunk_size)[0]
        else:
            s = self.scores(pos, negatives, config)  # [L, 1, N]
            # never-visible Gaussians carry unconstrained latents: they must not win the level choice either
            ranked = s if visible is None else torch.where(visible.to(s.device), s, torch.full_like(s, -torch.inf))
            top_k = selection.level_top_k if visible is None else max(1, min(selection.level_top_k,
                                                                             int(visible.sum())))
            level = int(self.choose_level(ranked, top_k)[0])
            rel = s[level, 0]
        ranked_rel = rel if visible is None else torch.where(visible.to(rel.device), rel,
                                                             torch.full_like(rel, -torch.inf))
        point = self.max_point(ranked_rel, point_top_k) if self.means is not None else None
        return Query3DResult(relevancy=rel, level=level, mask=self.select(rel, selection), point=point)


def radius_components(means: torch.Tensor, reach: torch.Tensor) -> torch.Tensor:
    """[M] int64 component id of every point of ``means`` [M, 3] in the graph that links two points closer than
    the larger of their ``reach`` [M] (a k-d tree's ball queries, then SciPy's connected components)."""
    import numpy as np
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    m = int(means.shape[0])
    if m == 0:
        return torch.zeros(0, dtype=torch.long)
    pts = means.detach().double().cpu().numpy()
    near = cKDTree(pts).query_ball_point(pts, r=reach.detach().double().cpu().numpy().clip(min=0.0))
    rows = np.repeat(np.arange(m), [len(n) for n in near])
    cols = np.fromiter((j for n in near for j in n), dtype=np.int64, count=len(rows))
    # i reaches j is enough: the components of the undirected graph link i and j when either reaches the other
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(m, m))
    _, comp = connected_components(graph, directed=False)
    return torch.from_numpy(comp).long()


def drop_small_clusters(means: torch.Tensor, mask: torch.Tensor, reach: torch.Tensor,
                        min_share: float) -> torch.Tensor:
    """``mask`` [N] bool without the clusters (components of the ``reach`` [N] graph over the selected centres)
    that hold fewer than ``min_share`` x the largest cluster's Gaussians."""
    idx = mask.nonzero().flatten()
    if idx.numel() == 0:
        return mask.clone()
    comp = radius_components(means[idx.to(means.device)], reach[idx.to(reach.device)])
    sizes = torch.bincount(comp)
    keep = sizes[comp] >= min_share * float(sizes.max())
    out = torch.zeros_like(mask)
    out[idx[keep.to(idx.device)]] = True
    return out


def grow_selection(means: torch.Tensor, seeds: torch.Tensor, candidates: torch.Tensor,
                   reach: torch.Tensor) -> torch.Tensor:
    """``seeds`` [N] bool plus every candidate [N] bool linked to a seed by a chain of candidates (the graph of
    :func:`radius_components` over ``seeds | candidates``): hysteresis thresholding in 3D."""
    pool = (seeds | candidates).nonzero().flatten()
    if pool.numel() == 0 or not bool(seeds.any()):
        return seeds.clone()
    comp = radius_components(means[pool.to(means.device)], reach[pool.to(reach.device)]).to(seeds.device)
    seeded = torch.isin(comp, comp[seeds[pool]].unique())
    out = seeds.clone()
    out[pool[seeded]] = True
    return out


def subset_params(params: torch.nn.ParameterDict, mask: torch.Tensor) -> torch.nn.ParameterDict:
    """A new ParameterDict holding the rows of every parameter where ``mask`` [N] (bool) is True.

    Every key is kept (whatever the strategy/trainer stored, latents included);
    tensors are detached copies so editing the subset never touches the scene.
    """
    if mask.dtype != torch.bool or mask.ndim != 1:
        raise ValueError(f"mask must be a 1-D bool tensor, got {mask.dtype} {tuple(mask.shape)}")
    out = {}
    for key, p in params.items():
        if p.shape[0] != mask.shape[0]:
            raise ValueError(f"parameter {key!r} has {p.shape[0]} rows, mask has {mask.shape[0]}")
        out[key] = torch.nn.Parameter(p.detach()[mask.to(p.device)].clone(), requires_grad=p.requires_grad)
    return torch.nn.ParameterDict(out)


def export_selection(path: Union[str, Path], params: torch.nn.ParameterDict, mask: torch.Tensor) -> Path:
    """Write the selected Gaussians as a PLY with ``langfield.gaussians.ply.save_ply``."""
    from langfield.gaussians.ply import save_ply  # imported late: the PLY module is owned elsewhere

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_ply(path, subset_params(params, mask))
    return path


def load_contribution(scene_dir: Union[str, Path], meta: Optional[dict] = None,
                      device: Union[str, torch.device] = "cpu") -> Optional[torch.Tensor]:
    """[N] per-Gaussian total contribution recorded by the scene, or None (a scene from before it existed).

    The file is named by ``meta['contribution_file']`` (config.json's language section), checked against
    the scene's manifest first.
    """
    from langfield.scene import verify_scene

    rel = (meta or {}).get("contribution_file")
    if not isinstance(rel, str) or not rel:
        return None
    root = Path(scene_dir)
    path = root / rel
    if not path.is_file():
        return None
    verify_scene(root, files=(rel,))
    try:
        data = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:
        raise DataError(f"{path}: cannot read the per-Gaussian contribution ({exc})") from exc
    value = data.get("contribution") if isinstance(data, dict) else None
    if not isinstance(value, torch.Tensor) or value.ndim != 1:
        raise DataError(f"{path}: not a contribution file (needs a 1-D 'contribution' tensor)")
    return value.float()
