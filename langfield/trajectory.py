"""Camera trajectories: TUM files, timestamp association, Umeyama alignment, ATE and RPE.

Poses are OpenCV camera-to-world [N, 4, 4] float64 (README "Conventions").  A TUM
trajectory line is ``timestamp tx ty tz qx qy qz qw``: the translation is the camera
centre and the quaternion the camera-to-world rotation, in (x, y, z, w) order, where
``langfield.geometry`` uses (w, x, y, z); ``read_tum`` / ``write_tum`` reorder.  TUM
does not fix the camera axes; files written here hold OpenCV axes, as the TUM RGB-D
ground truth does (its optical centre looks along +z).

The metrics follow the TUM benchmark's ``evaluate_ate.py`` / ``evaluate_rpe.py`` and
evo: ATE is the RMSE of camera-centre differences after a least-squares SE(3) (or
Sim(3), for monocular scale) alignment of estimate onto ground truth; RPE compares the
relative motion over ``delta`` frames and needs no alignment.

numpy in, numpy out, float64; only ``langfield.types`` / ``io`` / ``geometry`` are used,
so every layer may import this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from langfield.geometry import quat_to_rotmat
from langfield.io import atomic_write_text
from langfield.types import DataError

PathLike = Union[str, Path]

# ----------------------------------------------------------------------------- rotations


def rotmat_to_quat(rot: np.ndarray) -> np.ndarray:
    """[..., 3, 3] rotation matrices -> [..., 4] unit quaternions (w, x, y, z) with w >= 0.

    Shepperd's method: the largest of the four candidate squares is used as the
    divisor, so no branch divides by a value near zero (180-degree turns included).
    """
    m = np.asarray(rot, dtype=np.float64)
    flat = m.reshape(-1, 3, 3)
    out = np.empty((flat.shape[0], 4))
    tr = np.trace(flat, axis1=1, axis2=2)
    cand = np.stack([tr, flat[:, 0, 0], flat[:, 1, 1], flat[:, 2, 2]], axis=1)
    which = np.argmax(cand, axis=1)
    for i, r in enumerate(flat):
        k = which[i]
        if k == 0:
            s = 2.0 * math.sqrt(max(1.0 + tr[i], 1e-300))
            q = (0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s)
        elif k == 1:
            s = 2.0 * math.sqrt(max(1.0 + r[0, 0] - r[1, 1] - r[2, 2], 1e-300))
            q = ((r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s)
        elif k == 2:
            s = 2.0 * math.sqrt(max(1.0 + r[1, 1] - r[0, 0] - r[2, 2], 1e-300))
            q = ((r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s)
        else:
            s = 2.0 * math.sqrt(max(1.0 + r[2, 2] - r[0, 0] - r[1, 1], 1e-300))
            q = ((r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s)
        out[i] = q
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    out[out[:, 0] < 0] *= -1.0  # q and -q are one rotation: pick w >= 0 so files compare line by line
    return out.reshape(m.shape[:-2] + (4,))


def quat_wxyz_to_rotmat(quats: np.ndarray) -> np.ndarray:
    """[..., 4] quaternions (w, x, y, z), any non-zero norm -> [..., 3, 3] float64 rotations.

    The formula is ``geometry.quat_to_rotmat`` (one copy for every layer), run in float64.
    """
    q = torch.from_numpy(np.ascontiguousarray(quats, dtype=np.float64))
    return quat_to_rotmat(q).numpy()


def rotation_angle(rot: np.ndarray) -> np.ndarray:
    """Angle in radians of [..., 3, 3] rotations, in [0, pi] (clipped against rounding)."""
    rot = np.asarray(rot, dtype=np.float64)
    cos = (np.trace(rot, axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.arccos(np.clip(cos, -1.0, 1.0))


def _poses(c2w: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(c2w, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[1:] != (4, 4):
        raise DataError(f"{what}: expected camera-to-world poses of shape [N, 4, 4], got {list(arr.shape)}")
    if not np.isfinite(arr).all():
        raise DataError(f"{what}: poses contain NaN or infinite values")
    return arr


def _points(x: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise DataError(f"{what}: expected points of shape [N, 3], got {list(arr.shape)}")
    if not np.isfinite(arr).all():
        raise DataError(f"{what}: points contain NaN or infinite values")
    return arr


# ----------------------------------------------------------------------------- alignment


def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = False) -> tuple[np.ndarray, np.ndarray, float]:
    """Least-squares similarity ``dst ~ s * R @ src + t`` (Umeyama 1991): (R [3, 3], t [3], s).

    ``with_scale`` False fixes s = 1 (SE(3)); True also fits the scale (Sim(3)).  The
    reflection case of the SVD is corrected so R is always a rotation.  Needs at least
    3 non-collinear points for a unique rotation (2 distinct points already fix the
    translation and scale; the rotation about their line is then arbitrary).
    """
    src, dst = _points(src, "umeyama src"), _points(dst, "umeyama dst")
    if src.shape != dst.shape:
        raise DataError(f"umeyama: src has {len(src)} points, dst {len(dst)}: they must correspond one to one")
    if len(src) < 2:
        raise DataError(f"umeyama: needs at least 2 corresponding points, got {len(src)}")
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    u, d, vt = np.linalg.svd(cov)
    sign = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2, 2] = -1.0
    rot = u @ sign @ vt
    var_s = float((xs**2).sum() / len(src))
    if with_scale:
        if var_s <= 1e-300:
            raise DataError("umeyama: the source points all coincide: the scale is undefined")
        scale = float(np.trace(np.diag(d) @ sign) / var_s)
    else:
        scale = 1.0
    trans = mu_d - scale * rot @ mu_s
    return rot, trans, scale


def apply_similarity(c2w: np.ndarray, rot: np.ndarray, trans: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Move poses by the world similarity ``x -> s R x + t``: centres scale, rotations stay rotations."""
    c2w = _poses(c2w, "apply_similarity")
    out = c2w.copy()
    out[:, :3, :3] = rot @ c2w[:, :3, :3]
    out[:, :3, 3] = scale * c2w[:, :3, 3] @ rot.T + trans
    return out


