"""DefaultStrategy and the ops behind it, on hand-made gradients (no renderer needed)."""

from __future__ import annotations

import math

import pytest
import torch

from langfield.gaussians import ops
from langfield.geometry import quat_to_rotmat
from langfield.gaussians.params import create_params
from langfield.gaussians.strategy import DefaultStrategy, Strategy

W = H = 100
C = 2
HIGH, LOW = 1e-4, 1e-8  # per-pixel grads; normalised: *W/2*C = x100 -> 1e-2 and 1e-6 vs threshold 2e-4


def _setup(n: int = 8, latent_dim: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    log_s = torch.full((n, 3), math.log(0.05))
    log_s[0:2] = math.log(0.001)  # small -> clone
    log_s[2:4] = math.log(0.5)  # large -> split
    opa = torch.full((n,), 2.0)
    opa[4] = -8.0  # sigmoid ~ 3e-4 < 0.005 -> prune
    params = create_params(
        means=torch.randn(n, 3, generator=g),
        log_scales=log_s,
        quats=torch.randn(n, 4, generator=g),
        opacity_logits=opa,
        sh0=torch.randn(n, 1, 3, generator=g),
        shN=torch.randn(n, 15, 3, generator=g),
        latents=torch.randn(n, latent_dim, generator=g),
    )
    optimizers = {k: torch.optim.Adam([p], lr=1e-3) for k, p in params.items()}
    # one optimizer step so every Adam moment is populated and non-zero
    for p in params.values():
        p.grad = torch.randn(p.shape, generator=g)
    for opt in optimizers.values():
        opt.step()
        opt.zero_grad()
    return params, optimizers


def _info(params, grad_rows: torch.Tensor, visible: torch.Tensor):
    """means2d whose gradient is exactly ``grad_rows`` ([C, N, 2]) after backward."""
    base = torch.zeros(C, params["means"].shape[0], 2, requires_grad=True)
    means2d = base * 1.0  # non-leaf, like a renderer output
    radii = visible.to(torch.int32) * 5
    return {"means2d": means2d, "radii": radii, "width": W, "height": H, "n_cameras": C}, grad_rows


def _step(strategy, params, optimizers, state, step, grad_rows, visible):
    info, w = _info(params, grad_rows, visible)
    strategy.step_pre_backward(params, optimizers, state, step, info)
    (info["means2d"] * w).sum().backward()
    return strategy.step_post_backward(params, optimizers, state, step, info)


def _grads(n: int, high: list[int]) -> torch.Tensor:
    w = torch.full((C, n, 2), LOW)
    w[:, high] = HIGH
    return w


def _snapshot(params, optimizers):
    p = {k: v.detach().clone() for k, v in params.items()}
    s = {k: {n: t.clone() for n, t in opt.state[params[k]].items()} for k, opt in optimizers.items()}
    return p, s


def test_clone_split_prune_with_consistent_optimizer_state():
    params, optimizers = _setup()
    strategy = DefaultStrategy(refine_start_iter=0, refine_every=1, reset_every=1000)
    strategy.check_sanity(params, optimizers)
    state = strategy.initialize_state(scene_scale=1.0)
    before, before_opt = _snapshot(params, optimizers)
    visible = torch.ones(C, 8, dtype=torch.bool)
    visible[:, 7] = False  # huge gradient but never visible -> ignored
    grads = _grads(8, [0, 1, 2, 3, 7])
    grads[:, 7] = 1.0
    stats = _step(strategy, params, optimizers, state, 1, grads, visible)
    assert (stats.n_duplicated, stats.n_split, stats.n_pruned) == (2, 2, 1)
    assert stats.n_gaussians == params["means"].shape[0] == 11

    # rows: kept originals, clones, first children, second children (pruned #4 gone)
    source = [0, 1, 5, 6, 7, 0, 1, 2, 3, 2, 3]
    for key in params:
        expect = before[key][source]
        got = params[key].detach()
        if key == "means":
            assert torch.equal(got[:7], expect[:7])
            assert not torch.isclose(got[7:], expect[7:]).all(dim=1).any()  # children moved
        elif key == "scales":
            assert torch.equal(got[:7], expect[:7])
            torch.testing.assert_close(got[7:], expect[7:] - math.log(1.6))
        else:
            assert torch.equal(got, expect), key  # latents, colours, opacity follow

    for key, opt in optimizers.items():
        assert opt.param_groups[0]["params"][0] is params[key]
        slot = opt.state[params[key]]
        assert torch.equal(slot["step"], before_opt[key]["step"])
        for name in ("exp_avg", "exp_avg_sq"):
            assert slot[name].shape == params[key].shape
            assert torch.equal(slot[name][:5], before_opt[key][name][[0, 1, 5, 6, 7]])
            assert not slot[name][5:].any()
    assert state["grad2d"].shape == (11,) and not state["grad2d"].any() and not state["count"].any()

    # training continues on the new tensors
    for p in params.values():
        p.grad = torch.ones_like(p)
    for opt in optimizers.values():
        opt.step()
    assert not torch.equal(params["latents"].detach()[7:], before["latents"][[2, 3, 2, 3]])


def test_split_children_sample_the_parent_distribution():
    n = 4000
    quat = torch.tensor([0.9, 0.1, -0.3, 0.2])
    scale = torch.tensor([0.5, 0.1, 0.02])
    params = create_params(
        means=torch.zeros(n, 3),
        log_scales=scale.log().expand(n, 3),
        quats=quat.expand(n, 4),
        opacity_logits=torch.zeros(n),
        sh0=torch.zeros(n, 1, 3),
        shN=torch.zeros(n, 0, 3),
    )
    for p in params.values():
        p.requires_grad_(False)  # frozen parameters need no optimizer
    state = {"grad2d": torch.arange(float(n))}
    ops.split(params, {}, state, torch.ones(n, dtype=torch.bool), generator=torch.Generator().manual_seed(0))
    x = params["means"].detach().double()
    assert x.shape == (2 * n, 3)
    R = quat_to_rotmat(quat.double())
    cov = R @ torch.diag(scale.double() ** 2) @ R.T
    torch.testing.assert_close(x.T @ x / x.shape[0], cov, atol=0.02 * 0.25, rtol=0.05)
    assert torch.equal(state["grad2d"], torch.arange(float(n)).repeat(2))


def test_quat_to_rotmat_is_rotation():
    q = torch.randn(10, 4, generator=torch.Generator().manual_seed(1)).double()
    R = quat_to_rotmat(q)
    torch.testing.assert_close(R @ R.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(10, 3, 3))
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(10, dtype=torch.float64))
    # 90 degrees about z maps x to y
    qz = torch.tensor([math.cos(math.pi / 4), 0, 0, math.sin(math.pi / 4)], dtype=torch.float64)
    torch.testing.assert_close(quat_to_rotmat(qz) @ torch.tensor([1.0, 0, 0], dtype=torch.float64),
                               torch.tensor([0.0, 1, 0], dtype=torch.float64))
    # any norm; a zero quaternion is the identity rather than NaN
    torch.testing.assert_close(quat_to_rotmat(3.0 * q), R)
    assert torch.equal(quat_to_rotmat(torch.zeros(4)), torch.eye(3))


