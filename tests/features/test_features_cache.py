"""FeatureCache round trip, atomic files, and resumable extraction (done frames are skipped)."""

import os

import numpy as np
import pytest
import torch

from langfield.features import FeatureCache, FeatureMap, extract_features
from langfield.features import extract as extract_mod
from langfield.types import Label

LABELS = {1: Label("leg", "table"), 2: Label("seat", "chair")}


def make_map(seed: int, grid: bool = False) -> FeatureMap:
    g = torch.Generator().manual_seed(seed)
    seg = torch.randint(-1, 4, (2, 5, 7), generator=g, dtype=torch.int32)
    feats = torch.nn.functional.normalize(torch.randn(4, 16, generator=g), dim=-1).half()
    if grid:
        return FeatureMap(("dense",), seg[:1].clamp_min(0), feats, grid_shape=(2, 2))
    return FeatureMap(("part", "whole"), seg, feats)


@pytest.mark.parametrize("grid", [False, True])
def test_round_trip_and_names(tmp_path, grid):
    cache = FeatureCache(tmp_path, "labels__test-tiny__abc")
    fm = make_map(0, grid)
    name = "images/frame 001.png"  # separators and spaces must be safe
    assert cache.get(name) is None and name not in cache
    cache.put(name, fm)
    back = cache.get(name)
    assert back is not None and name in cache
    assert back.level_names == fm.level_names and back.grid_shape == fm.grid_shape
    assert torch.equal(back.segments, fm.segments) and torch.equal(back.features, fm.features)
    assert list(cache.frames()) == [name]
    assert not [p for p in os.listdir(cache.dir) if p.startswith(".tmp-")]
    # another model key does not see it
    assert FeatureCache(tmp_path, "labels__other").get(name) is None


def _flip_tensor_byte(path) -> None:
    """Change one byte in the middle of the largest tensor stored in a torch.save archive."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    name_len, extra_len = int.from_bytes(data[info.header_offset + 26:info.header_offset + 28], "little"), \
        int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
    data[info.header_offset + 30 + name_len + extra_len + info.file_size // 2] ^= 0x20
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "flipped", "foreign", "bad-ids"])
def test_damaged_entry_is_a_warning_and_a_miss(tmp_path, caplog, damage):
    """A cache is not user data: a damaged entry is reported, deleted and computed again (never an exception)."""
    cache = FeatureCache(tmp_path, "k")
    cache.put("f", make_map(1))
    path = cache.path("f")
    if damage == "garbage":
        path.write_bytes(b"not a torch file")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "flipped":  # inside the feature table: torch.load alone would load it silently
        _flip_tensor_byte(path)
    elif damage == "foreign":  # another frame's entry copied over this one
        cache.put("g", make_map(2))
        path.write_bytes(cache.path("g").read_bytes())
    else:  # a well-formed file whose segment ids point outside the feature table (IndexError later)
        fm = make_map(1)
        cache.put("f", FeatureMap(fm.level_names, fm.segments.clamp_min(0) + 10, fm.features))
    with caplog.at_level("WARNING", logger="langfield.features.cache"):
        assert cache.get("f") is None
    assert path.name in caplog.text and "computed again" in caplog.text
    assert not path.exists() and "f" not in cache
    # the next extraction finds it missing and writes it again
    cache.put("f", make_map(1))
    assert torch.equal(cache.get("f").features, make_map(1).features)


def test_frames_skips_damaged_entries(tmp_path, caplog):
    cache = FeatureCache(tmp_path, "k")
    for name in ("a", "b", "c"):
        cache.put(name, make_map(0))
    cache.path("b").write_bytes(cache.path("b").read_bytes()[:100])
    with caplog.at_level("WARNING", logger="langfield.features.cache"):
        assert sorted(cache.frames()) == ["a", "c"]
    assert cache.path("b").name in caplog.text


def test_extraction_recomputes_a_damaged_entry(tmp_path, monkeypatch):
    sem = {n: np.full((3, 4), 1, dtype=np.int64) for n in ("f0", "f1")}
    kw = dict(clip="test-tiny", labels=LABELS, cache_dir=tmp_path, progress=False)
    first = extract_features({"f0": None, "f1": None}, "labels", semantics=sem, **kw)
    key_dir = next(p for p in tmp_path.iterdir() if p.is_dir())
    victim = sorted(key_dir.glob("f1-*.pt"))[0]
    victim.write_bytes(victim.read_bytes()[:-50])  # truncated, as by a full disk or a killed copy
    calls = []
    real = extract_mod._Runner.__call__
    monkeypatch.setattr(extract_mod._Runner, "__call__", lambda self, it: calls.append(it.name) or real(self, it))
    second = extract_features({"f0": None, "f1": None}, "labels", semantics=sem, **kw)
    assert calls == ["f1"]
    assert torch.equal(second["f1"].features, first["f1"].features)


def test_extraction_resumes_and_skips_cached_frames(tmp_path, monkeypatch):
    sem = {n: np.full((3, 4), 1 + (i % 2), dtype=np.int64) for i, n in enumerate(["f0", "f1", "f2"])}
    calls = []
    real = extract_mod._Runner.__call__

    def counting(self, it):
        calls.append(it.name)
        return real(self, it)

    monkeypatch.setattr(extract_mod._Runner, "__call__", counting)
    kw = dict(clip="test-tiny", labels=LABELS, cache_dir=tmp_path, progress=False)
    first = extract_features({"f0": None, "f1": None}, "labels", semantics=sem, **kw)
    assert calls == ["f0", "f1"]
    # an interrupted run's leftovers: only f0, f1 exist; adding f2 computes f2 only
    second = extract_features({"f0": None, "f1": None, "f2": None}, "labels", semantics=sem, **kw)
    assert calls == ["f0", "f1", "f2"]
    assert list(second) == ["f0", "f1", "f2"]
    assert torch.equal(second["f1"].features, first["f1"].features)
    # everything cached: no model is even loaded
    monkeypatch.setattr(extract_mod, "_Runner", None)
    third = extract_features({"f2": None}, "labels", semantics=sem, **kw)
    assert torch.equal(third["f2"].segments, second["f2"].segments)


def test_changed_labels_use_a_new_cache_key(tmp_path):
    from langfield.features import model_key

    a = model_key("labels", "test-tiny", labels=LABELS)
    b = model_key("labels", "test-tiny", labels={**LABELS, 2: Label("seat", "stool")})
    assert a != b and a.startswith("labels__test-tiny")
