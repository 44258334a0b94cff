"""Property-based fuzzing of every reader of user and scene files (hypothesis).

Each target starts from a valid file (or set of files) in a small workspace, applies
random mutations (JSON values replaced, keys dropped or added, header lines and
tokens changed, bytes truncated or flipped) and calls the loader.  The loader must
either return valid typed data or raise ``langfield.types.LangfieldError``; any other
exception (or accepted-but-invalid data) fails the test.

Targets: ``transforms.json`` (``load_dataset`` + ``load_split_views``), ``labels.json``,
``cameras.json`` (``scene.load_cameras``), ``config.json`` (``scene.load_scene_config`` +
``SceneConfig.from_dict``), COLMAP text models (``read_colmap``), LLFF ``poses_bounds.npy``,
3DGS PLY files (``gaussians.ply.load_ply``), dataset point clouds
(``sources.points.read_ply_points``) and COLMAP ``points3D.txt`` files.

CI runs ``FUZZ_EXAMPLES`` (default 150) derandomized examples per target;
``scripts/fuzz_loaders.py`` imports ``TARGETS`` and ``build_workspace`` from here for
long runs that count outcomes instead of failing.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from langfield.types import Capture, Frame, Label, LangfieldError

SIDE = 16  # the smallest image size views may be loaded at (sources.validate.MIN_VIEW_SIDE)
N_FRAMES = 4
FUZZ_EXAMPLES = int(os.environ.get("LANGFIELD_FUZZ_EXAMPLES", "150"))

# --------------------------------------------------------------------------- values a mutation may put somewhere

NASTY_NUMBERS = [0, -1, 1, 2, 0.5, 1.5, -0.0, 1e-300, 1e300, -1e300, 1e6, 2**31, 2**63, 2**64 + 1, 10**400,
                 float("nan"), float("inf"), -float("inf"), 16, 15, 8, 3.14159, 1e-9]
FILE_NAMES = ["images/0.png", "images/1.png", "depth/0.png", "semantics/0.png", "points3d.ply", "labels.json",
              "transforms.json", "", ".", "..", "/", "/dev/null", "/dev/zero", "images", "images/missing.png",
              "./images/0", "images\\0.png", "0", "1.png", "../outside.png"]
TRANSFORMS_KEYS = ["frames", "fl_x", "fl_y", "cx", "cy", "w", "h", "k1", "k2", "k3", "k4", "p1", "p2",
                   "camera_model", "camera_angle_x", "camera_angle_y", "depth_unit_scale_factor", "ply_file_path",
                   "train_filenames", "val_filenames", "test_filenames", "file_path", "transform_matrix",
                   "depth_file_path", "semantics_path", "part", "whole", "cameras", "K", "c2w", "name", "split",
                   "width", "height", "version", "train", "language", "data", "iterations", "background",
                   "downscale", "eval_every", "sh_degree", "finished", "lr", "strategy"]
STRINGS = ["PINHOLE", "OPENCV", "SIMPLE_RADIAL", "RADIAL", "FISHEYE", "train", "eval", "black", "white", "random",
           "garbage", "", "1", "nan", "\u00e9\u4e2d", "\x00"]

json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(),
    st.sampled_from(NASTY_NUMBERS), st.sampled_from(FILE_NAMES), st.sampled_from(STRINGS), st.text(max_size=6),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.sampled_from(TRANSFORMS_KEYS) | st.text(max_size=5),
                                                                inner, max_size=4),
    max_leaves=12,
)
TOKENS = ["0", "-1", "1", "2", "3", "16", "0.5", "1e308", "1e-300", "nan", "inf", "-inf", "99999999999999999999",
          "-99999999999999999999", "x", "", "PINHOLE", "OPENCV", "SIMPLE_RADIAL", "RADIAL", "FULL_OPENCV", "FOV",
          "CAMERA", "0.png", "missing.png", "1e6", "#", "float", "double", "uchar", "int", "list", "vertex", "face",
          "property", "element", "ascii", "binary_little_endian", "binary_big_endian", "f_dc_0", "opacity", "lang_0",
          "f_rest_0", "f_rest_44", "scale_0", "rot_3", "red", "z", "end_header", "format", "comment", "\xff"]


def _slots(node: Any, out: list) -> list:
    """Every (container, key) pair of a JSON document, depth first."""
    if isinstance(node, dict):
        for k in list(node):
            out.append((node, k))
            _slots(node[k], out)
    elif isinstance(node, list):
        for i in range(len(node)):
            out.append((node, i))
            _slots(node[i], out)
    return out


def _containers(node: Any, out: list) -> list:
    if isinstance(node, (dict, list)):
        out.append(node)
        for v in (node.values() if isinstance(node, dict) else node):
            _containers(v, out)
    return out


@st.composite
def byte_damage(draw, data: bytes) -> bytes:
    """Usually nothing; else truncate, flip a byte, splice in junk or nest deeply."""
    kind = draw(st.sampled_from(["none"] * 6 + ["truncate", "flip", "splice", "deep"]))
    if kind == "none" or not data:
        return data
    pos = draw(st.integers(0, len(data) - 1))
    if kind == "truncate":
        return data[:pos]
    if kind == "flip":
        return data[:pos] + bytes([data[pos] ^ draw(st.integers(1, 255))]) + data[pos + 1:]
    if kind == "splice":
        return data[:pos] + draw(st.binary(min_size=1, max_size=8)) + data[pos:]
    return data[:pos] + b"[" * 50_000 + data[pos:]


@st.composite
def mutated_json(draw, base: Any) -> bytes:
    """``base`` with 1..4 structural mutations, serialised (NaN/Infinity allowed), maybe byte-damaged."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["set", "set", "set", "delete", "insert", "dup", "root"]))
        slots = _slots(doc, [])
        if op == "root":
            doc = draw(json_value)
        elif op in ("set", "delete", "dup") and slots:
            parent, key = draw(st.sampled_from(slots))
            if op == "set":
                parent[key] = draw(json_value | st.sampled_from([copy.deepcopy(v) for _, v in slots[:40]]))
            elif op == "delete":
                del parent[key]
            elif isinstance(parent, list):
                parent.insert(key, copy.deepcopy(parent[key]))
        elif op == "insert":
            conts = _containers(doc, [])
            if conts:
                target = draw(st.sampled_from(conts))
                if isinstance(target, dict):
                    target[draw(st.sampled_from(TRANSFORMS_KEYS))] = draw(json_value)
                else:
                    target.append(draw(json_value))
    return draw(byte_damage(json.dumps(doc, allow_nan=True).encode()))


