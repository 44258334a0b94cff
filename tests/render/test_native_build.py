"""Building and loading the native CPU kernels: cache, locking, missing
compiler, and which rasterizer variant each vector-ISA level gets."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from langfield.render import _build, native
from langfield.render._native_backends import CpuKernels

pytestmark = pytest.mark.skipif(not native.available("cpu"), reason=f"native CPU kernels: {native.build_error('cpu')}")


def _cpu_flags() -> set[str]:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return set(next((ln for ln in info.splitlines() if ln.startswith("flags")), "").split())


def test_missing_compiler_means_unavailable(tmp_path):
    # A fresh process so the cached library of this one is not reused.
    code = (
        "from langfield.render import native, _build; "
        "ok = native.available('cpu'); print(ok); print(native.build_error('cpu'))"
    )
    env = dict(os.environ, CXX="no-such-compiler-xyz", LANGFIELD_CACHE=str(tmp_path))
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    lines = r.stdout.strip().splitlines()
    assert lines[0] == "False", r.stderr
    assert "no-such-compiler-xyz" in lines[1]


def test_concurrent_first_builds_share_one_cache_entry(tmp_path):
    # Two processes building into an empty cache at once: the file lock makes
    # the second wait and load the first one's library.
    code = "from langfield.render import native; print(native.available('cpu'), native.build_error('cpu'))"
    env = dict(os.environ, LANGFIELD_CACHE=str(tmp_path))
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env) for _ in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert all(o.startswith("True") for o, _ in outs), outs
    libs = list(tmp_path.rglob("langfield_cpu_*.so"))
    assert len(libs) == 1
    assert not list(tmp_path.rglob(".build-*"))  # temporary build dirs are cleaned up


def test_build_cache_key_and_sources():
    root = _build.source_root()
    assert root is not None and (root / "include" / "langfield_math.h").is_file()
    assert native.num_threads() >= 1


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64") or not {"avx2", "fma"} <= _cpu_flags(),
                    reason="the half-row rasterizer needs x86 AVX2 + FMA")
def test_isa_levels_pick_the_rasterizer_variant():
    """With AVX2 + FMA the half-row kernels serve 16-pixel tiles; a generic
    build (LANGFIELD_CPU_ISA=generic) keeps the Gaussian-major ones.  The
    parity tests run on both builds (test_native_cpu.py's cpu_build)."""
    assert CpuKernels(_build.cpu_library("avx2")).raster_variant() == "half-row"
    assert CpuKernels(_build.cpu_library("generic")).raster_variant() == "gaussian-major"
    assert "-mavx2" in _build._cpu_isa_flags("avx2") and not _build._cpu_isa_flags("generic")
    if {"avx512f", "avx512vl", "avx512bw", "avx512dq"} <= _cpu_flags():
        assert "-mavx512vl" in _build._cpu_isa_flags("auto")
    assert "-mavx512vl" not in _build._cpu_isa_flags("avx2")


def test_unknown_isa_level_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("LANGFIELD_CPU_ISA", "avx9000")
    with pytest.raises(ValueError, match="LANGFIELD_CPU_ISA='avx9000'"):
        _build._cpu_isa_flags()


def test_unknown_isa_level_reaches_the_user(tmp_path):
    """Asking for the native CPU backend with a bad LANGFIELD_CPU_ISA fails with
    the variable named, not a bare "unavailable"."""
    code = (
        "import torch\n"
        "from langfield.render.backend import resolve_backend\n"
        "try:\n"
        "    resolve_backend('cpu', 'cpu')\n"
        "except Exception as exc:\n"
        "    print(exc)\n"
    )
    env = dict(os.environ, LANGFIELD_CPU_ISA="avx9000", LANGFIELD_CACHE=str(tmp_path))
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert "LANGFIELD_CPU_ISA='avx9000'" in r.stdout, (r.stdout, r.stderr)
