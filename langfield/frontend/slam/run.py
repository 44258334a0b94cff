"""``run_slam``: stream an RGB-D sequence through tracking and mapping into a scene directory.

Per frame: read it (one frame in memory), predict its pose by constant velocity, refine it by RGB-D
odometry against the last keyframe (and optionally against the map: ``tracker``), decide whether it
is a keyframe (motion, overlap, or ``keyframe_every``), grow the map from keyframes, run a few
mapping steps (``mapper``), and print one progress line.  The first frame is anchored at its
ground-truth pose when the sequence has one (the map then lives in the world of the dataset's
cameras, so held-out views evaluate it), else at the identity.

Output (``snapshot``): every ``snapshot_every`` keyframes, at the end, on Ctrl-C and when tracking
is lost, an atomic snapshot of ``out``: a scene directory (keyframes as its training cameras,
``config.json`` marked ``capture_kind: "slam"``) plus ``trajectory_tum.txt`` of every tracked
frame.  The run holds ``out``'s writer lock throughout.  Tracking loss (the residual jumps to
``lost_factor`` times its running median) writes the map so far and raises ``LangfieldError``
naming the frame (the CLI exits 2; the snapshot stays valid).  A frame that cannot be read (corrupt or
missing file, a depth image of another size) is skipped with a warning and listed in config.json's
``slam.skipped_frames``; more than ``MAX_UNREADABLE_IN_A_ROW`` in a row stop the run the same way.

With ``language.features`` set, every keyframe is also fused into the map's language field right after it
grew the map (``language.OnlineLanguage``: features, online codec, lift onto the Gaussians it sees); mapping
never touches the language, and every snapshot carries the field (``snapshot``).
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Protocol, Sequence, Union

import numpy as np

from langfield.frontend.slam.config import SlamConfig
from langfield.frontend.slam.frames import frame_view
from langfield.frontend.slam.language_config import SlamLanguageConfig
from langfield.frontend.slam.mapper import Keyframe, Mapper, pose_distance
from langfield.frontend.slam.snapshot import TRAJECTORY_FILE, features_path, write_snapshot
from langfield.frontend.slam.tracker import PyramidCache, constant_velocity, track_frame
from langfield.outputs import check_output
from langfield.scene import SceneCamera
from langfield.scene_lock import acquire, clean_leftovers, note_recovery, recover_interrupted_swap
from langfield.sources.rgbd import RGBDSequence, open_sequence
from langfield.types import DataError, LangfieldError

PathLike = Union[str, Path]
MAX_UNREADABLE_IN_A_ROW = 5
"""Unreadable frames in a row the run skips, each with a warning; one more stops it (exit 2, the map so far kept):
a bad file of a long recording should not cost the whole run, a longer gap means broken data (and tracking across
it would be a guess)."""


class LiveMap(Protocol):
    """A viewer following the growing map (``--view``: ``langfield.viewer.live.LiveScene``).

    ``open`` gets the first snapshot's directory; ``publish`` gets a copy of the map after every frame and swaps
    it in under the lock its render threads hold (the mapper never hands out the tensors it keeps optimising).
    """

    def open(self, scene_dir: Path) -> None: ...

    def publish(self, params: Mapping[str, Any], codec: Optional[Any] = None) -> None: ...


@dataclass
class FrameStats:
    """What happened to one frame (the progress line, and the benchmark's per-frame figures)."""

    index: int
    track_ms: float
    map_ms: float
    residual: float
    keyframe: bool
    num_gaussians: int
    language_ms: float = 0.0
    """Features + codec + lift of the keyframe (0 for other frames and geometry-only runs)."""


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
    language: Optional[dict[str, Any]] = None
    """config.json's ``language`` section of the last snapshot (None for a geometry-only run)."""


def _select(seq: RGBDSequence, cfg: SlamConfig) -> RGBDSequence:
    seq = seq.subset(0, None, cfg.stride) if cfg.stride > 1 else seq
    if cfg.max_frames is not None and cfg.max_frames < len(seq):
        seq = seq.subset(0, cfg.max_frames)
    return seq


class _Run:
    """State of one run (kept out of ``run_slam`` so snapshots can be written from any exit path)."""

    def __init__(self, seq: RGBDSequence, root: Path, cfg: SlamConfig,
                 language: Optional[SlamLanguageConfig] = None, live: Optional[LiveMap] = None) -> None:
        self.seq, self.root, self.cfg = seq, root, cfg
        self.live, self.live_open = live, False
        self.mapper = Mapper(cfg)
        self.pyramids = PyramidCache()  # the newest keyframe's odometry pyramid, built once for all its frames
        self.language = None
        self.language_meta: Optional[dict[str, Any]] = None
        if language is not None and language.enabled:
            from langfield.frontend.slam.language import OnlineLanguage

            cache = features_path(root)
            shutil.rmtree(cache, ignore_errors=True)  # a killed run's cache may hold another sequence's frames
            self.language = OnlineLanguage(language, seq, cache, cfg.map_downscale, seed=cfg.seed)
        self.poses: list[np.ndarray] = []
        self.timestamps: list[float] = []
        self.gt: list[Optional[np.ndarray]] = []
        self.stats: list[FrameStats] = []
        self.snapshots = 0
        self.skipped: list[dict[str, Any]] = []
        """Frames that could not be read (index, name, reason), skipped with a warning."""
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
                     "intrinsics_source": self.seq.intrinsics_source, "skipped_frames": self.skipped,
                     "config": dataclasses.asdict(cfg)},
        }

    def snapshot(self, status: str) -> None:
        cams = [SceneCamera.from_view(kf.camera, "train") for kf in self.mapper.keyframes]  # poses only: no pixels read
        c2w = np.stack(self.poses) if self.poses else np.zeros((0, 4, 4))
        final = status != "running"
        lang = self.language.snapshot(self.mapper, final=final) if self.language is not None else None
        if lang is not None:
            self.language_meta = lang.meta
        write_snapshot(self.root, self.mapper.params, cams, self.config(status), np.asarray(self.timestamps), c2w,
                       language=lang, features_cache=features_path(self.root) if final and lang is not None else None)
        self.snapshots += 1

    def result(self, status: str) -> SlamResult:
        gt = None
        if any(g is not None for g in self.gt):
            gt = np.stack([g if g is not None else np.full((4, 4), np.nan) for g in self.gt])
        return SlamResult(self.root, np.stack(self.poses), np.asarray(self.timestamps), gt, self.stats,
                          len(self.mapper.keyframes), self.mapper.num_gaussians, self.snapshots, status,
                          self.language_meta)

    # ------------------------------------------------------------------ one frame

    def step(self, i: int, log: Callable[[str], None]) -> None:
        cfg, mapper = self.cfg, self.mapper
        try:
            frame = self.seq[i]
        except DataError as e:  # unreadable / wrong-sized files: the loop skips the frame (MAX_UNREADABLE_IN_A_ROW)
            raise _Unreadable(str(e)) from None
        t0 = time.perf_counter()
        residual = 0.0
        if not self.poses:  # the first frame read (an unreadable frame 0 is skipped)
            c2w = frame.c2w_gt.copy() if frame.c2w_gt is not None else np.eye(4)
            keyframe = True
        else:
            prev2 = self.poses[-2] if len(self.poses) >= 2 else None
            guess = constant_velocity(self.poses[-1], prev2)
            target = frame_view(frame, self.seq.intrinsics, guess, cfg.track_downscale)
            tr = track_frame(mapper.frozen(), target, guess, cfg, keyframe=mapper.keyframes[-1].view,
                             pyramids=self.pyramids)
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
        language_s = 0.0
        if keyframe:
            view = frame_view(frame, self.seq.intrinsics, c2w, cfg.map_downscale)
            kf = Keyframe(i, frame.name, frame.timestamp, view)
            mapper.add_keyframe(kf)
            if self.language is not None:
                # After the keyframe grew the map (its new Gaussians get its features too), before mapping.
                language_s = self.language.fuse(kf, mapper)
        mapper.map(cfg.mapping_steps(keyframe))
        t2 = time.perf_counter()
        st = FrameStats(i, (t1 - t0) * 1e3, (t2 - t1 - language_s) * 1e3, residual, keyframe, mapper.num_gaussians,
                        language_s * 1e3)
        self.stats.append(st)
        if cfg.progress:
            lang = f"  language {st.language_ms:6.0f} ms" if self.language is not None else ""
            log(f"frame {i + 1}/{len(self.seq)}  track {st.track_ms:7.0f} ms  map {st.map_ms:7.0f} ms{lang}  "
                f"residual {residual:.4f}  gaussians {st.num_gaussians}" + ("  keyframe" if keyframe else ""))
        if keyframe and cfg.snapshot_every and len(mapper.keyframes) % cfg.snapshot_every == 0:
            self.snapshot("running")
        elif self.live is not None and not self.live_open:
            self.snapshot("running")  # the viewer opens a scene directory: give it one at once
        if self.live is not None:
            self._show()

    def _show(self) -> None:
        """Open the viewer on the newest snapshot (first call), else publish a copy of the map as it is now."""
        assert self.live is not None
        if not self.live_open:
            self.live.open(self.root)
            self.live_open = True
            return
        params = {k: v.detach().clone() for k, v in self.mapper.params.items()}
        codec = None
        if self.language is not None and self.language.codec is not None:
            latents = self.language.online_latents(self.mapper)
            if latents.shape[1]:
                params["latents"] = latents
                codec = self.language.codec
        self.live.publish(params, codec)

    def _check_lost(self, i: int, name: str, residual: float) -> None:
        cfg = self.cfg
        history = [s.residual for s in self.stats[1:]]
        typical = float(np.median(history)) if history else 0.0
        if not np.isfinite(residual):  # nothing of the frame lands on the map: lost even during the warm-up
            raise _Lost(i, name, residual, typical)
        if len(history) < cfg.lost_warmup:
            return
        if residual > cfg.lost_min_residual and residual > cfg.lost_factor * max(typical, 1e-12):
            raise _Lost(i, name, residual, typical)


