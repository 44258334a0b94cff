"""Structure from motion with pycolmap (CPU): SIFT, matching, mapping, undistortion to PINHOLE.

``run_sfm`` runs four stages in a work directory, each ending with a done-marker written
atomically after the stage's outputs (``<stage>.done.json``: its inputs' key, counts and
seconds).  A rerun skips every stage whose marker matches the current inputs and redoes
the rest, so a crash or Ctrl-C costs only the stage it interrupted; the COLMAP database
(``database.db``) is kept throughout.  An interrupted matching stage resumes inside the
database too: COLMAP skips image pairs it has already matched.

Layout of the work directory::

    database.db               features, matches, two-view geometries
    sparse/<k>/               the mapper's models (the largest is kept, its index in map.done.json)
    undistorted/images/       PINHOLE images (pycolmap's undistorter)
    undistorted/sparse/       the kept model with PINHOLE cameras
    extract.done.json ...     stage markers

Matching follows the input: sequential pairs (``overlap`` neighbours plus quadratic
overlap; loop detection needs a vocabulary-tree file, which is not available offline) for
a video, exhaustive pairs for a photo set of up to ``exhaustive_max`` images.  A video
gets one shared camera; photo sets too unless ``per_image_cameras``.

Sequential matching runs COLMAP's sequential pairing twice, once without and once with
quadratic overlap: since COLMAP 3.12 (pycolmap 4.2.1 here) ``quadratic_overlap`` *replaces*
the ``overlap`` nearest neighbours by the frames 2^k ahead instead of adding to them, so a
single pass matched a frame with the frames 1, 2, 4, 8 ... ahead and never 3, 5-7, 9, 10
(the 120-frame room video: 533 verified pairs instead of 1205).  ``sequential_pairs``
is the pair set the two passes match.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Optional

import numpy as np

from langfield.io import atomic_write_json
from langfield.types import DataError

STAGES = ("extract", "match", "map", "undistort")
DATABASE = "database.db"
MapperName = Literal["incremental", "global"]
MatcherName = Literal["auto", "sequential", "exhaustive"]
CameraModelName = Literal["SIMPLE_RADIAL", "OPENCV", "SIMPLE_PINHOLE", "PINHOLE", "RADIAL"]


@dataclass
class SfmConfig:
    """Structure-from-motion settings (pycolmap on the CPU)."""

    mapper: MapperName = "incremental"
    """Mapper: "incremental" (COLMAP) or "global" (GLOMAP, pycolmap's global_mapping); measured in
    scripts/bench_frontend.py: incremental is the faster one on fern and on the synthetic video."""
    matcher: MatcherName = "auto"
    """Image pairs to match: "auto" = sequential for a video, exhaustive for a photo set of up to
    exhaustive_max images (sequential above); or force "sequential" / "exhaustive"."""
    exhaustive_max: int = 100
    """Largest photo set matched exhaustively under matcher "auto" (the pairs grow as n^2 / 2)."""
    overlap: int = 20
    """Sequential matching: each frame is matched with this many following frames.  Measured on the 120-frame
    room video (scripts/eval_frontend.py): 10 -> 20 cut the focal error from 0.50 % to 0.39 % and the median
    relative rotation error from 0.42 to 0.36 deg (frames 11-20 apart still verify with ~25-55 inliers); 30 gave
    nothing more (0.41 %, 0.37 deg) for 40 % more matching."""
    quadratic_overlap: bool = True
    """Sequential matching: also match frames 2^k ahead (k < overlap; in addition to the overlap neighbours,
    see ``sequential_pairs``), which ties distant parts of the path together."""
    camera_model: CameraModelName = "SIMPLE_RADIAL"
    """COLMAP camera model estimated by SfM (images are undistorted to PINHOLE afterwards)."""
    per_image_cameras: bool = False
    """One camera per image instead of one shared camera (photos taken with different zoom or phones)."""
    max_features: int = 8192
    """Most SIFT features kept per image."""
    min_registered_ratio: float = 0.5
    """Fail when fewer than this fraction of the images are registered."""
    min_registered: int = 3
    """Fail when fewer than this many images are registered."""
    min_triangulation_deg: float = 1.0
    """Fail as degenerate (no parallax: a static camera) when the median triangulation angle of the
    sparse points is below this, in degrees."""
    threads: int = 0
    """CPU threads for extraction, matching and mapping; 0 = all cores."""
    seed: int = 0
    """Random seed of the mappers (runs are repeatable for one seed)."""
    verbose: bool = False
    """Show pycolmap's own log (quiet otherwise)."""


@dataclass
class SfmResult:
    """What ``run_sfm`` produced: the undistorted model, who was registered, where the time went."""

    model_dir: Path
    """The kept model with PINHOLE cameras (cameras, images, points3D .bin)."""
    image_dir: Path
    """Undistorted images, named as in the model."""
    registered: list[str]
    """Names of the registered images, sorted."""
    dropped: list[str]
    """Names of the input images SfM could not register."""
    total: int
    """Number of input images."""
    num_cameras: int
    """Cameras in the model (1 when shared)."""
    num_points: int
    """Sparse 3D points."""
    median_triangulation_deg: float
    """Median over points of the widest angle between two rays observing the point."""
    mean_reprojection_error: float
    """Mean reprojection error of the model, pixels."""
    mapper: str
    """Mapper used."""
    matcher: str
    """Matcher used ("sequential" or "exhaustive")."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Seconds per stage as measured when the stage ran (a resumed stage keeps its recorded time)."""
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    """CPU seconds per stage, all threads (comparable across runs on a busy machine, unlike wall time)."""
    resumed: list[str] = field(default_factory=list)
    """Stages skipped because a previous run had finished them."""


def _say(progress: bool, msg: str) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)


