"""End to end on a 64x48 image with the tiny models: sam-clip and dense paths, documented shapes."""

import numpy as np
import pytest
import torch

from langfield.features import DENSE_LEVELS, SAM_LEVELS, ExtractConfig, FeatureMap, extract_features
from langfield.features.clip_model import TINY_CLIP_CFG, load_clip
from langfield.features.masks import MaskConfig
from langfield.features.sam_clip import SamClipConfig, masked_square_crops

H, W_ = 48, 64


def image():
    g = torch.Generator().manual_seed(0)
    img = torch.zeros(H, W_, 3)
    img[:, : W_ // 2] = torch.tensor([0.9, 0.1, 0.1])  # two flat halves + a square: real structure
    img[:, W_ // 2 :] = torch.tensor([0.1, 0.2, 0.8])
    img[10:30, 20:40] = torch.tensor([0.2, 0.9, 0.2])
    return (img + 0.02 * torch.rand(H, W_, 3, generator=g)).clamp(0, 1)


def check_map(fm: FeatureMap, levels):
    assert fm.level_names == levels
    assert fm.segments.shape == (len(levels), H, W_) and fm.segments.dtype == torch.int32
    assert fm.features.dtype == torch.float16 and fm.features.shape[1] == TINY_CLIP_CFG["embed_dim"]  # tiny CLIP width
    assert int(fm.segments.min()) >= -1 and int(fm.segments.max()) < fm.features.shape[0]
    if fm.features.shape[0]:
        assert torch.allclose(fm.features.float().norm(dim=-1), torch.ones(fm.features.shape[0]), atol=2e-3)
    dense = fm.to_dense()
    assert dense.shape == (len(levels), H, W_, TINY_CLIP_CFG["embed_dim"])
    norms = dense.norm(dim=-1)
    valid = fm.valid_mask()
    assert torch.allclose(norms[valid], torch.ones(int(valid.sum())), atol=2e-3)
    assert (norms[~valid] == 0).all()


def test_sam_clip_tiny_end_to_end(tmp_path):
    cfg = ExtractConfig(sam_clip=SamClipConfig(masks=MaskConfig(points_per_side=4, points_per_batch=16)))
    out = extract_features({"img": image().numpy()}, "sam-clip", clip="test-tiny", sam="test-tiny",
                           cache_dir=tmp_path, progress=False, config=cfg)
    fm = out["img"]
    check_map(fm, SAM_LEVELS)
    assert (fm.segments >= 0).any()  # permissive tiny thresholds let masks through
    # each level's ids are disjoint ranges of the shared table
    ranges = [set(torch.unique(fm.segments[lv][fm.segments[lv] >= 0]).tolist()) for lv in range(3)]
    for a in range(3):
        for b in range(a + 1, 3):
            assert not (ranges[a] & ranges[b])


def test_dense_tiny_end_to_end():
    fm = extract_features([type("V", (), {"name": "v0", "rgb": torch.from_numpy(image().numpy())})()], "dense",
                          clip="test-tiny", progress=False)["v0"]
    check_map(fm, DENSE_LEVELS)
    assert fm.grid_shape == (H // 8, W_ // 8)  # patch 8, image smaller than short_side: no upsampling
    assert fm.valid_mask().all()
    # sample() agrees with to_dense() at arbitrary pixels
    ys, xs = torch.tensor([0, 5, 47, 20]), torch.tensor([0, 63, 10, 33])
    pts, ok = fm.sample(0, ys, xs)
    assert ok.all()
    assert torch.allclose(pts, fm.to_dense(0)[0, ys, xs], atol=1e-5)


def test_dense_grid_follows_short_side():
    clip = load_clip("test-tiny")
    big = torch.rand(3, 96, 128)
    assert clip.dense_features(big, short_side=48).shape == (6, 8, TINY_CLIP_CFG["embed_dim"])
    assert clip.dense_features(big, short_side=96).shape == (12, 16, TINY_CLIP_CFG["embed_dim"])


def test_masked_square_crop_centres_object_and_zeroes_background():
    img = torch.ones(3, 10, 20)
    mask = torch.zeros(1, 10, 20, dtype=torch.bool)
    mask[0, 2:4, 5:13] = True  # 2 x 8 box -> padded to 8 x 8
    crop = masked_square_crops(img, mask, size=8)[0]
    assert crop.shape == (3, 8, 8)
    assert crop[:, 3:5, :].min() > 0.99  # centred rows hold the object
    assert crop[:, :2, :].max() < 1e-6 and crop[:, 6:, :].max() < 1e-6  # padding is black


def test_bad_image_shape_is_a_data_error():
    from langfield.types import DataError

    with pytest.raises(DataError, match="img: image must be"):
        extract_features({"img": np.zeros((4, 4))}, "dense", clip="test-tiny", progress=False)