@st.composite
def mutated_lines(draw, text: str) -> bytes:
    """Line / token mutations of a text file (COLMAP models, PLY headers), maybe byte-damaged."""
    lines = text.splitlines()
    for _ in range(draw(st.integers(1, 3))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["token", "token", "token", "drop_token", "add_token", "del_line", "dup_line",
                                   "swap", "junk_line"]))
        toks = lines[i].split(" ")
        if op == "token":
            toks[draw(st.integers(0, len(toks) - 1))] = draw(st.sampled_from(TOKENS) | st.text(max_size=4))
        elif op == "drop_token" and len(toks) > 1:
            del toks[draw(st.integers(0, len(toks) - 1))]
        elif op == "add_token":
            toks.insert(draw(st.integers(0, len(toks))), draw(st.sampled_from(TOKENS)))
        elif op == "del_line":
            del lines[i]
            continue
        elif op == "dup_line":
            lines.insert(i, lines[i])
            continue
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
            continue
        elif op == "junk_line":
            lines.insert(i, " ".join(draw(st.lists(st.sampled_from(TOKENS), max_size=6))))
            continue
        lines[i] = " ".join(toks)
    return draw(byte_damage(("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")))


# --------------------------------------------------------------------------- the workspace: one valid file per target


def _png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def build_workspace(root: Path) -> Path:
    """Valid inputs for every target under ``root``: a nerfstudio dataset (depth, semantics, labels, points),
    a COLMAP text model over the same images, an LLFF scene, and scene files (cameras, config, PLY)."""
    from plyfile import PlyData, PlyElement

    from langfield.gaussians.params import create_params
    from langfield.gaussians.ply import save_ply
    from langfield.scene import SceneCamera, save_cameras

    rng = np.random.default_rng(0)
    ns = root / "ns"
    frames = []
    for i in range(N_FRAMES):
        _png(ns / f"images/{i}.png", rng.integers(0, 255, (SIDE, SIDE, 3), dtype=np.uint8))
        _png(ns / f"depth/{i}.png", rng.integers(500, 3000, (SIDE, SIDE), dtype=np.uint16))
        _png(ns / f"semantics/{i}.png", rng.integers(0, 3, (SIDE, SIDE), dtype=np.uint16))
        c2w = np.eye(4)
        c2w[:3, 3] = [0.2 * i, 0.0, 0.0]
        frames.append({"file_path": f"images/{i}.png", "transform_matrix": c2w.tolist(),
                       "depth_file_path": f"depth/{i}.png", "semantics_path": f"semantics/{i}.png"})
    frames[1]["fl_x"] = 15.0  # a per-frame intrinsic
    transforms = {"camera_model": "OPENCV", "fl_x": 14.0, "fl_y": 14.5, "cx": 8.0, "cy": 8.0, "w": SIDE, "h": SIDE,
                  "k1": 0.01, "k2": -0.001, "p1": 0.0005, "p2": 0.0, "depth_unit_scale_factor": 0.001,
                  "ply_file_path": "points3d.ply", "train_filenames": [f["file_path"] for f in frames[1:]],
                  "test_filenames": [frames[0]["file_path"]], "frames": frames}
    (ns / "transforms.json").write_text(json.dumps(transforms))
    (ns / "labels.json").write_text(json.dumps({"1": {"part": "leg", "whole": "table"}, "2": "lamp"}))
    pts = np.zeros(5, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    pts["x"] = np.arange(5)
    PlyData([PlyElement.describe(pts, "vertex")]).write(str(ns / "points3d.ply"))
    PlyData([PlyElement.describe(pts, "vertex")], text=True).write(str(root / "points_ascii.ply"))

    col = root / "colmap"
    shutil.copytree(ns / "images", col / "images")
    model = col / "sparse" / "0"
    model.mkdir(parents=True)
    (model / "cameras.txt").write_text("# cams\n1 OPENCV 16 16 14 14.5 8 8 0.01 -0.001 0.0005 0\n2 PINHOLE 16 16 15 15 8 8\n")
    (model / "rigs.txt").write_text("1 1 CAMERA 1\n2 1 CAMERA 2\n")
    img_lines, frame_lines = [], []
    for i in range(N_FRAMES):
        cam = 1 + i % 2
        img_lines.append(f"{i + 1} 1 0 0 0 {-0.2 * i} 0 0 {cam} {i}.png\n\n")
        frame_lines.append(f"{i + 1} {cam} 1 0 0 0 {-0.2 * i} 0 0 1 CAMERA {cam} {i + 1}\n")
    (model / "images.txt").write_text("".join(img_lines))
    (model / "frames.txt").write_text("".join(frame_lines))
    (model / "points3D.txt").write_text("1 1 2 3 255 0 0 -1\n2 0.5 0.1 4 0 128 255 0.5\n")

    llff = root / "llff"
    shutil.copytree(ns / "images", llff / "images")
    rows = []
    for i in range(N_FRAMES):
        m = np.zeros((3, 5))
        m[:, :3] = np.array([[0, 1, 0], [1, 0, 0], [0, 0, -1]])  # [down, right, back] columns of the identity
        m[:, 3] = [0.2 * i, 0, 0]
        m[:, 4] = [SIDE, SIDE, 14.0]
        rows.append(np.concatenate([m.reshape(-1), [0.5, 10.0]]))
    np.save(llff / "poses_bounds.npy", np.array(rows))

    scene = root / "scene"
    scene.mkdir()
    K = np.array([[14.0, 0, 8], [0, 14, 8], [0, 0, 1]])
    save_cameras(scene / "cameras.json", [SceneCamera(f"{i}.png", "train" if i else "eval", SIDE, SIDE, K, np.eye(4))
                                          for i in range(3)])
    (scene / "config.json").write_text(json.dumps({
        "version": 1, "data": str(ns), "capture_kind": "nerfstudio", "finished": True, "iterations": 10,
        "num_gaussians": 6, "scene_scale": 1.0, "train": {"iterations": 10, "background": "black", "downscale": 1,
                                                          "eval_every": 8, "sh_degree": 1, "lr": {"means": 0.00016}},
        "language": {"num_levels": 2, "latent_dim": 3}}))
    g = torch.Generator().manual_seed(0)
    params = create_params(torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g) - 3,
                           torch.randn(6, 4, generator=g), torch.randn(6, generator=g),
                           torch.rand(6, 1, 3, generator=g), torch.zeros(6, 3, 3), latents=torch.randn(6, 2, generator=g))
    save_ply(scene / "point_cloud.ply", params)
    # Loaders overwrite the working files case after case; strategies read these untouched copies.
    pristine = root / "pristine"
    for d in ("ns", "colmap", "llff", "scene"):
        shutil.copytree(root / d, pristine / d)
    shutil.copyfile(root / "points_ascii.ply", pristine / "points_ascii.ply")
    return root


