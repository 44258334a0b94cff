"""Training-free lifting of 2D language targets onto the Gaussians (the ``lift`` language schedule).

Compositing is linear in the per-Gaussian features: a view's rendered feature
is ``f_p = sum_g w_gp x_g`` (``w_gp`` = transmittance x alpha of Gaussian g at
pixel p; the background enters with weight T_final, not through ``x``).  So
the gradient of ``sum_p <G_p, f_p>`` with respect to ``x_g`` is exactly
``sum_p w_gp G_p``: ONE backward pass through the ordinary ``render`` with the
per-pixel targets as the output gradient gives every Gaussian's weighted sum of
targets, and a constant-1 channel gives its total weight ``sum_p w_gp``
(:func:`gaussian_contributions`; any backend, the native CPU one is fast).

:func:`lift_latents` aggregates, per level, the codec latents the language
stage already prepares (``LanguageTargets``) over all training views:

* **weighted mean** ``sum_v sum_p w_gp t_p / sum_v sum_p w_gp`` over the pixels
  that carry a feature at that level;
* optional **robust aggregate** (``robust_iterations`` > 0): a few Weiszfeld
  iterations towards the weighted geometric median of the per-view means
  (VALA-style), so a view where a Gaussian is mostly behind a border or seen
  through a gap does not drag its latent;
* a **visibility gate**: a Gaussian whose total weight at a level is below
  ``min_weight`` keeps a zero latent there and is flagged in the returned
  ``contribution`` (total weight over all pixels of all views, which
  ``query.select3d`` uses to drop never-visible Gaussians).

Why latents, not CLIP features: the targets are codec latents of L2-normalised
CLIP features per segment, D (3) numbers per level instead of E (512) -- the
backward pass costs O(channels) per (pixel, Gaussian) pair, so lifting CLIP
features would cost ~100x more -- and the Weiszfeld iterations need per-view
values for every Gaussian, which fit in memory only at latent width.  A
Gaussian inside one segment gets exactly that segment's latent either way; the
two differ only for Gaussians straddling segments, where the robust aggregate
picks the majority side.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import torch

from langfield.io import atomic_torch_save
from langfield.render.views import render_latents
from langfield.types import LangfieldError, View

if TYPE_CHECKING:
    from langfield.train.language import LanguageTargets

CONTRIBUTION_FILE = "codec/contribution.pt"
"""Scene-relative file of the per-Gaussian contribution (``{"contribution": [N], "views": V}``); it lives in
``codec/`` because the manifest covers that folder and it belongs to the language field, like the codec."""


@dataclass
class LiftResult:
    """What :func:`lift_latents` produced."""

    latents: torch.Tensor
    """[N, L*D] lifted latents (0 where a level never saw the Gaussian)."""
    level_weight: torch.Tensor
    """[N, L] total blending weight over the pixels carrying a feature at each level."""
    contribution: torch.Tensor
    """[N] total blending weight over all pixels of all views (visibility; 0 = never seen)."""
    seconds: float
    """Wall time of the contribution passes and the aggregation."""


def gaussian_contributions(
    params: torch.nn.ParameterDict,
    view: View,
    targets: Optional[torch.Tensor] = None,
    masks: Optional[torch.Tensor] = None,
    *,
    backend: str = "auto",
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Per Gaussian: ``sum_p w_gp m_p`` [N, K] and ``sum_p w_gp t_p`` [N, C] over the pixels of ``view``.

    ``masks`` [H, W, K] are per-pixel weights of the K weight sums (None: one
    channel of ones, i.e. the plain total weight); ``targets`` [H, W, C] (None:
    only the weight sums).  One forward + backward of the view (geometry
    detached), whatever K and C.
    """
    h, w = int(view.height), int(view.width)
    device = params["means"].device
    if masks is None:
        masks = torch.ones(h, w, 1, device=device)
    if masks.ndim != 3 or tuple(masks.shape[:2]) != (h, w):
        raise ValueError(f"masks must be [{h}, {w}, K], got {tuple(masks.shape)}")
    grads = [masks.to(device=device, dtype=torch.float32)]
    if targets is not None:
        if targets.ndim != 3 or tuple(targets.shape[:2]) != (h, w):
            raise ValueError(f"targets must be [{h}, {w}, C], got {tuple(targets.shape)}")
        grads.append(targets.to(device=device, dtype=torch.float32))
    cotangent = torch.cat(grads, dim=-1)
    n = params["means"].shape[0]
    x = torch.zeros(n, cotangent.shape[-1], device=device, requires_grad=True)
    with torch.enable_grad():
        rendered, _ = render_latents(params, view, x, backend=backend)
        (g,) = torch.autograd.grad(rendered, x, grad_outputs=cotangent)
    k = masks.shape[-1]
    return g[:, :k], (g[:, k:] if targets is not None else None)


