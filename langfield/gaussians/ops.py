"""In-place edits of the Gaussian set that keep optimizers and running state consistent.

Each op rebuilds *every* tensor in the ParameterDict (whatever keys exist,
e.g. ``latents``), swaps the new ``Parameter`` into its optimizer and resizes
the optimizer's per-row state (Adam ``exp_avg``/``exp_avg_sq`` ...): rows of
kept Gaussians keep their moments, rows of new Gaussians start at zero.
Per-Gaussian tensors in the strategy ``state`` dict (first dimension N) follow
the same edit.

Conventions: ``optimizers`` maps a parameter key to an optimizer with one
param group holding exactly that parameter (frozen parameters may have none).
"""

from __future__ import annotations

import math
from typing import Any, Callable, MutableMapping, Optional

import torch

from langfield.geometry import quat_to_rotmat

Params = MutableMapping[str, torch.nn.Parameter]
Optimizers = MutableMapping[str, torch.optim.Optimizer]

# Children of a split are this much smaller than their parent (3DGS's 0.8 * 2).
SPLIT_SCALE_DIVISOR = 1.6


@torch.no_grad()
def _rebuild(
    params: Params,
    optimizers: Optimizers,
    param_fn: Callable[[str, torch.Tensor], torch.Tensor],
    moment_fn: Callable[[torch.Tensor], torch.Tensor],
    keys: Optional[list[str]] = None,
) -> None:
    """Replace ``params[key]`` by ``param_fn(key, old)`` and map its optimizer state.

    ``moment_fn`` maps every per-row optimizer state tensor (first dim = old
    N); scalar entries such as Adam's ``step`` are left untouched.
    """
    for key in list(params.keys()) if keys is None else keys:
        old = params[key]
        n_old = old.shape[0]
        new = torch.nn.Parameter(param_fn(key, old.detach()).contiguous(), requires_grad=old.requires_grad)
        params[key] = new
        opt = optimizers.get(key)
        if opt is None:
            if old.requires_grad:
                raise ValueError(f"parameter {key!r} is trainable but has no optimizer")
            continue
        group = opt.param_groups[0]
        if len(opt.param_groups) != 1 or len(group["params"]) != 1 or group["params"][0] is not old:
            raise ValueError(f"optimizer for {key!r} must have one param group holding exactly params[{key!r}]")
        slot: dict[str, Any] = opt.state.pop(old, {})
        for name, value in slot.items():
            if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == n_old:
                slot[name] = moment_fn(value)
        group["params"] = [new]
        if slot:
            opt.state[new] = slot