class _Unreadable(Exception):
    """A frame whose files cannot be read or do not fit the sequence (the DataError's message)."""


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
    language: Optional[SlamLanguageConfig] = None,
    live: Optional[LiveMap] = None,
    overwrite: bool = False,
    command: Optional[str] = None,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
) -> SlamResult:
    """Track and map ``sequence`` into scene directory ``out`` (see the module docstring).

    Raises ``LangfieldError`` for bad input, an existing ``out`` without ``overwrite``, and tracking
    loss (after writing the map so far).  ``KeyboardInterrupt`` writes a snapshot and propagates.
    """
    cfg = cfg or SlamConfig()
    # A synthetic / nerfstudio sequence's held-out frames (its split's test views) stay out of the stream, so
    # `langfield eval SCENE` measures the map at cameras it never tracked or mapped.
    seq = _select(open_sequence(sequence, intrinsics=intrinsics, train_only=True), cfg)
    if language is not None and language.enabled:
        from langfield.frontend.slam.language import check_language_input

        check_language_input(language, seq)  # before the output is touched: bad input leaves nothing behind
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
        run = _Run(seq, root, cfg, language, live)
        for note in seq.notes:  # what opening dropped (TUM frames without depth or ground truth)
            log(f"warning: {seq.root}: {note}")
        if seq.has_gt and seq.frames[0].c2w_gt is None:
            log(f"note: {seq.name}: the first frame has no ground-truth pose; the map is anchored at the identity")
        in_a_row = 0  # consecutive unreadable frames
        for i in range(len(seq)):
            try:
                run.step(i, log)
                in_a_row = 0
            except _Unreadable as e:
                in_a_row += 1
                run.skipped.append({"index": i, "name": seq.frames[i].name, "reason": str(e)})
                if in_a_row > MAX_UNREADABLE_IN_A_ROW:
                    if run.poses:
                        run.snapshot("unreadable")
                    n = len(run.poses)
                    kept = (f"the map of the {n} frame{'s' if n != 1 else ''} tracked so far is saved in {out}" if n
                            else "nothing was written")
                    raise LangfieldError(f"frames {i - in_a_row + 1}..{i} in a row cannot be read, the last: {e}; "
                                         f"{kept}") from None
                log(f"warning: {e}; skipped")
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
        if not run.poses:
            raise LangfieldError(f"{sequence}: none of its {len(seq)} frames can be read (the last: "
                                 f"{run.skipped[-1]['reason']}); nothing was written")
        run.snapshot("done")
        return run.result("done")
    finally:
        if language is not None and language.enabled:
            shutil.rmtree(features_path(lock.scene), ignore_errors=True)  # moved into the last snapshot, or a failed run's
        lock.release()