def _weiszfeld(means: torch.Tensor, weights: torch.Tensor, start: torch.Tensor, iterations: int,
               eps: float = 1e-6) -> torch.Tensor:
    """Weighted geometric median of ``means`` [V, N, D] (weights [V, N]) per Gaussian, from ``start`` [N, D]."""
    x = start
    for _ in range(iterations):
        dist = (means - x[None]).norm(dim=-1).clamp_min(eps)  # [V, N]
        a = weights / dist
        x = (a[..., None] * means).sum(0) / a.sum(0).clamp_min(1e-12)[:, None]
    return x


@torch.no_grad()
def lift_latents(
    params: torch.nn.ParameterDict,
    views: Sequence[View],
    targets: "LanguageTargets",
    *,
    min_weight: float = 0.05,
    robust_iterations: int = 0,
    backend: str = "auto",
) -> LiftResult:
    """Lift the per-view latent targets of ``targets`` onto the Gaussians of ``params`` (see the module doc).

    ``min_weight``: a Gaussian whose summed weight at a level (in pixels, over
    all views) is below it gets a zero latent there.  ``robust_iterations``:
    Weiszfeld steps towards the geometric median of the per-view means (0 = the
    weighted mean).
    """
    t0 = time.perf_counter()
    usable = [v for v in views if v.name in targets.targets]
    if not usable:
        raise LangfieldError("lift: no training view has latent targets")
    n, device = params["means"].shape[0], params["means"].device
    n_levels, d = targets.num_levels, targets.latent_dim
    wsum = torch.zeros(n, n_levels, device=device)
    fsum = torch.zeros(n, n_levels * d, device=device)
    contribution = torch.zeros(n, device=device)
    per_view: list[tuple[torch.Tensor, torch.Tensor]] = []
    for view in usable:
        valid = targets.valid[view.name].to(device)
        masks = torch.cat([torch.ones_like(valid[..., :1]), valid], dim=-1).float()  # [H, W, 1 + L]
        ws, fs = gaussian_contributions(params, view, targets.targets[view.name].to(device), masks, backend=backend)
        assert fs is not None
        contribution += ws[:, 0]
        wsum += ws[:, 1:]
        fsum += fs
        if robust_iterations > 0:
            # Half precision halves the memory of V x N x L*D per-view means; Weiszfeld does not need more.
            per_view.append((ws[:, 1:].half(), fs.half()))
    seen = wsum >= min_weight  # [N, L]
    mean = (fsum.reshape(n, n_levels, d) / wsum.clamp_min(1e-12)[..., None]) * seen[..., None]
    if robust_iterations > 0:
        w_v = torch.stack([w for w, _ in per_view]).float()  # [V, N, L]
        f_v = torch.stack([f for _, f in per_view]).float().reshape(len(per_view), n, n_levels, d)
        m_v = f_v / w_v.clamp_min(1e-12)[..., None]
        for lvl in range(n_levels):
            med = _weiszfeld(m_v[:, :, lvl], w_v[:, :, lvl], mean[:, lvl], robust_iterations)
            mean[:, lvl] = med * seen[:, lvl, None]
    return LiftResult(mean.reshape(n, n_levels * d), wsum, contribution, time.perf_counter() - t0)


@torch.no_grad()
def total_contribution(params: torch.nn.ParameterDict, views: Sequence[View], *, backend: str = "auto") -> torch.Tensor:
    """[N] summed blending weight of every Gaussian over all pixels of ``views`` (0 = never visible)."""
    out = torch.zeros(params["means"].shape[0], device=params["means"].device)
    for view in views:
        ws, _ = gaussian_contributions(params, view, backend=backend)
        out += ws[:, 0]
    return out


def contribution_stats(contribution: torch.Tensor, min_weight: float) -> dict[str, float]:
    """JSON-ready summary of a contribution vector (recorded in config.json's language section)."""
    c = contribution.detach().float().cpu()
    n = max(1, c.numel())
    return {"contribution_file": CONTRIBUTION_FILE, "never_seen": int((c < min_weight).sum()),
            "never_seen_share": round(float((c < min_weight).sum()) / n, 4),
            "contribution_median": round(float(c.median()) if c.numel() else 0.0, 4)}


def save_contribution(scene_dir: Path, contribution: torch.Tensor, num_views: int) -> Path:
    """Write ``SCENE/codec/contribution.pt`` atomically; returns its path (the caller rewrites the manifest)."""
    return atomic_torch_save(Path(scene_dir) / CONTRIBUTION_FILE,
                             {"contribution": contribution.detach().float().cpu(), "views": int(num_views)})