# --------------------------------------------------------------------------- what "valid typed data" means


def _check_capture(cap: Capture) -> None:
    from langfield.sources.validate import check_intrinsics

    assert isinstance(cap, Capture) and cap.frames and cap.train_ids
    n = len(cap.frames)
    for ids in (cap.train_ids, cap.eval_ids):
        assert all(isinstance(i, int) and 0 <= i < n for i in ids) and list(ids) == sorted(set(ids))
    for f in cap.frames:
        assert isinstance(f, Frame) and isinstance(f.name, str) and f.image_path.is_file()
        check_intrinsics(f.intrinsics, "accepted frame")  # a LangfieldError here fails the test: it was accepted
        assert f.c2w is not None and f.c2w.shape == (4, 4) and np.isfinite(f.c2w).all()
        assert math.isfinite(f.depth_scale) and f.depth_scale > 0
    if cap.points is not None:
        assert cap.points.dtype == np.float32 and cap.points.ndim == 2 and cap.points.shape[1] == 3
        assert np.isfinite(cap.points).all()
        assert cap.point_colors is not None and cap.point_colors.shape == cap.points.shape
        assert cap.point_colors.dtype == np.uint8
    if cap.labels is not None:
        assert all(isinstance(k, int) and isinstance(v, Label) for k, v in cap.labels.items())
    assert math.isfinite(cap.scene_scale) and cap.scene_scale > 0