def align_trajectory(
    est_c2w: np.ndarray, gt_c2w: np.ndarray, *, with_scale: bool = False
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, float]]:
    """Estimate aligned onto ground truth by its camera centres: (aligned [N, 4, 4], (R, t, s)).

    Frames correspond by index (associate timestamps first: ``associate``).
    """
    est, gt = _check_pair(est_c2w, gt_c2w)
    rot, trans, scale = umeyama(est[:, :3, 3], gt[:, :3, 3], with_scale=with_scale)
    return apply_similarity(est, rot, trans, scale), (rot, trans, scale)


def _check_pair(est_c2w: np.ndarray, gt_c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    est, gt = _poses(est_c2w, "estimated trajectory"), _poses(gt_c2w, "ground-truth trajectory")
    if len(est) != len(gt):
        raise DataError(f"trajectories differ in length: {len(est)} estimated poses, {len(gt)} ground truth")
    if len(est) == 0:
        raise DataError("trajectories are empty")
    return est, gt


# ----------------------------------------------------------------------------- metrics

ALIGNMENTS = ("se3", "sim3", "none")


@dataclass(frozen=True)
class ATE:
    """Absolute trajectory error: camera-centre distances after alignment, metres."""

    rmse: float
    """Root mean square of the per-frame distances."""
    mean: float
    """Mean distance."""
    median: float
    """Median distance."""
    max: float
    """Largest distance."""
    n: int
    """Number of poses compared."""
    scale: float
    """Scale of the alignment (1 unless Sim(3))."""


def ate(est_c2w: np.ndarray, gt_c2w: np.ndarray, *, align: str = "se3") -> ATE:
    """ATE of an estimate against ground truth (corresponding by index) after ``align`` (one of ALIGNMENTS)."""
    if align not in ALIGNMENTS:
        raise DataError(f"unknown alignment {align!r} (one of {', '.join(ALIGNMENTS)})")
    est, gt = _check_pair(est_c2w, gt_c2w)
    scale = 1.0
    if align != "none":
        if len(est) < 3:
            raise DataError(f"ATE with {align} alignment needs at least 3 poses, got {len(est)}")
        est, (_, _, scale) = align_trajectory(est, gt, with_scale=align == "sim3")
    err = np.linalg.norm(est[:, :3, 3] - gt[:, :3, 3], axis=1)
    return ATE(
        rmse=float(np.sqrt((err**2).mean())), mean=float(err.mean()), median=float(np.median(err)),
        max=float(err.max()), n=len(err), scale=scale,
    )


def ate_rmse(est_c2w: np.ndarray, gt_c2w: np.ndarray, *, align: str = "se3") -> float:
    """ATE RMSE in metres after ``align`` ("se3" default, "sim3" for an unknown scale, "none")."""
    return ate(est_c2w, gt_c2w, align=align).rmse


@dataclass(frozen=True)
class RPE:
    """Relative pose error over pairs ``(i, i + delta)`` (TUM ``evaluate_rpe.py`` with fixed delta in frames)."""

    trans_rmse: float
    """RMSE of the translational drift per ``delta`` frames, metres."""
    rot_rmse_deg: float
    """RMSE of the rotational drift per ``delta`` frames, degrees."""
    trans_mean: float
    """Mean translational drift, metres."""
    rot_mean_deg: float
    """Mean rotational drift, degrees."""
    n_pairs: int
    """Number of pairs compared."""
    delta: int
    """Frame step of each pair."""


def relative_errors(est_c2w: np.ndarray, gt_c2w: np.ndarray, delta: int = 1) -> np.ndarray:
    """Per-pair error transforms ``(G_i^-1 G_{i+d})^-1 (P_i^-1 P_{i+d})`` [N - delta, 4, 4]."""
    est, gt = _check_pair(est_c2w, gt_c2w)
    if not isinstance(delta, (int, np.integer)) or delta < 1:
        raise DataError(f"RPE delta must be a whole number of frames >= 1, got {delta!r}")
    if len(est) <= delta:
        raise DataError(f"RPE with delta {delta} needs more than {delta} poses, got {len(est)}")
    inv = np.linalg.inv  # general inverse: estimates need not be exactly rigid
    rel_est = inv(est[:-delta]) @ est[delta:]
    rel_gt = inv(gt[:-delta]) @ gt[delta:]
    return inv(rel_gt) @ rel_est


def rpe(est_c2w: np.ndarray, gt_c2w: np.ndarray, *, delta: int = 1) -> RPE:
    """Relative pose error for a step of ``delta`` frames (independent of any global alignment)."""
    err = relative_errors(est_c2w, gt_c2w, delta)
    t = np.linalg.norm(err[:, :3, 3], axis=1)
    r = np.degrees(rotation_angle(err[:, :3, :3]))
    return RPE(
        trans_rmse=float(np.sqrt((t**2).mean())), rot_rmse_deg=float(np.sqrt((r**2).mean())),
        trans_mean=float(t.mean()), rot_mean_deg=float(r.mean()), n_pairs=len(t), delta=int(delta),
    )


# ----------------------------------------------------------------------------- timestamps


def associate(
    first: np.ndarray, second: np.ndarray, max_difference: float = 0.02, offset: float = 0.0
) -> list[tuple[int, int]]:
    """Pairs (i, j) of timestamps with ``|first[i] - (second[j] + offset)| <= max_difference``.

    As TUM's ``associate.py``: candidate pairs are taken greedily by smallest difference
    and each timestamp is used at most once.  The result is sorted by ``i``.  Ties are
    broken by index so the result does not depend on the sort's stability.
    """
    a = np.asarray(first, dtype=np.float64).reshape(-1)
    b = np.asarray(second, dtype=np.float64).reshape(-1) + offset
    if len(a) == 0 or len(b) == 0:
        return []
    order_b = np.argsort(b, kind="stable")
    sb = b[order_b]
    cands: list[tuple[float, int, int]] = []
    # Only timestamps of ``second`` inside the window can pair: search the window per
    # ``first`` timestamp instead of building the full |a| x |b| table (long sequences).
    lo = np.searchsorted(sb, a - max_difference, side="left")
    hi = np.searchsorted(sb, a + max_difference, side="right")
    for i in range(len(a)):
        for k in range(lo[i], hi[i]):
            d = abs(a[i] - sb[k])
            if d <= max_difference:
                cands.append((d, i, int(order_b[k])))
    cands.sort()
    used_a: set[int] = set()
    used_b: set[int] = set()
    pairs = []
    for _, i, j in cands:
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        pairs.append((i, j))
    pairs.sort()
    return pairs


def interpolate_poses(t_query: np.ndarray, t_known: np.ndarray, c2w_known: np.ndarray) -> np.ndarray:
    """Poses at ``t_query`` from poses at sorted ``t_known``: linear centres, spherical-linear rotations.

    Queries outside ``[t_known[0], t_known[-1]]`` raise (no extrapolation).
    """
    tq = np.asarray(t_query, dtype=np.float64).reshape(-1)
    tk = np.asarray(t_known, dtype=np.float64).reshape(-1)
    poses = _poses(c2w_known, "interpolate_poses")
    if len(tk) != len(poses) or len(tk) == 0:
        raise DataError(f"interpolate_poses: {len(tk)} timestamps for {len(poses)} poses")
    if np.any(np.diff(tk) < 0):
        raise DataError("interpolate_poses: known timestamps must be sorted")
    if len(tq) and (tq.min() < tk[0] or tq.max() > tk[-1]):
        raise DataError(
            f"interpolate_poses: query times [{tq.min():.6f}, {tq.max():.6f}] leave the known range "
            f"[{tk[0]:.6f}, {tk[-1]:.6f}]"
        )
    hi = np.clip(np.searchsorted(tk, tq, side="right"), 1, len(tk) - 1) if len(tk) > 1 else np.zeros(len(tq), int)
    lo = np.maximum(hi - 1, 0)
    span = tk[hi] - tk[lo]
    w = np.where(span > 0, (tq - tk[lo]) / np.where(span > 0, span, 1.0), 0.0)
    q0, q1 = rotmat_to_quat(poses[lo, :3, :3]), rotmat_to_quat(poses[hi, :3, :3])
    dot = np.sum(q0 * q1, axis=1)
    q1 = np.where(dot[:, None] < 0, -q1, q1)  # shorter arc
    dot = np.abs(dot)
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    sin = np.sin(theta)
    near = sin < 1e-9  # nearly equal rotations: linear blend is exact to rounding
    a = np.where(near, 1.0 - w, np.sin((1.0 - w) * theta) / np.where(near, 1.0, sin))
    b = np.where(near, w, np.sin(w * theta) / np.where(near, 1.0, sin))
    q = a[:, None] * q0 + b[:, None] * q1
    out = np.tile(np.eye(4), (len(tq), 1, 1))
    out[:, :3, :3] = quat_wxyz_to_rotmat(q)
    out[:, :3, 3] = (1.0 - w)[:, None] * poses[lo, :3, 3] + w[:, None] * poses[hi, :3, 3]
    return out


# ----------------------------------------------------------------------------- TUM files


def parse_tum_lines(text: str, where: str, n_values: int) -> list[tuple[int, list[str]]]:
    """(line number, fields) of each data line of a TUM text file; ``#`` comments and blank lines skipped.

    Commas count as separators (TUM's tools accept both).  A line with fewer than
    ``n_values`` fields raises, naming the file and line.
    """
    rows = []
    for no, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].replace(",", " ").strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) < n_values:
            raise DataError(f"{where} line {no}: expected {n_values} values, got {len(fields)}: {raw.strip()[:80]!r}")
        rows.append((no, fields))
    return rows


