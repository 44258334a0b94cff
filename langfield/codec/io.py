"""Saving and loading a codec: ``codec.pt`` (state dict) + ``codec.json`` (config + report).

A codec is scene data, not a cache: a damaged one is a DataError naming the
file, never silently different query results.  ``load_codec`` checks the
files against the scene's manifest when the directory is a scene's
``codec/`` (``langfield.scene.verify_scene``), the archive's CRC-32s always
(``langfield.integrity``), and that every weight is finite.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Union

import torch

from langfield.codec.model import CodecConfig, LanguageCodec
from langfield.codec.train import CodecReport
from langfield.integrity import torch_file_problem
from langfield.io import atomic_torch_save, atomic_write_json
from langfield.types import DataError

WEIGHTS_NAME = "codec.pt"
CONFIG_NAME = "codec.json"
FORMAT = 1


def save_codec(codec: LanguageCodec, directory: Union[str, Path], report: Optional[CodecReport] = None) -> Path:
    """Write ``codec.pt`` and ``codec.json`` into ``directory`` (created); returns the directory."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in codec.state_dict().items()}
    meta = {"format": FORMAT, "config": codec.config.to_json(), "report": report.to_json() if report else None}
    atomic_torch_save(d / WEIGHTS_NAME, state)
    atomic_write_json(d / CONFIG_NAME, meta)
    return d


def load_codec(directory: Union[str, Path], device: str = "cpu") -> tuple[LanguageCodec, Optional[dict]]:
    """Read a codec saved by :func:`save_codec`; returns (codec in eval mode, report dict or None)."""
    d = Path(directory)
    cfg_path, w_path = d / CONFIG_NAME, d / WEIGHTS_NAME
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise DataError(f"{p}: codec file missing")
    try:
        meta = json.loads(cfg_path.read_bytes())
        if not isinstance(meta, dict):
            raise TypeError("expected a JSON object")
        config = CodecConfig.from_json(meta["config"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # JSON/Unicode errors are ValueErrors
        raise DataError(f"{cfg_path}: invalid codec config ({type(exc).__name__}: {exc})") from None
    if meta.get("format") != FORMAT:
        raise DataError(f"{cfg_path}: unsupported codec format {meta.get('format')!r} (expected {FORMAT})")
    codec = LanguageCodec(config)
    problem = torch_file_problem(w_path)
    if problem is not None:
        raise DataError(f"{w_path}: cannot load codec weights ({problem})")
    try:
        state = torch.load(w_path, map_location="cpu", weights_only=True)
        codec.load_state_dict(state)
    except Exception as exc:
        reason = " ".join(str(exc).split())[:200]
        raise DataError(f"{w_path}: cannot load codec weights ({exc.__class__.__name__}: {reason})") from None
    for name, value in codec.state_dict().items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise DataError(f"{w_path}: codec weight {name!r} has NaN/inf values")
    report = meta.get("report")
    return codec.to(device).eval(), report if isinstance(report, dict) else None
