"""Shared, cheap fixtures: tiny scenes rendered on the fly (no downloads, a few ms each)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from langfield.gaussians.params import create_params, num_sh_bases, rgb_to_sh0

# tests/ is not a package (--import-mode=importlib): shared helpers are registered by path.
if "langfield_test_helpers" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("langfield_test_helpers", Path(__file__).with_name("helpers.py"))
    _helpers = importlib.util.module_from_spec(_spec)
    sys.modules["langfield_test_helpers"] = _helpers
    _spec.loader.exec_module(_helpers)
from langfield.types import View


def look_at_c2w(eye: np.ndarray, target: np.ndarray, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """OpenCV camera-to-world looking from ``eye`` at ``target`` with world ``up`` towards image top."""
    z = target - eye
    z = z / np.linalg.norm(z)
    x = np.cross(z, np.asarray(up, dtype=float))
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = x, y, z, eye
    return c2w


def ring_cameras(n: int, radius: float = 3.0, height: float = 0.8) -> list[np.ndarray]:
    return [
        look_at_c2w(np.array([radius * math.cos(a), radius * math.sin(a), height]), np.zeros(3))
        for a in np.linspace(0, 2 * math.pi, n, endpoint=False)
    ]


def random_gaussians(n: int, seed: int, sh_degree: int = 1, extent: float = 0.8) -> torch.nn.ParameterDict:
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g) * 2 - 1) * extent
    log_scales = torch.log(torch.rand(n, 3, generator=g) * 0.12 + 0.05)
    quats = torch.randn(n, 4, generator=g)
    opac = torch.logit(torch.rand(n, generator=g) * 0.5 + 0.45)
    sh0 = rgb_to_sh0(torch.rand(n, 1, 3, generator=g))
    shN = torch.zeros(n, num_sh_bases(sh_degree) - 1, 3)
    return create_params(means, log_scales, quats, opac, sh0, shN)


def intrinsics(width: int, height: int) -> torch.Tensor:
    f = 0.9 * width
    return torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])


@torch.no_grad()
def render_views(params: torch.nn.ParameterDict, c2ws: list[np.ndarray], width: int, height: int) -> list[View]:
    """Ground-truth views of ``params`` (torch reference backend, black background)."""
    from langfield.gaussians.params import activate
    from langfield.render import render

    a = activate(params)
    K = intrinsics(width, height)
    views = []
    for i, c2w in enumerate(c2ws):
        vm = torch.from_numpy(np.linalg.inv(c2w)).float()
        out = render(a.means, a.quats, a.scales, a.opacities, vm[None], K[None], width, height,
                     sh_coeffs=a.sh, backgrounds=torch.zeros(1, 3), backend="torch")
        views.append(View(name=f"img_{i:03d}.png", viewmat=vm, K=K.clone(), width=width, height=height,
                          rgb=out.rgb[0].clamp(0, 1), depth=out.depth[0]))
    return views


@pytest.fixture(scope="session")
def tiny_views() -> list[View]:
    """8 views (32x24) of 40 random Gaussians."""
    return render_views(random_gaussians(40, seed=1), ring_cameras(8), 32, 24)


def write_nerfstudio(root: Path, views: list[View], points: np.ndarray | None = None, eval_every: int = 4) -> Path:
    """Write views as a nerfstudio dataset (OpenGL poses, PNG images, explicit split)."""
    from PIL import Image

    from langfield.sources.conventions import opengl_to_opencv_c2w

    (root / "images").mkdir(parents=True, exist_ok=True)
    frames = []
    for i, v in enumerate(views):
        rel = f"images/{v.name}"
        Image.fromarray((v.rgb.numpy() * 255 + 0.5).astype(np.uint8)).save(root / rel)
        c2w = np.linalg.inv(v.viewmat.double().numpy())
        frames.append({"file_path": rel, "transform_matrix": opengl_to_opencv_c2w(c2w).tolist()})
    K = views[0].K
    meta = {
        "fl_x": float(K[0, 0]), "fl_y": float(K[1, 1]), "cx": float(K[0, 2]), "cy": float(K[1, 2]),
        "w": views[0].width, "h": views[0].height, "camera_model": "PINHOLE", "frames": frames,
        "train_filenames": [f["file_path"] for i, f in enumerate(frames) if i % eval_every],
        "test_filenames": [f["file_path"] for i, f in enumerate(frames) if i % eval_every == 0],
    }
    if points is not None:
        from plyfile import PlyData, PlyElement

        arr = np.zeros(len(points), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
        arr["x"], arr["y"], arr["z"] = points.T
        arr["red"] = arr["green"] = arr["blue"] = 128
        PlyData([PlyElement.describe(arr, "vertex")]).write(str(root / "points3d.ply"))
        meta["ply_file_path"] = "points3d.ply"
    (root / "transforms.json").write_text(json.dumps(meta))
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A nerfstudio dataset: 16 views (48x36) of 60 Gaussians, every 4th held out, sparse points."""
    gt = random_gaussians(60, seed=2)
    views = render_views(gt, ring_cameras(16), 48, 36)
    pts = gt["means"].detach().numpy() + np.random.default_rng(0).normal(0, 0.05, (60, 3))
    return write_nerfstudio(tmp_path_factory.mktemp("tiny_ns"), views, points=pts.astype(np.float32))


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory) -> Path:
    """The procedural room at 64x48: 12 training + 4 held-out views, with depth and SfM-like points."""
    from langfield.synthetic import generate_scene

    root = tmp_path_factory.mktemp("synthetic") / "data"
    return generate_scene(root, seed=0, width=64, height=48, n_train=12, n_eval=4).parent


@pytest.fixture(scope="session")
def make_gaussians():
    """``make_gaussians(n, seed, sh_degree=1)`` -> random ParameterDict (test modules must not import conftest)."""
    return random_gaussians
