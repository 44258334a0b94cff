"""LERF relevancy and the text-embedding cache."""

from __future__ import annotations

import pytest
import torch

from langfield.query.relevancy import QueryConfig, TextEmbeddingCache, relevancy, text_relevancy
from langfield.types import DataError, LangfieldError


def unit(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(*shape, generator=g), dim=-1)


def naive_relevancy(feats: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, temp: float) -> torch.Tensor:
    """LERF's rule written literally: per negative a 2-way softmax, keep the positive's prob, min over negatives."""
    flat = feats.reshape(-1, feats.shape[-1]).double()
    out = torch.empty(pos.shape[0], flat.shape[0], dtype=torch.float64)
    for qi in range(pos.shape[0]):
        for pi in range(flat.shape[0]):
            probs = []
            for nj in range(neg.shape[0]):
                logits = temp * torch.stack([flat[pi] @ pos[qi].double(), flat[pi] @ neg[nj].double()])
                probs.append(torch.softmax(logits, dim=0)[0])
            out[qi, pi] = min(probs)
    return out.reshape(pos.shape[0], *feats.shape[:-1])


@pytest.mark.parametrize("temp", [1.0, 10.0, 50.0])
def test_matches_naive_loop(temp):
    feats, pos, neg = unit(3, 5, 16, seed=1), unit(2, 16, seed=2), unit(4, 16, seed=3)
    got = relevancy(feats, pos, neg, temperature=temp, chunk_size=4)  # chunking crosses rows
    want = naive_relevancy(feats, pos, neg, temp)
    assert got.shape == (2, 3, 5)
    torch.testing.assert_close(got.double(), want, atol=1e-6, rtol=1e-5)


def test_positive_and_negative_features():
    pos, neg = unit(1, 64, seed=4), unit(4, 64, seed=5)
    feats = torch.cat([pos, neg])  # row 0 = the query itself, rows 1..4 = each negative
    r = relevancy(feats, pos, neg)[0]
    assert r[0] > 0.5
    assert (r[1:] < 0.5).all()


def test_half_precision_features_and_needs_negatives():
    feats, pos, neg = unit(10, 8, seed=6), unit(1, 8, seed=7), unit(2, 8, seed=8)
    torch.testing.assert_close(relevancy(feats.half(), pos, neg), relevancy(feats, pos, neg), atol=5e-3, rtol=0)
    with pytest.raises(LangfieldError):
        relevancy(feats, pos, neg[:0])
    with pytest.raises(LangfieldError):
        QueryConfig(negatives=())


class CountingEncoder:
    def __init__(self, width: int = 8):
        self.calls: list[list[str]] = []
        self.width = width

    def __call__(self, texts: list[str]) -> torch.Tensor:
        self.calls.append(list(texts))
        # deterministic per string, deliberately unnormalised so the cache must normalise
        rows = [torch.randn(self.width, generator=torch.Generator().manual_seed(sum(map(ord, t)))) * 3 for t in texts]
        return torch.stack(rows).double()


def test_cache_memoises_normalises_and_persists(tmp_path):
    enc = CountingEncoder()
    cache = TextEmbeddingCache(enc, model_name="ViT-B/16 laion", cache_dir=tmp_path)
    a = cache(["cat", "dog", "cat"])
    assert a.dtype == torch.float32 and a.shape == (3, 8)
    torch.testing.assert_close(a.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(a[0], a[2])
    b = cache(["dog", "mug"])
    assert enc.calls == [["cat", "dog"], ["mug"]]  # each string encoded once
    torch.testing.assert_close(b[0], a[1])

    enc2 = CountingEncoder()
    again = TextEmbeddingCache(enc2, model_name="ViT-B/16 laion", cache_dir=tmp_path)
    torch.testing.assert_close(again(["mug", "cat"]), torch.stack([b[1], a[0]]))
    assert enc2.calls == []  # served from disk
    other = TextEmbeddingCache(enc2, model_name="another model", cache_dir=tmp_path)
    other(["cat"])
    assert enc2.calls == [["cat"]]  # different model: no sharing
    assert not list(tmp_path.glob("*.tmp"))


def test_cache_rejects_corrupt_file_and_bad_encoder(tmp_path):
    cache = TextEmbeddingCache(CountingEncoder(), model_name="m", cache_dir=tmp_path)
    cache.cache_file.write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="text-embedding cache"):
        cache(["x"])
    bad = TextEmbeddingCache(lambda texts: torch.zeros(len(texts) + 1, 4))
    with pytest.raises(LangfieldError):
        bad(["x"])


