"""Weights registry: missing weights and unknown names give clear LangfieldErrors, never a download."""

import socket

import pytest

from langfield.features import describe_weights, extract_features
from langfield.features import weights as W
from langfield.features.clip_model import clip_key, load_clip
from langfield.features.sam_model import load_sam
from langfield.types import LangfieldError


@pytest.fixture
def empty_weights(tmp_path, monkeypatch):
    """An empty weights cache, no env overrides, no HF cache, and any network use fails loudly."""
    monkeypatch.setenv(W.WEIGHTS_ENV, str(tmp_path))
    monkeypatch.delenv(W.CLIP_ENV, raising=False)
    monkeypatch.delenv(W.SAM_ENV, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(W, "_hf_cache_lookup", lambda model, tag: None)

    def no_network(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    return tmp_path


def test_missing_clip_weights_say_what_and_where(empty_weights):
    with pytest.raises(LangfieldError) as err:
        load_clip("ViT-B-16:laion2b_s34b_b88k")
    msg = str(err.value)
    assert "huggingface.co/laion/CLIP-ViT-B-16-laion2B-s34B-b88K" in msg
    assert str(empty_weights / "clip" / "ViT-B-16" / "laion2b_s34b_b88k") in msg
    assert W.CLIP_ENV in msg and "\n" not in msg


def test_missing_sam_weights_say_what_and_where(empty_weights):
    with pytest.raises(LangfieldError) as err:
        load_sam("vit_b")
    msg = str(err.value)
    assert "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth" in msg
    assert str(empty_weights / "sam" / "sam_vit_b_01ec64.pth") in msg
    # the extractor surfaces the same error (sam-clip defaults to vit_h)
    with pytest.raises(LangfieldError, match="sam_vit_h_4b8939.pth"):
        extract_features({"a": [[[0.0] * 3]]}, "sam-clip", clip="test-tiny", progress=False)


def test_explicit_missing_path_is_reported(empty_weights):
    with pytest.raises(LangfieldError, match="nope.pth: SAM checkpoint file not found"):
        load_sam(f"vit_b:{empty_weights / 'nope.pth'}")
    with pytest.raises(LangfieldError, match="CLIP checkpoint file not found"):
        load_clip(str(empty_weights / "missing.bin"))


@pytest.mark.parametrize(
    "call, pattern",
    [
        (lambda: load_clip("ViT-Q-99"), "unknown CLIP model 'ViT-Q-99'"),
        (lambda: load_clip("ViT-B-16:not_a_tag"), "unknown pretrained tag 'not_a_tag'"),
        (lambda: load_sam("vit_x"), "unknown SAM model 'vit_x'"),
        (lambda: load_sam("/tmp/some_checkpoint.pth"), "cannot tell the SAM type"),
        (lambda: extract_features({}, "magic", clip="test-tiny"), "unknown feature method 'magic'"),
    ],
)
def test_unknown_names_are_clear_errors(empty_weights, call, pattern):
    with pytest.raises(LangfieldError, match=pattern):
        call()


def test_weights_are_found_where_the_error_said(empty_weights, monkeypatch):
    target = empty_weights / "sam" / "sam_vit_l_0b3195.pth"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"x")
    assert W.find_sam_checkpoint("vit_l", None) == target
    clip_dir = empty_weights / "clip" / "ViT-B-16" / "laion2b_s34b_b88k"
    clip_dir.mkdir(parents=True)
    (clip_dir / "open_clip_model.safetensors").write_bytes(b"x")
    model, tag, path = W.parse_clip_option("ViT-B-16")
    assert W.find_clip_checkpoint(model, tag, path) == clip_dir / "open_clip_model.safetensors"
    # the env var overrides the cache, and changes the cache key (different file)
    other = empty_weights / "mine.bin"
    other.write_bytes(b"yy")
    before = clip_key("ViT-B-16")
    monkeypatch.setenv(W.CLIP_ENV, str(other))
    assert W.find_clip_checkpoint(model, tag, path) == other
    assert clip_key("ViT-B-16") != before
    # a corrupt checkpoint is a clear error, not a random model
    with pytest.raises(LangfieldError, match="mine.bin: not a loadable open_clip ViT-B-16 checkpoint"):
        load_clip("ViT-B-16")


def test_describe_weights_lists_options(empty_weights):
    rows = describe_weights()
    options = [r["option"] for r in rows]
    assert "--clip ViT-B-16:laion2b_s34b_b88k" in options
    assert {"--sam vit_h", "--sam vit_l", "--sam vit_b"} <= set(options)
    assert any("test-tiny" in o for o in options)
    for r in rows:
        assert {"url", "sha256", "target_path", "env_var", "present", "size_mb", "description"} <= set(r)
        if r["kind"] in ("clip", "sam"):
            assert r["url"].startswith("https://") and r["target_path"].startswith(str(empty_weights))
            assert r["present"] is False


def test_verify_sha256(tmp_path):
    import hashlib

    f = tmp_path / "w.bin"
    f.write_bytes(b"weights")
    W.verify_sha256(f, hashlib.sha256(b"weights").hexdigest())
    W.verify_sha256(f, None)  # unknown digest: nothing to check
    with pytest.raises(LangfieldError, match="w.bin: sha256"):
        W.verify_sha256(f, hashlib.sha256(b"other").hexdigest())


def test_local_checkpoint_of_a_named_architecture_loads_exactly(tmp_path, monkeypatch):
    """The real file-loading path: open_clip config by name + our weights_only load of a local file."""
    import json

    import open_clip
    import torch

    from langfield.features.clip_model import TINY_CLIP_CFG

    monkeypatch.delenv(W.CLIP_ENV, raising=False)
    (tmp_path / "lf-tinyclip.json").write_text(json.dumps(TINY_CLIP_CFG))
    open_clip.add_model_config(tmp_path / "lf-tinyclip.json")
    torch.manual_seed(123)
    ref = open_clip.create_model("lf-tinyclip").eval()
    ckpt = tmp_path / "weights" / "lf.bin"
    ckpt.parent.mkdir()
    torch.save(ref.state_dict(), ckpt)
    clip = load_clip(f"lf-tinyclip:{ckpt}")
    assert clip.key == f"lf-tinyclip@lf.bin-{ckpt.stat().st_size}" and not clip.is_test
    tokens = open_clip.SimpleTokenizer()(["a red chair"])
    with torch.no_grad():
        want = torch.nn.functional.normalize(ref.encode_text(tokens), dim=-1)
    assert torch.allclose(clip.encode_text(["a red chair"]), want, atol=1e-6)


def test_tiny_banner_is_logged(caplog):
    import logging

    with caplog.at_level(logging.WARNING):
        load_clip("test-tiny")
        load_sam("test-tiny")
    text = caplog.text
    assert text.count("only exact label names") == 2 and "RANDOMLY" in text


@pytest.mark.parametrize(
    "option, want",
    [
        ("ViT-B-16", ("ViT-B-16", "laion2b_s34b_b88k", None)),
        ("ViT-L-14:openai", ("ViT-L-14", "openai", None)),
        ("/ckpt/clip.bin", ("ViT-B-16", None, "/ckpt/clip.bin")),
        ("ViT-L-14:/ckpt/clip.safetensors", ("ViT-L-14", None, "/ckpt/clip.safetensors")),
        ("test-tiny", ("test-tiny", None, None)),
    ],
)
def test_parse_clip_option(option, want):
    model, tag, path = W.parse_clip_option(option)
    assert (model, tag, str(path) if path else None) == want


@pytest.mark.parametrize(
    "option, want",
    [("vit_h", ("vit_h", None)), ("vit_b:/w/x.pth", ("vit_b", "/w/x.pth")), ("/w/sam_vit_l_0b3195.pth", ("vit_l", "/w/sam_vit_l_0b3195.pth"))],
)
def test_parse_sam_option(option, want):
    kind, path = W.parse_sam_option(option)
    assert (kind, str(path) if path else None) == want


def test_tiny_text_embeddings_tell_distinct_strings_apart():
    """test-tiny keeps its promise: identical strings agree, distinct ones sit at the fixed common cosine."""
    import torch

    from langfield.features.clip_model import TINY_TEXT_COMMON_COSINE, hashed_text_embeddings

    clip = load_clip("test-tiny")
    texts = ["table", "table leg", "chair leg", "object", "things", "stuff", "texture", "Table"]
    e = clip.encode_text(texts)
    assert e.shape == (len(texts), clip.embed_dim)
    assert torch.allclose(e.norm(dim=-1), torch.ones(len(texts)), atol=1e-5)
    off = (e @ e.T)[~torch.eye(len(texts), dtype=torch.bool)]
    # spread ~(1 - c)/sqrt(1024) around c; an untrained transformer gives anything in 0.6-0.97
    assert (off - TINY_TEXT_COMMON_COSINE).abs().max() < 0.05
    assert torch.equal(clip.encode_text(["table leg"])[0], e[1])  # deterministic, batch-independent
    assert torch.allclose(hashed_text_embeddings(["table leg"], clip.embed_dim)[0], e[1], atol=1e-6)
