"""LangSplat's windows scaled to the render size, and the query-text checks."""

from __future__ import annotations

import pytest

from langfield.query import DEFAULT_NEGATIVES, auto_majority_window, auto_smoothing_kernel, check_texts, query_config
from langfield.types import LangfieldError


def test_windows_are_langsplats_at_its_resolution_and_shrink_with_the_short_side():
    assert auto_smoothing_kernel(730, 986) == 30 and auto_majority_window(730, 986) == 7
    assert auto_smoothing_kernel(986, 730) == 30  # the short side counts, whichever it is
    assert auto_smoothing_kernel(120, 160) == 5 and auto_majority_window(120, 160) == 1
    assert auto_smoothing_kernel(1, 1) == 1  # never below one pixel
    sizes = [(h, int(h * 4 / 3)) for h in range(24, 2000, 37)]
    kernels = [auto_smoothing_kernel(h, w) for h, w in sizes]
    windows = [auto_majority_window(h, w) for h, w in sizes]
    assert kernels == sorted(kernels) and windows == sorted(windows)
    assert all(w % 2 == 1 for w in windows)  # a majority window has a centre pixel


def test_query_config_scales_what_is_not_given():
    cfg = query_config(240, 320)
    assert cfg.negatives == DEFAULT_NEGATIVES and cfg.level is None
    assert cfg.smoothing_kernel == auto_smoothing_kernel(240, 320)
    assert cfg.mask_majority == auto_majority_window(240, 320)
    given = query_config(240, 320, negatives=("thing",), level=1, smoothing_kernel=9)
    assert (given.negatives, given.level, given.smoothing_kernel) == (("thing",), 1, 9)
    assert query_config(240, 320, negatives=(), smoothing_kernel=0) == cfg  # empty / 0 mean "default"


def test_check_texts():
    assert check_texts((" red chair ", "lamp")) == ["red chair", "lamp"]
    with pytest.raises(LangfieldError, match="no query text"):
        check_texts([])
    with pytest.raises(LangfieldError, match="empty query string"):
        check_texts(["lamp", "  "])
    with pytest.raises(TypeError):
        check_texts("lamp")
