"""Camera-pose refinement (``TrainConfig.optimize_poses``, ``langfield.train.camera_opt``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from langfield.gaussians.strategy import DefaultStrategy
from langfield.train.camera_opt import (
    correction_inverse,
    perturb_views,
    pose_errors,
    refine_eval_poses,
    refine_viewmat,
    so3_exp,
)
from langfield.train.checkpoint import load_checkpoint
from langfield.train.config import LearningRates, TrainConfig
from langfield.train.trainer import Trainer, seed_everything
from langfield.scene import latest_checkpoint
from langfield.types import ConfigError, View


def _hat(w):
    x, y, z = w.tolist()
    return torch.tensor([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]], dtype=w.dtype)


def test_so3_exp_matches_the_matrix_exponential_and_is_smooth_at_zero():
    for w in (torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64), torch.tensor([1e-5, 2e-5, -1e-5],
                                                                                dtype=torch.float64)):
        torch.testing.assert_close(so3_exp(w), torch.linalg.matrix_exp(_hat(w)), rtol=0, atol=1e-12)
    for w0 in (torch.zeros(3, dtype=torch.float64), torch.tensor([0.4, 0.1, -0.3], dtype=torch.float64)):
        assert torch.autograd.gradcheck(so3_exp, (w0.clone().requires_grad_(True),))
    assert torch.equal(so3_exp(torch.zeros(3)), torch.eye(3))  # zero correction is exactly the given pose


def test_correction_is_applied_on_the_right_of_c2w():
    g = torch.Generator().manual_seed(0)
    rot, trans = torch.randn(3, generator=g, dtype=torch.float64) * 0.2, torch.randn(3, generator=g,
                                                                                     dtype=torch.float64)
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[:3, :3] = so3_exp(torch.tensor([0.1, 0.7, -0.2], dtype=torch.float64))
    c2w[:3, 3] = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    e = torch.linalg.inv(correction_inverse(rot, trans))
    torch.testing.assert_close(e[:3, :3], so3_exp(rot))
    torch.testing.assert_close(e[:3, 3], trans)
    refined = refine_viewmat(torch.linalg.inv(c2w), rot, trans)
    torch.testing.assert_close(torch.linalg.inv(refined), c2w @ e)


@torch.no_grad()
def _render_views(params, n_views: int, width: int, height: int, radius: float = 3.0) -> list[View]:
    """Ground-truth views of ``params`` on a ring around the origin (black background)."""
    from langfield.gaussians.params import activate
    from langfield.geometry import look_at
    from langfield.render import render

    a = activate(params)
    f = 0.9 * width
    K = torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])
    views = []
    for i, ang in enumerate(np.linspace(0, 2 * math.pi, n_views, endpoint=False)):
        c2w = look_at(np.array([radius * math.cos(ang), radius * math.sin(ang), 0.5]), np.zeros(3))
        vm = torch.from_numpy(np.linalg.inv(c2w)).float()
        out = render(a.means, a.quats, a.scales, a.opacities, vm[None], K[None], width, height,
                     sh_coeffs=a.sh, backgrounds=torch.zeros(1, 3), backend="torch")
        views.append(View(name=f"img_{i:03d}.png", viewmat=vm, K=K.clone(), width=width, height=height,
                          rgb=out.rgb[0].clamp(0, 1)))
    return views


@pytest.fixture(scope="module")
def scene(make_gaussians):
    """True Gaussians and 8 ground-truth views of them at 64x48.

    The cameras are close (1.8 from the centre of a +-0.8 box): a strong parallax separates a rotation
    about the camera centre from a sideways shift (from 3.0 away the two nearly coincide at this size
    and the translation error barely moves in 200 steps)."""
    gauss = make_gaussians(300, seed=4, sh_degree=1)
    return gauss, _render_views(gauss, 8, 64, 48, radius=1.8)


def _copy(params):
    return torch.nn.ParameterDict({k: torch.nn.Parameter(v.detach().clone()) for k, v in params.items()})


def _cfg(iterations, **kw):
    # No densification: the test is about the poses.
    strategy = DefaultStrategy(refine_start_iter=10**6, refine_stop_iter=10**6, reset_every=10**6)
    base = dict(iterations=iterations, seed=1, sh_degree=1, sh_degree_interval=0, background="black",
                backend="cpu", checkpoint_every=0, strategy=strategy, scale_strategy_schedule=False)
    return TrainConfig(**{**base, **kw})


def _errors(views, truth):
    return pose_errors(torch.stack([v.viewmat for v in views]), torch.stack([v.viewmat for v in truth]))


def test_optimize_poses_recovers_perturbed_poses(scene):
    gauss, truth = scene
    noisy = perturb_views(truth, 2.0, 0.05, torch.Generator().manual_seed(0))
    before = _errors(noisy, truth)
    assert before["rot_deg_mean"] == pytest.approx(2.0, abs=1e-3)
    # Gaussians frozen at the truth (zero learning rates): the poses alone must explain the images, so
    # there is no gauge freedom (scene and cameras moving together) and the truth is the optimum.
    frozen = LearningRates(means=0.0, scales=0.0, quats=0.0, opacities=0.0, sh0=0.0, shN=0.0)
    seed_everything(1)
    tr = Trainer(_cfg(200, optimize_poses=True, pose_lr_rotation=1e-2, pose_lr_translation=1e-2,
                      pose_lr_final_factor=0.1, lr=frozen), noisy, _copy(gauss), scene_scale=1.0)
    tr.train(progress=False)
    train_views, _ = tr.pose_refined_views([])
    after = _errors(train_views, truth)
    assert after["rot_deg_mean"] < 0.4 * before["rot_deg_mean"], (before, after)
    assert after["trans_mean"] < 0.4 * before["trans_mean"], (before, after)


@pytest.fixture(scope="module")
def far_scene(make_gaussians):
    """The same Gaussians seen from 3.0 away (depths 2.2-3.8: little parallax, as in a room seen across)."""
    gauss = make_gaussians(300, seed=4, sh_degree=1)
    return gauss, _render_views(gauss, 8, 64, 48, radius=3.0)


def test_orbit_parametrisation_recovers_the_translation_at_low_parallax(far_scene):
    """With little parallax a sideways shift and a rotation move the image almost alike; in the plain
    ``c2w @ E(rot, trans)`` coordinates Adam mostly trades one for the other (the centre error stayed at
    ~60% of the perturbation after 200 steps).  The orbit coordinates (``pose_orbit``, the default of
    ``--optimize-poses``) separate the two and recover the centre."""
    gauss, truth = far_scene
    noisy = perturb_views(truth, 2.0, 0.05, torch.Generator().manual_seed(0))
    before = _errors(noisy, truth)
    frozen = LearningRates(means=0.0, scales=0.0, quats=0.0, opacities=0.0, sh0=0.0, shN=0.0)
    assert TrainConfig().pose_orbit is True
    seed_everything(1)
    tr = Trainer(_cfg(200, optimize_poses=True, pose_lr_rotation=1e-2, pose_lr_translation=1e-2,
                      pose_lr_final_factor=0.1, lr=frozen), noisy, _copy(gauss), scene_scale=1.0)
    # Each pivot is near the harmonic mean depth of what its camera sees (the box centre is 3.0 away).
    assert torch.all((tr.camera_opt.pivot > 2.2) & (tr.camera_opt.pivot < 3.4)), tr.camera_opt.pivot
    tr.train(progress=False)
    after = _errors(tr.pose_refined_views([])[0], truth)
    assert after["trans_mean"] < 0.3 * before["trans_mean"], (before, after)
    assert after["rot_deg_mean"] < 0.2 * before["rot_deg_mean"], (before, after)


def test_orbit_keeps_the_pivot_on_the_axis_and_is_plain_at_infinity():
    from langfield.train.camera_opt import orbit_rotation

    trans = torch.tensor([0.01, -0.02, 0.005], dtype=torch.float64)
    rot = torch.tensor([1e-3, 2e-3, -1e-3], dtype=torch.float64)
    assert torch.equal(orbit_rotation(rot, trans, torch.tensor(math.inf, dtype=torch.float64)), rot)
    d = torch.tensor(2.5, dtype=torch.float64)
    vm = refine_viewmat(torch.eye(4, dtype=torch.float64), orbit_rotation(torch.zeros(3, dtype=torch.float64),
                                                                          trans, d), trans)
    pivot_cam = vm @ torch.tensor([0.0, 0.0, 2.5, 1.0], dtype=torch.float64)
    assert pivot_cam[:2].abs().max() < 1e-4  # second order in |trans| / d (first order would be ~1e-2)
    assert pivot_cam[2] == pytest.approx(2.5 - 0.005, abs=5e-4)  # the forward part moves along the axis


def test_off_by_default_and_zero_lr_leaves_training_unchanged(scene):
    """optimize_poses with zero learning rates trains like a run without it: no RNG draws (same view and
    background sequence) and the same Gaussians up to rounding (the kernels' pose variant is compiled
    separately, so its other gradients may differ in the last bit)."""
    gauss, truth = scene
    assert TrainConfig().optimize_poses is False
    runs = []
    for on in (False, True):
        seed_everything(1)
        tr = Trainer(_cfg(20, optimize_poses=on, pose_lr_rotation=0.0, pose_lr_translation=0.0), truth,
                     _copy(gauss), scene_scale=1.0)
        tr.train(progress=False)
        runs.append(tr)
    off, on = runs
    assert off.camera_opt is None and "camera_opt" not in off.state_dict()
    assert "camera_opt" in on.state_dict()
    for k in off.params:
        torch.testing.assert_close(on.params[k], off.params[k], rtol=1e-4, atol=1e-5, msg=k)
    assert torch.equal(off.generator.get_state(), on.generator.get_state())


def test_resume_with_pose_optimisation_is_exact(scene, tmp_path):
    gauss, truth = scene
    noisy = perturb_views(truth, 2.0, 0.05, torch.Generator().manual_seed(1))
    cfg = lambda: _cfg(16, optimize_poses=True, pose_l2=1e-3)  # noqa: E731
    seed_everything(1)
    straight = Trainer(cfg(), noisy, _copy(gauss), scene_scale=1.0)
    straight.train(progress=False)
    seed_everything(1)
    first = Trainer(cfg(), noisy, _copy(gauss), scene_scale=1.0)
    first.train(until=8, scene_dir=tmp_path, progress=False)
    resumed = Trainer(cfg(), noisy, _copy(gauss), scene_scale=1.0)
    resumed.load_state_dict(load_checkpoint(latest_checkpoint(tmp_path)))
    resumed.train(progress=False)
    assert float(straight.camera_opt.rot.detach().abs().max()) > 0
    for name in ("rot", "trans"):
        assert torch.equal(getattr(straight.camera_opt, name), getattr(resumed.camera_opt, name)), name
    for k in straight.params:
        assert torch.equal(straight.params[k], resumed.params[k]), k
    plain = Trainer(_cfg(16), noisy, _copy(gauss), scene_scale=1.0)
    with pytest.raises(ValueError, match="without --optimize-poses"):
        Trainer(cfg(), noisy, _copy(gauss), scene_scale=1.0).load_state_dict(plain.state_dict())


def test_eval_poses_are_fitted_with_the_gaussians_frozen(scene):
    gauss, truth = scene
    noisy = perturb_views(truth[:3], 2.0, 0.05, torch.Generator().manual_seed(2))
    before = _errors(noisy, truth[:3])
    refined = refine_eval_poses(gauss, noisy, steps=60, lr_rotation=5e-3, lr_translation=5e-3, sh_degree=1,
                                backend="cpu")
    after = _errors(refined, truth[:3])
    assert after["rot_deg_mean"] < 0.4 * before["rot_deg_mean"], (before, after)
    assert after["trans_mean"] < 0.4 * before["trans_mean"], (before, after)
    assert all(p.grad is None for p in gauss.values())  # frozen: nothing accumulated into the Gaussians


def test_pose_options_are_validated():
    with pytest.raises(ConfigError, match="pose_lr_final_factor"):
        TrainConfig(pose_lr_final_factor=0.0)
    with pytest.raises(ConfigError, match="eval_pose_steps"):
        TrainConfig(eval_pose_steps=-1)
