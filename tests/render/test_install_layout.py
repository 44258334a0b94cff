"""A non-editable install (wheel) carries the kernel sources and builds the CPU kernels from them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import sys, torch, langfield
from langfield.render import _build, render
root = _build.source_root()
assert str(root).startswith(sys.argv[1]), (langfield.__file__, root)
g = torch.Generator().manual_seed(0)
n = 40
means = torch.randn(n, 3, generator=g) * 0.3
means[:, 2] += 3
args = (means, torch.randn(n, 4, generator=g), torch.rand(n, 3, generator=g) * 0.1 + 0.02,
        torch.rand(n, generator=g), torch.eye(4)[None],
        torch.tensor([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]])[None], 64, 48)
colors = torch.rand(n, 3, generator=g)
native = render(*args, colors=colors, backend="cpu")
ref = render(*args, colors=colors, backend="torch")
err = float((native.rgb - ref.rgb).abs().max())
assert err < 1e-5 and float(native.alpha.sum()) > 1.0, err
import langfield.viewer.core  # packaged from viewer/ (viser not needed)
assert langfield.viewer.core.__file__.startswith(sys.argv[1]), langfield.viewer.core.__file__
print("ok", root)
"""


@pytest.mark.skipif(shutil.which("c++") is None, reason="no C++ compiler")
def test_wheel_install_builds_cpu_kernels_from_packaged_sources(tmp_path):
    wheel_dir, target, cache = tmp_path / "wheel", tmp_path / "site", tmp_path / "cache"
    pip = [sys.executable, "-m", "pip"]
    # build from a copy: setuptools writes build/ and egg-info into the source tree
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for name in ("langfield", "cuda", "viewer"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.so", "_csrc"))
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheel_dir), str(src)],
                   check=True, capture_output=True, cwd=tmp_path)
    (whl,) = wheel_dir.glob("langfield-*.whl")
    names = set(zipfile.ZipFile(whl).namelist())
    for src in ("include/langfield_math.h", "cpu/rasterize.cpp", "cuda/rasterize.cu"):
        assert f"langfield/_csrc/{src}" in names, src
    # the viewer's source lives in the top-level viewer/ and is packaged as langfield.viewer
    assert {"langfield/viewer/__init__.py", "langfield/viewer/server.py"} <= names
    subprocess.run([*pip, "install", "--no-deps", "-q", "--target", str(target), str(whl)],
                   check=True, capture_output=True)
    # a fresh kernel cache, and a working directory outside the repository
    env = {**os.environ, "PYTHONPATH": str(target), "LANGFIELD_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(target)], env=env, capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("ok") and any(cache.rglob("langfield_cpu_*.so"))
