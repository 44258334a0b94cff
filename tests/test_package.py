"""Process-wide defaults that importing langfield sets."""

import os
import subprocess
import sys


def _env_after_import(env: dict) -> tuple[str, str]:
    code = "import langfield, os; print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    spin, policy = out.stdout.split()
    return spin, policy


def test_import_bounds_openmp_spinning_unless_user_chose():
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    assert _env_after_import(env) == ("10000", "None")
    assert _env_after_import({**env, "GOMP_SPINCOUNT": "500"}) == ("500", "None")
    assert _env_after_import({**env, "OMP_WAIT_POLICY": "PASSIVE"}) == ("None", "PASSIVE")
