"""`langfield reconstruct --view`: the viewer follows the training (train/live.py + viewer/live.py)."""

from __future__ import annotations

import json
import socket
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from langfield.cli import main
from langfield.gaussians.strategy import DefaultStrategy
from langfield.train.config import TrainConfig
from langfield.train.language import LanguageConfig
from langfield.train.reconstruct import reconstruct
from langfield.train.trainer import Trainer
from langfield.viewer import RenderRequest
from langfield.viewer.live import LiveScene

EVERY = 3


def _config(iterations: int = 12) -> TrainConfig:
    # Densify every 3 steps with a low threshold, so the count changes between published maps.
    strategy = DefaultStrategy(refine_start_iter=2, refine_every=3, refine_stop_iter=iterations, reset_every=100,
                               grow_grad2d=1e-7, max_gaussians=200)
    return TrainConfig(iterations=iterations, seed=3, sh_degree=1, sh_degree_interval=5, backend="cpu",
                       checkpoint_every=0, strategy=strategy, scale_strategy_schedule=False)


class Recording(LiveScene):
    """A LiveScene without a server that renders a viewer frame after every map it is given."""

    def __init__(self, background: bool = False) -> None:
        super().__init__(backend="cpu", serve=False, background=background)
        self.opened: list[str] = []
        self.published: list[int] = []  # Gaussian count of each published map
        self.frames: list[tuple[int, float, bool]] = []  # (core's count, mean alpha, language) after each map
        self.notes: list[str] = []

    def open(self, scene_dir, note=None):
        super().open(scene_dir, note)
        self.opened.append(str(scene_dir))
        self.notes.append(self.core.language_note)

    def publish(self, params, codec=None):
        self.published.append(int(params["means"].shape[0]))
        super().publish(params, codec)
        if not self.background:
            self.frames.append(self._frame())

    def _frame(self, mode: str = "rgb") -> tuple[int, float, bool]:
        core = self.core
        cam = core.initial_camera()
        result = core.render(cam, RenderRequest(mode=mode))  # the render threads' entry point
        assert result.image.shape == (cam.height, cam.width, 3) and result.image.dtype == np.uint8
        with core.lock:
            alpha = core.field.render(cam, what=("alpha",)).alpha
            return core.field.num_gaussians, float(alpha.mean()), core.has_language


def _counts_per_step(monkeypatch) -> dict[int, int]:
    """Gaussian count of the trainer after each step (recorded by wrapping Trainer.train_step)."""
    seen: dict[int, int] = {}
    real = Trainer.train_step

    def step(self):
        stats = real(self)
        seen[stats.step] = self.num_gaussians
        return stats

    monkeypatch.setattr(Trainer, "train_step", step)
    return seen


def test_published_maps_follow_the_trainer_and_render_mid_training(tiny_dataset, tmp_path, monkeypatch):
    counts = _counts_per_step(monkeypatch)
    live = Recording()
    r = reconstruct(tiny_dataset, tmp_path / "scene", _config(), progress=False, live=live, view_every=EVERY)
    assert r is not None
    steps = list(range(EVERY, 13, EVERY))
    assert live.published == [counts[s] for s in steps]  # one copy every EVERY steps, of that step's Gaussians
    assert len(set(live.published)) > 1  # densification changed the count between maps ...
    assert [n for n, _, _ in live.frames] == live.published  # ... and the render core took each one
    assert live.updates == len(steps)
    assert all(a > 0.05 for _, a, _ in live.frames)  # mid-training frames show the scene
    # opened on a snapshot outside the output, then switched to the written scene, the snapshot removed
    assert len(live.opened) == 2 and live.opened[1] == str(tmp_path / "scene")
    snapshot = Path(live.opened[0])
    assert not snapshot.is_relative_to(tmp_path) and not snapshot.exists()
    assert live.core.field.num_gaussians == r.num_gaussians


def test_the_scene_written_is_the_same_with_and_without_view(tiny_dataset, tmp_path):
    from langfield.gaussians.ply import load_ply

    plain = reconstruct(tiny_dataset, tmp_path / "a", _config(), progress=False)
    live = Recording(background=True)  # the swap thread of the real --view
    viewed = reconstruct(tiny_dataset, tmp_path / "b", _config(), progress=False, live=live, view_every=2)
    live.close()
    assert plain is not None and viewed is not None and live.updates >= 1
    a, b = load_ply(tmp_path / "a" / "point_cloud.ply"), load_ply(tmp_path / "b" / "point_cloud.ply")
    assert a.keys() == b.keys()
    for key in a.keys():
        assert torch.equal(a[key], b[key]), key
    assert (tmp_path / "a" / "cameras.json").read_bytes() == (tmp_path / "b" / "cameras.json").read_bytes()
    ca, cb = (json.loads((tmp_path / d / "config.json").read_text()) for d in "ab")
    ca.pop("wall_time_s"), cb.pop("wall_time_s")
    assert ca == cb and sorted(p.name for p in (tmp_path / "b").iterdir()) == sorted(
        p.name for p in (tmp_path / "a").iterdir())


