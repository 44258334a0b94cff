"""Shared native-kernel test helpers.

tests/ is not a package (pytest --import-mode=importlib), so the helpers in
test_native_common.py are loaded here once, by path, and registered as the
module ``langfield_test_native_common`` that the CPU and CUDA tests import.
"""

import importlib.util
import sys
from pathlib import Path

_NAME = "langfield_test_native_common"
if _NAME not in sys.modules:
    _spec = importlib.util.spec_from_file_location(_NAME, Path(__file__).with_name("test_native_common.py"))
    _mod = importlib.util.module_from_spec(_spec)
    sys.modules[_NAME] = _mod
    _spec.loader.exec_module(_mod)
