"""langfield.frontend.slam: online RGB-D tracking and incremental Gaussian mapping (``langfield slam``).

``config`` (SlamConfig) -> ``tracker`` (pose refinement against the rendered map) -> ``mapper``
(keyframes, map growth, windowed mapping, pruning) -> ``snapshot`` (atomic scene directories) ->
``run`` (``run_slam``, the per-frame loop); ``language`` (the online language field, ``--features``).
"""

from langfield.frontend.slam.config import SlamConfig
from langfield.frontend.slam.language_config import SlamLanguageConfig
from langfield.frontend.slam.run import SlamResult, run_slam

__all__ = ["SlamConfig", "SlamLanguageConfig", "SlamResult", "run_slam"]
