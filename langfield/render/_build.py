"""Just-in-time build of the native kernels (CPU always, CUDA when possible).

* CPU: the C++/OpenMP sources have a plain C ABI (``cuda/cpu/capi.cpp``) and
  no torch headers, so they are compiled directly with the system C++
  compiler into a shared library loaded with ``ctypes`` (a few seconds to
  build, no dependence on torch's C++ ABI).
* CUDA: built with ``torch.utils.cpp_extension.load`` (needs torch's headers
  for streams and the caching allocator).
* cuda-emu (tests): the CUDA sources compiled as C++ against the emulator in
  ``cuda/emu`` (see cuda/README.md), with the CPU library's C ABI.

Both go into a cache directory keyed by a hash of the sources, the flags and
(for CUDA) the torch version, so an edited tree never loads a stale binary.
A file lock serialises concurrent builders (pytest workers, two CLIs) and
the library is moved into place atomically.

Environment:

* ``LANGFIELD_CACHE``: cache root (default ``~/.cache/langfield``); binaries go
  to ``<root>/ext/<name>-<hash>``.
* ``LANGFIELD_BUILD_CUDA``: ``1`` forces building the CUDA extension even
  without a GPU (compile check), ``0`` disables it.
* ``LANGFIELD_VERBOSE_BUILD=1``: show compiler output.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Optional

import torch

_CPU_FLAGS = ["-O3", "-std=c++17", "-fPIC", "-fopenmp", "-fno-math-errno", "-fno-trapping-math"]
_NVCC_FLAGS = ["-O3", "--expt-relaxed-constexpr"]
# The emulator (cuda/emu) runs each CUDA thread as a fiber: no OpenMP, and -O2 keeps the build short.
_EMU_FLAGS = ["-O2", "-std=c++17", "-fPIC", "-fno-math-errno", "-fno-trapping-math"]
# sm_70 is rejected by CUDA 13; these cover A100 and H100 when no GPU says otherwise.
DEFAULT_CUDA_ARCHS = "8.0;9.0"


@dataclass
class _BuildState:
    """What happened when a backend was (or failed to be) built, once per process."""

    module: Optional[Any] = None
    """The loaded extension (ctypes.CDLL for CPU, a Python module for CUDA), or None."""
    error: Optional[str] = None
    """One-line reason the extension is unavailable."""
    tried: bool = False
    """Whether a build was attempted in this process."""
    log: list[str] = field(default_factory=list)
    """Longer diagnostics (compiler output tail)."""


_STATE: dict[str, _BuildState] = {"cpu": _BuildState(), "cuda": _BuildState(), "cuda-emu": _BuildState()}


def source_root() -> Optional[Path]:
    """Directory holding ``include/``, ``cpu/`` and ``cuda/`` kernel sources.

    An editable install / checkout uses the repository's ``cuda/``; an
    installed wheel ships a copy as ``langfield/_csrc/`` (see setup.py).
    """
    here = Path(__file__).resolve()
    candidates = [here.parents[2] / "cuda", here.parents[1] / "_csrc"]
    for c in candidates:
        if (c / "include" / "langfield_math.h").is_file() and (c / "cpu").is_dir():
            return c
    return None


def cache_root() -> Path:
    env = os.environ.get("LANGFIELD_CACHE")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "langfield"
    return root / "ext"


def _sources(root: Path, kind: str) -> list[Path]:
    if kind == "cpu":
        return sorted((root / "cpu").glob("*.cpp"))
    if kind == "cuda-emu":  # the CUDA kernels compiled as C++ for the CPU emulator
        return sorted((root / "cuda").glob("*.cu")) + sorted((root / "emu").glob("*.cpp"))
    return sorted((root / "cuda").glob("*.cu")) + sorted((root / "cuda").glob("*.cpp"))


def _headers(root: Path, kind: str) -> list[Path]:
    if kind == "cuda-emu":
        return sorted((root / "cuda").glob("*.h")) + sorted((root / "emu").rglob("*.h")) + sorted(
            (root / "emu").rglob("*.cuh")
        )
    return sorted((root / kind).glob("*.h"))


def _digest(root: Path, kind: str, flags: list[str]) -> str:
    h = hashlib.sha256()
    files = _sources(root, kind) + sorted((root / "include").glob("*.h")) + _headers(root, kind)
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    h.update(torch.__version__.encode())
    h.update(sys.version.encode())
    h.update(" ".join(flags).encode())
    return h.hexdigest()[:16]


def cuda_wanted() -> bool:
    """Whether the CUDA extension should be built in this process."""
    flag = os.environ.get("LANGFIELD_BUILD_CUDA")
    if flag == "0":
        return False
    if torch.version.cuda is None:
        return False
    return flag == "1" or torch.cuda.is_available()


def _load_cached(name: str, build_dir: Path) -> Optional[ModuleType]:
    """Import an already-built extension without invoking the build system."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    for cand in (build_dir / f"{name}{suffix}", build_dir / f"{name}.so"):
        if cand.is_file():
            spec = importlib.util.spec_from_file_location(name, cand)
            if spec is None or spec.loader is None:
                return None
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            return mod
    return None