def _map_state(state: MutableMapping[str, Any], n_old: int, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    for name, value in list(state.items()):
        if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == n_old:
            state[name] = fn(value)


def _check_mask(params: Params, mask: torch.Tensor) -> torch.Tensor:
    n = params["means"].shape[0]
    if mask.dtype != torch.bool or mask.shape != (n,):
        raise ValueError(f"mask must be a bool tensor of shape [{n}], got {mask.dtype} {tuple(mask.shape)}")
    return mask.to(params["means"].device)


def _zeros_after(value: torch.Tensor, n_new: int) -> torch.Tensor:
    return torch.cat([value, value.new_zeros((n_new, *value.shape[1:]))])


@torch.no_grad()
def duplicate(params: Params, optimizers: Optimizers, state: MutableMapping[str, Any], mask: torch.Tensor) -> int:
    """Clone the masked Gaussians; the copies are appended after all existing rows.

    Optimizer moments of the copies start at zero; state rows are copied.
    Returns the number of Gaussians added.
    """
    mask = _check_mask(params, mask)
    sel = torch.nonzero(mask).squeeze(1)
    n_old, n_new = mask.shape[0], sel.shape[0]
    if n_new == 0:
        return 0
    _rebuild(params, optimizers, lambda _k, p: torch.cat([p, p[sel]]), lambda v: _zeros_after(v, n_new))
    _map_state(state, n_old, lambda v: torch.cat([v, v[sel]]))
    return n_new


@torch.no_grad()
def split(
    params: Params,
    optimizers: Optimizers,
    state: MutableMapping[str, Any],
    mask: torch.Tensor,
    *,
    generator: Optional[torch.Generator] = None,
    revised_opacity: bool = False,
) -> int:
    """Replace each masked Gaussian by two children sampled from its distribution.

    Child means are ``mean + R diag(scale) eps`` with ``eps ~ N(0, I)``, child
    scales are the parent's divided by 1.6, every other parameter (colour,
    opacity, latents ...) is copied.  Unmasked Gaussians keep their relative
    order at the front; the children follow (all first children, then all
    second children).  Children start with zero optimizer moments and copy
    the parent's state rows.

    Args:
        generator: CPU generator for the offsets (determinism); None uses the
            global RNG.
        revised_opacity: give children opacity ``1 - sqrt(1 - o)`` so that the
            pair's combined opacity matches the parent's (arXiv:2404.06109).

    Returns:
        The number of Gaussians split (the set grows by that many).
    """
    mask = _check_mask(params, mask)
    device = mask.device
    sel = torch.nonzero(mask).squeeze(1)
    rest = torch.nonzero(~mask).squeeze(1)
    n_old, n_sel = mask.shape[0], sel.shape[0]
    if n_sel == 0:
        return 0
    scales = torch.exp(params["scales"][sel].detach())
    rot = quat_to_rotmat(params["quats"][sel].detach())
    eps = torch.randn(2, n_sel, 3, generator=generator).to(device=device, dtype=scales.dtype)
    offsets = torch.einsum("nij,nj,bnj->bni", rot, scales, eps)  # [2, n_sel, 3]

    def param_fn(key: str, p: torch.Tensor) -> torch.Tensor:
        parent = p[sel]
        if key == "means":
            children = (parent[None] + offsets).reshape(2 * n_sel, 3)
        elif key == "scales":
            children = (parent - math.log(SPLIT_SCALE_DIVISOR)).repeat(2, 1)
        elif key == "opacities" and revised_opacity:
            opa = 1.0 - torch.sqrt(1.0 - torch.sigmoid(parent))
            children = torch.logit(opa).repeat(2, *([1] * (p.ndim - 1)))
        else:
            children = parent.repeat(2, *([1] * (p.ndim - 1)))
        return torch.cat([p[rest], children])

    _rebuild(params, optimizers, param_fn, lambda v: _zeros_after(v[rest], 2 * n_sel))
    _map_state(state, n_old, lambda v: torch.cat([v[rest], v[sel].repeat(2, *([1] * (v.ndim - 1)))]))
    return n_sel


@torch.no_grad()
def remove(params: Params, optimizers: Optimizers, state: MutableMapping[str, Any], mask: torch.Tensor) -> int:
    """Delete the masked Gaussians (order of the rest preserved). Returns how many were removed."""
    mask = _check_mask(params, mask)
    keep = torch.nonzero(~mask).squeeze(1)
    n_old = mask.shape[0]
    n_removed = n_old - keep.shape[0]
    if n_removed == 0:
        return 0
    _rebuild(params, optimizers, lambda _k, p: p[keep], lambda v: v[keep])
    _map_state(state, n_old, lambda v: v[keep])
    return n_removed


@torch.no_grad()
def reset_opacity(params: Params, optimizers: Optimizers, state: MutableMapping[str, Any], value: float) -> None:
    """Clamp every opacity to at most ``value`` (post-sigmoid) and zero its optimizer moments.

    The moments are cleared because the old ones describe a different
    operating point (3DGS does the same).  ``state`` is left unchanged; the
    argument exists so all ops share one signature.
    """
    if not 0.0 < value < 1.0:
        raise ValueError(f"opacity reset value must be in (0, 1), got {value}")
    cap = math.log(value / (1.0 - value))
    _rebuild(
        params,
        optimizers,
        lambda _k, p: p.clamp(max=cap),
        torch.zeros_like,
        keys=["opacities"],
    )
