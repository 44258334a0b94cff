"""``langfield slam``: online RGB-D tracking and mapping of a sequence into a scene directory."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import tyro

from langfield.frontend.slam.config import SlamConfig
from langfield.types import LangfieldError


@dataclass
class Slam:
    """Track an RGB-D sequence (TUM, Replica, langfield synthetic, or an rgb/ + depth/ folder pair) and build a
    Gaussian map online: SCENE is a scene directory (`eval`, `query`, `view` open it, also mid-run) with the
    estimated trajectory in SCENE/trajectory_tum.txt."""

    sequence: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="SEQ")]
    """The sequence folder (or a synthetic sequence's transforms.json)."""
    out: Path
    """Scene directory to write (snapshots replace it atomically while the run goes on)."""
    intrinsics: Optional[str] = None
    """Camera as FX,FY,CX,CY on OpenCV's pixel grid; overrides the sequence's calibration (required for
    TUM sequences not named freiburg1/2/3)."""
    overwrite: bool = False
    """Replace an existing OUT (its old scene stays until the first snapshot is written)."""
    slam: Annotated[SlamConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=SlamConfig)
    """Tracking, keyframe, mapping and output settings."""

    def run(self) -> int:
        from langfield.frontend.slam.run import run_slam
        from langfield.io import dumps_json
        from langfield.trajectory import ate

        if self.intrinsics is not None and not self.intrinsics.strip():
            raise LangfieldError("--intrinsics must be FX,FY,CX,CY")
        r = run_slam(self.sequence, self.out, self.slam, intrinsics=self.intrinsics, overwrite=self.overwrite)
        summary = {
            "scene": str(r.scene_dir), "frames": len(r.c2w), "keyframes": r.num_keyframes,
            "gaussians": r.num_gaussians, "snapshots": r.snapshots,
            "track_ms_mean": round(sum(s.track_ms for s in r.frames) / max(len(r.frames), 1), 1),
            "map_ms_mean": round(sum(s.map_ms for s in r.frames) / max(len(r.frames), 1), 1),
        }
        if r.gt_c2w is not None:
            ok = np.isfinite(r.gt_c2w).all(axis=(1, 2))  # TUM frames outside the ground truth's range have none
            if ok.sum() >= 3:
                summary["ate_rmse_m"] = ate(r.c2w[ok], r.gt_c2w[ok]).rmse
        print(dumps_json(summary))
        return 0
