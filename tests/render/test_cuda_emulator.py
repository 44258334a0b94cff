"""The CUDA-on-CPU emulator itself (cuda/emu): semantics and misuse detection.

test_native_cuda.py trusts the emulator to run the CUDA kernels as a GPU
would; this checks that trust on small kernels with known answers
(tests/render/emu/selftest.cu): warp shuffles with segment widths, ballots,
block barriers with reductions, static and dynamic shared memory, grid and
block indices, atomics, and that each undefined-behaviour case stops the
launch with an error.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

from langfield.render import _build

CASES = {
    "shuffles_ballot_any_all",
    "block_barriers_shared_memory",
    "grid_block_thread_indices_atomics",
    "error_barrier_after_return",
    "error_partial_warp_full_mask",
    "error_divergent_collectives",
    "error_mask_without_caller",
    "error_exited_lane_in_mask",
    "recovers_after_errors",
}

pytestmark = pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="emulator is x86-64 only")


def test_emulator_selftest(tmp_path):
    root = _build.source_root()
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        pytest.skip("no C++ compiler")
    exe = tmp_path / "selftest"
    here = Path(__file__).with_name("emu") / "selftest.cu"
    cmd = [cxx, "-std=c++17", "-O1", "-I", str(root / "emu" / "shim"), "-x", "c++", str(here), "-x", "none",
           str(root / "emu" / "runtime.cpp"), "-o", str(exe)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    results = dict(line.split(" ", 1) for line in r.stdout.strip().splitlines())
    assert set(results) == CASES, r.stdout + r.stderr
    bad = {k: v for k, v in results.items() if v != "ok"}
    assert not bad, bad
    assert r.returncode == 0
