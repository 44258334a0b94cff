"""Per-Gaussian relevancy, selection, 3D point and subsets."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from langfield.gaussians.params import create_params
from langfield.query.relevancy import QueryConfig
from langfield.query.select3d import GaussianRelevancy, SelectionConfig, export_selection, subset_params
from langfield.types import DataError


def unit(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(*shape, generator=g), dim=-1)


E = 32


@pytest.fixture
def scene():
    """40 Gaussians: level 1 has rows 5..9 equal to the "mug" embedding; everything else random."""
    n, levels = 40, 2
    mug, negs = unit(1, E, seed=1), unit(4, E, seed=2)
    feats = unit(levels, n, E, seed=3) * 0.3 + negs[0] * 0.7  # background resembles "object"
    feats[1, 5:10] = mug[0]
    means = torch.arange(n * 3, dtype=torch.float32).reshape(n, 3)
    opac = torch.linspace(0.1, 1.0, n)
    return GaussianRelevancy(feats, means, opac), mug, negs


def test_selection_picks_exactly_matching_gaussians(scene):
    gr, mug, negs = scene
    res = gr.query(mug[0], negs)
    assert res.level == 1
    assert res.mask.nonzero().flatten().tolist() == [5, 6, 7, 8, 9]
    assert res.relevancy.shape == (40,)
    assert res.relevancy[5:10].min() > 0.5 > res.relevancy[10:].max()
    # the 3D point is the mean of one of the matching Gaussians (ties among identical features)
    assert any(torch.equal(res.point, gr.means[i]) for i in range(5, 10))
    # fixed level 0 has no mug
    assert gr.query(mug[0], negs, QueryConfig(level=0)).mask.sum() == 0


def test_top_k_opacity_floor_and_weighted_point(scene):
    gr, mug, negs = scene
    rel = torch.full((40,), 0.1)
    rel[5:10] = torch.tensor([0.9, 0.95, 0.8, 0.99, 0.7])
    assert gr.select(rel, SelectionConfig(top_k=2)).nonzero().flatten().tolist() == [6, 8]
    floor = float(gr.opacities[7])
    assert gr.select(rel, SelectionConfig(min_opacity=floor)).nonzero().flatten().tolist() == [7, 8, 9]
    norm = gr.select(rel, SelectionConfig(threshold=0.93, normalized=True))
    assert norm.nonzero().flatten().tolist() == [6, 8]  # (r - 0.1) / 0.89 > 0.93 only for 0.95 and 0.99
    p = gr.max_point(rel, top_k=2)
    w = gr.opacities[[8, 6]]
    torch.testing.assert_close(p, (gr.means[[8, 6]] * w[:, None]).sum(0) / w.sum())
    torch.testing.assert_close(gr.max_point(rel), gr.means[8])


def test_from_latents_decodes_once_and_roundtrips(tmp_path, scene):
    _, mug, negs = scene
    n, d = 12, 3
    proj = unit(d, E, seed=9)
    calls = []

    def decode(z: torch.Tensor) -> torch.Tensor:
        calls.append(z.shape[0])
        return z @ proj

    latents = torch.randn(n, 2 * d, generator=torch.Generator().manual_seed(4))
    gr = GaussianRelevancy.from_latents(latents, decode, num_levels=2, chunk_size=5)
    assert gr.features.shape == (2, n, E)
    assert sum(calls) == 2 * n  # every Gaussian decoded once per level, in chunks
    torch.testing.assert_close(gr.features[1], torch.nn.functional.normalize(latents[:, d:] @ proj, dim=-1))
    before = len(calls)
    gr.scores(mug, negs)
    assert len(calls) == before  # queries never decode
    path = gr.save(tmp_path / "decoded.pt")
    again = GaussianRelevancy.load(path)
    torch.testing.assert_close(again.scores(mug, negs), gr.scores(mug, negs))
    (tmp_path / "bad.pt").write_bytes(b"junk")
    with pytest.raises(DataError):
        GaussianRelevancy.load(tmp_path / "bad.pt")


def make_params(n: int, with_latents: bool = True) -> torch.nn.ParameterDict:
    g = torch.Generator().manual_seed(0)
    return create_params(
        torch.randn(n, 3, generator=g),
        torch.randn(n, 3, generator=g),
        torch.randn(n, 4, generator=g),
        torch.randn(n, generator=g),
        torch.randn(n, 1, 3, generator=g),
        torch.randn(n, 15, 3, generator=g),
        torch.randn(n, 9, generator=g) if with_latents else None,
    )


def test_subset_params_keeps_every_key_and_rows():
    params = make_params(10)
    params["extra"] = torch.nn.Parameter(torch.arange(10.0))
    mask = torch.zeros(10, dtype=torch.bool)
    mask[[1, 4, 7]] = True
    sub = subset_params(params, mask)
    assert set(sub.keys()) == set(params.keys())
    for k in params:
        torch.testing.assert_close(sub[k].data, params[k].data[mask])
    sub["means"].data.zero_()
    assert params["means"].abs().sum() > 0  # a copy, not a view
    with pytest.raises(ValueError):
        subset_params(params, mask[:5])


def test_export_selection_calls_save_ply(tmp_path, monkeypatch):
    saved = {}
    fake = types.ModuleType("langfield.gaussians.ply")
    fake.save_ply = lambda path, params: saved.update(path=path, n=params["means"].shape[0], keys=set(params.keys()))
    monkeypatch.setitem(sys.modules, "langfield.gaussians.ply", fake)
    params = make_params(6, with_latents=False)
    mask = torch.tensor([True, False, True, False, False, True])
    export_selection(tmp_path / "sel.ply", params, mask)
    assert saved == {"path": tmp_path / "sel.ply", "n": 3, "keys": set(params.keys())}


def test_export_selection_roundtrips_through_the_real_ply_writer(tmp_path):
    ply = pytest.importorskip("langfield.gaussians.ply")
    params = make_params(8)
    mask = torch.tensor([False, True, True, False, False, False, True, False])
    path = export_selection(tmp_path / "out" / "sel.ply", params, mask)
    back = ply.load_ply(path)
    assert set(back.keys()) == set(params.keys())
    for k in params:
        torch.testing.assert_close(back[k].data, params[k].data[mask])


def test_contribution_gate_drops_unseen_gaussians_and_their_level_vote(scene, tmp_path):
    gr, mug, negs = scene
    n = gr.num_gaussians
    contribution = torch.full((n,), 10.0)
    contribution[5:7] = 0.2  # two mug Gaussians hardly visible
    # unseen Gaussians at level 0 that match the text would win the level without the gate
    feats = gr.features.clone()
    feats[0, 20:30] = mug[0]
    contribution[20:30] = 0.0
    gated = GaussianRelevancy(feats, gr.means, gr.opacities, normalize=False, contribution=contribution)
    res = gated.query(mug[0], negs)
    assert res.level == 1
    assert res.mask.nonzero().flatten().tolist() == [7, 8, 9]
    assert any(torch.equal(res.point, gr.means[i]) for i in (7, 8, 9))
    # the gate is a setting: None keeps everyone, and a scene without contributions is not gated
    no_gate = SelectionConfig(min_contribution=None)
    assert gated.query(mug[0], negs, selection=no_gate).level == 0  # the unseen rows win without the gate
    assert gated.query(mug[0], negs, QueryConfig(level=1), no_gate).mask[5:7].all()
    ungated = GaussianRelevancy(feats, gr.means, gr.opacities, normalize=False)
    assert ungated.visible() is None
    # saved and loaded with the features
    back = GaussianRelevancy.load(gated.save(tmp_path / "dec.pt"))
    assert torch.equal(back.contribution, contribution)


def test_load_contribution_reads_the_file_the_config_names(tmp_path):
    from langfield.io import atomic_torch_save
    from langfield.query.select3d import load_contribution

    assert load_contribution(tmp_path, {}) is None
    assert load_contribution(tmp_path, {"contribution_file": "codec/contribution.pt"}) is None
    atomic_torch_save(tmp_path / "codec" / "contribution.pt", {"contribution": torch.arange(4.0)})
    got = load_contribution(tmp_path, {"contribution_file": "codec/contribution.pt"})
    assert torch.equal(got, torch.arange(4.0))
    atomic_torch_save(tmp_path / "codec" / "contribution.pt", {"x": 1})
    with pytest.raises(DataError, match="contribution"):
        load_contribution(tmp_path, {"contribution_file": "codec/contribution.pt"})
