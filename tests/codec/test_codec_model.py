"""Codec structure, save/load, and training quality on a synthetic clustered feature set."""

import json

import pytest
import torch
import torch.nn.functional as F

from langfield.codec import (
    CodecConfig,
    CodecTrainConfig,
    LanguageCodec,
    collect_features,
    load_codec,
    save_codec,
    split_levels,
    train_codec,
)
from langfield.features import FeatureMap
from langfield.types import DataError


@pytest.fixture
def one_thread():
    """Tiny MLP steps are dominated by thread sync on a busy 2-core box."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def clustered(n: int, e: int, k: int, noise: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(k, e, generator=g), dim=-1)
    lab = torch.randint(0, k, (n,), generator=g)
    x = F.normalize(centres[lab] + noise * torch.randn(n, e, generator=g) / e**0.5, dim=-1)
    return x, centres


@pytest.mark.parametrize("e, d", [(512, 3), (768, 8), (37, 4)])
def test_shapes_and_unit_output(e, d):
    codec = LanguageCodec(CodecConfig(embed_dim=e, latent_dim=d, hidden=(64, 32)))
    x = torch.randn(5, 7, e)
    z = codec.encode(x)
    assert z.shape == (5, 7, d)
    y = codec.decode(z)
    assert y.shape == (5, 7, e)
    assert torch.allclose(y.norm(dim=-1), torch.ones(5, 7), atol=1e-5)
    # encode normalises its input: scale does not matter
    assert torch.allclose(codec.encode(3.0 * x), z, atol=1e-5)
    stacked = torch.cat([z, z, z], dim=-1)  # three levels side by side
    assert split_levels(stacked, d).shape == (5, 7, 3, d)
    assert codec.decode_levels(stacked).shape == (5, 7, 3, e)
    assert torch.allclose(codec.decode_levels(stacked)[..., 1, :], y, atol=1e-6)
    with pytest.raises(ValueError):
        split_levels(torch.zeros(2, d + 1), d)


def test_training_reaches_high_cosine_on_clusters(one_thread):
    x, centres = clustered(2000, 128, k=5, noise=0.15, seed=0)
    assert float((x @ centres.T).max(1).values.mean()) > 0.97  # clusters are tight
    codec, report = train_codec(x, CodecConfig(embed_dim=128, latent_dim=3, hidden=(64, 32)),
                                CodecTrainConfig(steps=150, batch_size=128, lr=3e-3))
    assert report.heldout_cosine > 0.95 and report.train_cosine > 0.95
    assert report.num_heldout == 200 and report.num_train == 1800
    # an untrained codec is far from that (the report measures something)
    from langfield.codec import reconstruction_cosine

    assert float(reconstruction_cosine(LanguageCodec(codec.config), x).mean()) < 0.5
    # latents of different clusters are separated
    z = codec.encode(centres)
    assert torch.cdist(z, z).add(torch.eye(5) * 1e3).min() > 1e-2


def test_save_load_round_trip(tmp_path, one_thread):
    x, _ = clustered(300, 64, k=3, noise=0.1, seed=1)
    codec, report = train_codec(x, CodecConfig(embed_dim=64, latent_dim=4, hidden=(32,)), CodecTrainConfig(steps=5))
    save_codec(codec, tmp_path / "codec", report)
    meta = json.loads((tmp_path / "codec" / "codec.json").read_text())
    assert meta["config"]["latent_dim"] == 4 and meta["report"]["steps"] == 5
    back, rep = load_codec(tmp_path / "codec")
    assert rep is not None and rep["num_train"] == report.num_train
    assert back.config == codec.config
    assert torch.equal(back(x), codec(x))
    assert not [p for p in (tmp_path / "codec").iterdir() if p.name.startswith(".tmp-")]


def test_load_errors_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="codec.json: codec file missing"):
        load_codec(tmp_path)
    save_codec(LanguageCodec(CodecConfig(embed_dim=8, latent_dim=2, hidden=(4,))), tmp_path)
    (tmp_path / "codec.pt").write_bytes(b"garbage")
    with pytest.raises(DataError, match="codec.pt: cannot load codec weights"):
        load_codec(tmp_path)


def test_collect_features_takes_each_used_segment_once():
    feats = F.normalize(torch.randn(4, 8), dim=-1).half()
    seg = torch.tensor([[[0, 0, 1], [1, -1, -1]], [[3, 3, 3], [3, 3, -1]]], dtype=torch.int32)  # row 2 unused
    fm = FeatureMap(("part", "whole"), seg, feats)
    rows = collect_features([fm, fm])
    # segments 0, 1, 3 are used; the second map repeats the same rows, which are kept once
    assert rows.shape == (3, 8) and rows.dtype == torch.float32
    want = feats[[0, 1, 3]].float()
    assert all(any(torch.equal(r, w) for r in rows) for w in want)
    assert collect_features([fm], levels=["whole"]).shape == (1, 8)


def test_train_rejects_mismatched_width():
    with pytest.raises(ValueError, match="E=16"):
        train_codec(torch.randn(10, 8), CodecConfig(embed_dim=16))


@pytest.mark.parametrize("grid", [False, True])
def test_encode_feature_map_matches_per_pixel_encoding(grid):
    from langfield.codec import encode_feature_map

    g = torch.Generator().manual_seed(3)
    codec = LanguageCodec(CodecConfig(embed_dim=16, latent_dim=3, hidden=(8,)))
    if grid:
        fm = FeatureMap(("dense",), torch.zeros(1, 6, 8, dtype=torch.int32),
                        F.normalize(torch.randn(6, 16, generator=g), dim=-1).half(), grid_shape=(2, 3))
    else:
        seg = torch.randint(-1, 5, (2, 6, 8), generator=g, dtype=torch.int32)
        fm = FeatureMap(("part", "whole"), seg, F.normalize(torch.randn(5, 16, generator=g), dim=-1).half())
    lat, valid = encode_feature_map(codec, fm)
    assert lat.shape == (fm.num_levels, 6, 8, 3) and valid.shape == (fm.num_levels, 6, 8)
    dense = fm.to_dense()
    with torch.no_grad():
        want = codec.encode(dense[valid])
    assert torch.allclose(lat[valid], want, atol=1e-5)
    assert (lat[~valid] == 0).all()
    assert torch.equal(valid, fm.valid_mask())
    small, _ = encode_feature_map(codec, fm, size=(3, 4))
    assert small.shape == (fm.num_levels, 3, 4, 3)


def test_small_feature_sets_are_fitted_whole(one_thread):
    """Label lifting gives one feature per label: none may be held out (it would never be learned)."""
    x = F.normalize(torch.randn(24, 64, generator=torch.Generator().manual_seed(1)), dim=-1)
    codec, report = train_codec(x, CodecConfig(embed_dim=64, latent_dim=3, hidden=(64, 32)),
                                CodecTrainConfig(steps=400, lr=3e-3))
    assert report.num_heldout == 0 and report.num_train == 24
    from langfield.codec import reconstruction_cosine

    assert float(reconstruction_cosine(codec, x).min()) > 0.9  # every label reconstructed


def test_similarity_equals_decoded_cosines_without_building_features():
    codec = LanguageCodec(CodecConfig(embed_dim=96, latent_dim=3, hidden=(48, 24)))
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():  # a non-trivial last-layer bias, so its terms are exercised
        codec.decoder[-1].bias.normal_(0.0, 0.3, generator=g)
    z = torch.randn(500, 3, generator=g)
    phrases = F.normalize(torch.randn(7, 96, generator=g), dim=-1)
    with torch.no_grad():
        want = codec.decode(z) @ phrases.T
        got = codec.similarity(z, phrases)
    assert got.shape == (500, 7)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=0)