@contextmanager
def _colmap_log(verbose: bool) -> Iterator[None]:
    """pycolmap logs every step through glog on stderr: silent unless verbose.

    Even its ERROR lines are dropped ("Failed to create any sparse model"): every failure that
    matters reaches the user as one DataError line instead.
    """
    import pycolmap

    old = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = 0 if verbose else 3
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = old


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _read_marker(path: Path) -> Optional[dict[str, Any]]:
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def marker_path(work_dir: Path, stage: str) -> Path:
    """The done-marker of ``stage`` (one of STAGES) in ``work_dir``."""
    return work_dir / f"{stage}.done.json"


def finished_stages(work_dir: Path) -> list[str]:
    """Stages whose done-marker exists in ``work_dir`` (whatever their inputs were)."""
    return [s for s in STAGES if marker_path(work_dir, s).is_file()]


def _run_stage(
    work_dir: Path, stage: str, key: str, run: Callable[[], dict[str, Any]], progress: bool, result_log: dict
) -> dict[str, Any]:
    """Skip ``stage`` when its marker holds ``key``, else invalidate it and later stages, run it, mark it done."""
    marker = marker_path(work_dir, stage)
    info = _read_marker(marker)
    if info is not None and info.get("key") == key:
        _say(progress, f"sfm {stage}: finished by an earlier run, skipped ({info.get('summary', '')})")
        result_log["resumed"].append(stage)
        result_log["seconds"][stage] = float(info.get("seconds", 0.0))
        result_log["cpu_seconds"][stage] = float(info.get("cpu_seconds", 0.0))
        return info
    for later in STAGES[STAGES.index(stage):]:
        marker_path(work_dir, later).unlink(missing_ok=True)
    _say(progress, f"sfm {stage}: running ...")
    t0, c0 = time.perf_counter(), time.process_time()
    counts = run()
    seconds = time.perf_counter() - t0
    # CPU seconds of all threads: on a shared machine wall time says little, CPU time stays comparable.
    info = {"key": key, "seconds": round(seconds, 3), "cpu_seconds": round(time.process_time() - c0, 3), **counts}
    atomic_write_json(marker, info)  # after the stage's outputs: a marker always means a finished stage
    _say(progress, f"sfm {stage}: {info.get('summary', '')}, {seconds:.1f} s")
    result_log["seconds"][stage] = seconds
    result_log["cpu_seconds"][stage] = info["cpu_seconds"]
    return info


