"""FeatureCache round trip, atomic files, and resumable extraction (done frames are skipped)."""

import os

import numpy as np
import pytest
import torch

from langfield.features import FeatureCache, FeatureMap, extract_features
from langfield.features import extract as extract_mod
from langfield.types import DataError, Label

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


def test_corrupt_file_is_a_data_error(tmp_path):
    cache = FeatureCache(tmp_path, "k")
    cache.put("f", make_map(1))
    cache.path("f").write_bytes(b"not a torch file")
    with pytest.raises(DataError, match=str(cache.path("f").name)):
        cache.get("f")


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