def _check_views(cap: Capture) -> None:
    from langfield.sources import load_split_views

    train, evals = load_split_views(cap)
    assert len(train) == len(cap.train_ids) and len(evals) == len(cap.eval_ids)
    for v in [*train, *evals]:
        assert v.rgb is not None and v.rgb.shape == (v.height, v.width, 3) and v.rgb.dtype == torch.float32
        assert bool(torch.isfinite(v.rgb).all()) and float(v.rgb.min()) >= 0 and float(v.rgb.max()) <= 1
        if v.depth is not None:
            assert v.depth.shape == (v.height, v.width, 1) and bool((v.depth >= 0).all())
        if v.semantics is not None:
            assert v.semantics.shape == (v.height, v.width) and v.semantics.dtype == torch.int64


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def run_transforms(case: bytes, ws: Path) -> None:
    from langfield.sources import load_dataset

    _write(ws / "ns" / "transforms.json", case)
    cap = load_dataset(ws / "ns")
    _check_capture(cap)
    _check_views(cap)


def run_labels(case: bytes, ws: Path) -> None:
    from langfield.sources.jsonio import read_labels

    labels = read_labels(_write(ws / "labels_fuzz.json", case))
    assert all(isinstance(k, int) and 0 <= k <= 65535 and isinstance(v, Label) and isinstance(v.part, str)
               and isinstance(v.whole, str) for k, v in labels.items())


def run_cameras(case: bytes, ws: Path) -> None:
    from langfield.scene import SceneCamera, load_cameras

    cams = load_cameras(_write(ws / "cameras_fuzz.json", case))
    assert isinstance(cams, list)
    for c in cams:
        assert isinstance(c, SceneCamera) and isinstance(c.name, str) and isinstance(c.split, str)
        assert isinstance(c.width, int) and isinstance(c.height, int)
        assert c.K.shape == (3, 3) and c.c2w.shape == (4, 4) and c.K.dtype == c.c2w.dtype == np.float64


def run_config(case: bytes, ws: Path) -> None:
    from langfield.scene import load_scene_config
    from langfield.scene_config import SceneConfig

    d = ws / "config_fuzz"
    d.mkdir(exist_ok=True)
    _write(d / "config.json", case)
    cfg = SceneConfig.from_dict(load_scene_config(d), d / "config.json")
    assert isinstance(cfg, SceneConfig)
    assert cfg.train.background in ("black", "white", "random") and cfg.train.downscale >= 1