def _image_names(images: list[Path]) -> tuple[Path, list[str]]:
    if not images:
        raise DataError("structure from motion needs images, got none")
    root = images[0].parent
    names = []
    for p in images:
        if p.parent != root:
            raise DataError(f"{p}: all images for SfM must be in one folder ({root})")
        if not p.is_file():
            raise DataError(f"{p}: image file not found")
        names.append(p.name)
    if len(set(names)) != len(names):
        raise DataError(f"{root}: image names repeat")
    return root, names


def _threads(cfg: SfmConfig) -> int:
    return cfg.threads if cfg.threads > 0 else (os.cpu_count() or 1)


def _remove_database(db: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(db) + suffix).unlink(missing_ok=True)


def _extract(db: Path, root: Path, names: list[str], cfg: SfmConfig, where: Path) -> dict[str, Any]:
    import pycolmap

    _remove_database(db)  # a half-extracted database may hold another camera model: start clean (it is cheap)
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = cfg.camera_model
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = _threads(cfg)
    extraction.use_gpu = False
    extraction.sift.max_num_features = cfg.max_features
    mode = pycolmap.CameraMode.PER_IMAGE if cfg.per_image_cameras else pycolmap.CameraMode.SINGLE
    pycolmap.extract_features(db, root, image_names=names, camera_mode=mode, reader_options=reader,
                              extraction_options=extraction, device=pycolmap.Device.cpu)
    with pycolmap.Database.open(db) as database:
        n_img, n_kp = database.num_images(), database.num_keypoints()
    if n_img != len(names):
        raise DataError(f"{where}: pycolmap read {n_img} of {len(names)} images (unreadable image files?)")
    return {"images": n_img, "keypoints": n_kp, "summary": f"{n_img} images, {n_kp} SIFT features"}


def sequential_pairs(names: list[str], overlap: int, quadratic: bool) -> list[tuple[str, str]]:
    """The pairs sequential matching matches (what the two passes of ``_match`` give): frames in name order,
    each with the ``overlap`` frames after it and, when ``quadratic``, also with the frames 2^k after it
    (k < ``overlap``: 1, 2, 4 ... 2^(overlap-1)); each pair once."""
    order = sorted(names)
    offsets = set(range(1, overlap + 1))
    if quadratic:
        offsets |= {1 << k for k in range(overlap)}
    return [(order[i], order[i + d]) for i in range(len(order)) for d in sorted(offsets) if i + d < len(order)]


def _match(db: Path, matcher: str, cfg: SfmConfig, redo: bool) -> dict[str, Any]:
    import pycolmap

    if redo:  # the matching settings changed: pairs matched under the old ones must not stay
        with pycolmap.Database.open(db) as database:
            database.clear_matches()
            database.clear_two_view_geometries()
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = _threads(cfg)
    matching.use_gpu = False
    if matcher == "sequential":
        # Two passes, see the module docstring: COLMAP's quadratic overlap drops the near neighbours, so they are
        # matched first; the second pass skips every pair the first one matched (as a resumed stage does).
        for quadratic in (False, True) if cfg.quadratic_overlap else (False,):
            pairing = pycolmap.SequentialPairingOptions()
            pairing.overlap = cfg.overlap
            pairing.quadratic_overlap = quadratic
            pairing.loop_detection = False  # needs a vocabulary tree file
            pycolmap.match_sequential(db, matching_options=matching, pairing_options=pairing,
                                      device=pycolmap.Device.cpu)
    else:
        pycolmap.match_exhaustive(db, matching_options=matching, device=pycolmap.Device.cpu)
    with pycolmap.Database.open(db) as database:
        pairs, verified = database.num_matched_image_pairs(), database.num_verified_image_pairs()
    return {"pairs": pairs, "verified_pairs": verified,
            "summary": f"{matcher}, {pairs} image pairs matched, {verified} geometrically verified"}