def test_text_relevancy_uses_config_negatives():
    enc = CountingEncoder(width=16)
    cache = TextEmbeddingCache(enc)
    cfg = QueryConfig(negatives=("object", "stuff"), temperature=5.0)
    feats = cache(["chair"])  # a 1-pixel map that is exactly "chair"
    r = text_relevancy(feats, ["chair", "object"], cache, cfg)
    want = relevancy(feats, cache(["chair", "object"]), cache(["object", "stuff"]), 5.0)
    torch.testing.assert_close(r, want)
    assert r[0, 0] > 0.5 and r[1, 0] < 0.5


# --------------------------------------------------------------------------- per-Gaussian scores, composited


@pytest.mark.parametrize("kind", ["splat-sims", "splat-relevancy"])
def test_splat_channels_score_every_gaussian_at_every_level(kind):
    from langfield.query.query2d import splat_channels

    feats, pos, neg = unit(2, 50, 16, seed=1), unit(2, 16, seed=2), unit(3, 16, seed=3)
    ch = splat_channels(feats, pos, neg, kind, temperature=10.0)
    width = 2 + 3 if kind == "splat-sims" else 2
    assert ch.shape == (50, 2 * width)
    for lvl in range(2):
        block = ch[:, lvl * width:(lvl + 1) * width]
        if kind == "splat-sims":
            torch.testing.assert_close(block, feats[lvl] @ torch.cat([pos, neg]).T)
        else:
            torch.testing.assert_close(block, naive_relevancy(feats[lvl], pos, neg, 10.0).T.float(), atol=1e-5, rtol=0)
    with pytest.raises(LangfieldError, match="unknown per-Gaussian"):
        splat_channels(feats, pos, neg, "pixel")
    with pytest.raises(LangfieldError, match="negative"):
        splat_channels(feats, pos, neg[:0], kind)


def test_composited_scores_are_the_opacity_weighted_mean_and_empty_pixels_are_zero():
    from langfield.query.query2d import composited_relevancy, splat_channels
    from langfield.query.relevancy import relevancy_from_similarities

    feats, pos, neg = unit(1, 2, 8, seed=4), unit(1, 8, seed=5), unit(2, 8, seed=6)
    sims = splat_channels(feats, pos, neg, "splat-sims")  # [2 Gaussians, 3]
    # pixel 0: Gaussian 0 alone at alpha 0.5; pixel 1: both, weights 0.3 / 0.6; pixel 2: nothing
    weights = torch.tensor([[0.5, 0.0], [0.3, 0.6], [0.0, 0.0]])
    channels = (weights @ sims).reshape(1, 3, 3)
    alpha = weights.sum(1).reshape(1, 3)
    out = composited_relevancy(channels, alpha, 1, 1, "splat-sims")
    mean = (weights[:2] @ sims) / weights[:2].sum(1, keepdim=True)
    expect = relevancy_from_similarities(mean, 1)[0]
    torch.testing.assert_close(out[0, 0, 0, :2], expect)
    assert out[0, 0, 0, 0] == pytest.approx(float(relevancy_from_similarities(sims[:1], 1)[0, 0]), abs=1e-6)
    assert out[0, 0, 0, 2] == 0.0
    # composited relevancy: a mean of the two Gaussians' relevancies, so it lies between them
    rel = splat_channels(feats, pos, neg, "splat-relevancy")[:, 0]
    both = composited_relevancy((weights @ rel[:, None]).reshape(1, 3, 1), alpha, 1, 1, "splat-relevancy")[0, 0, 0, 1]
    assert float(rel.min()) - 1e-6 <= float(both) <= float(rel.max()) + 1e-6