COLMAP_FILES = ("cameras.txt", "images.txt", "points3D.txt", "frames.txt", "rigs.txt")


def run_colmap(case: tuple[str, bytes], ws: Path) -> None:
    from langfield.sources import load_capture

    name, data = case
    src, dst = ws / "colmap", ws / "colmap_fuzz"
    model = dst / "sparse" / "0"
    if not dst.exists():
        shutil.copytree(src, dst)
    for f in COLMAP_FILES:
        shutil.copyfile(src / "sparse" / "0" / f, model / f)
    _write(model / name, data)
    _check_capture(load_capture(dst, kind="colmap"))


def run_llff(case: bytes, ws: Path) -> None:
    from langfield.sources import load_capture

    _write(ws / "llff" / "poses_bounds.npy", case)
    _check_capture(load_capture(ws / "llff", kind="llff"))


def run_gaussian_ply(case: bytes, ws: Path) -> None:
    from langfield.gaussians.ply import load_ply

    params = load_ply(_write(ws / "gaussians_fuzz.ply", case))
    n = params["means"].shape[0]
    assert params["means"].shape == (n, 3) and params["quats"].shape == (n, 4)
    assert all(t.dtype == torch.float32 and t.shape[0] == n for t in params.values())


def run_points_ply(case: bytes, ws: Path) -> None:
    from langfield.sources.points import read_ply_points

    xyz, rgb = read_ply_points(_write(ws / "points_fuzz.ply", case))
    assert xyz.dtype == np.float32 and xyz.ndim == 2 and xyz.shape[1] == 3 and np.isfinite(xyz).all()
    assert rgb.dtype == np.uint8 and rgb.shape == xyz.shape


def run_points3d_txt(case: bytes, ws: Path) -> None:
    from langfield.sources.points import read_colmap_points

    xyz, rgb = read_colmap_points(_write(ws / "points3D.txt", case))
    assert xyz.dtype == np.float32 and xyz.shape[1:] == (3,) and np.isfinite(xyz).all()
    assert rgb.dtype == np.uint8 and rgb.shape == xyz.shape


# --------------------------------------------------------------------------- strategies built from the workspace


def _json_of(path: Path) -> Any:
    return json.loads(path.read_text())


def _colmap_case(ws: Path) -> st.SearchStrategy:
    model = ws / "pristine" / "colmap" / "sparse" / "0"
    texts = {name: (model / name).read_text() for name in COLMAP_FILES}
    return st.sampled_from(COLMAP_FILES).flatmap(lambda name: st.tuples(st.just(name), mutated_lines(texts[name])))


def _llff_case(ws: Path) -> st.SearchStrategy:
    return _llff_mutation(np.load(ws / "pristine" / "llff" / "poses_bounds.npy"))


@st.composite
@np.errstate(all="ignore")
def _llff_mutation(draw, base: np.ndarray) -> bytes:
    import io

    pb = base.copy()
    kind = draw(st.sampled_from(["values", "values", "values", "shape", "dtype", "bytes"]))
    if kind == "values":
        for _ in range(draw(st.integers(1, 4))):
            r, c = draw(st.integers(0, pb.shape[0] - 1)), draw(st.integers(0, pb.shape[1] - 1))
            pb[r, c] = draw(st.sampled_from([float(x) for x in NASTY_NUMBERS if not isinstance(x, int) or abs(x) < 1e300])
                            | st.floats())
    elif kind == "shape":
        pb = pb.reshape(-1)[: draw(st.integers(0, pb.size))]
        pb = pb.reshape(draw(st.sampled_from([(-1,), (1, -1), (-1, 1)]))) if pb.size else pb
    elif kind == "dtype":
        pb = pb.astype(draw(st.sampled_from(["float16", "float32", "int8", "uint16", "complex64", "bool"])))
    buf = io.BytesIO()
    np.save(buf, pb)
    data = buf.getvalue()
    return draw(byte_damage(data)) if kind == "bytes" else data


def _ply_case(path: Path) -> st.SearchStrategy:
    return _ply_mutation(path.read_bytes())


