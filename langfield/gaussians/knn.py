"""Exact k-nearest-neighbour distances, chunked to bound memory.

Used to give freshly initialised Gaussians a size matching the local point
spacing.  The torch path is brute force: O(P^2) work but only O(chunk * P)
memory, on whatever device the points live on (fast on a GPU), with no extra
dependency.  On the CPU brute force is slow for large clouds (~2 min for 200k
points on two cores), so ``backend="auto"`` uses SciPy's k-d tree there when
SciPy happens to be installed; both paths return the same exact distances.
"""

from __future__ import annotations

from typing import Optional

import torch

# Budget for one [chunk, P] block of squared distances in float64:
# 32 Mi entries = 256 MiB.
_BLOCK_ELEMENTS = 1 << 25
# Below this size brute force is fast enough that the k-d tree is not worth it.
_SCIPY_MIN_POINTS = 4096

KNN_BACKENDS = ("auto", "torch", "scipy")


def _scipy_available() -> bool:
    try:
        import scipy.spatial  # noqa: F401
    except ImportError:
        return False
    return True


def knn_distances(
    points: torch.Tensor, k: int, *, chunk: Optional[int] = None, backend: str = "auto"
) -> torch.Tensor:
    """Distances from every point to its ``k`` nearest *other* points, ascending.

    Args:
        points: [P, 3] float positions (any device).
        k: number of neighbours; must satisfy ``1 <= k <= P - 1``.
        chunk: query rows per torch block; default keeps a block under ~256 MiB.
        backend: ``torch`` (brute force), ``scipy`` (k-d tree, CPU) or ``auto``
            (scipy for large CPU clouds when installed, torch otherwise).

    Returns:
        [P, k] float32 distances on ``points.device``, sorted ascending per
        row.  A point never counts as its own neighbour, but exact duplicates
        of it do (distance 0).
    """
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be [P, 3], got {tuple(points.shape)}")
    if backend not in KNN_BACKENDS:
        raise ValueError(f"backend must be one of {KNN_BACKENDS}, got {backend!r}")
    p = points.shape[0]
    if not 1 <= k <= p - 1:
        raise ValueError(f"k={k} needs 1 <= k <= P-1 with P={p}")
    if backend == "auto":
        use_scipy = points.device.type == "cpu" and p >= _SCIPY_MIN_POINTS and _scipy_available()
        backend = "scipy" if use_scipy else "torch"
    if backend == "scipy":
        return _knn_scipy(points, k)
    return _knn_torch(points, k, chunk)


def _knn_scipy(points: torch.Tensor, k: int) -> torch.Tensor:
    from scipy.spatial import cKDTree

    pts = points.detach().cpu().double().numpy()
    p = pts.shape[0]
    # Query k+1 and drop the column that is the query itself.  With exact
    # duplicates the tree may list a twin before the point itself, so drop by
    # index rather than blindly dropping column 0.
    dist, idx = cKDTree(pts).query(pts, k=k + 1)
    dist_t = torch.from_numpy(dist)
    idx_t = torch.from_numpy(idx)
    own = idx_t == torch.arange(p)[:, None]
    # Rows where the point itself is not among the k+1 (only possible with
    # more than k duplicates) simply drop the last column.
    no_self = ~own.any(dim=1)
    own[no_self, k] = True
    kept = dist_t[~own].reshape(p, k)
    return kept.to(torch.float32).to(points.device)


def _knn_torch(points: torch.Tensor, k: int, chunk: Optional[int]) -> torch.Tensor:
    # float64 keeps |a|^2 + |b|^2 - 2ab from cancelling for closely spaced
    # points far from the origin (float32 loses spacings below ~1e-3 * extent).
    pts = points.detach().to(torch.float64)
    pts = pts - pts.mean(dim=0, keepdim=True)
    sq = (pts * pts).sum(dim=1)
    p = pts.shape[0]
    if chunk is None:
        chunk = max(1, _BLOCK_ELEMENTS // p)
    out = torch.empty(p, k, dtype=torch.float32, device=points.device)
    for start in range(0, p, chunk):
        stop = min(start + chunk, p)
        d2 = torch.addmm(sq[None, :], pts[start:stop], pts.T, beta=1.0, alpha=-2.0)
        d2 += sq[start:stop, None]
        # Exclude each query from its own neighbour list by index (not by
        # distance), so duplicated points still see each other at distance 0.
        rows = torch.arange(stop - start, device=points.device)
        d2[rows, rows + start] = float("inf")
        vals = torch.topk(d2, k, dim=1, largest=False, sorted=True).values
        out[start:stop] = vals.clamp_min(0.0).sqrt().to(torch.float32)
    return out
