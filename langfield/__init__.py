"""langfield: language-queryable 3D Gaussian splatting."""

import os as _os

# OpenMP (libgomp) idle threads spin for GOMP_SPINCOUNT iterations (300k by
# default, about a millisecond) after each parallel region before sleeping.
# Measured on 2 cores, 17k-Gaussian render step / 16-view training protocol:
#   default spinning: 240-376 ms per step when another busy process shares
#     the cores (their spinning threads steal each other's time);
#   OMP_WAIT_POLICY=PASSIVE: 37 ms under contention, but 0.0335 s per training
#     step on a quiet machine (waking sleeping threads for every small torch op);
#   GOMP_SPINCOUNT=10000 (a few microseconds): 53 ms under contention and
#     0.025 s per training step when quiet, the best of both.
# libgomp reads these once, when torch loads it, so they must be set before
# torch is imported; whatever the user set is kept.
if "OMP_WAIT_POLICY" not in _os.environ:
    _os.environ.setdefault("GOMP_SPINCOUNT", "10000")

__version__ = "0.1.0"
