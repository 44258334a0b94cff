"""langfield.frontend.slam: online RGB-D tracking and incremental Gaussian mapping (``langfield slam``).

``config`` (SlamConfig) -> ``tracker`` (pose refinement against the rendered map) -> ``mapper``
(keyframes, map growth, windowed mapping, pruning) -> ``snapshot`` (atomic scene directories) ->
``run`` (``run_slam``, the per-frame loop).
"""

from langfield.frontend.slam.config import SlamConfig
from langfield.frontend.slam.run import SlamResult, run_slam

__all__ = ["SlamConfig", "SlamResult", "run_slam"]