def test_gradient_statistics_normalisation_and_visibility():
    params, optimizers = _setup()
    strategy = DefaultStrategy(refine_start_iter=10_000)
    state = strategy.initialize_state()
    g = torch.Generator().manual_seed(4)
    w1, w2 = torch.randn(C, 8, 2, generator=g), torch.randn(C, 8, 2, generator=g)
    vis1 = torch.rand(C, 8, generator=g) > 0.3
    vis2 = torch.rand(C, 8, generator=g) > 0.3
    _step(strategy, params, optimizers, state, 1, w1, vis1)
    _step(strategy, params, optimizers, state, 2, w2, vis2)
    factor = torch.tensor([W / 2 * C, H / 2 * C])
    expect = ((w1 * factor).norm(dim=-1) * vis1).sum(0) + ((w2 * factor).norm(dim=-1) * vis2).sum(0)
    torch.testing.assert_close(state["grad2d"], expect)
    assert torch.equal(state["count"], vis1.sum(0).float() + vis2.sum(0).float())


def test_opacity_reset():
    params, optimizers = _setup()
    strategy = DefaultStrategy(refine_start_iter=10_000, reset_every=50)
    state = strategy.initialize_state()
    before, before_opt = _snapshot(params, optimizers)
    vis = torch.ones(C, 8, dtype=torch.bool)
    assert not _step(strategy, params, optimizers, state, 49, _grads(8, []), vis).opacity_reset
    stats = _step(strategy, params, optimizers, state, 50, _grads(8, []), vis)
    assert stats.opacity_reset and stats.n_gaussians == 8
    opa = torch.sigmoid(params["opacities"].detach())
    old = torch.sigmoid(before["opacities"])
    torch.testing.assert_close(opa, torch.minimum(old, torch.tensor(0.01)))
    assert opa[4] < 0.01  # already-low opacities are left alone
    assert not optimizers["opacities"].state[params["opacities"]]["exp_avg"].any()
    assert torch.equal(optimizers["means"].state[params["means"]]["exp_avg"], before_opt["means"]["exp_avg"])


def test_max_gaussians_keeps_highest_gradients():
    params, optimizers = _setup()
    strategy = DefaultStrategy(refine_start_iter=0, refine_every=1, max_gaussians=10, prune_opa=1e-9)
    state = strategy.initialize_state()
    grads = _grads(8, [0, 1, 2, 3])
    grads[:, 1] *= 3  # clone candidate 1 and split candidate 3 have the largest gradients
    grads[:, 3] *= 2
    stats = _step(strategy, params, optimizers, state, 1, grads, torch.ones(C, 8, dtype=torch.bool))
    assert (stats.n_duplicated, stats.n_split, stats.n_pruned) == (1, 1, 0)
    assert params["means"].shape[0] == 10