def test_joint_language_is_live_and_lift_language_comes_at_the_end(synthetic_dataset, tmp_path):
    lang = dict(features="labels", clip="test-tiny", codec_steps=50, iterations=5, latent_dim=3)
    joint = Recording()
    r = reconstruct(synthetic_dataset, tmp_path / "joint", _config(6), progress=False, live=joint, view_every=EVERY,
                    language=LanguageConfig(schedule="joint", **lang))
    assert r is not None and joint.frames and all(has for _, _, has in joint.frames)  # language from the start
    with joint.core.lock:
        before = joint.core.field.version
    joint.publish({k: v.clone() for k, v in joint.core.field.params.items()})
    assert joint.core.field.version == before + 1
    assert joint._frame("features")[2]  # features mode renders from a published map

    lift = Recording()
    r = reconstruct(synthetic_dataset, tmp_path / "lift", _config(6), progress=False, live=lift, view_every=EVERY,
                    language=LanguageConfig(schedule="lift", **lang))
    assert r is not None and lift.frames and not any(has for _, _, has in lift.frames)
    assert "appears when training ends" in lift.notes[0] and "lift" in lift.notes[0]
    assert lift.core.has_language  # the written scene, with its lifted latents


def test_background_swaps_keep_the_newest_map(tiny_dataset, tmp_path):
    r = reconstruct(tiny_dataset, tmp_path / "scene", _config(), progress=False)
    assert r is not None
    live = LiveScene(backend="cpu", serve=False, background=True)
    live.open(r.scene_dir)
    params = {k: v.detach().clone() for k, v in live.core.field.params.items()}
    with live.core.lock:  # a render in progress: publish must not wait for it
        for n in (10, 20, 30):
            live.publish({k: v[:n].clone() for k, v in params.items()})
        assert live.updates == 0
    assert live.flush(timeout=20)
    assert live.core.field.num_gaussians == 30 and live.updates + live.superseded == 3 and live.updates >= 1
    live.close()


def _taken_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    return s


def test_bad_view_options_are_one_line_errors_before_anything_is_written(tiny_dataset, tmp_path, capsys, monkeypatch):
    pytest.importorskip("viser")
    out = tmp_path / "scene"
    base = ["reconstruct", str(tiny_dataset), "--out", str(out), "--iterations", "2", "--quiet", "--view"]
    with _taken_port() as s:
        assert main(base + ["--port", str(s.getsockname()[1])]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: port ") and "already in use" in err and "\n" not in err
    for bad, says in ((["--port", "70000"], "port must be in 0..65535"), (["--view-every", "0"], "--view-every")):
        assert main(base + bad) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and says in err and "\n" not in err
    monkeypatch.setitem(sys.modules, "viser", None)  # makes `import viser` raise ImportError
    assert main(base + ["--port", "0"]) == 2
    assert capsys.readouterr().err.strip() == 'error: --view needs viser: pip install -e ".[viewer]"'
    assert not out.exists()


def test_view_serves_while_training_and_the_written_scene_after(tiny_dataset, tmp_path, capsys, monkeypatch):
    pytest.importorskip("viser")
    seen: list[tuple[str, int]] = []
    real = LiveScene.publish

    def publish(self, params, codec=None):  # fetch the page mid-training: the server answers
        if not seen:
            with urllib.request.urlopen(self.url, timeout=10) as page:
                seen.append((self.url, page.status))
        real(self, params, codec)

    monkeypatch.setattr(LiveScene, "publish", publish)
    out = tmp_path / "scene"
    assert main(["reconstruct", str(tiny_dataset), "--out", str(out), "--iterations", "6", "--quiet", "--backend",
                 "cpu", "--view", "--port", "0", "--view-every", "2", "--view-quit-when-done",
                 "--checkpoint-every", "0"]) == 0
    text = capsys.readouterr().out
    urls = [line.split()[1] for line in text.splitlines() if line.startswith("viewer: http")]
    assert len(urls) == 2 and urls[0] == urls[1] == seen[0][0] and seen[0][1] == 200  # same address after the switch
    assert f"now shows {out}" in text and (out / "point_cloud.ply").is_file()
