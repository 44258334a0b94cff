"""LERF-OVS / LabelMe / 3D-OVS readers on tiny files in the real formats."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from langfield.eval.annotations import read_3dovs, read_lerf_ovs, read_lerf_ovs_file
from langfield.types import DataError


def lerf_json(name: str, objects: list, w: int = 20, h: int = 10) -> dict:
    return {"info": {"width": w, "height": h, "name": f"{name}.jpg"}, "objects": objects}


def square(x1, y1, x2, y2):
    return [[x1, y1], [x2, y1], [x2, y2], [x1, y2]]


def test_read_lerf_ovs_merges_objects_of_one_category(tmp_path):
    objs = [
        {"category": "sheep", "bbox": [2, 1, 5, 4], "segmentation": square(2, 1, 5, 4)},
        {"category": "sheep", "bbox": [15, 6, 12, 8], "segmentation": square(12, 6, 15, 8)},
        {"category": "red apple", "bbox": [8, 2, 10, 3], "segmentation": square(8, 2, 10, 3)},
    ]
    (tmp_path / "frame_00041.json").write_text(json.dumps(lerf_json("frame_00041", objs)))
    (tmp_path / "frame_00041.jpg").write_bytes(b"")  # images sit beside the labels; ignored
    (tmp_path / "frame_00002.json").write_text(json.dumps(lerf_json("frame_00002", objs[2:])))
    ann = read_lerf_ovs(tmp_path)
    assert list(ann) == ["frame_00002", "frame_00041"]
    sheep = ann["frame_00041"]["sheep"]
    assert sheep.mask.shape == (10, 20) and sheep.mask.dtype == bool
    expected = np.zeros((10, 20), bool)
    expected[1:5, 2:6] = True  # fillPoly includes the polygon's boundary pixels
    expected[6:9, 12:16] = True
    np.testing.assert_array_equal(sheep.mask, expected)
    np.testing.assert_array_equal(sheep.boxes, [[2, 1, 5, 4], [12, 6, 15, 8]])  # corners ordered
    assert set(ann["frame_00041"]) == {"sheep", "red apple"}
    mask, boxes = ann["frame_00002"]["red apple"]  # unpacks as (mask, boxes)
    assert mask.sum() == 3 * 2 and boxes.shape == (1, 4)


def test_read_labelme_polygons_and_rectangles(tmp_path):
    data = {
        "imageWidth": 12,
        "imageHeight": 8,
        "imagePath": "frame_00001.jpg",
        "shapes": [
            {"label": "cup", "points": square(1, 1, 3, 3), "shape_type": "polygon"},
            {"label": "cup", "points": [[1, 1], [4, 4]], "shape_type": "rectangle"},
            {"label": "book", "points": [[6, 2], [9, 5]], "shape_type": "rectangle"},
        ],
    }
    path = tmp_path / "frame_00001.json"
    path.write_text(json.dumps(data))
    ann = read_lerf_ovs_file(path)
    assert ann["cup"].mask.sum() == 9  # polygon 3x3 fills the mask
    np.testing.assert_array_equal(ann["cup"].boxes, [[1, 1, 4, 4]])  # explicit rectangle is the box
    assert ann["book"].mask[2:6, 6:10].all() and ann["book"].mask.sum() == 16


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "cannot read"),
        (json.dumps({"foo": 1}), "neither"),
        (json.dumps(lerf_json("f", [{"category": "a", "segmentation": [[1, 1], [2, 2]]}])), "at least 3"),
        (json.dumps(lerf_json("f", [{"category": "a", "bbox": [1, 2], "segmentation": square(1, 1, 3, 3)}])), "bbox"),
        (json.dumps({"info": {"width": 5}, "objects": []}), "image size"),
        (json.dumps({"imageWidth": 5, "imageHeight": 5, "shapes": [{"label": "a", "points": [[0, 0]], "shape_type": "circle"}]}), "shape_type"),
    ],
)
def test_malformed_lerf_files_raise_data_error_naming_the_file(tmp_path, content, message):
    path = tmp_path / "frame_00003.json"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as err:
        read_lerf_ovs(tmp_path)
    assert "frame_00003.json" in str(err.value)


def test_read_lerf_ovs_empty_dir(tmp_path):
    with pytest.raises(DataError, match="no \\*.json"):
        read_lerf_ovs(tmp_path)


def write_mask(path, mask, scale=255):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((mask * scale).astype(np.uint8)).save(path)


def test_read_3dovs(tmp_path):
    seg = tmp_path / "bed" / "segmentations"
    seg.mkdir(parents=True)
    (seg / "classes.txt").write_text("banana\nwhite sheet\n\nred bag\n")
    a = np.zeros((6, 7), bool)
    a[1:3, 2:5] = True
    write_mask(seg / "00" / "banana.png", a)
    write_mask(seg / "00" / "white sheet.png", ~a, scale=1)  # 0/1-valued mask
    write_mask(seg / "10" / "red bag.png", a)
    write_mask(seg / "2" / "banana.png", a)
    ann = read_3dovs(tmp_path / "bed")  # the scene dir works as well as segmentations/
    assert list(ann) == ["2", "00", "10"]  # numeric-ish order: shorter names first
    np.testing.assert_array_equal(ann["00"]["banana"].mask, a)
    np.testing.assert_array_equal(ann["00"]["white sheet"].mask, ~a)
    np.testing.assert_array_equal(ann["00"]["banana"].boxes, [[2, 1, 4, 2]])
    assert set(ann["10"]) == {"red bag"}
    assert read_3dovs(seg).keys() == ann.keys()


def test_read_3dovs_errors(tmp_path):
    with pytest.raises(DataError, match="classes.txt"):
        read_3dovs(tmp_path)
    (tmp_path / "classes.txt").write_text("cat\n")
    write_mask(tmp_path / "0" / "dog.png", np.ones((3, 3), bool))
    with pytest.raises(DataError, match="none of its masks"):
        read_3dovs(tmp_path)
    write_mask(tmp_path / "0" / "cat.png", np.ones((3, 3), bool))
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    write_mask(tmp_path / "0" / "dog.png", np.ones((4, 3), bool))
    with pytest.raises(DataError, match="differs"):
        read_3dovs(tmp_path)
