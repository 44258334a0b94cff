"""``run_slam``: stream an RGB-D sequence through tracking and mapping into a scene directory.

Per frame: read it (one frame in memory), predict its pose by constant velocity, refine it against
the map (``tracker``), decide whether it is a keyframe (motion, overlap, or ``keyframe_every``), grow
the map from keyframes, run a few mapping steps (``mapper``), and print one progress line.  The
first frame is anchored at its ground-truth pose when the sequence has one (the map then lives in
the world of the dataset's cameras, so held-out views evaluate it), else at the identity.

Output (``snapshot``): every ``snapshot_every`` keyframes, at the end, on Ctrl-C and when tracking
is lost, an atomic snapshot of ``out``: a scene directory (keyframes as its training cameras,
``config.json`` marked ``capture_kind: "slam"``) plus ``trajectory_tum.txt`` of every tracked
frame.  The run holds ``out``'s writer lock throughout.  Tracking loss (the residual jumps to
``lost_factor`` times its running median) writes the map so far and raises ``LangfieldError``
naming the frame (the CLI exits 2; the snapshot stays valid).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from langfield.frontend.slam.config import SlamConfig
from langfield.frontend.slam.frames import frame_view
from langfield.frontend.slam.mapper import Keyframe, Mapper, pose_distance
from langfield.frontend.slam.snapshot import TRAJECTORY_FILE, write_snapshot
from langfield.frontend.slam.tracker import constant_velocity, track_frame
from langfield.outputs import check_output
from langfield.scene import SceneCamera
from langfield.scene_lock import acquire, clean_leftovers, note_recovery, recover_interrupted_swap
from langfield.sources.rgbd import RGBDSequence, open_sequence
from langfield.types import LangfieldError

PathLike = Union[str, Path]


@dataclass
class FrameStats:
    """What happened to one frame (the progress line, and the benchmark's per-frame figures)."""

    index: int
    track_ms: float
    map_ms: float
    residual: float
    keyframe: bool
    num_gaussians: int


@dataclass
class SlamResult:
    """A finished (or stopped) run."""

    scene_dir: Path
    """The scene directory written."""
    c2w: np.ndarray
    """[M, 4, 4] estimated camera-to-world of the M tracked frames."""
    timestamps: np.ndarray
    """[M] their timestamps."""
    gt_c2w: Optional[np.ndarray]
    """[M, 4, 4] ground truth of those frames (NaN where missing), or None."""
    frames: list[FrameStats] = field(default_factory=list)
    """Per-frame statistics."""
    num_keyframes: int = 0
    num_gaussians: int = 0
    snapshots: int = 0
    """Snapshots written."""
    status: str = "done"
    """done | lost | interrupted."""


def _select(seq: RGBDSequence, cfg: SlamConfig) -> RGBDSequence:
    seq = seq.subset(0, None, cfg.stride) if cfg.stride > 1 else seq
    if cfg.max_frames is not None and cfg.max_frames < len(seq):
        seq = seq.subset(0, cfg.max_frames)
    return seq


class _Run:
    """State of one run (kept out of ``run_slam`` so snapshots can be written from any exit path)."""

    def __init__(self, seq: RGBDSequence, root: Path, cfg: SlamConfig) -> None:
        self.seq, self.root, self.cfg = seq, root, cfg
        self.mapper = Mapper(cfg)
        self.poses: list[np.ndarray] = []
        self.timestamps: list[float] = []
        self.gt: list[Optional[np.ndarray]] = []
        self.stats: list[FrameStats] = []
        self.snapshots = 0
        self.start = time.perf_counter()

    def config(self, status: str) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "data": str(self.seq.root),
            "capture_kind": "slam",
            "iterations": max(self.mapper.iterations, 1),
            "num_gaussians": self.mapper.num_gaussians,
            "sh_degree": 0,
            "wall_time_s": time.perf_counter() - self.start,
            "num_train_views": len(self.mapper.keyframes),
            "num_eval_views": 0,
            "depth_supervision": True,
            "device": "cpu",
            "train": {"iterations": max(self.mapper.iterations, 1), "seed": cfg.seed, "sh_degree": 0,
                      "background": "black", "eval_every": 0, "downscale": cfg.map_downscale,
                      "backend": cfg.map_backend},
            "slam": {"status": status, "layout": self.seq.layout, "frames_tracked": len(self.poses),
                     "keyframes": len(self.mapper.keyframes), "trajectory": TRAJECTORY_FILE,
                     "intrinsics_source": self.seq.intrinsics_source, "config": dataclasses.asdict(cfg)},
        }

    def snapshot(self, status: str) -> None:
        cams = [SceneCamera.from_view(kf.view, "train") for kf in self.mapper.keyframes]
        c2w = np.stack(self.poses) if self.poses else np.zeros((0, 4, 4))
        write_snapshot(self.root, self.mapper.params, cams, self.config(status), np.asarray(self.timestamps), c2w)
        self.snapshots += 1

    def result(self, status: str) -> SlamResult:
        gt = None
        if any(g is not None for g in self.gt):
            gt = np.stack([g if g is not None else np.full((4, 4), np.nan) for g in self.gt])
        return SlamResult(self.root, np.stack(self.poses), np.asarray(self.timestamps), gt, self.stats,
                          len(self.mapper.keyframes), self.mapper.num_gaussians, self.snapshots, status)

    # ------------------------------------------------------------------ one frame

    def step(self, i: int, log: Callable[[str], None]) -> None:
        cfg, mapper = self.cfg, self.mapper
        frame = self.seq[i]
        t0 = time.perf_counter()
        residual = 0.0
        if i == 0:
            c2w = frame.c2w_gt.copy() if frame.c2w_gt is not None else np.eye(4)
            keyframe = True
        else:
            prev2 = self.poses[-2] if len(self.poses) >= 2 else None
            guess = constant_velocity(self.poses[-1], prev2)
            target = frame_view(frame, self.seq.intrinsics, guess, cfg.track_downscale)
            tr = track_frame(mapper.frozen(), target, guess, cfg)
            c2w, residual = tr.c2w, tr.residual
            self._check_lost(i, frame.name, residual)
            last_kf = np.linalg.inv(mapper.keyframes[-1].view.viewmat.double().numpy())
            dt, dr = pose_distance(last_kf, c2w)
            keyframe = (i - mapper.keyframes[-1].index >= cfg.keyframe_every or dt > cfg.keyframe_translation
                        or dr > cfg.keyframe_rotation_deg or tr.coverage < cfg.keyframe_overlap)
        t1 = time.perf_counter()
        self.poses.append(c2w)
        self.timestamps.append(frame.timestamp)
        self.gt.append(frame.c2w_gt)
        if keyframe:
            view = frame_view(frame, self.seq.intrinsics, c2w, cfg.map_downscale)
            mapper.add_keyframe(Keyframe(i, frame.name, frame.timestamp, view))
        mapper.map(cfg.map_iters)
        t2 = time.perf_counter()
        st = FrameStats(i, (t1 - t0) * 1e3, (t2 - t1) * 1e3, residual, keyframe, mapper.num_gaussians)
        self.stats.append(st)
        if cfg.progress:
            log(f"frame {i + 1}/{len(self.seq)}  track {st.track_ms:7.0f} ms  map {st.map_ms:7.0f} ms  "
                f"residual {residual:.4f}  gaussians {st.num_gaussians}" + ("  keyframe" if keyframe else ""))
        if keyframe and cfg.snapshot_every and len(mapper.keyframes) % cfg.snapshot_every == 0:
            self.snapshot("running")

    def _check_lost(self, i: int, name: str, residual: float) -> None:
        cfg = self.cfg
        history = [s.residual for s in self.stats[1:]]
        if len(history) < cfg.lost_warmup:
            return
        typical = float(np.median(history))
        if residual > cfg.lost_min_residual and residual > cfg.lost_factor * max(typical, 1e-12):
            raise _Lost(i, name, residual, typical)


