"""Choice of the rasterizer backend: ``auto | torch | cpu | cuda``.

``torch`` is the pure-PyTorch reference (always there).  ``cpu`` and ``cuda``
are the native kernels in ``langfield.render.native``, imported lazily
because they may be missing (not built, no compiler, no GPU).
"""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType
from typing import Literal, Optional, Union, get_args

import torch

from langfield.types import LangfieldError

Backend = Literal["auto", "torch", "cpu", "cuda"]
"""A rasterizer backend option (the one definition: CLI commands and configs import it)."""
BACKENDS: tuple[str, ...] = get_args(Backend)
OP_NAMES = ("project_gaussians", "spherical_harmonics", "isect_tiles", "isect_offset_encode", "rasterize_to_pixels")

# Device types for which the "auto" fallback has already been announced, so a
# training loop warns once rather than on every render.
_warned_fallback: set[str] = set()


# Result of the first native import; a failed import is not cached by Python
# itself and would otherwise be retried (maybe rebuilt) on every render call.
_native_cache: Optional[tuple[Optional[ModuleType], str]] = None


def _import_native() -> tuple[Optional[ModuleType], str]:
    """Import the native module: it, or None and the reason it is unusable."""
    try:
        module = importlib.import_module("langfield.render.native")
    except Exception as exc:  # optional code: any import/build failure means "not available"
        return None, f"{type(exc).__name__}: {exc}"
    missing = [name for name in OP_NAMES + ("available",) if not hasattr(module, name)]
    if missing:
        return None, f"langfield.render.native lacks {', '.join(missing)}"
    return module, ""


def _load_native() -> tuple[Optional[ModuleType], str]:
    """``_import_native()``, done once per process."""
    global _native_cache
    if _native_cache is None:
        _native_cache = _import_native()
    return _native_cache


def _native_available(device_type: str) -> tuple[bool, str]:
    module, reason = _load_native()
    if module is None:
        return False, reason
    try:
        ok = bool(module.available(device_type))
    except Exception as exc:  # a failed lazy build inside available() also means "not available"
        return False, f"{type(exc).__name__}: {exc}"
    if ok:
        return True, ""
    # The build's own reason (no compiler, a bad LANGFIELD_CPU_ISA, a compile error ...) when there is one.
    why = getattr(module, "build_error", lambda _kind: None)(device_type)
    return False, why or f"native {device_type} kernels are not built or cannot run here"


def resolve_backend(name: str, device: Union[str, torch.device]) -> str:
    """Concrete backend (``torch | cpu | cuda``) for tensors on ``device``.

    ``auto`` picks cuda for GPU tensors, else the native CPU kernels when they
    are available, and otherwise falls back to ``torch`` with one warning.
    An explicit ``cpu``/``cuda`` that cannot run raises ``LangfieldError``.
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown render backend {name!r}; expected one of {', '.join(BACKENDS)}")
    device_type = torch.device(device).type
    if name == "torch":
        return "torch"
    if name in ("cpu", "cuda"):
        if device_type != name:
            raise LangfieldError(f"render backend {name!r} needs tensors on {name}, got tensors on {device_type}")
        ok, reason = _native_available(name)
        if not ok:
            raise LangfieldError(f"render backend {name!r} is unavailable ({reason}); use backend='torch'")
        return name
    # auto
    if device_type in ("cpu", "cuda"):
        ok, reason = _native_available(device_type)
        if ok:
            return device_type
    else:
        reason = f"no native kernels for device type {device_type!r}"
    if device_type not in _warned_fallback:
        _warned_fallback.add(device_type)
        warnings.warn(
            f"langfield: native rasterizer unavailable on {device_type} ({reason}); "
            "using the slow pure-PyTorch reference",
            RuntimeWarning,
            stacklevel=3,
        )
    return "torch"


def default_device(backend: str = "auto", device: str = "auto") -> torch.device:
    """The torch device to put Gaussians and images on: ``device`` unless it is ``auto``.

    ``auto`` means CUDA when ``backend`` can use it (``auto`` or ``cuda``) and a GPU is
    present, else the CPU.  Training, the viewer and the query commands all choose here.
    """
    if device != "auto":
        return torch.device(device)
    if backend in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def get_ops(name: str) -> ModuleType:
    """Module holding the five ops for a concrete backend name from ``resolve_backend``."""
    if name == "torch":
        from langfield.render import reference

        return reference
    if name in ("cpu", "cuda"):
        module, reason = _load_native()
        if module is None:
            raise LangfieldError(f"render backend {name!r} is unavailable ({reason})")
        return module
    raise ValueError(f"get_ops needs a concrete backend (torch | cpu | cuda), got {name!r}")
