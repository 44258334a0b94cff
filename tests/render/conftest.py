"""Shared rasterizer test helpers and the test-only backends.

tests/ is not a package (pytest --import-mode=importlib), so these files are
loaded here once, by path, and registered as modules the tests import:

* ``langfield_test_native_common``: test_native_common.py, the CPU and CUDA tests' helpers;
* ``langfield_test_brute``: brute.py, the brute-force compositor (the tiled reference's check);
* ``langfield_test_cuda_emu``: cuda_emu.py, the CUDA kernels run on the CPU by the emulator.
"""

import importlib.util
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
for _name, _file in (
    ("langfield_test_native_common", "test_native_common.py"),
    ("langfield_test_brute", "brute.py"),
    ("langfield_test_cuda_emu", "cuda_emu.py"),
):
    if _name not in sys.modules:
        _spec = importlib.util.spec_from_file_location(_name, _HERE / _file)
        _mod = importlib.util.module_from_spec(_spec)
        sys.modules[_name] = _mod
        _spec.loader.exec_module(_mod)
