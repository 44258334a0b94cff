"""The 3D-selection protocol (OpenGaussian / Dr. Splat / LaGa / VALA style) on labelled held-out views.

Each query text is answered once, in 3D (``GaussianRelevancy.query``: per-Gaussian
relevancy, level choice, threshold, visibility gate), and the selected Gaussians
are scored against the ground-truth masks of the held-out views:

* **alone** -- the selected Gaussians rendered by themselves at a held-out
  camera; predicted mask = their alpha > 0.5; IoU with the GT mask;
* **occlusion-aware** -- the selection as a 0/1 feature channel rendered inside
  the full scene (so unselected Gaussians in front hide selected ones);
  predicted mask = that channel > 0.5; IoU with the GT mask;
* **precision** -- the share of the selected Gaussians whose centre projects
  into the object's GT mask in at least one held-out view where the centre is
  *visible*: in front of the camera, inside the image, and not behind the
  rendered surface (centre depth <= rendered depth x (1 + ``depth_tolerance``)).
  Selected Gaussians visible in no held-out view count as misses (hidden and
  interior Gaussians are exactly what a 3D selection must not pick);
  ``visible_share`` says how many were visible at all.

IoUs are per (frame, query) over the frames where the query is annotated
(the 2D protocol's ``min_area`` rule), reported as the mean over pairs, the
mean of per-query means, and per query; precision is per query.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Mapping, Optional, Sequence

import numpy as np
import torch

from langfield.eval.queries import iou
from langfield.query.relevancy import DEFAULT_NEGATIVES, QueryConfig
from langfield.query.select3d import GaussianRelevancy, SelectionConfig, load_contribution, subset_params
from langfield.render.views import render_latents
from langfield.types import Label, View

if TYPE_CHECKING:
    from langfield.query.field import LanguageField

PROTOCOL = "3d-selection"
DEPTH_TOLERANCE = 0.05
"""Relative slack of the visibility depth test (a surface Gaussian's centre lies a little behind the
rendered expected depth, which blends it with the Gaussians in front of it)."""


@dataclass
class Selection3DEval:
    """Scores of one query's 3D selection in one held-out frame."""

    frame: str
    """Frame name."""
    query: str
    """Query text."""
    iou_alone: float
    """IoU of the selected Gaussians rendered alone (alpha > 0.5) with the GT mask."""
    iou_occlusion: float
    """IoU of the selection rendered as a 0/1 channel inside the full scene (> 0.5) with the GT mask."""


def label_text_ids(labels: Mapping[int, Label]) -> dict[str, list[int]]:
    """Every part and whole text of ``labels`` -> the label ids it covers."""
    out: dict[str, list[int]] = {}
    for lid, lab in labels.items():
        for text in (lab.part, lab.whole):
            ids = out.setdefault(text, [])
            if lid not in ids:
                ids.append(lid)
    return dict(sorted(out.items()))


def scene_relevancy(field: "LanguageField") -> GaussianRelevancy:
    """The field's decoded Gaussians, with the contribution the scene records (if any) for the visibility gate."""
    decoded = field.decode_gaussians()
    if decoded.contribution is not None:
        return decoded
    contribution = load_contribution(field.root, field.meta, device=decoded.features.device)
    if contribution is None or contribution.shape[0] != decoded.num_gaussians:
        return decoded
    return GaussianRelevancy(decoded.features, decoded.means, decoded.opacities, normalize=False,
                             contribution=contribution)