def test_split_is_deterministic_given_seed():
    def run(seed: int) -> torch.Tensor:
        params, optimizers = _setup()
        strategy = DefaultStrategy(refine_start_iter=0, refine_every=1, seed=seed)
        state = strategy.initialize_state()
        _step(strategy, params, optimizers, state, 1, _grads(8, [2, 3]), torch.ones(C, 8, dtype=torch.bool))
        return params["means"].detach()

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))


def test_large_gaussians_pruned_only_after_first_reset():
    params, optimizers = _setup()
    strategy = DefaultStrategy(refine_start_iter=0, refine_every=1, reset_every=100, grow_grad2d=1.0)
    state = strategy.initialize_state(scene_scale=2.0)  # prune threshold 0.2: rows 2, 3 (0.5) too big
    vis = torch.ones(C, 8, dtype=torch.bool)
    assert _step(strategy, params, optimizers, state, 99, _grads(8, []), vis).n_pruned == 1
    vis = torch.ones(C, 7, dtype=torch.bool)
    assert _step(strategy, params, optimizers, state, 101, _grads(7, []), vis).n_pruned == 2


def test_nothing_after_refine_stop_and_misuse_errors():
    params, optimizers = _setup()
    strategy = DefaultStrategy(refine_stop_iter=10)
    state = strategy.initialize_state()
    stats = _step(strategy, params, optimizers, state, 10, _grads(8, [0]), torch.ones(C, 8, dtype=torch.bool))
    assert stats.n_gaussians == 8 and state["grad2d"] is None
    with pytest.raises(ValueError, match="means2d.grad"):
        info, _ = _info(params, _grads(8, []), torch.ones(C, 8, dtype=torch.bool))
        strategy.step_post_backward(params, optimizers, state, 1, info)
    bad = dict(optimizers)
    del bad["latents"]
    with pytest.raises(ValueError, match="trainable"):
        strategy.check_sanity(params, bad)


def test_default_strategy_is_a_strategy():
    assert isinstance(DefaultStrategy(), Strategy)
    assert not isinstance(object(), Strategy)


def test_absgrad_statistic_comes_from_info_not_from_means2d():
    """With ``absgrad`` the growth statistic is info["absgrad"] (RenderOutput.absgrad); means2d.grad is ignored."""
    params, optimizers = _setup()
    strategy = DefaultStrategy(absgrad=True, refine_start_iter=10_000)
    state = strategy.initialize_state()
    visible = torch.ones(C, 8, dtype=torch.bool)
    info, w = _info(params, _grads(8, [0]), visible)  # means2d.grad would single out Gaussian 0
    info["absgrad"] = _grads(8, [5])
    strategy.step_pre_backward(params, optimizers, state, 1, info)
    (info["means2d"] * w).sum().backward()
    strategy.step_post_backward(params, optimizers, state, 1, info)
    norm = state["grad2d"] / state["count"]
    assert int(norm.argmax()) == 5
    torch.testing.assert_close(norm[5], torch.tensor(HIGH * math.sqrt(2) * W / 2 * C))
    with pytest.raises(ValueError, match="absgrad"):
        info["absgrad"] = None
        strategy.step_post_backward(params, optimizers, state, 2, info)


def test_screen_radius_criteria_split_and_prune():
    params, optimizers = _setup()
    strategy = DefaultStrategy(refine_start_iter=0, refine_every=1, reset_every=5, refine_scale2d_stop_iter=100)
    state = strategy.initialize_state(scene_scale=100.0)  # 3D size criteria never fire
    info, w = _info(params, _grads(8, []), torch.ones(C, 8, dtype=torch.bool))
    info["radii"][0, 5] = 10  # 10 / max(W, H) = 0.1 > grow_scale2d: split despite low gradient
    info["radii"][1, 6] = 20  # 0.2 > prune_scale2d: split now, the children are pruned after the reset
    strategy.step_pre_backward(params, optimizers, state, 6, info)
    (info["means2d"] * w).sum().backward()
    stats = strategy.step_post_backward(params, optimizers, state, 6, info)
    assert state["radii"].shape == (params["means"].shape[0],)
    assert stats.n_split == 2 and stats.n_duplicated == 0
    # 8 + 2 (splits) - 1 (low opacity #4) - 2 (both children of #6, which inherit its radius)
    assert stats.n_pruned == 3 and stats.n_gaussians == 7


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_strategy_on_cuda_matches_cpu():
    def run(device: str):
        params, optimizers = _setup()
        params = params.to(device)
        optimizers = {k: torch.optim.Adam([p], lr=1e-3) for k, p in params.items()}
        strategy = DefaultStrategy(refine_start_iter=0, refine_every=1)
        state = strategy.initialize_state()
        info, w = _info(params, _grads(8, [0, 1, 2, 3]), torch.ones(C, 8, dtype=torch.bool))
        info = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in info.items()}
        strategy.step_pre_backward(params, optimizers, state, 1, info)
        (info["means2d"] * w.to(device)).sum().backward()
        strategy.step_post_backward(params, optimizers, state, 1, info)
        return {k: v.detach().cpu() for k, v in params.items()}

    cpu, gpu = run("cpu"), run("cuda")
    for key in cpu:
        torch.testing.assert_close(gpu[key], cpu[key], msg=key)