def _map(db: Path, root: Path, sparse: Path, n_images: int, cfg: SfmConfig, progress: bool, where: Path
         ) -> dict[str, Any]:
    import pycolmap

    shutil.rmtree(sparse, ignore_errors=True)
    sparse.mkdir(parents=True)
    min_model = max(3, min(10, n_images // 2))
    t0 = time.perf_counter()
    if cfg.mapper == "global":
        opts = pycolmap.GlobalPipelineOptions()
        opts.num_threads = _threads(cfg)
        opts.random_seed = cfg.seed
        opts.min_model_size = min_model
        opts.mapper.global_positioning.use_gpu = False
        opts.mapper.bundle_adjustment.ceres.use_gpu = False
        models = pycolmap.global_mapping(db, root, sparse, options=opts)
    else:
        opts = pycolmap.IncrementalPipelineOptions()
        opts.num_threads = _threads(cfg)
        opts.random_seed = cfg.seed
        opts.min_model_size = min_model
        count = [0]

        def next_image() -> None:
            count[0] += 1
            if count[0] % 20 == 0:
                _say(progress, f"sfm map: {count[0]} images registered so far, {time.perf_counter() - t0:.0f} s")

        models = pycolmap.incremental_mapping(db, root, sparse, options=opts, next_image_callback=next_image)
    if not models:
        raise DataError(
            f"{where}: structure from motion found no model in {n_images} images: too little overlap or "
            "parallax between them (a static camera, or unrelated photos)"
        )
    best = max(models, key=lambda k: models[k].num_reg_images())
    rec = models[best]
    best_dir = sparse / str(best)
    if not (best_dir / "images.bin").is_file():  # the pipelines write each model; make sure of the kept one
        best_dir.mkdir(parents=True, exist_ok=True)
        rec.write(best_dir)
    sizes = sorted((m.num_reg_images() for m in models.values()), reverse=True)
    return {"model": best, "models": len(models), "registered": rec.num_reg_images(),
            "points": rec.num_points3D(),
            "summary": f"{cfg.mapper}, {rec.num_reg_images()} of {n_images} images registered, "
                       f"{rec.num_points3D()} points, {len(models)} model(s) {sizes}"}


def _undistort(model_dir: Path, root: Path, out: Path, cfg: SfmConfig) -> dict[str, Any]:
    import pycolmap

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    pycolmap.undistort_images(out, model_dir, root, output_type="COLMAP", num_threads=_threads(cfg))
    n = len(list((out / "images").iterdir()))
    return {"images": n, "summary": f"{n} images undistorted to PINHOLE"}


def median_triangulation_deg(rec: Any, max_points: int = 5000, seed: int = 0) -> float:
    """Median over (up to ``max_points`` sampled) points of the widest angle between rays observing each point."""
    centres = {iid: np.asarray(img.projection_center(), dtype=np.float64)
               for iid, img in rec.images.items() if img.has_pose}
    pts = list(rec.points3D.values())
    if not pts:
        return 0.0
    if len(pts) > max_points:
        idx = np.random.default_rng(seed).choice(len(pts), max_points, replace=False)
        pts = [pts[i] for i in idx]
    angles = np.empty(len(pts))
    for i, p in enumerate(pts):
        cs = np.array([centres[e.image_id] for e in p.track.elements if e.image_id in centres])
        if len(cs) < 2:
            angles[i] = 0.0
            continue
        rays = cs - np.asarray(p.xyz, dtype=np.float64)
        rays /= np.maximum(np.linalg.norm(rays, axis=1, keepdims=True), 1e-300)
        angles[i] = float(np.arccos(np.clip((rays @ rays.T).min(), -1.0, 1.0)))
    return math.degrees(float(np.median(angles)))


def _name_list(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_registration(
    registered: int, names_dropped: list[str], total: int, cfg: SfmConfig, where: Path, *, warn: bool = True
) -> None:
    """DataError when too few images were registered (N of M and which); a warning line for a partial one."""
    need = max(cfg.min_registered, int(math.ceil(cfg.min_registered_ratio * total)))
    if registered < need:
        raise DataError(
            f"{where}: structure from motion registered only {registered} of {total} images (need {need}); "
            f"not registered: {_name_list(names_dropped)}"
        )
    if names_dropped and warn:
        print(f"warning: {where}: {registered} of {total} images registered; dropped: {_name_list(names_dropped, 30)}",
              file=sys.stderr, flush=True)


def run_sfm(
    images: list[Path], work_dir: Path, cfg: SfmConfig, *, sequential: bool, progress: bool = True,
    label: Optional[Path] = None,
) -> SfmResult:
    """SIFT -> matching -> mapping -> undistortion of ``images`` (one folder) in ``work_dir``; resumable.

    ``sequential``: the images are a video's frames in order (sequential matching).  ``label``: the
    input the messages name (the user's video or photo folder; default the images' folder).  Raises
    DataError for too few registered images, no model or a degenerate (parallax-free) one.
    """
    import pycolmap

    images = [Path(p) for p in images]
    root, names = _image_names(images)
    where = Path(label) if label is not None else root  # what messages name: the user's input, not the work copy
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    db = work_dir / DATABASE
    matcher = cfg.matcher
    if matcher == "auto":
        matcher = "sequential" if sequential or len(names) > cfg.exhaustive_max else "exhaustive"
    log: dict[str, Any] = {"seconds": {}, "cpu_seconds": {}, "resumed": []}
    stat = [(n, p.stat().st_size) for n, p in zip(names, images)]
    c = asdict(cfg)
    k_extract = _digest({"images": stat, **{k: c[k] for k in ("camera_model", "per_image_cameras", "max_features")}})
    k_match = _digest({"prev": k_extract, "matcher": matcher, "overlap": cfg.overlap, "quad": cfg.quadratic_overlap,
                       "passes": 2})  # 2: older markers came from one pass, missing pairs
    k_map = _digest({"prev": k_match, "mapper": cfg.mapper, "seed": cfg.seed})
    k_undist = _digest({"prev": k_map})
    _say(progress, f"sfm: {len(names)} images from {root}, {matcher} matching, {cfg.mapper} mapper, "
                   f"{_threads(cfg)} threads; work in {work_dir}")
    with _colmap_log(cfg.verbose):
        _run_stage(work_dir, "extract", k_extract, lambda: _extract(db, root, names, cfg, where), progress, log)
        old_match = _read_marker(marker_path(work_dir, "match"))
        redo_match = old_match is not None and old_match.get("key") != k_match
        _run_stage(work_dir, "match", k_match, lambda: _match(db, matcher, cfg, redo_match), progress, log)
        sparse = work_dir / "sparse"
        info = _run_stage(work_dir, "map", k_map, lambda: _map(db, root, sparse, len(names), cfg, progress, where),
                          progress, log)
        model_dir = sparse / str(info["model"])
        rec = pycolmap.Reconstruction(str(model_dir))
        registered = sorted(img.name for img in rec.images.values() if img.has_pose)
        dropped = [n for n in names if n not in set(registered)]
        check_registration(len(registered), dropped, len(names), cfg, where, warn=False)
        angle = median_triangulation_deg(rec, seed=cfg.seed)
        if rec.num_points3D() < 10 or angle < cfg.min_triangulation_deg:
            raise DataError(
                f"{where}: degenerate reconstruction ({rec.num_points3D()} points, median triangulation angle "
                f"{angle:.2f} deg < {cfg.min_triangulation_deg:g}): the camera barely moves (a static camera has "
                "no parallax); move the camera sideways while filming"
            )
        check_registration(len(registered), dropped, len(names), cfg, where)  # only now warn: no error follows
        undist = work_dir / "undistorted"
        _run_stage(work_dir, "undistort", k_undist, lambda: _undistort(model_dir, root, undist, cfg),
                   progress, log)
    return SfmResult(
        model_dir=undist / "sparse", image_dir=undist / "images", registered=registered, dropped=dropped,
        total=len(names), num_cameras=rec.num_cameras(), num_points=rec.num_points3D(),
        median_triangulation_deg=angle, mean_reprojection_error=float(rec.compute_mean_reprojection_error()),
        mapper=cfg.mapper, matcher=matcher, seconds=log["seconds"], cpu_seconds=log["cpu_seconds"],
        resumed=log["resumed"],
    )