def _project(means: torch.Tensor, view: View) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixel column, row (int64) and camera depth [M] of world points ``means`` [M, 3]."""
    cam = means @ view.viewmat[:3, :3].T.to(means) + view.viewmat[:3, 3].to(means)
    z = cam[:, 2]
    safe = torch.where(z > 1e-6, z, torch.ones_like(z))
    K = view.K.to(means)
    u = K[0, 0] * cam[:, 0] / safe + K[0, 2]
    v = K[1, 1] * cam[:, 1] / safe + K[1, 2]
    return torch.floor(u).long(), torch.floor(v).long(), z


def visible_in_mask(means: torch.Tensor, view: View, depth: torch.Tensor, gt: torch.Tensor,
                    tolerance: float = DEPTH_TOLERANCE) -> tuple[torch.Tensor, torch.Tensor]:
    """Per point [M]: (visible in ``view``, visible and on ``gt`` [H, W]); ``depth`` [H, W] the rendered depth."""
    col, row, z = _project(means, view)
    h, w = gt.shape
    inside = (z > 0.01) & (col >= 0) & (col < w) & (row >= 0) & (row < h)
    c, r = col.clamp(0, w - 1), row.clamp(0, h - 1)
    d = depth[r, c]
    visible = inside & (d > 0) & (z <= d * (1.0 + tolerance))
    return visible, visible & gt.to(visible.device)[r, c]


def _alone_alpha(params: torch.nn.ParameterDict, mask: torch.Tensor, view: View, backend: str) -> torch.Tensor:
    """[H, W] alpha of the selected Gaussians rendered by themselves."""
    if not bool(mask.any()):
        return torch.zeros(view.height, view.width)
    sub = subset_params(params, mask)
    ones = sub["means"].new_ones(sub["means"].shape[0], 1)
    alpha, _ = render_latents(sub, view, ones, backend=backend)  # a channel of ones composites to alpha
    return alpha[..., 0].cpu()


@torch.no_grad()
def evaluate_selection3d(
    field: "LanguageField",
    views: Sequence[View],
    labels: Mapping[int, Label],
    *,
    min_area: float = 0.001,
    selection: Optional[SelectionConfig] = None,
    level: Optional[int] = None,
    negatives: Optional[Sequence[str]] = None,
) -> dict:
    """The 3D-selection protocol over labelled held-out ``views`` (with ``semantics``); JSON-ready report."""
    selection = selection or SelectionConfig()
    gr = scene_relevancy(field)
    text_ids = label_text_ids(labels)
    sems = {v.name: v.semantics.cpu() for v in views if v.semantics is not None}
    annotated: dict[str, list[str]] = {}  # frame -> texts covering >= min_area
    for v in views:
        if v.name not in sems:
            continue
        min_pixels = max(1, int(math.ceil(min_area * v.height * v.width)))
        annotated[v.name] = [t for t, ids in text_ids.items() if int(torch.isin(sems[v.name], torch.tensor(ids)).sum())
                             >= min_pixels]
    texts = sorted({t for ts in annotated.values() for t in ts})
    config = QueryConfig(negatives=tuple(negatives) if negatives else DEFAULT_NEGATIVES, level=level)
    neg = field.embed(list(config.negatives))
    pos = field.embed(texts) if texts else None
    params = field.params
    selected: dict[str, torch.Tensor] = {}
    levels: dict[str, int] = {}
    for qi, text in enumerate(texts):
        assert pos is not None
        res = gr.query(pos[qi], neg, config, selection)
        selected[text], levels[text] = res.mask.cpu(), res.level
    means = gr.means.float().cpu() if gr.means is not None else field.gaussians.means.detach().float().cpu()
    hit = {t: torch.zeros(int(m.sum()), dtype=torch.bool) for t, m in selected.items()}
    seen = {t: torch.zeros(int(m.sum()), dtype=torch.bool) for t, m in selected.items()}
    records: list[Selection3DEval] = []
    masks_nq = torch.stack([selected[t] for t in texts], dim=1).float() if texts else None  # [N, Q]
    for v in views:
        if v.name not in sems or masks_nq is None:
            continue
        depth = field.render(v, what=("depth",)).depth
        assert depth is not None
        depth = depth.cpu()
        occl, _ = render_latents(params, v, masks_nq.to(params["means"].device), backend=field.backend)
        occl = occl.cpu()
        for qi, text in enumerate(texts):
            gt = torch.isin(sems[v.name], torch.tensor(text_ids[text]))
            vis, on = visible_in_mask(means[selected[text]], v, depth, gt)
            seen[text] |= vis
            hit[text] |= on
            if text in annotated[v.name]:
                alone = _alone_alpha(params, selected[text].to(params["means"].device), v, field.backend)
                records.append(Selection3DEval(v.name, text, iou(alone > 0.5, gt), iou(occl[..., qi] > 0.5, gt)))
    per_query = {}
    for text in texts:
        rows = [r for r in records if r.query == text]
        n_sel = int(selected[text].sum())
        per_query[text] = {
            "count": len(rows),
            "iou_alone": float(np.mean([r.iou_alone for r in rows])) if rows else math.nan,
            "iou_occlusion": float(np.mean([r.iou_occlusion for r in rows])) if rows else math.nan,
            "precision": float(hit[text].sum()) / n_sel if n_sel else math.nan,
            "visible_share": float(seen[text].sum()) / n_sel if n_sel else math.nan,
            "selected": n_sel,
            "level": levels[text],
        }
    return {
        "protocol": PROTOCOL,
        "rule": "select in 3D once per text; alone: selected Gaussians rendered alone, alpha > 0.5 vs GT; "
                "occlusion: selection as a 0/1 channel in the full scene > 0.5 vs GT; precision: share of selected "
                f"centres on the GT mask in >= 1 held-out view where visible (depth <= rendered x {1 + DEPTH_TOLERANCE})",
        "selection": asdict(selection),
        "gated_by_contribution": gr.contribution is not None and selection.min_contribution is not None,
        "mean": _mean_rows(records),
        "mean_of_queries": {key: _nanmean([q[key] for q in per_query.values()])
                            for key in ("iou_alone", "iou_occlusion", "precision", "visible_share")},
        "per_query": per_query,
        "records": [asdict(r) for r in records],
    }


def _nanmean(values: Sequence[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return float(np.mean(vals)) if vals else math.nan


def _mean_rows(records: Sequence[Selection3DEval]) -> dict:
    if not records:
        return {"count": 0, "iou_alone": math.nan, "iou_occlusion": math.nan}
    return {"count": len(records), "iou_alone": float(np.mean([r.iou_alone for r in records])),
            "iou_occlusion": float(np.mean([r.iou_occlusion for r in records]))}
