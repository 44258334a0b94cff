"""``langfield slam``: online RGB-D tracking and mapping of a sequence into a scene directory."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import tyro

from langfield.frontend.slam.config import SlamConfig
from langfield.frontend.slam.language_config import SlamLanguageConfig
from langfield.types import LangfieldError
from langfield.viewer.config import DEFAULT_HOST, DEFAULT_PORT


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
    view: bool = False
    """Open the web viewer on the growing map while tracking runs (needs viser; see `langfield view`)."""
    host: str = DEFAULT_HOST
    """--view: interface to bind (localhost only by default)."""
    port: int = DEFAULT_PORT
    """--view: TCP port (0 = any free port; a port in use is an error)."""
    slam: Annotated[SlamConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=SlamConfig)
    """Tracking, keyframe, mapping and output settings."""
    language: Annotated[SlamLanguageConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=SlamLanguageConfig)
    """The online language field (--features labels|dense|sam-clip --clip NAME [--codec PATH]); off by default."""

    def run(self) -> int:
        from langfield.frontend.slam.run import run_slam
        from langfield.io import dumps_json
        from langfield.trajectory import ate

        if self.intrinsics is not None and not self.intrinsics.strip():
            raise LangfieldError("--intrinsics must be FX,FY,CX,CY")
        live = None
        if self.view:
            from langfield.viewer.config import ViewerConfig
            from langfield.viewer.live import LiveScene

            try:
                config = ViewerConfig(host=self.host, port=self.port)
            except ValueError as e:
                raise LangfieldError(f"bad option: {e}") from None
            live = LiveScene(backend=self.slam.map_backend, config=config)
        try:
            r = run_slam(self.sequence, self.out, self.slam, intrinsics=self.intrinsics, overwrite=self.overwrite,
                         language=self.language, live=live)
        finally:
            if live is not None:
                live.close()
        summary = {
            "scene": str(r.scene_dir), "frames": len(r.c2w), "keyframes": r.num_keyframes,
            "gaussians": r.num_gaussians, "snapshots": r.snapshots,
            "track_ms_mean": round(sum(s.track_ms for s in r.frames) / max(len(r.frames), 1), 1),
            "map_ms_mean": round(sum(s.map_ms for s in r.frames) / max(len(r.frames), 1), 1),
        }
        if r.language is not None:
            online = r.language.get("online", {})
            summary["language_ms_mean"] = round(sum(s.language_ms for s in r.frames) / max(len(r.frames), 1), 1)
            summary["language"] = {k: online.get(k) for k in ("keyframes_fused", "codec_updates", "reservoir_rows",
                                                             "latents", "relift_seconds", "online_vs_relift_cosine")}
        if r.gt_c2w is not None:
            ok = np.isfinite(r.gt_c2w).all(axis=(1, 2))  # TUM frames outside the ground truth's range have none
            if ok.sum() >= 3:
                summary["ate_rmse_m"] = ate(r.c2w[ok], r.gt_c2w[ok]).rmse
        print(dumps_json(summary))
        return 0
