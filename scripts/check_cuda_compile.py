"""Compile every CUDA kernel file with nvcc for sm_80 and sm_90 (no GPU needed).

Catches compile errors in cuda/cuda/*.cu on machines without a GPU (CI).
Objects go to a temporary directory; prints a JSON summary and exits
non-zero when any compile fails or nvcc is missing.  The torch binding file
(bindings.cpp) is syntax-checked with the host compiler when torch's headers
are found (``--skip-bindings`` turns that off).

    python scripts/check_cuda_compile.py [--arch 80 90] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "cuda"


def find_nvcc() -> str | None:
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    cand = Path(home) / "bin" / "nvcc"
    if cand.is_file():
        return str(cand)
    return shutil.which("nvcc")


def compile_one(nvcc: str, src: Path, archs: list[str], out_dir: Path) -> dict:
    gencode = []
    for a in archs:
        gencode += ["-gencode", f"arch=compute_{a},code=sm_{a}"]
    obj = out_dir / (src.stem + ".o")
    cmd = [nvcc, "-O3", "-std=c++17", "--expt-relaxed-constexpr", *gencode, "-I", str(SRC / "include"), "-c",
           str(src), "-o", str(obj)]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    return {
        "file": str(src.relative_to(ROOT)),
        "ok": r.returncode == 0,
        "seconds": round(time.perf_counter() - t0, 1),
        "errors": (r.stdout + r.stderr).strip().splitlines()[-30:] if r.returncode else [],
    }


def check_bindings(nvcc: str) -> dict:
    """Host-compile bindings.cpp with -fsyntax-only against torch's headers."""
    try:
        from torch.utils import cpp_extension
    except Exception as exc:  # torch missing: nothing to check against
        return {"file": "cuda/cuda/bindings.cpp", "ok": True, "skipped": f"torch not importable: {exc}"}
    import sysconfig

    cuda_inc = str(Path(nvcc).resolve().parents[1] / "include")
    incs = cpp_extension.include_paths() + [sysconfig.get_paths()["include"], cuda_inc, str(SRC / "include")]
    cxx = os.environ.get("CXX", "c++")
    cmd = [cxx, "-std=c++20", "-fsyntax-only", "-DTORCH_EXTENSION_NAME=check", *[f"-I{i}" for i in incs],
           str(SRC / "cuda" / "bindings.cpp")]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    return {
        "file": "cuda/cuda/bindings.cpp",
        "ok": r.returncode == 0,
        "seconds": round(time.perf_counter() - t0, 1),
        "errors": (r.stdout + r.stderr).strip().splitlines()[-30:] if r.returncode else [],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", nargs="+", default=["80", "90"], help="SM versions to compile for")
    ap.add_argument("--jobs", type=int, default=2, help="parallel nvcc processes")
    ap.add_argument("--skip-bindings", action="store_true", help="do not syntax-check bindings.cpp")
    args = ap.parse_args()
    nvcc = find_nvcc()
    if nvcc is None:
        print(json.dumps({"ok": False, "error": "nvcc not found (set CUDA_HOME)"}))
        return 2
    sources = sorted((SRC / "cuda").glob("*.cu"))
    with tempfile.TemporaryDirectory(prefix="lf-nvcc-") as tmp:
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            results = list(pool.map(lambda s: compile_one(nvcc, s, args.arch, Path(tmp)), sources))
    if not args.skip_bindings:
        results.append(check_bindings(nvcc))
    ok = bool(sources) and all(r["ok"] for r in results)
    print(json.dumps({"ok": ok, "nvcc": nvcc, "arch": args.arch, "results": results}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
