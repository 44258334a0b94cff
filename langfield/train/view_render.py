"""Render stored (pre-activation) Gaussians from views: the one place train/eval/CLI call the rasterizer."""

from __future__ import annotations

from typing import Optional

import torch

from langfield.gaussians.params import activate
from langfield.types import RenderOutput, View


def background_color(kind: str, device: torch.device | str, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """[3] background: black, white, or (training only) a random colour from ``generator``.

    ``random`` without a generator (evaluation) means black, so held-out
    metrics do not depend on a random draw.
    """
    if kind == "white":
        return torch.ones(3, device=device)
    if kind == "random" and generator is not None:
        return torch.rand(3, generator=generator).to(device)
    return torch.zeros(3, device=device)


def render_params(
    params: torch.nn.ParameterDict,
    view: View,
    *,
    sh_degree: int,
    background: torch.Tensor,
    backend: str = "auto",
    render_depth: bool = True,
    features: Optional[torch.Tensor] = None,
    absgrad: bool = False,
) -> RenderOutput:
    """Render one view of the Gaussians (differentiable when called with grad enabled).

    ``features`` [N, C] (e.g. the latents) are composited in the same pass into ``out.features``;
    ``absgrad`` makes the backward fill ``out.means2d.absgrad`` (AbsGS densification).
    """
    from langfield.render import render

    g = activate(params)
    return render(
        g.means,
        g.quats,
        g.scales,
        g.opacities,
        view.viewmat[None],
        view.K[None],
        int(view.width),
        int(view.height),
        sh_coeffs=g.sh,
        sh_degree=sh_degree,
        backgrounds=background[None],
        render_depth=render_depth,
        features=features,
        backend=backend,
        absgrad=absgrad,
    )
