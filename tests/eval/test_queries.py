"""Localisation / IoU metrics and frame evaluation on hand-built maps."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from langfield.eval.annotations import Annotation
from langfield.eval.queries import aggregate, evaluate_frame, iou, localization_hit, save_report
from langfield.query.relevancy import QueryConfig
from langfield.types import LangfieldError


def test_iou_hand_counts():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[0:2, 0:2] = True  # 4 px
    b[1:3, 1:3] = True  # 4 px, overlap 1
    assert iou(a, b) == pytest.approx(1 / 7)
    assert iou(a, a) == 1.0
    assert iou(a, ~a) == 0.0
    assert iou(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0
    assert iou(torch.from_numpy(a), b) == pytest.approx(1 / 7)


def test_localization_hit_mask_and_box():
    gt = np.zeros((10, 10), bool)
    gt[2:5, 2:5] = True
    r = np.zeros((10, 10))
    r[3, 4] = 1.0
    assert localization_hit(r, gt) == (True, True)
    r = np.zeros((10, 10))
    r[7, 8] = 1.0  # (x=8, y=7)
    assert localization_hit(r, gt) == (False, False)
    assert localization_hit(r, gt, boxes=[[8, 7, 9, 9]]) == (False, True)  # inclusive edges
    assert localization_hit(r, gt, boxes=[[0, 0, 1, 1], [9, 9, 8, 6]]) == (False, True)  # any box, any corner order
    assert localization_hit(r, gt, boxes=[[0, 0, 7, 9]]) == (False, False)  # x=8 outside
    # an L-shaped mask: the point is inside the tight box but off the mask
    gt2 = np.zeros((10, 10), bool)
    gt2[0:10, 0] = True
    gt2[9, 0:10] = True
    r = np.zeros((10, 10))
    r[3, 5] = 1.0
    assert localization_hit(r, gt2) == (False, True)


def frame_setup():
    h, w = 32, 32
    gt_a = np.zeros((h, w), bool)
    gt_a[4:16, 4:16] = True
    gt_b = np.zeros((h, w), bool)
    gt_b[18:30, 14:30] = True
    anns = {
        "teddy bear": Annotation(gt_a, np.array([[4, 4, 15, 15]], float)),
        "bag": Annotation(gt_b, np.zeros((0, 4))),  # no boxes -> tight box of the mask
    }
    g = torch.Generator().manual_seed(0)
    maps = 0.45 + 0.02 * torch.rand(3, 2, h, w, generator=g)
    maps[2, 0, 4:16, 4:16] = 0.8  # teddy bear at the coarse level
    maps[0, 1, 18:30, 14:30] = 0.7  # bag at the fine level
    maps[1, 1, 2, 2] = 0.85  # a single noisy pixel elsewhere must not win
    return maps, anns


def test_evaluate_frame_and_aggregate(tmp_path):
    maps, anns = frame_setup()
    cfg = QueryConfig(smoothing_kernel=5)
    res = evaluate_frame("frame_00001", maps, ["teddy bear", "bag"], anns, cfg)
    bear, bag = res
    assert (bear.level_iou, bear.level_loc, bag.level_iou, bag.level_loc) == (2, 2, 0, 0)
    assert bear.in_box and bear.in_mask and bag.in_box and bag.in_mask
    assert bear.iou > 0.8 and bag.iou > 0.8
    # the same maps at half resolution are resized to the GT size
    half = torch.nn.functional.avg_pool2d(maps.reshape(6, 1, 32, 32), 2).reshape(3, 2, 16, 16)
    res_half = evaluate_frame("frame_00001", half, ["teddy bear", "bag"], anns, cfg)
    assert [r.level_loc for r in res_half] == [2, 0] and all(r.in_box for r in res_half)
    # a fixed wrong level fails localisation for the bear
    fixed = evaluate_frame("frame_00001", maps[:, :1], ["teddy bear"], anns, QueryConfig(smoothing_kernel=5, level=0))
    assert fixed[0].level_loc == 0 and fixed[0].iou < bear.iou

    wrong = maps[:, 1:].clone()
    wrong[0, 0] = 0.45
    wrong[0, 0, 2:10, 2:10] = 0.7  # the bag "found" where there is none
    miss = evaluate_frame("frame_00002", wrong, ["bag"], anns, cfg)[0]
    assert not miss.in_box and not miss.in_mask and miss.iou == 0.0
    report = aggregate(res + [miss])
    assert report["mean"]["count"] == 3
    assert report["mean"]["loc_box"] == pytest.approx(2 / 3)
    assert report["mean"]["iou"] == pytest.approx((bear.iou + bag.iou) / 3)
    assert report["per_query"]["bag"]["count"] == 2
    assert report["per_query"]["bag"]["iou"] == pytest.approx((bag.iou + miss.iou) / 2)
    assert report["mean_of_queries"]["iou"] == pytest.approx((bear.iou + (bag.iou + miss.iou) / 2) / 2)
    assert len(report["records"]) == 3 and report["records"][0]["query"] == "teddy bear"
    path = save_report(tmp_path / "q.json", report)
    assert json.loads(path.read_text())["mean"]["count"] == 3
    empty = aggregate([])
    assert math.isnan(empty["mean"]["iou"])
    save_report(tmp_path / "empty.json", empty)
    assert json.loads((tmp_path / "empty.json").read_text())["mean"]["iou"] is None


def test_evaluate_frame_unknown_query():
    maps, anns = frame_setup()
    with pytest.raises(LangfieldError, match="no ground truth"):
        evaluate_frame("f", maps[:, :1], ["unicorn"], anns)
