"""LanguageField: load once, render in one pass, embed (cached), relevancy, select, update, errors.

The scene is written directly (no training): a plane of Gaussians filling one
camera's view whose left half carries the latent of "red thing" and right half
that of "blue thing" at level 1 ("whole"), while level 0 ("part") is "object"
everywhere. "blue thing" is the opposite direction of "red thing" and the
negatives are orthogonal to both, so every relevancy is near 0 or 1. A tiny
codec decodes one latent per text exactly to its embedding, and the embeddings are
pre-seeded in SCENE/text_cache, so no CLIP is ever loaded (tests that add
texts replace ``load_clip`` with a counting fake).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from langfield.types import DataError, LangfieldError

E, D, L = 8, 2, 2
W = H = 32
CLIP = "no-such-clip-for-tests"
TEXTS = ("red thing", "blue thing", "object", "things", "stuff", "texture")


def _embeddings() -> dict[str, torch.Tensor]:
    q, _ = torch.linalg.qr(torch.randn(E, E, generator=torch.Generator().manual_seed(0)))
    emb = {t: q[i] for i, t in enumerate(TEXTS)}  # orthonormal ...
    emb["blue thing"] = -emb["red thing"]  # ... except blue, the opposite of red
    return emb


def _codec(emb: dict[str, torch.Tensor]):
    """A codec whose decoder maps one chosen latent per text exactly to that text's embedding.

    The hidden layers stay random; the last linear layer is solved in closed form
    (least squares through the hidden activations of the chosen latents), which
    takes milliseconds where fitting by gradient descent takes minutes on a busy CPU.
    """
    from langfield.codec import CodecConfig, LanguageCodec

    torch.manual_seed(0)
    codec = LanguageCodec(CodecConfig(embed_dim=E, latent_dim=D, hidden=(32, 16), num_levels=L)).eval()
    angles = torch.arange(len(emb), dtype=torch.float32) * (2 * np.pi / len(emb))
    z = 3.0 * torch.stack([angles.cos(), angles.sin()], dim=-1)  # [T, D], well apart
    with torch.no_grad():
        hidden = codec.decoder[:-1](z)  # [T, 32]
        target = torch.stack(list(emb.values()))  # [T, E]
        last = codec.decoder[-1]
        last.weight.copy_(torch.linalg.lstsq(hidden, target).solution.T)
        last.bias.zero_()
        assert torch.allclose(codec.decode(z), target, atol=1e-4)  # the fixture must be right to mean anything
    codec.latent_of = dict(zip(emb, z))  # type: ignore[attr-defined]
    return codec


def _plane(codec, emb: dict[str, torch.Tensor], swap: bool = False) -> torch.nn.ParameterDict:
    from langfield.gaussians.params import create_params, rgb_to_sh0

    g = torch.linspace(-1.6, 1.6, 24)  # dense enough that alpha is ~1 everywhere in view
    yy, xx = torch.meshgrid(g, g, indexing="ij")
    n = xx.numel()
    means = torch.stack([xx.flatten(), yy.flatten(), torch.zeros(n)], dim=-1)
    left = means[:, 0] < 0
    z = codec.latent_of
    a, b = ("blue thing", "red thing") if swap else ("red thing", "blue thing")
    whole = torch.where(left[:, None], z[a], z[b])
    latents = torch.cat([z["object"].expand(n, D), whole], dim=-1)  # level l in columns [l*D, (l+1)*D)
    colour = torch.where(left[:, None], torch.tensor([0.9, 0.1, 0.1]), torch.tensor([0.1, 0.1, 0.9]))
    return create_params(means, torch.full((n, 3), float(np.log(0.1))), torch.tensor([1.0, 0, 0, 0]).repeat(n, 1),
                         torch.full((n,), 3.0), rgb_to_sh0(colour[:, None]), torch.zeros(n, 3, 3), latents=latents)


def _camera(x: float = 0.0):
    from langfield.scene import SceneCamera

    c2w = np.eye(4)
    c2w[0, 3], c2w[2, 3] = x, -3.0  # OpenCV: looks along +z at the plane z = 0
    K = np.array([[40.0, 0, W / 2], [0, 40.0, H / 2], [0, 0, 1]])
    return SceneCamera("cam.png", "eval", W, H, K, c2w)


def _write(root: Path, params, codec, emb, language: dict | None) -> Path:
    from langfield.codec import save_codec
    from langfield.query import TextEmbeddingCache
    from langfield.query.field import TEXT_CACHE_DIR
    from langfield.scene import save_scene, write_manifest

    config: dict = {"train": {"background": "black"}}
    if language is not None:
        config["language"] = language
    save_codec(codec, root / "codec")
    save_scene(root, params, [_camera()], config)
    TextEmbeddingCache(lambda t: torch.stack([emb[x] for x in t]), model_name=CLIP,
                       cache_dir=root / TEXT_CACHE_DIR)(list(TEXTS))
    write_manifest(root)
    return root


LANGUAGE = {"num_levels": L, "latent_dim": D, "levels": ["part", "whole"], "clip": CLIP, "codec_dir": "codec"}


@pytest.fixture(scope="module")
def parts():
    emb = _embeddings()
    return emb, _codec(emb)


@pytest.fixture(scope="module")
def scene_dir(parts, tmp_path_factory) -> Path:
    emb, codec = parts
    return _write(tmp_path_factory.mktemp("field") / "scene", _plane(codec, emb), codec, emb, LANGUAGE)


@pytest.fixture()
def field(scene_dir):
    from langfield.query import LanguageField

    return LanguageField.load(scene_dir, backend="cpu")


@pytest.fixture()
def count_render(monkeypatch):
    """Counts rasterizer passes (``langfield.render.render`` calls)."""
    import langfield.render as R

    calls = []
    real = R.render

    def counted(*args, **kwargs):
        calls.append(kwargs.get("features") is not None)
        return real(*args, **kwargs)

    monkeypatch.setattr(R, "render", counted)
    return calls


# --------------------------------------------------------------------------- load


def test_load_reads_the_scene_and_its_language_parts(field, scene_dir):
    from langfield.scene import SceneCamera

    assert field.has_language and field.root == scene_dir
    assert (field.num_levels, field.latent_dim, field.level_names, field.clip_name) == (L, D, ("part", "whole"), CLIP)
    assert field.meta["levels"] == ["part", "whole"]
    assert [c.name for c in field.cameras] == ["cam.png"] and isinstance(field.cameras[0], SceneCamera)
    assert field.params["latents"].shape == (field.num_gaussians, L * D)
    assert not field.codec.training
    assert field.text_cache.cache_dir == scene_dir / "text_cache"


# --------------------------------------------------------------------------- render


def test_render_gives_every_channel_in_one_pass(field, count_render):
    from langfield.codec import split_levels

    cam = field.cameras[0]
    frame = field.render(cam, what=("latents", "rgb", "depth", "alpha"))
    assert count_render == [True]
    assert frame.latents.shape == (L, H, W, D) and frame.features.shape == (H, W, L * D)
    assert torch.equal(frame.latents, split_levels(frame.features, D).permute(2, 0, 1, 3))
    assert frame.rgb.shape == (H, W, 3) and 0 <= frame.rgb.min() and frame.rgb.max() <= 1
    # the plane covers the image centre at depth 3; its left half is red, its right half blue
    assert frame.alpha[H // 2, W // 2] > 0.9 and frame.depth[H // 2, W // 2] == pytest.approx(3.0, abs=0.05)
    assert frame.rgb[H // 2, 4, 0] > frame.rgb[H // 2, 4, 2] and frame.rgb[H // 2, W - 5, 2] > frame.rgb[H // 2, W - 5, 0]
    assert torch.equal(frame.level_features(1, D), frame.latents[1])
    # only what was asked for; the latents do not depend on which other channels share the pass
    only = field.render(cam, what=("latents",))
    assert only.rgb is None and only.depth is None and only.alpha is None
    assert torch.equal(only.latents, frame.latents)
    assert field.render(cam).latents is None and count_render == [True, True, False]


def test_render_accepts_scene_cameras_and_views(field):
    cam = field.cameras[0]
    a = field.render(cam, what=("latents", "rgb"))
    b = field.render(cam.to_view(), what=("latents", "rgb"))
    assert torch.equal(a.latents, b.latents) and torch.equal(a.rgb, b.rgb)
    with pytest.raises(LangfieldError, match="unknown render channel"):
        field.render(cam, what=("normals",))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="to_view"):
        field.render("cam.png")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- relevancy


def test_relevancy_finds_each_text_on_its_half_at_its_level(field, count_render):
    res = field.relevancy(field.cameras[0], ["red thing", "blue thing"], what=("rgb",))
    assert count_render == [True]  # latents and rgb for the overlay in one pass
    assert res.maps.shape == (L, 2, H, W) and res.relevancy.shape == (2, H, W)
    assert res.levels.tolist() == [1, 1]  # level 0 says "object" everywhere: the texts live at level 1
    assert res.frame.rgb is not None and res.texts == ("red thing", "blue thing")
    centre = slice(H // 2 - 6, H // 2 + 6)
    red, blue = res.relevancy[0, centre], res.relevancy[1, centre]
    assert red[:, 6:14].mean() > 0.9 and red[:, 18:26].mean() < 0.1
    assert blue[:, 18:26].mean() > 0.9 and blue[:, 6:14].mean() < 0.1
    masks = res.masks()
    assert masks.dtype == torch.bool and masks[0, centre, 6:14].all() and not masks[0, centre, 18:26].any()
    # LangSplat's windows are scaled to the render size
    from langfield.query import auto_smoothing_kernel

    assert res.config.smoothing_kernel == auto_smoothing_kernel(H, W)


def test_relevancy_is_the_chain_of_the_building_blocks(field):
    from langfield.query import choose_level, gather_levels, level_relevancy, query_config

    cam = field.cameras[0]
    res = field.relevancy(cam, ["blue thing"], negatives=("object", "stuff"), smoothing_kernel=5)
    cfg = query_config(H, W, negatives=("object", "stuff"), smoothing_kernel=5)
    lat = field.render(cam, what=("latents",)).latents
    maps = level_relevancy(lat, field.embed(["blue thing"]), field.embed(["object", "stuff"]), cfg,
                           decode=field.codec.decode)
    torch.testing.assert_close(res.maps, maps, atol=1e-5, rtol=0)
    levels = choose_level(maps, 5)
    assert torch.equal(res.levels, levels)
    torch.testing.assert_close(res.relevancy, gather_levels(maps, levels), atol=1e-5, rtol=0)
    assert res.config.negatives == ("object", "stuff") and res.config.smoothing_kernel == 5


def test_fixed_and_bad_levels(field):
    cam = field.cameras[0]
    assert field.relevancy(cam, ["red thing"], level=0).levels.tolist() == [0]
    assert field.relevancy(cam, ["red thing"], level="auto").levels.tolist() == [1]
    for bad in (2, -1):
        with pytest.raises(LangfieldError, match="out of range: the scene has 2 levels"):
            field.relevancy(cam, ["red thing"], level=bad)
    with pytest.raises(LangfieldError, match="--level 5 out of range"):
        field.check_level(5, name="--level")
    for bad in ("finest", True, 1.0):
        with pytest.raises(LangfieldError, match="integer or 'auto'"):
            field.check_level(bad)  # type: ignore[arg-type]
    with pytest.raises(LangfieldError, match="empty query"):
        field.relevancy(cam, ["red thing", " "])


# --------------------------------------------------------------------------- embed


def test_embed_is_cached_and_clip_loads_only_for_new_texts(field, scene_dir, monkeypatch, parts):
    import langfield.features.clip_model as C

    loads, encoded = [], []

    class FakeClip:
        def encode_text(self, texts):
            encoded.append(list(texts))
            return torch.nn.functional.normalize(torch.ones(len(texts), E), dim=-1)

    monkeypatch.setattr(C, "load_clip", lambda option, device="cpu": loads.append(option) or FakeClip())
    # every text of the scene's cache is answered without loading CLIP
    emb, _ = parts
    torch.testing.assert_close(field.embed(["red thing", "stuff"]), torch.stack([emb["red thing"], emb["stuff"]]))
    field.relevancy(field.cameras[0], ["blue thing"])
    field.select("red thing")
    assert loads == []
    copy = scene_dir.parent / "copy"
    shutil.copytree(scene_dir, copy, dirs_exist_ok=True)
    from langfield.query import LanguageField

    f = LanguageField.load(copy, backend="cpu")
    first = f.embed(["a new text", "red thing"])
    again = f.embed(["a new text"])
    assert loads == [CLIP] and encoded == [["a new text"]]  # loaded once, each new text encoded once
    assert torch.equal(first[0], again[0])
    # persisted: a fresh field of the same scene needs no CLIP for it
    loads.clear()
    assert torch.equal(LanguageField.load(copy, backend="cpu").embed(["a new text"])[0], again[0])
    assert loads == []


# --------------------------------------------------------------------------- select, decode, update


def test_select_decodes_once_and_update_invalidates(field, parts):
    emb, codec = parts
    left = field.params["means"][:, 0].detach() < 0
    decoded = field.decode_gaussians()
    assert decoded.features.shape == (L, field.num_gaussians, E)
    res = field.select("red thing", 0.5)
    assert field.decode_gaussians() is decoded  # decoded once, reused by every select
    assert res.level == 1 and torch.equal(res.mask, left)
    assert res.point is not None and float(res.point[0]) < 0
    assert torch.equal(field.select("red thing", 0.5, level=0).mask, torch.zeros_like(left))
    strict = field.select("red thing", 0.5, min_opacity=0.99)  # sigmoid(3) = 0.95: every Gaussian is dropped
    assert not strict.mask.any()

    before = field.render(field.cameras[0], what=("latents",)).latents
    version = field.version
    field.update(_plane(codec, emb, swap=True))
    assert field.version == version + 1
    assert field.decode_gaussians() is not decoded
    assert torch.equal(field.select("red thing", 0.5).mask, ~left)  # the halves swapped
    after = field.render(field.cameras[0], what=("latents",)).latents
    assert torch.equal(after[0], before[0]) and not torch.equal(after[1], before[1])
    rel = field.relevancy(field.cameras[0], ["red thing"]).relevancy[0, H // 2]
    assert rel[18:26].mean() > 0.9 > 0.1 > rel[6:14].mean()


def test_update_rejects_parameters_of_another_layout(field, parts):
    emb, codec = parts
    p = _plane(codec, emb)
    p["latents"] = torch.nn.Parameter(torch.zeros(p["means"].shape[0], 3))
    with pytest.raises(DataError, match="3 latent columns, config.json says 4"):
        field.update(p)
    del p["latents"]
    with pytest.raises(DataError, match="no latents"):
        field.update(p)
    del p["sh0"]
    with pytest.raises(LangfieldError, match="lack sh0"):
        field.update(p)
    assert field.version == 0  # nothing was replaced


# --------------------------------------------------------------------------- scenes that cannot be read


def test_scene_without_language_field(parts, tmp_path):
    from langfield.query import LanguageField, SceneField

    emb, codec = parts
    root = _write(tmp_path / "plain", _plane(codec, emb), codec, emb, language=None)
    with pytest.raises(LangfieldError, match="no language field"):
        LanguageField.load(root)
    base = SceneField.load(root, backend="cpu")
    assert not base.has_language and base.language_meta is None
    assert base.render(base.cameras[0], what=("rgb", "depth")).depth is not None
    with pytest.raises(LangfieldError, match="no language field, cannot render latents"):
        base.render(base.cameras[0], what=("latents",))


@pytest.mark.parametrize("key, value, match", [
    ("latent_dim", 3, "PLY has 4 latent columns, config.json says 6"),
    ("num_levels", "two", "language.num_levels is 'two'"),
    ("levels", ["part"], "1 level names for 2 levels"),
    ("clip", "", "language.clip is missing"),
])
def test_inconsistent_scenes_are_data_errors(parts, tmp_path, key, value, match):
    from langfield.query import LanguageField

    emb, codec = parts
    root = _write(tmp_path / "bad", _plane(codec, emb), codec, emb, {**LANGUAGE, key: value})
    with pytest.raises(DataError, match=match):
        LanguageField.load(root)


def test_codec_of_another_latent_width_is_a_data_error(parts, tmp_path):
    from langfield.codec import CodecConfig, LanguageCodec, save_codec
    from langfield.query import LanguageField
    from langfield.scene import write_manifest

    emb, codec = parts
    root = _write(tmp_path / "bad", _plane(codec, emb), codec, emb, LANGUAGE)
    save_codec(LanguageCodec(CodecConfig(embed_dim=E, latent_dim=D + 1, hidden=(8,))), root / "codec")
    write_manifest(root)
    with pytest.raises(DataError, match="codec has latent width 3, config.json says 2"):
        LanguageField.load(root)


def test_plain_scene_keeps_its_background(parts, tmp_path):
    from langfield.query import SceneField
    from langfield.scene import write_manifest

    emb, codec = parts
    root = _write(tmp_path / "white", _plane(codec, emb), codec, emb, language=None)
    cfg = json.loads((root / "config.json").read_text())
    cfg["train"]["background"] = "white"
    (root / "config.json").write_text(json.dumps(cfg))
    write_manifest(root)
    frame = SceneField.load(root, backend="cpu").render(_camera(x=2.5), what=("rgb", "alpha"))  # plane in the left half
    corner = frame.alpha < 0.01
    assert corner.any() and torch.allclose(frame.rgb[corner], torch.ones(3))


def test_queries_import_no_training_or_cli_code(scene_dir):
    code = (
        "import sys\n"
        "from langfield.query import LanguageField\n"
        f"f = LanguageField.load({str(scene_dir)!r}, backend='cpu')\n"
        "f.relevancy(f.cameras[0], ['red thing'], what=('rgb', 'depth'))\n"
        "f.select('red thing')\n"
        "print('IMPORTED', sorted(m for m in sys.modules if m.startswith(('langfield.train', 'langfield.cli'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "IMPORTED []" in out.stdout, out.stdout


# --------------------------------------------------------------------------- per-Gaussian relevancy methods


@pytest.mark.parametrize("method", ["splat-sims", "splat-relevancy"])
def test_splat_methods_find_each_text_on_its_half_in_one_pass(field, count_render, method):
    res = field.relevancy(field.cameras[0], ["red thing", "blue thing"], what=("rgb", "depth"), method=method)
    assert count_render == [True]  # the query's channels, rgb and depth in one pass; no latents
    assert res.method == method and res.frame.latents is None and res.frame.rgb is not None
    assert res.maps.shape == (L, 2, H, W) and res.levels.tolist() == [1, 1]
    centre = slice(H // 2 - 6, H // 2 + 6)
    red, blue = res.relevancy[0, centre], res.relevancy[1, centre]
    assert red[:, 6:14].mean() > 0.9 and red[:, 18:26].mean() < 0.1
    assert blue[:, 18:26].mean() > 0.9 and blue[:, 6:14].mean() < 0.1
    # inside a half every Gaussian has the same latent: decoding per Gaussian equals decoding per pixel
    pixel = field.relevancy(field.cameras[0], ["red thing", "blue thing"])
    torch.testing.assert_close(res.maps[:, :, centre, 6:12], pixel.maps[:, :, centre, 6:12], atol=2e-3, rtol=0)


def test_splat_relevancy_is_monotone_across_a_border(field):
    """Scores are blended, never latents: from the red half to the blue half "red thing" only falls."""
    res = field.relevancy(field.cameras[0], ["red thing"], level=1, method="splat-sims")
    row = res.relevancy[0, H // 2, 4:W - 4]
    assert (row[1:] - row[:-1]).max() < 1e-4 and row[0] > 0.9 and row[-1] < 0.1


def test_splat_channels_are_cached_per_query_and_dropped_by_update(field, parts, monkeypatch):
    import langfield.query.field as F

    calls = []
    real = F.splat_channels
    monkeypatch.setattr(F, "splat_channels", lambda *a, **k: calls.append(1) or real(*a, **k))
    cam = field.cameras[0]
    first = field.relevancy(cam, ["red thing"], method="splat-sims")
    field.relevancy(cam, ["red thing"], method="splat-sims")
    assert len(calls) == 1  # same text and negatives: the per-Gaussian matmul is not redone
    field.relevancy(cam, ["red thing"], negatives=("stuff",), method="splat-sims")
    assert len(calls) == 2
    emb, codec = parts
    field.update(_plane(codec, emb, swap=True))
    swapped = field.relevancy(cam, ["red thing"], method="splat-sims")
    assert len(calls) == 3  # new Gaussians: decoded and scored again
    assert swapped.relevancy[0, H // 2, 6:14].mean() < 0.1 < first.relevancy[0, H // 2, 6:14].mean()
    with pytest.raises(LangfieldError, match="unknown relevancy method"):
        field.relevancy(cam, ["red thing"], method="nearest")  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["pixel", "splat-sims"])
def test_at_level_switches_without_rendering(field, count_render, method):
    res = field.relevancy(field.cameras[0], ["red thing"], method=method)
    assert len(count_render) == 1 and res.levels.tolist() == [1]
    zero = res.at_level(0)
    assert len(count_render) == 1  # no new pass
    assert zero.levels.tolist() == [0] and torch.equal(zero.relevancy[0], res.maps[0, 0])
    assert zero.config.level == 0 and torch.equal(zero.maps, res.maps)
    assert torch.equal(zero.at_level(None).relevancy, res.relevancy)
    with pytest.raises(LangfieldError, match="out of range"):
        res.at_level(L)
