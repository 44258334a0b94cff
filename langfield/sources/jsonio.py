"""JSON reading with one-line errors that give the file and the parse position."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from langfield.types import DataError, Label


def read_json(path: Path) -> Any:
    """Parse a JSON file; malformed JSON raises ``DataError`` with line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply") from None


def read_labels(path: Path) -> dict[int, Label]:
    """``labels.json``: ``{"<id>": {"part": text, "whole": text}}`` -> id -> Label (id 0 means none)."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected an object mapping id -> {{part, whole}}")
    labels: dict[int, Label] = {}
    for key, val in data.items():
        try:
            ident = int(key)
        except ValueError:
            raise DataError(f"{path}: label id {key!r} is not an integer") from None
        if ident < 0 or ident > 65535:
            raise DataError(f"{path}: label id {ident} outside the uint16 range of semantics PNGs")
        if isinstance(val, str):
            # Tolerate a bare string: the same text for both levels.
            labels[ident] = Label(part=val, whole=val)
            continue
        if not isinstance(val, dict) or not isinstance(val.get("part"), str) or not isinstance(val.get("whole"), str):
            raise DataError(f"{path}: label {key!r} must be {{\"part\": text, \"whole\": text}}")
        labels[ident] = Label(part=val["part"], whole=val["whole"])
    return labels
