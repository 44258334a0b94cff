"""Label lifting: per-pixel text embeddings of part (fine) and whole (coarse) labels."""

import numpy as np
import pytest
import torch

from langfield.features import FeatureInput, extract_features
from langfield.types import DataError, Label, View

LABELS = {
    1: Label(part="table leg", whole="table"),
    2: Label(part="table top", whole="table"),
    3: Label(part="chair", whole="chair"),
    4: Label(part="table leg", whole="desk"),
}


def semantics_a():
    sem = np.zeros((6, 8), dtype=np.int64)
    sem[0:2, :4] = 1
    sem[0:2, 4:] = 2
    sem[2:4, :] = 3
    sem[4:5, :] = 4  # row 5 stays 0 = unlabelled
    return sem


def test_identical_labels_identical_features_and_levels():
    fm = extract_features({"a": None}, "labels", clip="test-tiny", labels=LABELS, semantics={"a": semantics_a()},
                          progress=False)["a"]
    assert fm.level_names == ("part", "whole")
    assert fm.segments.shape == (2, 6, 8) and fm.segments.dtype == torch.int32
    assert fm.features.dtype == torch.float16
    assert torch.allclose(fm.features.float().norm(dim=-1), torch.ones(fm.features.shape[0]), atol=1e-3)
    dense = fm.to_dense()  # [2, 6, 8, E]
    part, whole = dense[0], dense[1]
    # part level: ids 1 and 4 share the text "table leg"; 1 and 2 differ
    assert torch.equal(part[0, 0], part[4, 0])
    assert not torch.allclose(part[0, 0], part[0, 5])
    # whole level: ids 1 and 2 are both "table"; id 4 is "desk"
    assert torch.equal(whole[0, 0], whole[0, 5])
    assert not torch.allclose(whole[0, 0], whole[4, 0])
    # id 3 has part == whole text -> same vector on both levels
    assert torch.equal(part[2, 0], whole[2, 0])
    # unlabelled pixels: no feature on any level
    assert (fm.segments[:, 5] == -1).all() and (dense[:, 5] == 0).all()
    # one table row per distinct text in the frame
    assert fm.features.shape[0] == len({"table leg", "table top", "chair", "table", "desk"})


def test_same_text_same_vector_across_frames_and_views():
    sem_b = np.full((4, 4), 3, dtype=np.int64)
    view = View(name="b", viewmat=torch.eye(4), K=torch.eye(3), width=4, height=4, semantics=torch.from_numpy(sem_b))
    maps = extract_features([FeatureInput("a", None, semantics_a()), view], "labels", clip="test-tiny",
                            labels=LABELS, progress=False)
    chair_a = maps["a"].to_dense("part")[0, 2, 0]
    chair_b = maps["b"].to_dense("part")[0, 0, 0]
    assert torch.equal(chair_a, chair_b)


def test_unknown_id_and_missing_semantics_are_data_errors():
    sem = semantics_a()
    sem[0, 0] = 99
    with pytest.raises(DataError, match="99"):
        extract_features({"a": None}, "labels", clip="test-tiny", labels=LABELS, semantics={"a": sem}, progress=False)
    with pytest.raises(DataError, match="semantics"):
        extract_features({"a": None}, "labels", clip="test-tiny", labels=LABELS, progress=False)