@st.composite
def _ply_mutation(draw, raw: bytes) -> bytes:
    head, sep, body = raw.partition(b"end_header\n")
    new_head = draw(mutated_lines(head.decode("latin-1")))
    tail = body
    op = draw(st.sampled_from(["keep", "keep", "truncate", "extend", "flip"]))
    if op == "truncate" and body:
        tail = body[: draw(st.integers(0, len(body) - 1))]
    elif op == "extend":
        tail = body + draw(st.binary(min_size=1, max_size=64))
    elif op == "flip" and body:
        i = draw(st.integers(0, len(body) - 1))
        tail = body[:i] + bytes([body[i] ^ 0xFF]) + body[i + 1:]
    return new_head + sep + tail


@dataclass(frozen=True)
class Target:
    """One fuzzed loader: ``strategy(workspace)`` draws a case, ``run(case, workspace)`` loads it."""

    strategy: Callable[[Path], st.SearchStrategy]
    run: Callable[[Any, Path], None]


TARGETS: dict[str, Target] = {
    "transforms.json": Target(lambda ws: mutated_json(_json_of(ws / "pristine/ns/transforms.json")), run_transforms),
    "labels.json": Target(lambda ws: mutated_json(_json_of(ws / "pristine/ns/labels.json")), run_labels),
    "cameras.json": Target(lambda ws: mutated_json(_json_of(ws / "pristine/scene/cameras.json")), run_cameras),
    "config.json": Target(lambda ws: mutated_json(_json_of(ws / "pristine/scene/config.json")), run_config),
    "colmap text model": Target(_colmap_case, run_colmap),
    "poses_bounds.npy": Target(_llff_case, run_llff),
    "gaussians PLY": Target(lambda ws: _ply_case(ws / "pristine/scene/point_cloud.ply"), run_gaussian_ply),
    "points PLY": Target(lambda ws: st.one_of(_ply_case(ws / "pristine/ns/points3d.ply"),
                                              _ply_case(ws / "pristine/points_ascii.ply")), run_points_ply),
    "points3D.txt": Target(lambda ws: mutated_lines((ws / "pristine/colmap/sparse/0/points3D.txt").read_text()),
                           run_points3d_txt),
}
PRISTINE = {  # the unmutated input of each target, relative to the workspace
    "transforms.json": "ns/transforms.json", "labels.json": "ns/labels.json", "cameras.json": "scene/cameras.json",
    "config.json": "scene/config.json", "colmap text model": "colmap/sparse/0/cameras.txt",
    "poses_bounds.npy": "llff/poses_bounds.npy", "gaussians PLY": "scene/point_cloud.ply",
    "points PLY": "ns/points3d.ply", "points3D.txt": "colmap/sparse/0/points3D.txt",
}


def classify(target: Target, case: Any, ws: Path) -> str:
    """'accepted' or 'clean' (a LangfieldError); anything else propagates."""
    try:
        target.run(case, ws)
    except LangfieldError:
        return "clean"
    return "accepted"


# --------------------------------------------------------------------------- the tests


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return build_workspace(tmp_path_factory.mktemp("fuzz"))


def test_workspace_inputs_are_accepted_unmutated(workspace):
    """The fuzzers start from valid files: each loader accepts its unmutated input."""
    for name, target in TARGETS.items():
        case: Any = (workspace / "pristine" / PRISTINE[name]).read_bytes()
        if name == "colmap text model":
            case = ("cameras.txt", case)
        assert classify(target, case, workspace) == "accepted", name


def test_fuzz_reaches_both_outcomes(workspace):
    """Sanity of the fuzzer itself: a known-bad mutation is a clean error (not silently accepted)."""
    meta = _json_of(workspace / "pristine/ns/transforms.json")
    meta["test_filenames"][0] = None
    assert classify(TARGETS["transforms.json"], json.dumps(meta).encode(), workspace) == "clean"
    meta = _json_of(workspace / "pristine/ns/transforms.json")
    meta["depth_unit_scale_factor"] = 0
    assert classify(TARGETS["transforms.json"], json.dumps(meta).encode(), workspace) == "clean"


FUZZ_SETTINGS = settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
                         suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("name", list(TARGETS))
def test_loader_returns_valid_data_or_raises_langfield_error(name, workspace):
    target = TARGETS[name]

    @FUZZ_SETTINGS
    @given(target.strategy(workspace))
    def fuzz(case):
        classify(target, case, workspace)

    fuzz()
