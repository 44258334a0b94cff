"""open3d's tensor RGB-D odometry as a line-protocol worker for ``scripts/compare_odometry.py``.

    PYTHON_WITH_OPEN3D odometry_open3d_worker.py FRAMES.npz THREADS METHOD

Runs in an interpreter that has numpy + open3d (not langfield's): loads the frames (``rgb`` [N, H, W, 3]
float32 in [0, 1], ``depth`` [N, H, W] float32 metres, ``K`` [3, 3]), prints ``{"open3d": version}``,
then for each stdin line ``{"src": i, "ref": j, "init": 4x4}`` prints ``{"T": 4x4}``, the source ->
reference motion of ``rgbd_odometry_multi_scale`` (METHOD: Hybrid | PointToPlane | Intensity; 3 levels,
open3d's default criteria and loss parameters but depth_max 10 m).  At end of input it prints
``{"ms": [...], "cpu_ms": [...]}``, each call's wall and CPU time.  The intrinsics are shifted by half a
pixel: open3d puts pixel centres at integers.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main() -> int:
    npz, threads, method = sys.argv[1], sys.argv[2], sys.argv[3]
    os.environ.setdefault("OMP_NUM_THREADS", threads)
    import numpy as np
    import open3d as o3d

    odo = o3d.t.pipelines.odometry
    data = np.load(npz)
    rgb, depth = data["rgb"], data["depth"]
    K = data["K"].astype(np.float64)
    K[0, 2] -= 0.5  # langfield: pixel centres at +0.5; open3d: at integer coordinates
    K[1, 2] -= 0.5
    K = o3d.core.Tensor(K)
    images = [o3d.t.geometry.RGBDImage(o3d.t.geometry.Image(np.ascontiguousarray(rgb[i])),
                                       o3d.t.geometry.Image(np.ascontiguousarray(depth[i][..., None])))
              for i in range(len(rgb))]
    criteria = [odo.OdometryConvergenceCriteria(n) for n in (10, 5, 3)]
    print(json.dumps({"open3d": o3d.__version__}), flush=True)
    ms, cpu = [], []
    for line in sys.stdin:
        job = json.loads(line)
        init = o3d.core.Tensor(np.asarray(job["init"], dtype=np.float64))
        t0, c0 = time.perf_counter(), time.process_time()
        res = odo.rgbd_odometry_multi_scale(images[job["src"]], images[job["ref"]], K, init, depth_scale=1.0,
                                            depth_max=10.0, criteria_list=criteria, method=getattr(odo.Method, method))
        ms.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
        print(json.dumps({"T": res.transformation.numpy().tolist()}), flush=True)
    print(json.dumps({"ms": ms, "cpu_ms": cpu}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
