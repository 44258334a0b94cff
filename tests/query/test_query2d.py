"""Per-view query: latents decoded in chunks, level chosen where the object is."""

from __future__ import annotations

import torch

from langfield.query.query2d import level_relevancy, query_views
from langfield.query.relevancy import QueryConfig, TextEmbeddingCache, relevancy

E, D = 16, 4


def vocab_encoder(texts: list[str]) -> torch.Tensor:
    rows = [torch.randn(E, generator=torch.Generator().manual_seed(sum(map(ord, t)) * 7 + len(t))) for t in texts]
    return torch.nn.functional.normalize(torch.stack(rows), dim=-1)


def test_query_views_with_decoder_finds_object_at_its_level():
    cache = TextEmbeddingCache(vocab_encoder)
    cfg = QueryConfig(smoothing_kernel=3, chunk_size=50)  # chunks smaller than a map
    # a linear "codec": latents are the first D coords in a basis whose rows are text embeddings
    basis = cache(["lamp", "object", "things", "stuff"])
    decode = lambda z: z @ basis  # noqa: E731  [n, D] -> [n, E]
    h, w = 24, 20
    lat = torch.zeros(2, h, w, D)
    lat[..., 1] = 1.0  # everything is "object" ...
    lat[1, 6:18, 4:14] = torch.tensor([1.0, 0.0, 0.0, 0.0])  # ... except a lamp at level 1
    res = query_views(lat, ["lamp"], cache, cfg, decode=decode)
    assert res.maps.shape == (2, 1, h, w) and res.levels.tolist() == [1]
    want = relevancy(torch.nn.functional.normalize(decode(lat.reshape(-1, D)), dim=-1), cache(["lamp"]), cache(list(cfg.negatives)))
    torch.testing.assert_close(res.maps.permute(1, 0, 2, 3).reshape(1, -1), want)
    gt = torch.zeros(h, w, dtype=torch.bool)
    gt[6:18, 4:14] = True
    assert torch.equal(res.relevancy[0] > 0.5, gt)
    inter, union = (res.masks[0] & gt).sum(), (res.masks[0] | gt).sum()
    assert inter / union > 0.6


def test_level_relevancy_without_decoder_matches_relevancy():
    feats = torch.nn.functional.normalize(torch.randn(3, 5, 6, E, generator=torch.Generator().manual_seed(1)), dim=-1)
    pos, neg = vocab_encoder(["a", "b"]), vocab_encoder(["object", "stuff"])
    got = level_relevancy(feats, pos, neg, QueryConfig(chunk_size=7))
    torch.testing.assert_close(got, relevancy(feats, pos, neg).permute(1, 0, 2, 3))


def test_level_relevancy_through_codec_similarity_matches_decoding():
    import torch.nn.functional as F

    from langfield.codec import CodecConfig, LanguageCodec
    from langfield.query import QueryConfig, level_relevancy

    codec = LanguageCodec(CodecConfig(embed_dim=64, latent_dim=3, hidden=(32, 16)))
    g = torch.Generator().manual_seed(1)
    lat = torch.randn(2, 9, 11, 3, generator=g)
    pos = F.normalize(torch.randn(3, 64, generator=g), dim=-1)
    neg = F.normalize(torch.randn(4, 64, generator=g), dim=-1)
    cfg = QueryConfig(chunk_size=37)  # several chunks per level
    a = level_relevancy(lat, pos, neg, cfg, decode=codec.decode)
    b = level_relevancy(lat, pos, neg, cfg, similarity=codec.similarity)
    assert b.shape == (2, 3, 9, 11)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
