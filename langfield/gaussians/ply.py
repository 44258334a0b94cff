"""Gaussians as a standard 3DGS PLY file, plus language columns.

Layout (one ``vertex`` element, binary little endian, every property float32)::

    x y z nx ny nz f_dc_0..2 f_rest_0..(3*(K-1)-1) opacity scale_0..2 rot_0..3
    lang_0..lang_{D-1}            (only when the Gaussians carry latents)
    <extra columns>               (only when ``save_ply(extra=...)`` is given)

Values are stored exactly as held in the parameters (log scales, opacity
logits, unnormalised (w, x, y, z) quaternions), so a save/load round trip is
bit-exact.  ``f_rest`` is channel-major like the original 3DGS code: all
higher-order coefficients of R, then of G, then of B
(``shN.transpose(1, 2).reshape(N, -1)``).  Normals are written as zeros.

Every value read or written must be finite: NaN/inf parameters (a diverged
run, a damaged file) are refused with a DataError naming the file, the column
and how many values, instead of rendering as black and evaluating to NaN.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping, Optional, Union

import numpy as np
import torch
from plyfile import PlyData

from langfield.io import atomic_write_with
from langfield.gaussians.params import create_params, num_sh_bases, sh_degree_of
from langfield.types import DataError

PathLike = Union[str, os.PathLike]

LATENT_PREFIX = "lang_"
# Highest SH degree the renderer evaluates; files with more bands are refused.
MAX_SH_DEGREE = 3
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def ply_property_names(sh_degree: int, latent_dim: int = 0) -> list[str]:
    """The vertex property names ``save_ply`` writes, in order (without extras)."""
    n_rest = 3 * (num_sh_bases(sh_degree) - 1)
    names = ["x", "y", "z", "nx", "ny", "nz"]
    names += [f"f_dc_{i}" for i in range(3)]
    names += [f"f_rest_{i}" for i in range(n_rest)]
    names += ["opacity"]
    names += [f"scale_{i}" for i in range(3)]
    names += [f"rot_{i}" for i in range(4)]
    names += [f"{LATENT_PREFIX}{i}" for i in range(latent_dim)]
    return names


def _params_to_columns(params: Mapping[str, torch.Tensor]) -> list[np.ndarray]:
    """The columns of ``ply_property_names`` as [N, k] float32 blocks."""

    def arr(key: str) -> np.ndarray:
        return params[key].detach().to("cpu", torch.float32).numpy()

    n = params["means"].shape[0]
    shn = params["shN"].detach().to("cpu", torch.float32)
    blocks = [
        arr("means").reshape(n, 3),
        np.zeros((n, 3), np.float32),
        arr("sh0").reshape(n, 3),
        shn.transpose(1, 2).reshape(n, -1).numpy(),
        arr("opacities").reshape(n, 1),
        arr("scales").reshape(n, 3),
        arr("quats").reshape(n, 4),
    ]
    if "latents" in params:
        blocks.append(arr("latents").reshape(n, -1))
    return blocks


def _extra_columns(extra: Mapping[str, object], n: int, taken: set[str]) -> tuple[list[str], list[np.ndarray]]:
    names: list[str] = []
    blocks: list[np.ndarray] = []
    for key, value in extra.items():
        if not _NAME_RE.match(key):
            raise ValueError(f"extra column name {key!r} is not a valid PLY property name")
        data = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        if data.shape[:1] != (n,) or data.ndim > 2:
            raise ValueError(f"extra column {key!r} must be [{n}] or [{n}, k], got {data.shape}")
        cols = [key] if data.ndim == 1 else [f"{key}_{i}" for i in range(data.shape[1])]
        clash = taken.intersection(cols)
        if clash:
            raise ValueError(f"extra column {key!r} clashes with property {sorted(clash)[0]!r}")
        taken.update(cols)
        names += cols
        blocks.append(data.reshape(n, -1).astype(np.float32))
    return names, blocks


def save_ply(
    path: PathLike,
    params: Mapping[str, torch.Tensor],
    *,
    extra: Optional[Mapping[str, object]] = None,
) -> Path:
    """Write the Gaussians as a 3DGS PLY (layout in the module docstring), atomically.

    Args:
        path: destination file; its directory must exist.
        params: ParameterDict (or dict of tensors) with the keys of ``params.py``;
            ``latents`` [N, D], when present, become ``lang_0..lang_{D-1}``.
        extra: optional additional per-Gaussian float columns appended after the
            standard ones: name -> [N] (one property ``name``) or [N, k]
            (properties ``name_0..name_{k-1}``).  ``load_ply`` ignores them.

    Returns:
        The path written.
    """
    path = Path(path)
    n = params["means"].shape[0]
    for key in ("means", "scales", "quats", "opacities", "sh0", "shN"):
        if key not in params:
            raise ValueError(f"params lack {key!r}")
        if params[key].shape[0] != n:
            raise ValueError(f"params[{key!r}] has {params[key].shape[0]} rows, expected {n}")
    degree = sh_degree_of(params)  # type: ignore[arg-type]
    latent_dim = params["latents"].shape[1] if "latents" in params else 0
    names = ply_property_names(degree, latent_dim)
    blocks = _params_to_columns(params)
    if extra:
        extra_names, extra_blocks = _extra_columns(extra, n, set(names))
        names += extra_names
        blocks += extra_blocks
    table = np.ascontiguousarray(np.concatenate(blocks, axis=1), dtype="<f4")
    if table.shape != (n, len(names)):
        raise ValueError(f"internal: {table.shape[1]} columns for {len(names)} property names")
    # float32 as stored: a finite float64 beyond float32's range would be written as inf.
    _check_finite(table, names, f"{path}: refusing to write", "")
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    header += [f"property float {name}" for name in names]
    header += ["end_header"]
    head = ("\n".join(header) + "\n").encode("ascii")

    def write(fh) -> None:
        fh.write(head)
        fh.write(table.tobytes())

    # fsync: a crash right after the rename must not leave a truncated PLY as the scene's Gaussians.
    atomic_write_with(path, write, fsync=True)
    return path


def _check_finite(table: np.ndarray, names: list[str], what: str, hint: str) -> None:
    """DataError ``"<what>: N NaN/inf values in column 'c' ..."`` unless every value of ``table`` [N, C] is finite."""
    finite = np.isfinite(table)
    if finite.all():
        return
    bad = (~finite).sum(axis=0)
    cols = [(names[i], int(bad[i])) for i in np.flatnonzero(bad)]
    first, count = cols[0]
    more = ""
    if len(cols) > 1:
        others = ", ".join(repr(c) for c, _ in cols[1:4]) + (", ..." if len(cols) > 4 else "")
        more = f" (and in {len(cols) - 1} more column{'s' if len(cols) > 2 else ''}: {others})"
    raise DataError(f"{what}: {count} NaN/inf value{'s' if count != 1 else ''} in column {first!r}{more}{hint}")


def _indexed_count(names: set[str], prefix: str, path: Path) -> int:
    """Number of properties ``prefix0..prefix{M-1}``; DataError if the indices have gaps."""
    # Canonical decimal indices only ("f_rest_01" is some other tool's property).
    pattern = re.compile(re.escape(prefix) + r"(0|[1-9][0-9]*)$")
    idx = sorted(int(m.group(1)) for name in names if (m := pattern.match(name)))
    if idx != list(range(len(idx))):
        missing = sorted(set(range(max(idx) + 1)) - set(idx))
        raise DataError(f"{path}: missing vertex property {prefix}{missing[0]}")
    return len(idx)


def load_ply(
    path: PathLike,
    *,
    sh_degree: Optional[int] = None,
    device: Union[str, torch.device] = "cpu",
) -> torch.nn.ParameterDict:
    """Read Gaussians from a 3DGS PLY written by langfield or another 3DGS tool.

    Accepts any SH degree 0..3 (inferred from the number of ``f_rest_*``
    properties, none meaning degree 0), missing normals, any property order
    and type, and ignores unknown properties.  ``lang_*`` columns become
    ``latents``.

    Args:
        path: the PLY file.
        sh_degree: when given, ``shN`` is zero-padded (or truncated) to this
            degree; None keeps the file's degree.
        device: where the parameters are placed.

    Raises:
        DataError: missing, unreadable, corrupt or truncated file, no vertex
            element, missing required property, or an impossible f_rest count.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: PLY file not found")
    try:
        # Memory-mapped reading is ~1000x faster than plyfile's row-by-row
        # fallback; it still detects truncation, and the columns are copied
        # out below so nothing keeps referring to the map.
        ply = PlyData.read(str(path), mmap="c")
    except Exception as exc:  # plyfile raises many types for damaged files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: not a readable PLY file ({reason})") from exc
    if "vertex" not in ply:
        raise DataError(f"{path}: PLY has no 'vertex' element")
    data = ply["vertex"].data
    names = set(data.dtype.names or ())
    required = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"]
    required += [f"scale_{i}" for i in range(3)] + [f"rot_{i}" for i in range(4)]
    for name in required:
        if name not in names:
            raise DataError(f"{path}: missing vertex property {name!r}")
        if data.dtype[name].subdtype is not None or data.dtype[name].kind not in "fiu":
            raise DataError(f"{path}: vertex property {name!r} is not a scalar number")
    n = len(data)

    def cols(props: list[str]) -> torch.Tensor:
        if not props:
            return torch.zeros(n, 0)
        for p in props:  # f_rest_* and lang_* may be list properties in a foreign or damaged file
            if data.dtype[p].subdtype is not None or data.dtype[p].kind not in "fiu":
                raise DataError(f"{path}: vertex property {p!r} is not a scalar number")
        # np.stack copies, so the result owns its memory (no view of the map).
        block = np.stack([np.asarray(data[p], dtype=np.float32) for p in props], axis=1)
        _check_finite(block, props, str(path), " (the file is damaged, or was written by a diverged run)")
        return torch.from_numpy(block)

    n_rest = _indexed_count(names, "f_rest_", path)
    if n_rest % 3 != 0:
        raise DataError(f"{path}: {n_rest} f_rest properties is not a multiple of 3")
    k = 1 + n_rest // 3
    file_degree = int(round(k**0.5)) - 1
    if num_sh_bases(file_degree) != k or file_degree > MAX_SH_DEGREE:
        raise DataError(f"{path}: {n_rest} f_rest properties match no SH degree 0..{MAX_SH_DEGREE}")
    shn = cols([f"f_rest_{i}" for i in range(n_rest)]).reshape(n, 3, k - 1).transpose(1, 2)
    if sh_degree is not None:
        if not 0 <= sh_degree <= MAX_SH_DEGREE:
            raise ValueError(f"sh_degree must be in 0..{MAX_SH_DEGREE}, got {sh_degree}")
        want = num_sh_bases(sh_degree) - 1
        padded = torch.zeros(n, want, 3)
        keep = min(want, k - 1)
        padded[:, :keep] = shn[:, :keep]
        shn = padded
    latent_dim = _indexed_count(names, LATENT_PREFIX, path)
    latents = cols([f"{LATENT_PREFIX}{i}" for i in range(latent_dim)]) if latent_dim else None
    params = create_params(
        means=cols(["x", "y", "z"]),
        log_scales=cols([f"scale_{i}" for i in range(3)]),
        quats=cols([f"rot_{i}" for i in range(4)]),
        opacity_logits=cols(["opacity"])[:, 0],
        sh0=cols([f"f_dc_{i}" for i in range(3)])[:, None, :],
        shN=shn,
        latents=latents,
    )
    return params.to(device)