class _Lost(Exception):
    def __init__(self, index: int, name: str, residual: float, typical: float) -> None:
        super().__init__(index, name)
        self.index, self.name, self.residual, self.typical = index, name, residual, typical


def run_slam(
    sequence: PathLike,
    out: PathLike,
    cfg: Optional[SlamConfig] = None,
    *,
    intrinsics: Optional[Union[str, Sequence[float]]] = None,
    overwrite: bool = False,
    command: Optional[str] = None,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
) -> SlamResult:
    """Track and map ``sequence`` into scene directory ``out`` (see the module docstring).

    Raises ``LangfieldError`` for bad input, an existing ``out`` without ``overwrite``, and tracking
    loss (after writing the map so far).  ``KeyboardInterrupt`` writes a snapshot and propagates.
    """
    cfg = cfg or SlamConfig()
    seq = _select(open_sequence(sequence, intrinsics=intrinsics), cfg)
    out = Path(out)
    check_output(out, [seq.root])
    lock = acquire(out, command, create_parent=True)
    try:
        note_recovery(out, recover_interrupted_swap(lock.scene))
        clean_leftovers(lock.scene)
        root = lock.scene
        if root.exists() and not root.is_dir():
            raise LangfieldError(f"{out}: exists and is not a directory")
        if root.exists() and any(root.iterdir()) and not overwrite:
            raise LangfieldError(f"{out}: already exists; pass --overwrite to replace it")
        run = _Run(seq, root, cfg)
        if seq.has_gt and seq.frames[0].c2w_gt is None:
            log(f"note: {seq.name}: the first frame has no ground-truth pose; the map is anchored at the identity")
        for i in range(len(seq)):
            try:
                run.step(i, log)
            except _Lost as e:
                log(f"warning: tracking lost at frame {e.index} ({e.name}): residual {e.residual:.4f} is "
                    f"{e.residual / max(e.typical, 1e-12):.0f}x the typical {e.typical:.4f}")
                run.snapshot("lost")
                raise LangfieldError(
                    f"tracking lost at frame {e.index} ({e.name}); the map of frames 0..{e.index - 1} is saved in {out}"
                ) from None
            except KeyboardInterrupt:
                if run.poses:
                    run.snapshot("interrupted")
                    log(f"interrupted: the map of the {len(run.poses)} frames tracked so far is saved in {out}")
                raise
        run.snapshot("done")
        return run.result("done")
    finally:
        lock.release()