def _floats(fields: list[str], where: str, no: int) -> list[float]:
    try:
        vals = [float(f) for f in fields]
    except ValueError:
        raise DataError(f"{where} line {no}: not a number in {' '.join(fields)[:80]!r}") from None
    if not all(math.isfinite(v) for v in vals):
        raise DataError(f"{where} line {no}: NaN or infinite value in {' '.join(fields)[:80]!r}")
    return vals


def read_tum(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """A TUM trajectory file -> (timestamps [N] float64, c2w [N, 4, 4] float64), in file order.

    Quaternions are normalised (files round them); a zero quaternion raises.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: trajectory file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read trajectory ({exc})") from None
    rows = parse_tum_lines(text, str(path), 8)
    if not rows:
        raise DataError(f"{path}: no poses (expected lines 'timestamp tx ty tz qx qy qz qw')")
    vals = np.array([_floats(fields[:8], str(path), no) for no, fields in rows])
    norms = np.linalg.norm(vals[:, 4:8], axis=1)
    bad = np.flatnonzero(norms < 1e-12)
    if len(bad):
        raise DataError(f"{path} line {rows[bad[0]][0]}: zero quaternion")
    q_wxyz = vals[:, [7, 4, 5, 6]] / norms[:, None]
    c2w = np.tile(np.eye(4), (len(vals), 1, 1))
    c2w[:, :3, :3] = quat_wxyz_to_rotmat(q_wxyz)
    c2w[:, :3, 3] = vals[:, 1:4]
    return vals[:, 0].copy(), c2w


def format_tum(timestamps: np.ndarray, c2w: np.ndarray, *, header: Optional[str] = None) -> str:
    """TUM text for poses: one ``timestamp tx ty tz qx qy qz qw`` line each (shortest exact floats)."""
    ts = np.asarray(timestamps, dtype=np.float64).reshape(-1)
    poses = _poses(c2w, "write_tum")
    if len(ts) != len(poses):
        raise DataError(f"write_tum: {len(ts)} timestamps for {len(poses)} poses")
    if not np.isfinite(ts).all():
        raise DataError("write_tum: timestamps contain NaN or infinite values")
    q = rotmat_to_quat(poses[:, :3, :3])  # (w, x, y, z)
    lines = [] if header is None else [f"# {h}" for h in header.splitlines()]
    for t, p, qq in zip(ts, poses, q):
        # repr gives the shortest string that parses back to the same float64.
        vals = (t, p[0, 3], p[1, 3], p[2, 3], qq[1], qq[2], qq[3], qq[0])
        lines.append(" ".join(repr(float(v)) for v in vals))
    return "\n".join(lines) + "\n"


def write_tum(path: PathLike, timestamps: np.ndarray, c2w: np.ndarray, *, header: Optional[str] = None) -> Path:
    """Write poses as a TUM trajectory file atomically (``header`` lines become ``#`` comments)."""
    return atomic_write_text(path, format_tum(timestamps, c2w, header=header))


# ----------------------------------------------------------------------------- estimate vs ground truth


@dataclass(frozen=True)
class TrajectoryErrors:
    """ATE and RPE of an estimated trajectory against ground truth, after timestamp association."""

    ate: ATE
    """Absolute trajectory error after the alignment."""
    rpe: Optional[RPE]
    """Relative pose error over ``delta`` associated poses (None with fewer than delta + 1 poses)."""
    n_estimated: int
    """Poses in the estimate."""
    n_ground_truth: int
    """Poses in the ground truth."""
    n_associated: int
    """Estimated poses that found a ground-truth pose within the tolerance."""
    align: str
    """Alignment used (one of ALIGNMENTS)."""

    def as_dict(self) -> dict:
        """Flat JSON-ready figures (metres, degrees)."""
        out = {"ate_rmse_m": self.ate.rmse, "ate_mean_m": self.ate.mean, "ate_median_m": self.ate.median,
               "ate_max_m": self.ate.max, "align": self.align, "scale": self.ate.scale,
               "n_estimated": self.n_estimated, "n_ground_truth": self.n_ground_truth,
               "n_associated": self.n_associated}
        if self.rpe is not None:
            out.update({"rpe_delta": self.rpe.delta, "rpe_trans_rmse_m": self.rpe.trans_rmse,
                        "rpe_rot_rmse_deg": self.rpe.rot_rmse_deg})
        return out


def compare_trajectories(
    est_t: np.ndarray, est_c2w: np.ndarray, gt_t: np.ndarray, gt_c2w: np.ndarray, *,
    max_difference: float = 0.02, align: str = "se3", delta: int = 1, min_associated: int = 3,
) -> TrajectoryErrors:
    """Associate estimate and ground truth by timestamp (``associate``), then ATE after ``align`` and RPE.

    As TUM's ``evaluate_ate.py`` / evo: poses pair by nearest timestamp within
    ``max_difference`` seconds; fewer than ``min_associated`` pairs is a DataError saying
    how many of how many associated.
    """
    est_t = np.asarray(est_t, dtype=np.float64).reshape(-1)
    gt_t = np.asarray(gt_t, dtype=np.float64).reshape(-1)
    est, gt = _poses(est_c2w, "estimated trajectory"), _poses(gt_c2w, "ground-truth trajectory")
    if len(est_t) != len(est) or len(gt_t) != len(gt):
        raise DataError(f"timestamps and poses differ in number: estimate {len(est_t)} vs {len(est)}, "
                        f"ground truth {len(gt_t)} vs {len(gt)}")
    pairs = associate(est_t, gt_t, max_difference)
    if len(pairs) < min_associated:
        raise DataError(
            f"only {len(pairs)} of {len(est_t)} estimated poses associate with one of the {len(gt_t)} ground-truth "
            f"poses within {max_difference:g} s (need {min_associated}); do both use the same clock?"
        )
    ie, ig = [i for i, _ in pairs], [j for _, j in pairs]
    a, b = est[ie], gt[ig]
    return TrajectoryErrors(
        ate=ate(a, b, align=align), rpe=rpe(a, b, delta=delta) if len(pairs) > delta else None,
        n_estimated=len(est), n_ground_truth=len(gt), n_associated=len(pairs), align=align,
    )


# ----------------------------------------------------------------------------- frame-free accuracy
# Pose accuracy independent of an estimate's arbitrary world frame (SfM): relative rotations need no
# alignment; camera centres are compared after Sim(3) and reported relative to the trajectory's extent.


def relative_rotation_errors_deg(est_c2w: np.ndarray, ref_c2w: np.ndarray) -> np.ndarray:
    """Angles (degrees) between estimated and reference relative rotations over all pairs i < j."""
    est = np.asarray(est_c2w, dtype=np.float64)
    ref = np.asarray(ref_c2w, dtype=np.float64)
    if est.shape != ref.shape or est.ndim != 3 or len(est) < 2:
        raise DataError(f"pose accuracy: need two matching stacks of >= 2 poses, got {est.shape} and {ref.shape}")
    i, j = np.triu_indices(len(est), k=1)
    re, rr = est[:, :3, :3], ref[:, :3, :3]
    rel_e = np.swapaxes(re[i], 1, 2) @ re[j]
    rel_r = np.swapaxes(rr[i], 1, 2) @ rr[j]
    return np.degrees(rotation_angle(np.swapaxes(rel_e, 1, 2) @ rel_r))


def median_relative_rotation_deg(est_c2w: np.ndarray, ref_c2w: np.ndarray) -> float:
    """Median of ``relative_rotation_errors_deg``."""
    return float(np.median(relative_rotation_errors_deg(est_c2w, ref_c2w)))


def trajectory_extent(c2w: np.ndarray) -> float:
    """Diagonal of the bounding box of the camera centres."""
    c = np.asarray(c2w, dtype=np.float64)[:, :3, 3]
    return float(np.linalg.norm(c.max(axis=0) - c.min(axis=0)))


def ate_percent(est_c2w: np.ndarray, ref_c2w: np.ndarray) -> float:
    """Camera-centre ATE RMSE after Sim(3) alignment, as % of the reference trajectory's extent."""
    extent = trajectory_extent(ref_c2w)
    if extent <= 0:
        raise DataError("pose accuracy: the reference cameras do not move (zero extent)")
    return 100.0 * ate(est_c2w, ref_c2w, align="sim3").rmse / extent
