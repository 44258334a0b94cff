"""A resumed run must continue exactly where the interrupted one stopped."""

from __future__ import annotations

import copy

import torch

from langfield.gaussians.strategy import DefaultStrategy
from langfield.train.checkpoint import load_checkpoint
from langfield.train.config import TrainConfig
from langfield.train.trainer import Trainer, seed_everything
from langfield.scene import latest_checkpoint



def _config(iterations: int) -> TrainConfig:
    # Densify inside the interrupted half and after it, with random backgrounds,
    # so every piece of state (strategy stats, split RNG, view RNG) matters.
    strategy = DefaultStrategy(refine_start_iter=2, refine_every=3, refine_stop_iter=iterations,
                               reset_every=7, grow_grad2d=1e-7, max_gaussians=120)
    return TrainConfig(iterations=iterations, seed=3, sh_degree=1, sh_degree_interval=5, background="random",
                       backend="torch", checkpoint_every=0, strategy=strategy, scale_strategy_schedule=False)


def _trainer(views, iterations: int, make_gaussians) -> Trainer:
    seed_everything(3)
    init = make_gaussians(30, seed=7, sh_degree=1)
    return Trainer(_config(iterations), views, init, scene_scale=1.5, use_depth=True)


def test_resume_is_exact(tiny_views, tmp_path, make_gaussians):
    n = 6
    straight = _trainer(tiny_views, 2 * n, make_gaussians)
    straight.train(progress=False)

    first = _trainer(tiny_views, 2 * n, make_gaussians)
    first.train(until=n, scene_dir=tmp_path, progress=False)
    assert first.step == n
    ckpt = latest_checkpoint(tmp_path)
    assert ckpt is not None and ckpt.name == f"ckpt_{n:06d}.pt"

    # Disturb the global RNGs: the resumed run must restore them from the checkpoint.
    torch.manual_seed(12345)
    resumed = _trainer(tiny_views, 2 * n, make_gaussians)
    resumed.load_state_dict(load_checkpoint(ckpt))
    assert resumed.step == n
    resumed.train(progress=False)

    # Densification happened, so the comparison covers a changing Gaussian count.
    assert straight.num_gaussians != 30
    assert set(straight.params.keys()) == set(resumed.params.keys())
    for key in straight.params.keys():
        a, b = straight.params[key].detach(), resumed.params[key].detach()
        assert a.shape == b.shape, key
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=key)
    for key in straight.optimizers:
        sa = straight.optimizers[key].state_dict()["state"][0]
        sb = resumed.optimizers[key].state_dict()["state"][0]
        torch.testing.assert_close(sa["exp_avg"], sb["exp_avg"], rtol=0, atol=1e-6)


def test_checkpoints_keep_last_two(tiny_views, tmp_path, make_gaussians):
    cfg = _config(7)
    cfg.checkpoint_every = 2
    seed_everything(0)
    tr = Trainer(cfg, tiny_views, make_gaussians(20, seed=1, sh_degree=1), scene_scale=1.0)
    tr.train(scene_dir=tmp_path, progress=False)
    names = sorted(p.name for p in (tmp_path / "checkpoints").glob("*.pt"))
    assert names == ["ckpt_000006.pt", "ckpt_000007.pt"]
    state = load_checkpoint(tmp_path / "checkpoints" / "ckpt_000007.pt")
    assert state["step"] == 7 and state["config"]["iterations"] == 7
    assert not list((tmp_path / "checkpoints").glob(".*"))  # no temp files left behind


def test_training_reduces_loss(tiny_views, make_gaussians):
    cfg = _config(60)
    cfg.background = "black"
    cfg.strategy = DefaultStrategy(refine_start_iter=1000)
    seed_everything(0)
    tr = Trainer(cfg, tiny_views, make_gaussians(40, seed=9, sh_degree=1), scene_scale=1.0)
    first = [tr.train_step().loss for _ in range(5)]
    for _ in range(50):
        last = tr.train_step().loss
    assert last < 0.7 * sum(first) / len(first)


def test_reconstruct_resume_matches_straight_run(tiny_dataset, tmp_path):
    from langfield.gaussians.ply import load_ply
    from langfield.train.reconstruct import reconstruct

    def cfg() -> TrainConfig:
        c = _config(8)
        c.background = "black"
        c.checkpoint_every = 100
        return c

    straight = reconstruct(tiny_dataset, tmp_path / "a", cfg(), progress=False)
    assert straight is not None
    assert reconstruct(tiny_dataset, tmp_path / "b", cfg(), progress=False, stop_after=4) is None
    assert not (tmp_path / "b" / "point_cloud.ply").exists()
    resumed = reconstruct(None, tmp_path / "b", resume=True, progress=False)
    assert resumed is not None and resumed.report["iterations"] == 8
    a, b = load_ply(tmp_path / "a" / "point_cloud.ply"), load_ply(tmp_path / "b" / "point_cloud.ply")
    for key in a.keys():
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)


def test_ctrl_c_keeps_checkpoint_and_exits_130(tiny_dataset, tmp_path, monkeypatch, capsys):
    from langfield.cli import main

    real_step = Trainer.train_step

    def interrupted(self):
        if self.step == 3:
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", interrupted)
    out = tmp_path / "scene"
    args = ["reconstruct", str(tiny_dataset), "--out", str(out), "--iterations", "6", "--quiet", "--backend", "torch"]
    assert main(args) == 130
    assert "--resume" in capsys.readouterr().err
    assert (out / "checkpoints" / "ckpt_000003.pt").is_file()
    monkeypatch.setattr(Trainer, "train_step", real_step)
    assert main(args + ["--resume"]) == 0
    assert (out / "point_cloud.ply").is_file()
    assert load_checkpoint(latest_checkpoint(out))["step"] == 6
