"""The CUDA kernels run on the CPU by an emulator, for testing without a GPU.

``cuda/cuda/*.cu`` compile as plain C++ against ``cuda/emu/shim`` (one fiber
per CUDA thread, barriers and warp collectives with CUDA's semantics, strict
about undefined behaviour), behind the same C ABI as the native CPU library.
``EmulatedCudaKernels`` is therefore the CPU adapter with error checking, and
``routed_to_emulator()`` makes the native ops send CPU tensors to it, so the
CUDA parity tests run the CUDA kernels' code on machines without a GPU.

It is slow (about a microsecond per emulated thread switch): meant for tests
on small scenes, never for rendering.  A test helper, not part of the package
(it patches ``langfield.render.native``'s kernel table): tests/render/conftest.py
loads it as ``langfield_test_cuda_emu``.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Optional

from langfield.render import _build
from langfield.render._native_backends import CpuKernels


class EmulatedCudaError(RuntimeError):
    """An emulated CUDA kernel misused the programming model (see cuda/emu/shim/cuda_runtime.h)."""


class _Checked:
    """Proxy over the ctypes library that raises the emulator's recorded error after each call."""

    def __init__(self, lib: Any) -> None:
        self._lib = lib
        take = lib.lf_emu_take_error
        take.restype = __import__("ctypes").c_char_p
        take.argtypes = []
        self._take = take

    def __getattr__(self, name: str) -> Callable[..., Any]:
        fn = getattr(self._lib, name)

        def call(*args: Any) -> Any:
            res = fn(*args)
            err = self._take()
            if err:
                raise EmulatedCudaError(err.decode(errors="replace"))
            return res

        return call


class EmulatedCudaKernels(CpuKernels):
    """``CpuKernels``' methods over the emulated CUDA library; every call checks the emulator's error."""

    def __init__(self, lib: Any) -> None:
        super().__init__(lib)
        self.lib = _Checked(lib)


_KERNELS: Optional[EmulatedCudaKernels] = None


def available() -> bool:
    """Whether the emulated CUDA library builds here (needs a C++17 compiler on x86-64)."""
    return kernels() is not None


def build_error() -> Optional[str]:
    return _build.error("cuda-emu")


def kernels() -> Optional[EmulatedCudaKernels]:
    global _KERNELS
    if _KERNELS is None:
        lib = _build.load("cuda-emu")
        if lib is not None:
            _KERNELS = EmulatedCudaKernels(lib)
    return _KERNELS


@contextlib.contextmanager
def routed_to_emulator() -> Iterator[EmulatedCudaKernels]:
    """Within the block, ``langfield.render.native``'s ops on CPU tensors run the emulated CUDA kernels."""
    from langfield.render import native

    k = kernels()
    if k is None:
        raise RuntimeError(build_error() or "CUDA emulator unavailable")
    saved = native._KERNELS.get("cpu", None)
    had = "cpu" in native._KERNELS
    native._KERNELS["cpu"] = k
    try:
        yield k
    finally:
        if had:
            native._KERNELS["cpu"] = saved
        else:
            native._KERNELS.pop("cpu", None)