_ISA_LEVELS = ("auto", "avx512", "avx2", "generic")
_AVX512 = ("avx512f", "avx512vl", "avx512bw", "avx512dq")


def _cpu_isa_flags(level: Optional[str] = None) -> list[str]:
    """Vector ISA flags for the CPU kernels (x86-64 only).

    ``-mavx2 -mfma`` when this CPU has them, which turns on the half-row
    kernels for 16-pixel tiles (``cuda/cpu/rasterize_rows.cpp``), plus
    ``-mavx512{f,vl,bw,dq}`` when it has AVX-512 (twice the vector registers
    for those kernels).  Chosen at build time from
    /proc/cpuinfo and part of the cache key, so a cache moved to another CPU
    gets a fresh build instead of crashing.  ``level`` (default: the
    ``LANGFIELD_CPU_ISA`` environment variable, else ``auto``) caps it:
    ``avx512``/``auto``, ``avx2`` or ``generic`` (no vector ISA flags, which
    also leaves out the row kernels: they need AVX2 + FMA).
    """
    level = level or os.environ.get("LANGFIELD_CPU_ISA", "auto")
    if level not in _ISA_LEVELS:
        raise ValueError(f"LANGFIELD_CPU_ISA={level!r}: expected one of {', '.join(_ISA_LEVELS)}")
    if level == "generic":
        return []
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags_line = next((ln for ln in info.splitlines() if ln.startswith("flags")), "")
    have = set(flags_line.split())
    if not {"avx2", "fma"} <= have:
        return []
    flags = ["-mavx2", "-mfma"]
    if level != "avx2" and set(_AVX512) <= have:
        flags += [f"-m{f}" for f in _AVX512]
    return flags


