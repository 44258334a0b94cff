"""Query semantics that depend on the render size: LangSplat's smoothing rules, and query-text checks.

LangSplat evaluates at about 730 px image height with a 30 px box filter (level
choice, localisation) and a 7 px majority vote (mask cleaning). Applied
unscaled to a 160x120 render, both would erase every thin part, so the
defaults here scale them to the render's short side. Every consumer (CLI,
viewer, benchmarks) builds its ``QueryConfig`` through :func:`query_config`
so that the same render size always gets the same rules.
"""

from __future__ import annotations

from typing import Optional, Sequence

from langfield.query.relevancy import DEFAULT_NEGATIVES, QueryConfig
from langfield.types import LangfieldError

REFERENCE_SHORT_SIDE = 730
"""Short side (px) of the renders LangSplat's 30 px / 7 px windows were chosen for."""


def check_texts(texts: Sequence[str]) -> list[str]:
    """Stripped query texts; LangfieldError on none or an empty one."""
    if isinstance(texts, str):
        raise TypeError("check_texts expects a sequence of strings, not one string")
    out = [t.strip() for t in texts]
    if not out:
        raise LangfieldError("no query text given")
    if any(not t for t in out):
        raise LangfieldError("empty query string: every query needs some text")
    return out


def auto_smoothing_kernel(height: int, width: int) -> int:
    """LangSplat's 30 px box, scaled to the render's short side (at least 1)."""
    return max(1, int(round(30 * min(height, width) / REFERENCE_SHORT_SIDE)))


def auto_majority_window(height: int, width: int) -> int:
    """LangSplat's 7 px majority window, scaled like the box filter and kept odd (1 = off).

    Unscaled, a 7 px vote erases every part thinner than ~4 px, which at 160x120
    is most table legs and handles; at LangSplat's resolution it only removes speckle.
    """
    side = 7 * min(height, width) / REFERENCE_SHORT_SIDE
    return max(1, 2 * int(round((side - 1) / 2)) + 1)


def query_config(
    height: int,
    width: int,
    *,
    negatives: Optional[Sequence[str]] = None,
    level: Optional[int] = None,
    smoothing_kernel: Optional[int] = None,
) -> QueryConfig:
    """The ``QueryConfig`` of a ``height`` x ``width`` render.

    ``negatives`` None or empty: langfield's canonical negatives; ``smoothing_kernel``
    None or 0: the scaled LangSplat box; the majority window is always scaled.
    """
    return QueryConfig(
        negatives=tuple(negatives) if negatives else DEFAULT_NEGATIVES,
        level=level,
        smoothing_kernel=smoothing_kernel or auto_smoothing_kernel(height, width),
        mask_majority=auto_majority_window(height, width),
    )
