"""langfield slam --features: online features, the two-stage codec, lifting in lockstep with the map, snapshots."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from langfield.frontend.slam import SlamConfig, run_slam
from langfield.frontend.slam.frames import frame_view
from langfield.frontend.slam.language import (
    ROW_CONTRIBUTION,
    ROW_SUM,
    ROW_WEIGHT,
    FeatureReservoir,
    OnlineLanguage,
)
from langfield.frontend.slam.language_config import SlamLanguageConfig
from langfield.frontend.slam.mapper import Keyframe, Mapper
from langfield.sources.rgbd import open_sequence
from langfield.synthetic import generate_scene
from langfield.types import LangfieldError

W, H = 96, 72


@pytest.fixture(scope="module")
def seq_dir(tmp_path_factory):
    # As tests/frontend/test_slam.py: 120 views along the smooth path (small steps), of which a few are used.
    root = tmp_path_factory.mktemp("slamlang")
    generate_scene(root, seed=1, width=W, height=H, n_train=120, n_eval=0, path="smooth")
    return root


def _fast(**kw) -> SlamConfig:
    base = dict(track_downscale=2, map_downscale=1, track_iters=10, map_iters=2, progress=False)
    base.update(kw)
    return SlamConfig(**base)


def _lang(**kw) -> SlamLanguageConfig:
    # Few codec steps: these tests check bookkeeping, not query quality (the end-to-end test fits it properly).
    base = dict(features="labels", clip="test-tiny", codec_steps=20, adapt_steps=10, adapt_every=2)
    base.update(kw)
    return SlamLanguageConfig(**base)


def _keyframe(seq, i: int) -> Keyframe:
    f = seq[i]
    return Keyframe(i, f.name, f.timestamp, frame_view(f, seq.intrinsics, f.c2w_gt, 1))


def test_reservoir_is_bounded_and_keeps_each_distinct_row_once():
    r = FeatureReservoir(16, seed=0)
    rows = torch.nn.functional.normalize(torch.randn(10, 8), dim=-1)
    assert r.add(rows) == 10
    assert r.add(rows) == 0  # the same rows again (label lifting repeats its embeddings every frame)
    assert len(r) == 10 and r.seen == 10
    r.add(torch.randn(100, 8))
    assert len(r) == 16 and r.rows.shape == (16, 8) and r.seen == 110


def test_accumulators_follow_the_gaussians_through_add_and_prune(seq_dir, tmp_path):
    seq = open_sequence(seq_dir)
    mapper = Mapper(_fast())
    lang = OnlineLanguage(_lang(adapt_every=100), seq, tmp_path / "cache", map_downscale=1)
    mapper.add_keyframe(_keyframe(seq, 0))
    lang.fuse(mapper.keyframes[-1], mapper)
    n0 = mapper.num_gaussians
    rows = mapper.rows
    assert rows[ROW_WEIGHT].shape == (n0, 2) and rows[ROW_SUM].shape == (n0, 6) and rows[ROW_CONTRIBUTION].shape == (n0,)
    assert float(rows[ROW_CONTRIBUTION].sum()) > 0
    # Tag every Gaussian with its position so that where a row went can be checked after the edits.
    mapper.rows["tag"] = torch.arange(n0, dtype=torch.float32)
    added = mapper.add_keyframe(_keyframe(seq, 6))
    assert added > 0 and mapper.rows["tag"].shape == (n0 + added,)
    assert torch.equal(mapper.rows["tag"][n0:], torch.zeros(added))  # new Gaussians start with empty sums
    assert torch.equal(rows[ROW_WEIGHT][n0:], torch.zeros(added, 2))
    lang.fuse(mapper.keyframes[-1], mapper)
    before = {k: v.clone() for k, v in mapper.rows.items()}
    means_before = mapper.params["means"].detach().clone()
    gen = torch.Generator().manual_seed(0)
    low = torch.rand(mapper.num_gaussians, generator=gen) < 0.3
    with torch.no_grad():
        mapper.params["opacities"][low] = -20.0  # below prune_opacity
    removed = mapper.prune()
    assert removed == int(low.sum()) > 0
    keep = ~low
    for key, value in mapper.rows.items():
        assert value.shape[0] == mapper.num_gaussians
        assert torch.equal(value, before[key][keep]), key
    assert torch.equal(mapper.params["means"].detach(), means_before[keep])


def test_online_fusion_equals_the_exact_lift_when_nothing_changed(seq_dir, tmp_path):
    # One keyframe, no codec update and no mapping in between: the accumulators are the offline lift.
    seq = open_sequence(seq_dir)
    mapper = Mapper(_fast())
    lang = OnlineLanguage(_lang(adapt_every=100), seq, tmp_path / "cache", map_downscale=1)
    mapper.add_keyframe(_keyframe(seq, 0))
    lang.fuse(mapper.keyframes[-1], mapper)
    online = lang.online_latents(mapper)
    exact, contribution = lang.relift(mapper)
    assert torch.allclose(online, exact, atol=1e-5)
    assert torch.allclose(contribution, mapper.rows[ROW_CONTRIBUTION], rtol=1e-5, atol=1e-5)
    assert float((online.abs().sum(-1) > 0).float().mean()) > 0.9  # nearly every fresh Gaussian got a latent


@pytest.mark.slow
def test_slam_snapshot_is_a_language_scene_whose_query_marks_a_seen_object(seq_dir, tmp_path):
    from langfield.query import LanguageField
    from langfield.sources.io import load_semantics
    from langfield.sources.nerfstudio import find_transforms, read_nerfstudio

    out = tmp_path / "scene"
    # 500 codec steps: with 150 the test-tiny codec still confuses labels (train cosine 0.87 vs 0.98).
    r = run_slam(seq_dir, out, _fast(max_frames=5, keyframe_every=2, snapshot_every=1),
                 language=_lang(codec_steps=500, adapt_steps=50))
    assert r.status == "done" and r.language is not None and r.snapshots >= 3
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["language"]["online"]["keyframes_fused"] == r.num_keyframes
    assert cfg["language_config"]["schedule"] == "lift"
    assert (out / "features_cache").is_dir() and (out / "codec" / "contribution.pt").is_file()
    assert not any(p.name.startswith(".scene.") for p in tmp_path.iterdir())  # no staging or cache left beside it
    field = LanguageField.load(out)
    assert field.num_gaussians == r.num_gaussians and field.level_names == ("part", "whole")
    # The largest labelled object of the first keyframe (not a wall / floor / ceiling) must light up there.
    cap = read_nerfstudio(find_transforms(seq_dir), eval_every=0)
    sem = load_semantics(cap.frames[0])  # the first keyframe is the first frame
    areas = {}
    for lid, lab in cap.labels.items():
        if lab.whole not in ("wall", "floor", "ceiling"):
            areas[lab.whole] = areas.get(lab.whole, 0) + int((sem == lid).sum())
    text = max(areas, key=areas.get)
    gt = np.isin(sem, [i for i, lab in cap.labels.items() if lab.whole == text])
    assert gt.sum() > 0.02 * W * H, (text, gt.sum())
    cam = field.cameras_of("train")[0]
    res = field.relevancy(cam, [text])
    rel = res.relevancy[0].numpy()
    assert rel[gt].mean() > rel[~gt].mean() + 0.2, (text, rel[gt].mean(), rel[~gt].mean())
    mask = res.masks()[0].numpy()
    iou = (mask & gt).sum() / max((mask | gt).sum(), 1)
    assert iou > 0.3, (text, iou)


def test_bad_language_input_is_a_one_line_error_exit_2(tmp_path, capsys):
    import cv2

    from langfield.cli import main

    seq = tmp_path / "seq"
    (seq / "rgb").mkdir(parents=True)
    (seq / "depth").mkdir()
    for i in range(2):
        cv2.imwrite(str(seq / "rgb" / f"{i:04d}.png"), np.zeros((8, 8, 3), np.uint8))
        cv2.imwrite(str(seq / "depth" / f"{i:04d}.png"), np.full((8, 8), 1000, np.uint16))
    (seq / "intrinsics.txt").write_text("10 10 4 4\n")
    out = tmp_path / "out"
    assert main(["slam", str(seq), "--out", str(out), "--features", "labels", "--clip", "test-tiny"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "label masks" in err and "\n" not in err
    assert not out.exists()
    assert main(["slam", str(seq), "--out", str(out), "--features", "dense", "--clip", "test-tiny",
                 "--codec", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--codec" in err and "\n" not in err
    with pytest.raises(LangfieldError, match="adapt-every"):
        SlamLanguageConfig(features="dense", adapt_every=0)


def test_view_core_follows_the_growing_map(seq_dir, tmp_path):
    # langfield slam --view without the server: the render core is opened on the first snapshot and every
    # frame's map is swapped in under its lock; renders from it see the map grow.
    from langfield.viewer.live import LiveScene

    class Recording(LiveScene):
        def __init__(self) -> None:
            super().__init__(serve=False)
            self.seen: list[tuple[int, float]] = []

        def open(self, scene_dir):
            super().open(scene_dir)
            self._record()

        def publish(self, params, codec=None):
            assert "latents" not in params  # a geometry-only run publishes no language
            super().publish(params, codec)
            self._record()

        def _record(self) -> None:
            with self.core.lock:
                field = self.core.field
                cam = field.cameras_of("train")[0]
                alpha = field.render(cam, what=("alpha",)).alpha
                self.seen.append((field.num_gaussians, float(alpha.mean())))

    live = Recording()
    r = run_slam(seq_dir, tmp_path / "scene", _fast(max_frames=4, keyframe_every=1, snapshot_every=0), live=live)
    counts = [n for n, _ in live.seen]
    assert len(live.seen) == 4 and live.updates == 3  # opened after frame 0, then one map per frame
    assert counts[-1] == r.num_gaussians and counts[-1] > counts[0]  # the core saw the map grow
    assert live.seen[-1][1] > 0.5  # and it renders: the first keyframe is covered


def test_codec_fine_tuning_starts_from_the_given_codec():
    from langfield.codec import CodecConfig, CodecTrainConfig, train_codec

    feats = torch.nn.functional.normalize(torch.randn(12, 32, generator=torch.Generator().manual_seed(0)), dim=-1)
    cfg = CodecConfig(embed_dim=32, latent_dim=3, hidden=(16,), num_levels=2)
    base, rep = train_codec(feats, cfg, CodecTrainConfig(steps=300))
    before = {k: v.clone() for k, v in base.state_dict().items()}
    tuned, rep_tuned = train_codec(feats, None, CodecTrainConfig(steps=1, lr=1e-6), init=base)
    _, rep_fresh = train_codec(feats, cfg, CodecTrainConfig(steps=1, lr=1e-6))
    assert tuned.config == cfg and abs(rep_tuned.train_cosine - rep.train_cosine) < 1e-3
    assert rep_fresh.train_cosine < rep.train_cosine - 0.2  # a fresh codec is far from the trained one
    assert all(torch.equal(v, before[k]) for k, v in base.state_dict().items())  # init itself is untouched


def test_stream_extractor_serves_a_cached_frame_without_loading_models(tmp_path):
    from langfield.features import FeatureInput, StreamExtractor
    from langfield.types import Label

    labels = {1: Label(part="cup", whole="cup"), 2: Label(part="leg", whole="table")}
    sem = torch.zeros(6, 8, dtype=torch.int64)
    sem[:, :4] = 1
    sem[:, 4:] = 2
    first = StreamExtractor("labels", clip="test-tiny", cache_dir=tmp_path, labels=labels)
    a = first(FeatureInput("f0", None, sem))
    second = StreamExtractor("labels", clip="test-tiny", cache_dir=tmp_path, labels=labels)
    b = second(FeatureInput("f0", None, sem))
    assert second._run is None  # served from the cache: no CLIP loaded
    assert torch.equal(a.segments, b.segments) and torch.equal(a.features, b.features)