def _compile_cpu(root: Path, flags: list[str], out: Path, verbose: bool, kind: str = "cpu") -> None:
    """Compile the ``kind`` sources with the host compiler into ``out`` (objects in parallel, then link)."""
    cxx = os.environ.get("CXX", "c++")
    inc = ["-I", str(root / "include")]
    if kind == "cuda-emu":  # its cuda_runtime.h and cub/ shadow the toolkit's
        inc = ["-I", str(root / "emu" / "shim"), *inc]
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".build-") as tmp:
        objs, procs = [], []
        for src in _sources(root, kind):
            obj = Path(tmp) / (src.stem + src.suffix.replace(".", "_") + ".o")
            objs.append(str(obj))
            lang = ["-x", "c++"] if src.suffix == ".cu" else []
            cmd = [cxx, *flags, *inc, "-c", *lang, str(src), "-o", str(obj)]
            procs.append((cmd, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
        errors = []
        for cmd, p in procs:
            text, _ = p.communicate()
            if verbose and text:
                print(text, file=sys.stderr)
            if p.returncode != 0:
                errors.append(f"{' '.join(cmd)}\n{text}")
        if errors:
            raise RuntimeError("C++ compile failed:\n" + "\n".join(errors))
        tmp_so = Path(tmp) / out.name
        cmd = [cxx, "-shared", *(["-fopenmp"] if "-fopenmp" in flags else []), *objs, "-o", str(tmp_so)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"link failed: {' '.join(cmd)}\n{r.stdout}{r.stderr}")
        os.replace(tmp_so, out)


def _build_host(kind: str, root: Path, flags: list[str], verbose: bool) -> ctypes.CDLL:
    """Compile (once per cache key) and load the host-compiled library of ``kind`` ("cpu" | "cuda-emu")."""
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        raise RuntimeError(f"no C++ compiler ({cxx!r} not on PATH); install g++ to use the native CPU kernels")
    name = f"langfield_{kind.replace('-', '_')}_{_digest(root, kind, flags + [cxx])}"
    build_dir = cache_root() / name
    build_dir.mkdir(parents=True, exist_ok=True)
    lib = build_dir / f"{name}.so"
    with open(build_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not lib.is_file():
                _compile_cpu(root, flags, lib, verbose, kind)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    # torch is imported first, so the library's libgomp.so.1 resolves to
    # the OpenMP runtime torch already loaded (one runtime per process).
    return ctypes.CDLL(str(lib))


def _source_root() -> Path:
    root = source_root()
    if root is None:
        raise RuntimeError("kernel sources not found (neither repo cuda/ nor langfield/_csrc/)")
    return root


def _verbose() -> bool:
    return os.environ.get("LANGFIELD_VERBOSE_BUILD") == "1"


def cpu_library(isa: Optional[str] = None) -> ctypes.CDLL:
    """The CPU kernels built for vector ISA level ``isa`` ("auto", "avx512", "avx2", "generic";
    default ``LANGFIELD_CPU_ISA``); raises when the build fails.

    ``load("cpu")`` is this one, cached per process; tests and benchmarks
    call it to compare the kernel variants in one process.
    """
    return _build_host("cpu", _source_root(), list(_CPU_FLAGS) + _cpu_isa_flags(isa), _verbose())


def _build(kind: str) -> Any:
    if kind == "cpu":
        return cpu_library()
    root, verbose = _source_root(), _verbose()
    if kind == "cuda-emu":
        return _build_host(kind, root, list(_EMU_FLAGS), verbose)

    from torch.utils import cpp_extension

    home = cpp_extension.CUDA_HOME
    if (home is None or not (Path(home) / "bin" / "nvcc").is_file()) and Path("/usr/local/cuda/bin/nvcc").is_file():
        # torch guesses from PATH and can land on /usr/local; the toolkit is the usual place.
        cpp_extension.CUDA_HOME = "/usr/local/cuda"
        os.environ.setdefault("CUDA_HOME", "/usr/local/cuda")
    if cpp_extension.CUDA_HOME is None:
        raise RuntimeError("CUDA_HOME not found; set CUDA_HOME to the CUDA toolkit to build the CUDA kernels")
    flags = list(_NVCC_FLAGS)
    if not torch.cuda.is_available() and not os.environ.get("TORCH_CUDA_ARCH_LIST"):
        os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_CUDA_ARCHS
    arch = "arch=" + os.environ.get("TORCH_CUDA_ARCH_LIST", "auto")
    name = f"langfield_cuda_{_digest(root, kind, flags + [arch, torch.__version__])}"
    build_dir = cache_root() / name
    build_dir.mkdir(parents=True, exist_ok=True)
    with open(build_dir / ".lock", "w") as lock:
        # Whole-build lock: the second process waits, then imports the result.
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            mod = _load_cached(name, build_dir)
            if mod is not None:
                return mod
            return cpp_extension.load(
                name=name,
                sources=[str(s) for s in _sources(root, kind)],
                extra_cflags=["-O3"],
                extra_cuda_cflags=flags,
                extra_include_paths=[str(root / "include")],
                build_directory=str(build_dir),
                verbose=verbose,
            )
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def load(kind: str) -> Optional[Any]:
    """The extension for ``kind`` ("cpu" | "cuda" | "cuda-emu"), building it once; None when unavailable.

    "cuda-emu" is the CUDA kernels compiled for the CPU emulator (tests only, see cuda/emu/).
    """
    st = _STATE[kind]
    if st.tried:
        return st.module
    st.tried = True
    if kind == "cuda" and not cuda_wanted():
        st.error = "CUDA extension not built (no GPU / torch without CUDA, or LANGFIELD_BUILD_CUDA=0)"
        return None
    try:
        st.module = _build(kind)
    except Exception as exc:  # compiler missing, compile error, bad toolkit ...
        msg = str(exc).strip().splitlines()
        st.error = f"native {kind} kernels unavailable: " + (msg[-1] if msg else type(exc).__name__)
        st.log = msg[-40:]
        st.module = None
    return st.module


def error(kind: str) -> Optional[str]:
    """Why ``load(kind)`` returned None (after it was called)."""
    return _STATE[kind].error


def reset(kind: str) -> None:
    """Forget a build attempt (tests use this after changing the environment)."""
    _STATE[kind] = _BuildState()
