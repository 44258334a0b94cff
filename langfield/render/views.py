"""Render stored (pre-activation) Gaussians from views: the one place train/eval/query/CLI call the rasterizer."""

from __future__ import annotations

from typing import Any, Optional

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
    ``absgrad`` adds ``out.absgrad``, which the backward fills (AbsGS densification).
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


def render_latents(
    params: torch.nn.ParameterDict,
    view: View,
    latents: torch.Tensor,
    *,
    backend: str = "auto",
    sh_degree: Optional[int] = None,
    with_rgb: bool = False,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Render ``latents`` [N, C] of the (frozen) Gaussians into ``view``: ([H, W, C], rgb [H, W, 3] or None).

    Without ``with_rgb`` colours are constant zeros, so no SH is evaluated.
    """
    from langfield.render import render

    g = activate(params)
    n = g.means.shape[0]
    colour: dict[str, Any] = (
        {"sh_coeffs": g.sh.detach(), "sh_degree": sh_degree} if with_rgb else {"colors": latents.new_zeros(n, 3)}
    )
    out = render(
        g.means.detach(), g.quats.detach(), g.scales.detach(), g.opacities.detach(),
        view.viewmat[None], view.K[None], int(view.width), int(view.height),
        features=latents, render_depth=False, backend=backend, **colour,
    )
    assert out.features is not None
    return out.features[0], (out.rgb[0] if with_rgb else None)
